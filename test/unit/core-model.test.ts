import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ConfigError, ValidationError, toOrchError, ExitCode, CursorError } from '../../src/core/errors.js';
import { isJobId, isWorkspaceId, assertWorkspaceId } from '../../src/core/ids.js';
import { Keyspace } from '../../src/core/keys.js';
import { createdAtScore, parseRev, EnqueueInputSchema } from '../../src/core/job.js';
import { decodeState } from '../../src/core/state.js';
import { decodeCursor, encodeCursor } from '../../src/core/cursor.js';
import { Phase, phaseDiagram, routeFor, readPathFor, nextPhase, previousPhase } from '../../src/core/phase.js';
import { parseRedisUrl, redactUrl, isConnectionError } from '../../src/core/redis.js';

/** Redis glob matching (the subset SCAN MATCH uses: *, ?, [..], escapes). */
function globMatch(pattern: string, s: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(s);
}

describe('identifier rules (full match)', () => {
  it.each(['a', 'acme', 'team-7', 'ws_1', '0', 'a'.repeat(32)])('accepts workspace %j', (ws) => expect(isWorkspaceId(ws)).toBe(true));
  it.each(['', 'A', 'Acme', '-a', '_a', 'a*', 'a?', 'a[b]', 'a:b', '..', 'a/b', 'a'.repeat(33), 'acme\n', '\nacme', 'acme ', 'ünï'])(
    'rejects workspace %j',
    (ws) => expect(isWorkspaceId(ws)).toBe(false),
  );
  it.each(['j', 'job_123', 'A.b-c_d', '2026-01-01.a', 'x'.repeat(128)])('accepts job %j', (id) => expect(isJobId(id)).toBe(true));
  it.each(['', '.a', '-a', 'a:b', 'a*', '../x', 'a b', 'x'.repeat(129), 'job\n'])('rejects job %j', (id) => expect(isJobId(id)).toBe(false));

  it('says what is allowed when it rejects', () => {
    expect(() => assertWorkspaceId('Bad*WS')).toThrow(/1-32 characters of a-z, 0-9/);
    try {
      assertWorkspaceId('x'.repeat(200));
    } catch (e) {
      expect(e).toBeInstanceOf(ValidationError);
      expect((e as ValidationError).exitCode).toBe(ExitCode.Usage);
      expect((e as Error).message.length).toBeLessThan(200);
    }
  });

  it('any accepted id is free of glob characters and colons (safe in keys and MATCH patterns)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        if (isWorkspaceId(s) || isJobId(s)) expect(/[*?[\]\\:]/.test(s)).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('key layouts', () => {
  const k = new Keyspace('ai');
  it('spells the keys of docs/design.md "Key layout"', () => {
    expect(k.legacyJob('j1')).toBe('ai:jobs:j1');
    expect(k.v2Job('ws', 'j1')).toBe('ai:job:ws:j1');
    expect(k.index('ws')).toBe('ai:job-index:ws');
    expect(k.queue).toBe('ai:queue');
    expect(k.state).toBe('ai:migration:jobs');
    expect(k.history).toBe('ai:migration:jobs:history');
    expect(k.lock).toBe('ai:migration:jobs:lock');
    expect(k.checkpoint('backfill')).toBe('ai:migration:jobs:checkpoint:backfill');
  });

  it('the legacy and v2 patterns never overlap, and match neither the index nor the migration keys', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,31}$/), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/), (ws, id) => {
        const legacy = k.legacyJob(id);
        const v2 = k.v2Job(ws, id);
        expect(globMatch(k.legacyPattern, legacy)).toBe(true);
        expect(globMatch(k.v2Pattern(), legacy)).toBe(false);
        expect(globMatch(k.v2Pattern(), v2)).toBe(true);
        expect(globMatch(k.legacyPattern, v2)).toBe(false);
        expect(globMatch(k.v2Pattern(ws), v2)).toBe(true);
        for (const other of [k.index(ws), k.state, k.history, k.lock, k.checkpoint('backfill'), k.queue]) {
          expect(globMatch(k.legacyPattern, other)).toBe(false);
          expect(globMatch(k.v2Pattern(), other)).toBe(false);
        }
        expect(k.parseLegacy(legacy)).toBe(id);
        expect(k.parseV2(v2)).toEqual({ workspaceId: ws, jobId: id });
        expect(k.parseV2(legacy)).toBeNull();
        expect(k.parseLegacy(v2)).toBeNull();
      }),
      { numRuns: 500 },
    );
  });

  it('refuses prefixes that could widen a pattern', () => {
    for (const p of ['', 'a*', 'a:b', 'a?', 'a[x]', 'a b']) expect(() => new Keyspace(p)).toThrow(ConfigError);
  });
});

describe('job model', () => {
  it('parses rev: missing is 0, malformed is null', () => {
    expect(parseRev(undefined)).toBe(0);
    expect(parseRev('12')).toBe(12);
    expect(parseRev('abc')).toBeNull();
    expect(parseRev('-1')).toBeNull();
    expect(parseRev('01')).toBeNull();
  });
  it('scores created_at from ISO, epoch seconds and epoch ms', () => {
    expect(createdAtScore('2026-01-01T00:00:00.000Z')).toBe(Date.UTC(2026, 0, 1));
    expect(createdAtScore('1767225600')).toBe(1767225600000);
    expect(createdAtScore('1767225600123')).toBe(1767225600123);
    expect(createdAtScore('garbage')).toBe(0);
    expect(createdAtScore(undefined)).toBe(0);
  });
  it('turns a ZodError into a validation error (exit 2)', () => {
    const r = EnqueueInputSchema.safeParse({ workspaceId: 'A*', action: '' });
    expect(r.success).toBe(false);
    const e = toOrchError(r.error);
    expect(e).toBeInstanceOf(ValidationError);
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(/workspaceId/);
  });
});

describe('phase routing', () => {
  it('follows docs/design.md "Phases and routing"', () => {
    expect(routeFor(Phase.Legacy)).toEqual({ primary: 'legacy', mirror: null });
    expect(routeFor(Phase.DualWrite)).toEqual({ primary: 'legacy', mirror: 'v2' });
    expect(routeFor(Phase.ReadNew)).toEqual({ primary: 'v2', mirror: 'legacy' });
    expect(routeFor(Phase.NewOnly)).toEqual({ primary: 'v2', mirror: null });
    expect(readPathFor(Phase.ReadNew)).toBe('v2');
    expect(nextPhase(Phase.NewOnly)).toBeNull();
    expect(previousPhase(Phase.Legacy)).toBeNull();
    expect(phaseDiagram(Phase.ReadNew)).toBe('legacy → dual-write → [read-new] → new-only');
  });
});

describe('state record decoding', () => {
  it('a missing record is legacy, epoch 0, legacy complete', () => {
    expect(decodeState('s', {})).toMatchObject({ phase: 'legacy', epoch: 0, changedAt: null, legacyComplete: true, v2Complete: false, settleMs: 2000 });
  });
  it('an unknown phase or a non-numeric epoch is a config error that names the fix', () => {
    expect(() => decodeState('ai:migration:jobs', { phase: 'halfway' })).toThrow(/unknown phase "halfway"/);
    const e = (() => {
      try {
        decodeState('ai:migration:jobs', { phase: 'dual-write', epoch: 'three' });
      } catch (err) {
        return err as ConfigError;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(ConfigError);
    expect(e!.exitCode).toBe(2);
    expect(e!.suggestion).toMatch(/runbooks\/incident-state-record\.md/);
  });
  it('ignores unparseable summaries rather than crashing', () => {
    expect(decodeState('s', { last_verify: '{not json' }).lastVerify).toBeNull();
  });
});

describe('raw cursors', () => {
  it('round-trips and is bound to its read path', () => {
    const c = encodeCursor({ p: 'v2', s: 12, m: 'job-1' });
    expect(decodeCursor(c, 'v2')).toEqual({ p: 'v2', s: 12, m: 'job-1' });
    expect(() => decodeCursor(c, 'legacy')).toThrow(/restart paging/);
  });
  it('rejects garbage', () => {
    for (const bad of ['', '*', '../', 'eyJ4IjoxfQ', Buffer.from('{"p":"v2","s":"x","m":1}').toString('base64url')]) {
      expect(() => decodeCursor(bad, 'v2')).toThrow(CursorError);
    }
  });
});

describe('redis URLs', () => {
  it('never prints a password', () => {
    expect(redactUrl('redis://user:s3cret@h:6380/2')).toBe('redis://user:***@h:6380/2');
    expect(redactUrl('redis://:s3cret@h')).not.toMatch(/s3cret/);
    expect(redactUrl('garbage s3cret')).not.toMatch(/s3cret/);
  });
  it('parses host, port, db and TLS', () => {
    expect(parseRedisUrl('rediss://u:p@example:7000/3')).toMatchObject({
      host: 'example',
      port: 7000,
      db: 3,
      tls: true,
      username: 'u',
      password: 'p',
      address: 'example:7000',
    });
    expect(() => parseRedisUrl('http://x')).toThrow(ConfigError);
    expect(() => parseRedisUrl('redis://h/xyz')).toThrow(/database/);
  });
  it('classifies connection errors', () => {
    expect(isConnectionError(new Error('connect ECONNREFUSED 127.0.0.1:1'))).toBe(true);
    expect(isConnectionError(new Error('Command timed out'))).toBe(true);
    expect(isConnectionError(new Error('WRONGTYPE Operation against a key'))).toBe(false);
  });
});
