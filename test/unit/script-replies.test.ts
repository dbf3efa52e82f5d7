/**
 * One table per script for its reply codes (src/core/script-replies.ts): each
 * table holds exactly the codes its script's header documents under "Returns",
 * every error reply a script can give starts with a word of ScriptError, and a
 * Redis error that is not one of those replies is never read as an answer.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import type { RedisClient } from '../../src/core/redis.js';
import {
  ApplyIfNewerReply,
  BackfillCreateReply,
  BackfillBatchReply,
  CleanupBatchReply,
  CleanupUnlinkReply,
  IndexDropDanglingReply,
  isScriptError,
  LockReleaseReply,
  MirrorCreateReply,
  RepairCasReply,
  ScriptError,
  scriptErrorReply,
  XslotCreateReply,
} from '../../src/core/script-replies.js';
import { convertQueueRefs } from '../../src/ops/queue-refs.js';

const LUA = fileURLToPath(new URL('../../src/core/lua/', import.meta.url));

const TABLES: Record<string, Record<string, number>> = {
  'apply-if-newer.lua': ApplyIfNewerReply,
  'backfill-batch.lua': BackfillBatchReply,
  'cleanup-batch.lua': CleanupBatchReply,
  'cleanup-unlink.lua': CleanupUnlinkReply,
  'repair-cas.lua': RepairCasReply,
  'mirror-create.lua': MirrorCreateReply,
  'backfill-create.lua': BackfillCreateReply,
  'index-drop-dangling.lua': IndexDropDanglingReply,
  'lock-release.lua': LockReleaseReply,
  'xslot-create.lua': XslotCreateReply,
};

/** The codes a script's header lists under "Returns" (up to "Errors" or the end of the header). */
export function documentedCodes(source: string): number[] {
  const header = source.slice(0, source.indexOf(']]'));
  const start = header.indexOf('Returns');
  if (start < 0) return [];
  const end = header.indexOf('Errors', start);
  const section = header.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/(?<![\w[])(-?\d+)\s+(?=[a-z])/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
}

function replyError(message: string): Error {
  const e = new Error(message);
  e.name = 'ReplyError';
  return e;
}

describe('src/core/script-replies.ts', () => {
  it('the header reader finds the codes of a Returns section, and only those', () => {
    const src = [
      '--[[',
      '  KEYS[1]  a key',
      '  ARGV[2]  1 = yes',
      '  Returns  1 done, 0 not done (see ARGV[2])',
      '          -3 refused: other',
      '  Errors   FENCED lock',
      ']]',
      'return 7',
    ].join('\n');
    expect(documentedCodes(src)).toEqual([-3, 0, 1]);
  });

  for (const [file, table] of Object.entries(TABLES)) {
    it(`${file}: the table holds exactly the codes its header documents`, () => {
      const documented = documentedCodes(readFileSync(LUA + file, 'utf8'));
      expect(documented.length, `${file} documents no codes`).toBeGreaterThan(1);
      expect(Object.values(table).sort((a, b) => a - b)).toEqual(documented);
    });
  }

  it('every error reply of every script starts with a word of ScriptError', () => {
    const words = new Set<string>(Object.values(ScriptError));
    const seen: string[] = [];
    for (const file of readdirSync(LUA).filter((f) => f.endsWith('.lua'))) {
      for (const m of readFileSync(LUA + file, 'utf8').matchAll(/redis\.error_reply\('([A-Z_]+)/g)) seen.push(`${file}: ${m[1]}`);
    }
    expect(seen.length).toBeGreaterThan(10);
    expect(seen.filter((s) => !words.has(s.split(': ')[1]!))).toEqual([]);
  });

  it('splits an error reply into code and arguments, and ignores anything else', () => {
    expect(scriptErrorReply(replyError('EPOCH 3 dual-write'))).toEqual({ code: 'EPOCH', args: ['3', 'dual-write'] });
    expect(scriptErrorReply(replyError('ERR FENCED lock'))).toEqual({ code: 'FENCED', args: ['lock'] });
    expect(isScriptError(replyError('WRONGTYPE Operation against a key holding the wrong kind of value'), ScriptError.WrongType)).toBe(true);
    // A connection error whose text happens to start with a code is still not a reply.
    expect(scriptErrorReply(new Error('WRONGTYPE but a network error'))).toBeNull();
    expect(isScriptError(new Error('Connection is closed.'), ScriptError.WrongType)).toBe(false);
  });
});

describe('a Redis error is never evidence', () => {
  /** A client whose queue holds one bare reference and whose HGET fails as given. */
  function client(hgetError: Error): RedisClient {
    return {
      llen: async () => 1,
      lrange: async () => ['job_1'],
      type: async () => 'hash',
      hget: async () => {
        throw hgetError;
      },
    } as unknown as RedisClient;
  }

  it('queue references: a lost connection fails the conversion instead of leaving the reference unresolved', async () => {
    await expect(convertQueueRefs(client(new Error('Connection is closed.')), new Keyspace('ai'), { dryRun: true })).rejects.toThrow(/Connection is closed/);
  });

  it('queue references: a record that changed type meanwhile is unresolved (it has no owner)', async () => {
    const r = await convertQueueRefs(client(replyError('WRONGTYPE Operation against a key holding the wrong kind of value')), new Keyspace('ai'), {
      dryRun: true,
    });
    expect(r).toMatchObject({ bare: 1, converted: 0, unresolved: 1, unresolvedSamples: ['job_1'] });
  });
});
