// Gates, the rollback plan and status's next command, as pure functions.
import { describe, expect, it } from 'vitest';
import { commandLine } from '../../src/cli/runner.js';
import { GateError, ConfigError } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { decodeState, type MigrationState } from '../../src/core/state.js';
import { assertLegacyKey } from '../../src/ops/cleanup.js';
import { enforceGates, gatesFor } from '../../src/ops/gates.js';
import { planRollback, RollbackAction } from '../../src/ops/rollback.js';
import { nextStep, type StatusResult } from '../../src/ops/status.js';

const NOW = 1_800_000_000_000;
const H = 3_600_000;

function state(fields: Record<string, string | object>): MigrationState {
  const raw: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) raw[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return decodeState('ai:migration:jobs', raw);
}

const cleanVerify = (epoch: number, at: number) => ({
  ok: true,
  epoch,
  startedAt: at - 1000,
  finishedAt: at,
  scope: 'full',
  scanned: 10,
  mismatches: 0,
  byKind: {},
  rounds: 2,
  durationMs: 1000,
});
const backfillAt = (epoch: number, at: number) => ({
  direction: 'forward',
  epoch,
  startedAt: at - 1000,
  finishedAt: at,
  complete: true,
  scanned: 10,
  copied: 10,
  skipped: 0,
  unmigratable: 0,
  durationMs: 1000,
  keysPerSecond: 10,
  resumed: false,
});

function closedGate(command: string, s: MigrationState, extra: object = {}) {
  return gatesFor(command, { state: s, now: NOW, ...extra }).find((g) => !g.open) ?? null;
}

describe('flip-read gates', () => {
  it('refuses outside dual-write with a non-forceable phase gate naming the command that gets there', () => {
    const g = closedGate('flip-read', state({}));
    expect(g).toMatchObject({ name: 'phase', forceable: false, opensWith: 'orch-migrate enable-dual-write' });
    expect(() =>
      enforceGates(gatesFor('flip-read', { state: state({}), now: NOW }), { force: ['verify', 'soak', 'legacy-complete', 'writers'], reason: 'x' }),
    ).toThrow(GateError);
  });

  it('needs a verify, in this epoch, full, clean, after the last backfill, and fresh', () => {
    const base = { phase: 'dual-write', epoch: '3', changed_at: String(NOW - 2 * H) };
    expect(closedGate('flip-read', state(base))?.reason).toBe('no verify has run');
    expect(closedGate('flip-read', state({ ...base, last_verify: cleanVerify(2, NOW - 1000) }))?.reason).toMatch(/epoch 2/);
    expect(closedGate('flip-read', state({ ...base, last_verify: { ...cleanVerify(3, NOW - 1000), scope: 'partial' } }))?.reason).toMatch(/partial/);
    expect(closedGate('flip-read', state({ ...base, last_verify: { ...cleanVerify(3, NOW - 1000), ok: false, mismatches: 4 } }))?.reason).toMatch(
      /4 persistent/,
    );
    expect(closedGate('flip-read', state({ ...base, last_verify: cleanVerify(3, NOW - 60_000), last_backfill: backfillAt(3, NOW - 1000) }))?.reason).toMatch(
      /backfill finished after/,
    );
    expect(closedGate('flip-read', state({ ...base, last_verify: cleanVerify(3, NOW - 2 * H) }))?.reason).toMatch(/old \(max 60m\)/);
    expect(closedGate('flip-read', state({ ...base, last_verify: cleanVerify(3, NOW - 2 * H) }), { maxVerifyAgeMs: 3 * H })).toBeNull();
    expect(closedGate('flip-read', state({ ...base, last_verify: cleanVerify(3, NOW - 1000), last_backfill: backfillAt(3, NOW - 5000) }))).toBeNull();
  });

  it('--force needs --reason, and then overrides exactly the named data gates', () => {
    const s = state({ phase: 'dual-write', epoch: '3' });
    const gates = gatesFor('flip-read', { state: s, now: NOW });
    expect(() => enforceGates(gates, { force: ['verify'] })).toThrow(ConfigError);
    expect(enforceGates(gates, { force: ['verify'], reason: 'verified elsewhere' })).toEqual(['verify']);
    // Naming another gate does not force this one.
    expect(() => enforceGates(gates, { force: ['soak'], reason: 'wrong gate' })).toThrow(GateError);
    try {
      enforceGates(gates, {});
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(GateError);
      expect((e as GateError).exitCode).toBe(3);
      expect((e as GateError).message).toMatch(/^Refused: no verify has run\.$/);
      expect((e as GateError).suggestion).toMatch(/orch-migrate verify/);
    }
  });
});

describe('cleanup gates', () => {
  const readNew = { phase: 'read-new', epoch: '4', changed_at: String(NOW - 10 * 60_000) };
  it('needs the soak time and a clean verify in read-new; only the phase in new-only', () => {
    expect(closedGate('cleanup', state({ ...readNew, last_verify: cleanVerify(4, NOW - 1000) }))).toMatchObject({ name: 'soak', forceable: true });
    expect(closedGate('cleanup', state({ ...readNew, last_verify: cleanVerify(4, NOW - 1000) }), { minSoakMs: 0 })).toBeNull();
    expect(closedGate('cleanup', state(readNew), { minSoakMs: 0 })).toMatchObject({ name: 'verify' });
    expect(closedGate('cleanup', state({ phase: 'new-only', epoch: '5' }))).toBeNull();
    expect(closedGate('cleanup', state({ phase: 'dual-write', epoch: '2' }))).toMatchObject({ name: 'phase', opensWith: 'orch-migrate flip-read' });
  });
});

describe('rollback plan', () => {
  it('is one step back from each phase', () => {
    expect(planRollback(state({ phase: 'dual-write' }), {})).toMatchObject({ action: RollbackAction.Transition, to: Phase.Legacy });
    expect(planRollback(state({ phase: 'read-new' }), {})).toMatchObject({ action: RollbackAction.Transition, to: Phase.DualWrite });
    expect(planRollback(state({ phase: 'new-only', legacy_complete: '0' }), {})).toMatchObject({
      action: RollbackAction.TransitionAndReverseBackfill,
      to: Phase.ReadNew,
    });
    expect(planRollback(state({ phase: 'new-only' }), { phaseOnly: true })).toMatchObject({ action: RollbackAction.Transition, to: Phase.ReadNew });
  });

  it('in read-new with legacy incomplete resumes the reverse backfill; --phase-only hits the legacy-complete gate', () => {
    const s = state({ phase: 'read-new', legacy_complete: '0' });
    expect(planRollback(s, {})).toMatchObject({ action: RollbackAction.ResumeReverseBackfill, to: Phase.ReadNew });
    expect(planRollback(s, { phaseOnly: true })).toMatchObject({ action: RollbackAction.Transition, to: Phase.DualWrite });
    const g = closedGate('rollback', s);
    expect(g).toMatchObject({ name: 'legacy-complete', forceable: true });
    expect(g?.opensWith).toMatch(/rollback --execute/);
  });

  it('refuses in legacy', () => {
    expect(closedGate('rollback', state({}))).toMatchObject({ name: 'phase', forceable: false });
  });
});

describe('status next command', () => {
  const gatesOf = (s: MigrationState, extra: object = {}): StatusResult['gates'] => {
    const out: StatusResult['gates'] = {};
    for (const cmd of ['enable-dual-write', 'backfill', 'flip-read', 'cleanup', 'rollback']) {
      const g = gatesFor(cmd, { state: s, now: NOW, ...extra });
      out[cmd] = { open: g.every((x) => x.open), gates: g };
    }
    return out;
  };
  const next = (s: MigrationState, cps: Parameters<typeof nextStep>[5] = []) => nextStep(s, gatesOf(s), null, null, NOW, cps).command;

  it('walks the journey', () => {
    expect(next(state({}))).toMatch(/enable-dual-write/);
    expect(next(state({ phase: 'dual-write', epoch: '1' }))).toBe('orch-migrate backfill');
    const bf = state({ phase: 'dual-write', epoch: '1', last_backfill: backfillAt(1, NOW - 5000) });
    expect(nextStep(bf, gatesOf(bf), null, { ...backfillAt(1, NOW - 5000), direction: 'forward' } as never, NOW).command).toBe('orch-migrate verify');
    const verified = state({ phase: 'dual-write', epoch: '1', last_backfill: backfillAt(1, NOW - 5000), last_verify: cleanVerify(1, NOW - 1000) });
    expect(nextStep(verified, gatesOf(verified), null, backfillAt(1, NOW - 5000) as never, NOW).command).toMatch(/^orch-migrate flip-read/);
    expect(next(state({ phase: 'read-new', epoch: '2', changed_at: String(NOW - 2 * H), last_verify: cleanVerify(2, NOW - 1000) }))).toBe(
      'orch-migrate cleanup',
    );
    expect(next(state({ phase: 'new-only', epoch: '3', legacy_complete: '0' }))).toBe('orch-migrate cleanup --execute');
    expect(
      next(state({ phase: 'new-only', epoch: '3', legacy_complete: '0', last_cleanup: { epoch: 3, complete: true, dryRun: false, deleted: 5, kept: 0 } })),
    ).toBe('none');
  });

  it('says how to resume an interrupted backfill, cleanup or reverse backfill', () => {
    const cp = (op: string) => [{ op, nodes: 3, nodesDone: 1, scanned: 10, copied: 10, updatedAt: NOW }];
    expect(next(state({ phase: 'dual-write', epoch: '1', last_backfill: backfillAt(1, NOW) }), cp('backfill'))).toBe('orch-migrate backfill');
    expect(next(state({ phase: 'new-only', epoch: '3', last_cleanup: { epoch: 3, complete: true, dryRun: false } }), cp('cleanup'))).toBe(
      'orch-migrate cleanup --execute',
    );
    expect(next(state({ phase: 'read-new', epoch: '4', legacy_complete: '0' }))).toBe('orch-migrate rollback --execute');
  });

  it('points at the mismatch runbook when the verify found problems', () => {
    const s = state({
      phase: 'dual-write',
      epoch: '1',
      last_backfill: backfillAt(1, NOW - 9000),
      last_verify: { ...cleanVerify(1, NOW - 1000), ok: false, mismatches: 3 },
    });
    const n = nextStep(s, gatesOf(s), null, backfillAt(1, NOW - 9000) as never, NOW);
    expect(n.command).toMatch(/verify --report/);
    expect(n.why).toMatch(/incident-verify-mismatches/);
  });
});

describe('cleanup key invariant', () => {
  const keys = new Keyspace('ai');
  it('accepts only legacy job keys', () => {
    expect(assertLegacyKey(keys, 'ai:jobs:job_1')).toBe('job_1');
    for (const bad of [
      'ai:job:ws:job_1',
      'ai:job-index:ws',
      'ai:queue',
      'ai:migration:jobs',
      'ai:jobs:',
      'ai:jobs:bad key',
      'ai:jobs:a:b',
      'other:jobs:x',
      'ai:jobsx',
    ]) {
      expect(() => assertLegacyKey(keys, bad), bad).toThrow(/not a legacy job key/);
    }
  });
});

describe('the command shown in the lock', () => {
  it('is the subcommand and its own arguments: no global options, no URL, no password', () => {
    expect(commandLine('backfill', ['--redis-url', 'redis://:hunter2@db:6379', '--prefix', 'ai', 'backfill', '--rate', '50'])).toBe('backfill --rate 50');
    expect(commandLine('verify', ['verify', '--report', 'redis://u:hunter2@x:1/0'])).not.toContain('hunter2');
  });
});
