/**
 * The guard controller's decisions (src/ops/guards/controller.ts), driven
 * sample by sample with fake readings and a fake clock: slow down, then pause,
 * resume by itself; memory slows but never pauses; fail closed; critical stops
 * the run; live control; latency shrinks the batches; throttle accounting.
 */
import { describe, expect, it } from 'vitest';
import { ExitCode, GuardStopError } from '../../src/core/errors.js';
import type { ControlState } from '../../src/ops/control.js';
import { DECREASE, GuardController, RESUME_SHARE, SLOW_FLOOR_SHARE } from '../../src/ops/guards/controller.js';
import { GuardName, type GuardReading, type GuardSettings, type GuardSignals } from '../../src/ops/guards/guards.js';

const SETTINGS: GuardSettings = {
  memory: { throttlePct: 90, criticalPct: 95 },
  latency: { throttleMs: 10, criticalMs: null },
  replicaLag: { throttle: { value: 10, unit: 's' }, critical: null },
};

function reading(guard: GuardReading['guard'], level: GuardReading['level'], text = `${guard} ${level}`): GuardReading {
  return { guard, level, node: '127.0.0.1:6379', value: level === 'unreadable' ? null : 1, text, pauses: guard !== GuardName.Memory || level === 'unreadable' };
}

const OK = [reading(GuardName.Memory, 'ok'), reading(GuardName.ReplicaLag, 'ok')];

class FakeSignals implements GuardSignals {
  constructor(public next: GuardReading[] = OK) {}
  closed = false;
  sample(): Promise<GuardReading[]> {
    return Promise.resolve(this.next);
  }
  close(): void {
    this.closed = true;
  }
}

function setup(rate: number | null = 1000, signals = new FakeSignals()) {
  const t = { now: 0 };
  const changes: string[] = [];
  const c = new GuardController({ settings: SETTINGS, signals, rate, now: () => t.now, onChange: (s) => changes.push(s.state) });
  /** One sample `ms` after the previous one. */
  const step = (readings: GuardReading[], ms = 500, control: ControlState | null = null): void => {
    t.now += ms;
    c.applySample(readings, control);
  };
  return { c, t, step, changes, signals };
}

const lagOver = [reading(GuardName.Memory, 'ok'), reading(GuardName.ReplicaLag, 'over', 'replica 10.0.0.2:6379 last ACK 12s ago > 10s')];

describe('GuardController', () => {
  it('a replica over its lag level: slows at once, pauses on the next sample, resumes by itself and speeds back up to its ceiling', () => {
    const { c, step, changes } = setup(1000);
    step(OK);
    expect(c.snapshot().state).toBe('running');
    step(lagOver);
    expect(c.snapshot()).toMatchObject({ state: 'throttled', allowedRate: 1000 * DECREASE, holding: ['replica-lag'] });
    step(lagOver);
    expect(c.snapshot().state).toBe('paused');
    expect(c.snapshot().reason).toMatch(/^paused: replica 10\.0\.0\.2:6379 last ACK 12s ago > 10s; resumes by itself/);
    step(lagOver, 2000);
    step(OK);
    expect(c.snapshot()).toMatchObject({ state: 'throttled', allowedRate: 1000 * RESUME_SHARE });
    let samples = 0;
    while (c.snapshot().state !== 'running' && samples++ < 50) step(OK);
    expect(samples).toBeLessThan(15);
    expect(c.snapshot()).toMatchObject({ state: 'running', allowedRate: 1000, reason: null, holding: [] });
    expect(changes).toEqual(['throttled', 'paused', 'throttled', 'running']);
    const t = c.summary();
    expect(t.pauses).toBe(1);
    expect(t.byGuard['replica-lag']).toMatchObject({ pauses: 1, pausedMs: 2500 });
    expect(t.byGuard['replica-lag']!.throttledMs).toBeGreaterThan(500);
    expect(t.pausedMs).toBe(2500);
  });

  it('memory over its level slows the run to a quarter of its speed but never pauses it (pausing would not give memory back)', () => {
    const { c, step } = setup(2000);
    const memOver = [reading(GuardName.Memory, 'over', 'used_memory 91% > 90%'), reading(GuardName.ReplicaLag, 'ok')];
    for (let i = 0; i < 20; i++) step(memOver);
    expect(c.snapshot()).toMatchObject({ state: 'throttled', allowedRate: 2000 * SLOW_FLOOR_SHARE, holding: ['memory'] });
    expect(c.summary().pauses).toBe(0);
  });

  it('a signal that cannot be read mid-run counts as over: the run pauses (fail closed)', () => {
    const { c, step } = setup(1000);
    const blind = [reading(GuardName.Memory, 'unreadable', 'cannot read INFO memory on 127.0.0.1:6379: NOPERM'), reading(GuardName.ReplicaLag, 'ok')];
    step(blind);
    step(blind);
    expect(c.snapshot().state).toBe('paused');
    expect(c.snapshot().reason).toContain('NOPERM');
  });

  it('refuses to start when a guard cannot read its signal: exit 6, naming the guard and the fix', async () => {
    const signals = new FakeSignals([
      reading(GuardName.Memory, 'unreadable', "cannot read INFO memory on 127.0.0.1:6379: NOPERM User u has no permissions to run the 'info' command"),
    ]);
    const { c } = setup(1000, signals);
    const err = await c.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GuardStopError);
    const g = err as GuardStopError;
    expect(g.exitCode).toBe(ExitCode.Guard);
    expect(g.code).toBe('ERR_GUARD_UNREADABLE');
    expect(g.guard).toBe('memory');
    expect(g.message).toMatch(/memory guard cannot read its signal .*NOPERM.*fails closed/);
    expect(g.suggestion).toMatch(/\+info/);
    expect(g.suggestion).toMatch(/--max-memory-pct off --critical-memory-pct off/);
    c.stop();
  });

  it('a critical level stops the run: the next batch is refused, the signal aborts with the GuardStopError (exit 6)', async () => {
    const { c, step } = setup(null);
    step(OK);
    await c.acquire(10, new AbortController().signal);
    step([reading(GuardName.Memory, 'critical', 'used_memory 96.0% of maxmemory ≥ critical 95%'), reading(GuardName.ReplicaLag, 'ok')]);
    expect(c.failure).toBeInstanceOf(GuardStopError);
    expect(c.failure!.message).toBe('Stopped by the memory guard: used_memory 96.0% of maxmemory ≥ critical 95%; checkpoint kept');
    expect(c.failure!.suggestion).toMatch(/raise maxmemory/);
    expect(c.signal.aborted).toBe(true);
    expect(c.signal.reason).toBe(c.failure);
    await expect(c.acquire(10, new AbortController().signal)).rejects.toBe(c.failure);
  });

  it('a paused run takes no batch until it resumes; an abort ends the wait', async () => {
    const { c, step } = setup(null);
    step(lagOver);
    step(lagOver);
    expect(c.snapshot().state).toBe('paused');
    let granted = false;
    const p = c.acquire(10, new AbortController().signal).then(() => (granted = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(granted).toBe(false);
    step(OK);
    await p;
    expect(granted).toBe(true);
    step(lagOver);
    step(lagOver);
    const ac = new AbortController();
    const q = c.acquire(10, ac.signal);
    ac.abort();
    await expect(q).rejects.toThrow(/Interrupted/);
  });

  it('control: a pause holds the run (accounted as "control"), resume lets it go at once, a rate replaces --rate', () => {
    const { c, step } = setup(1000);
    const paused: ControlState = { paused: true, rate: null, by: 'alice@ops', at: 1, reason: 'INC-88' };
    step(OK, 500, paused);
    expect(c.snapshot()).toMatchObject({ state: 'paused', holding: ['control'] });
    expect(c.snapshot().reason).toBe('paused by `orch-migrate control pause` (alice@ops): "INC-88"; `orch-migrate control resume` continues');
    step(OK, 1500, paused);
    step(OK, 500, null);
    expect(c.snapshot()).toMatchObject({ state: 'running', allowedRate: 1000 });
    expect(c.summary().byGuard.control).toEqual({ pausedMs: 2000, throttledMs: 0, pauses: 1 });
    step(OK, 500, { paused: false, rate: 250, by: 'alice@ops', at: 2, reason: null });
    expect(c.snapshot()).toMatchObject({ state: 'running', ceiling: 250, allowedRate: 250 });
    expect(c.batchSize(1000)).toBe(25);
    step(OK, 500, null);
    expect(c.snapshot().ceiling).toBe(1000);
  });

  it('latency over its level halves the batch size (a shorter script is what a waiting client feels), then grows it back', () => {
    const { c, step } = setup(null);
    expect(c.batchSize(1000)).toBe(1000);
    const slow = [reading(GuardName.Latency, 'over', 'probe p99 25.0 ms > 10 ms')];
    step(slow);
    expect(c.snapshot().batchLimit).toBe(500);
    step(slow);
    step(slow);
    expect(c.snapshot().batchLimit).toBe(125);
    // Paused, and slowed to a tenth of a second's worth at its resume rate when it goes again.
    step([reading(GuardName.Latency, 'ok')]);
    expect(c.batchSize(1000)).toBeLessThanOrEqual(125);
    for (let i = 0; i < 30; i++) step([reading(GuardName.Latency, 'ok')]);
    expect(c.snapshot().batchLimit).toBeNull();
    expect(c.batchSize(1000)).toBe(1000);
  });

  it('without a ceiling it slows from the rate it measured, and goes back to unlimited', async () => {
    const { c, step, t } = setup(null);
    const signal = new AbortController().signal;
    for (let i = 0; i < 40; i++) {
      t.now += 50;
      await c.acquire(100, signal); // 2,000 keys/s
    }
    step(lagOver, 0);
    expect(c.snapshot().allowedRate).toBe(1000);
    for (let i = 0; i < 40 && c.snapshot().state !== 'running'; i++) step(OK);
    expect(c.snapshot()).toMatchObject({ state: 'running', allowedRate: null });
  });

  it('closes its signals when stopped', () => {
    const { c, signals } = setup();
    c.stop();
    expect(signals.closed).toBe(true);
  });
});
