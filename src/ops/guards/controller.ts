/**
 * The guard controller: the {@link ScanPacer} every long run goes through
 * (backfill, verify, cleanup, reverse backfill). Modelled on gh-ost's
 * max-load / critical-load and Spirit's fail-closed throttler:
 *
 *  - It samples every guard on every master each {@link SAMPLE_EVERY_MS}
 *    (at least once a second, as src/ops/guards/guards.ts describes), and
 *    polls the control hash (src/ops/control.ts) in the same tick.
 *  - AIMD: while any guard is over its throttle level the allowed rate is
 *    halved each sample (multiplicative decrease, down to a floor: a quarter
 *    of the speed for the memory guard, {@link SLOW_FLOOR_SHARE}); a guard
 *    that recovers when the load stops (latency, replica lag) pauses the run
 *    once it has been over for {@link PAUSE_AFTER_SAMPLES} samples. When every
 *    guard is back under its level the run resumes by itself, at a fraction of
 *    its former rate, and speeds up additively until it is back at its ceiling.
 *  - The latency guard also halves the batch size: a long batch script is what
 *    a client waiting behind it sees, however low the rate.
 *  - A signal that cannot be read counts as over (fail closed); at start it
 *    refuses to run at all (exit 6 naming the fix), since a run that cannot
 *    see must not start.
 *  - A critical level stops the run: {@link failure} is set, the next batch is
 *    refused, {@link signal} aborts (the op stops taking batches, saves its
 *    checkpoint and throws the {@link GuardStopError}: exit 6).
 *  - `--rate`, or a rate set with `orch-migrate control rate`, is the ceiling:
 *    a true one (src/ops/scan-engine.ts RateLimiter), never exceeded to catch up.
 *
 * It accounts the time spent paused and slowed per guard ({@link summary}:
 * the `throttle` field of `--json`, the history and the metrics file).
 */
import { GuardStopError, InterruptedError } from '../../core/errors.js';
import type { ControlState } from '../control.js';
import { pacedBatch, RateLimiter, type ScanPacer } from '../scan-engine.js';
import { GuardName, type GuardReading, type GuardSettings, type GuardSignals } from './guards.js';

/** How often the guards are sampled and the control hash polled. */
export const SAMPLE_EVERY_MS = 500;
/** Consecutive samples over a pausing guard's level before the run pauses (≈1 s). */
export const PAUSE_AFTER_SAMPLES = 2;
/** Multiplicative decrease per sample over a level. */
export const DECREASE = 0.5;
/** Additive increase per sample once every guard is under its level, as a share of the reference rate (≈5 s to full speed). */
export const INCREASE = 0.1;
/** Rate after a pause ends, as a share of the reference rate. */
export const RESUME_SHARE = 0.1;
/** Slowest a throttled run goes before a pausing guard pauses it, as a share of the reference rate. */
export const FLOOR_SHARE = 0.02;
/**
 * Slowest the memory guard (which never pauses) makes a run go, as a share of
 * the reference rate: slower would not stop the growth, only delay the
 * critical stop; a quarter of the speed gives the operator four times as long
 * to react (status says why) before the critical level is reached.
 */
export const SLOW_FLOOR_SHARE = 0.25;
/** Slowest a throttled run goes in keys/s, whatever the reference. */
export const MIN_RATE = 5;
/** Reference rate when nothing was measured yet (a run that is over its levels from the start). */
export const DEFAULT_REFERENCE = 1000;
/** Smallest batch the latency guard shrinks to. */
export const MIN_BATCH = 10;
/** How long the first sample may retry a signal that did not answer (a busy server, a probe without answers yet). */
export const START_RETRY_MS = 5000;
/** Window of the measured keys/s. */
const RATE_WINDOW_MS = 2000;

/** Time held back by one guard (or by `control`). */
export interface ThrottleGuardStats {
  pausedMs: number;
  throttledMs: number;
  pauses: number;
}

/**
 * Throttle accounting of a run: the `throttle` of `--json` and the history.
 * When several guards hold the run at once, the time counts for each of them.
 */
export interface ThrottleSummary {
  pausedMs: number;
  throttledMs: number;
  pauses: number;
  byGuard: Record<string, ThrottleGuardStats>;
}

/** running at its ceiling · slowed by a guard · paused by a guard or by control. */
export type RunState = 'running' | 'throttled' | 'paused';

/** What the controller shows: status, the heartbeat, progress lines. */
export interface ControllerSnapshot {
  state: RunState;
  /** Why the run is slowed or paused, one line; null when running. */
  reason: string | null;
  /** Guards holding the run back now (`control` for a pause set by an operator). */
  holding: string[];
  /** Effective ceiling: a live control rate, else the run's --rate; null = none. */
  ceiling: number | null;
  /** Rate allowed now; null = the ceiling (or unlimited). */
  allowedRate: number | null;
  /** Keys granted per second over the last 2 s. */
  keysPerSecond: number;
  /** Keys granted since the run started. */
  keysGranted: number;
  /** SCAN COUNT cap set by the latency guard, null = the configured one. */
  batchLimit: number | null;
  readings: GuardReading[];
  control: ControlState | null;
  throttle: ThrottleSummary;
}

/** Options of {@link GuardController}. */
export interface GuardControllerOptions {
  settings: GuardSettings;
  signals: GuardSignals;
  /** The run's own --rate (keys/s), null = none. */
  rate: number | null;
  /** Reads the control hash; omitted = no live control. */
  readControl?: () => Promise<ControlState | null>;
  sampleEveryMs?: number;
  /** After every sample (heartbeat, metrics). */
  onSample?: (s: ControllerSnapshot) => void;
  /** When the state or what holds the run changes (a progress line). */
  onChange?: (s: ControllerSnapshot) => void;
  /** Monotonic clock in ms (tests pass a fake one). */
  now?: () => number;
}

/** What to do about a guard at its critical level. */
const FIX_CRITICAL: Record<string, string> = {
  [GuardName.Memory]:
    'Free memory or raise maxmemory (CONFIG SET maxmemory …), then rerun: it resumes from the checkpoint. `orch-migrate preflight` shows what the rest of the copy needs.',
  [GuardName.Latency]: 'Rerun when Redis is less busy, or with a lower --rate or --batch-size: it resumes from the checkpoint.',
  [GuardName.ReplicaLag]: 'Look at the replica named above (INFO replication on its master); rerun once it has caught up: it resumes from the checkpoint.',
};

/** What to do about a signal a guard cannot read when the run starts. */
export function fixUnreadable(guard: string, flags: string): string {
  return (
    `Let the user run INFO (e.g. ACL SETUSER <user> +info) and check the connection, then rerun; ` +
    `or turn the ${guard} guard off explicitly with ${flags} (the run then goes unwatched).`
  );
}

const OFF_FLAGS: Record<string, string> = {
  [GuardName.Memory]: '--max-memory-pct off --critical-memory-pct off',
  [GuardName.Latency]: 'no --max-latency-ms / --critical-latency-ms',
  [GuardName.ReplicaLag]: '--max-replica-lag off --critical-replica-lag off',
};

function emptyStats(): ThrottleGuardStats {
  return { pausedMs: 0, throttledMs: 0, pauses: 0 };
}

/** See the module header. */
export class GuardController implements ScanPacer {
  private readonly limiter = new RateLimiter(null);
  private readonly now: () => number;
  private state: RunState = 'running';
  private holding: string[] = [];
  private reason: string | null = null;
  /** Guards of the current throttle episode (slowed, paused, then speeding up again). */
  private episode = new Set<string>();
  private pausedByControl = false;
  private overStreak = 0;
  private allowed: number | null = null;
  private reference = DEFAULT_REFERENCE;
  private batchLimit: number | null = null;
  /** The SCAN COUNT the engine was configured with (learnt from its first question). */
  private configuredBatch = 1000;
  private readings: GuardReading[] = [];
  private control: ControlState | null = null;
  private lastAt: number;
  private readonly grants: Array<{ at: number; n: number }> = [];
  private granted = 0;
  private readonly totals: ThrottleSummary = { pausedMs: 0, throttledMs: 0, pauses: 0, byGuard: {} };
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private stopped = false;
  private readonly wakers = new Set<() => void>();
  private readonly abort = new AbortController();
  /** Set once a guard reached its critical level: every later batch is refused with it. */
  failure: GuardStopError | null = null;

  constructor(private readonly opts: GuardControllerOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.lastAt = this.now();
    this.applyRate();
  }

  /** Aborted when a guard stops the run (its reason is the {@link GuardStopError}). */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /**
   * First sample, then sampling every {@link SAMPLE_EVERY_MS}. Throws
   * {@link GuardStopError} (exit 6) when a guard cannot read its signal or is
   * already at its critical level: a run that cannot see must not start.
   */
  async start(): Promise<void> {
    const [readings, control] = await Promise.all([this.firstReadings(), this.readControl()]);
    const blind = readings.find((r) => r.level === 'unreadable');
    if (blind)
      throw new GuardStopError(blind.guard, blind.text, {
        unreadable: true,
        suggestion: fixUnreadable(blind.guard, OFF_FLAGS[blind.guard] ?? 'its flags set to off'),
      });
    this.applySample(readings, control);
    if (this.failure) throw this.failure;
    this.timer = setInterval(() => void this.tick(), this.opts.sampleEveryMs ?? SAMPLE_EVERY_MS);
    this.timer.unref();
  }

  /**
   * The first readings. The latency probe needs its first answers, and a busy
   * server may time out once: unreadable readings are sampled again for up to
   * {@link START_RETRY_MS}, except a refusal (NOPERM, WRONGPASS), which asking
   * again does not change.
   */
  private async firstReadings(): Promise<GuardReading[]> {
    const deadline = this.now() + START_RETRY_MS;
    for (;;) {
      const r = await this.opts.signals.sample();
      const retry = r.some((x) => x.level === 'unreadable' && !/\b(NOPERM|WRONGPASS|NOAUTH)\b/.test(x.text));
      if (!retry || this.now() > deadline) return r;
      await new Promise((res) => setTimeout(res, 250));
    }
  }

  private async readControl(): Promise<ControlState | null> {
    if (!this.opts.readControl) return null;
    try {
      return await this.opts.readControl();
    } catch {
      // Keep the last known control: the run's own Redis commands fail on their own if Redis is gone.
      return this.control;
    }
  }

  /** One sample: guards and control (never overlapping; a slow sample delays the next). */
  async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      const [readings, control] = await Promise.all([this.opts.signals.sample(), this.readControl()]);
      if (!this.stopped) this.applySample(readings, control);
    } finally {
      this.ticking = false;
    }
  }

  /** The controller's decision for one sample (synchronous: unit tests drive it directly). */
  applySample(readings: GuardReading[], control: ControlState | null): void {
    this.account();
    this.readings = readings;
    this.control = control;
    const before = `${this.state}|${this.holding.join(',')}`;
    const critical = readings.find((r) => r.level === 'critical');
    if (critical) {
      this.fail(
        new GuardStopError(critical.guard, critical.text, { suggestion: FIX_CRITICAL[critical.guard] ?? 'Rerun once the signal is back under its level.' }),
      );
      return;
    }
    const over = readings.filter((r) => r.level === 'over' || r.level === 'unreadable');
    const ceiling = this.ceiling();
    if (control?.paused) {
      this.overStreak = over.length > 0 ? this.overStreak + 1 : 0;
      if (this.state !== 'paused') this.countPause([GuardName.Control]);
      this.pausedByControl = true;
      this.state = 'paused';
      this.holding = [GuardName.Control];
      this.reason = `paused by \`orch-migrate control pause\`${control.by ? ` (${control.by})` : ''}${control.reason ? `: "${control.reason}"` : ''}; \`orch-migrate control resume\` continues`;
    } else if (over.length > 0) {
      this.overStreak++;
      if (this.state === 'running') {
        // Onset: scale from what the run was doing (or its ceiling) down.
        const measured = this.keysPerSecond();
        this.reference = ceiling ?? (measured > 0 ? measured : DEFAULT_REFERENCE);
        this.allowed = ceiling ?? this.reference;
      }
      const guards = [...new Set(over.map((r) => r.guard))];
      for (const g of guards) this.episode.add(g);
      const pausing = over.some((r) => r.pauses) && this.overStreak >= PAUSE_AFTER_SAMPLES;
      const text = over.map((r) => r.text).join('; ');
      if (pausing) {
        if (this.state !== 'paused' || this.pausedByControl) this.countPause(guards);
        this.state = 'paused';
        this.reason = `paused: ${text}; resumes by itself`;
      } else {
        const floor = over.some((r) => r.pauses) ? this.floor() : Math.max(this.floor(), this.reference * SLOW_FLOOR_SHARE);
        this.allowed = Math.max(floor, (this.allowed ?? this.reference) * DECREASE);
        this.state = 'throttled';
        this.reason = `slowed to ${Math.round(this.allowed)} keys/s: ${text}`;
      }
      this.pausedByControl = false;
      this.holding = guards;
      if (over.some((r) => r.guard === GuardName.Latency)) this.batchLimit = Math.max(MIN_BATCH, Math.floor((this.batchLimit ?? this.configuredBatch) / 2));
    } else {
      this.overStreak = 0;
      if (this.state === 'paused' && this.pausedByControl) {
        // An operator's pause ends where the run was: the guards did not slow it.
        this.pausedByControl = false;
        this.state = this.episode.size > 0 ? 'throttled' : 'running';
      } else if (this.state === 'paused') {
        this.allowed = Math.max(this.floor(), this.reference * RESUME_SHARE);
        this.state = 'throttled';
      } else if (this.state === 'throttled') {
        this.allowed = (this.allowed ?? 0) + this.reference * INCREASE;
      }
      if (this.state === 'throttled' && (this.allowed ?? 0) >= (ceiling ?? this.reference)) {
        this.state = 'running';
      }
      if (this.state === 'running') {
        this.allowed = null;
        this.episode.clear();
        this.holding = [];
        this.reason = null;
      } else {
        this.holding = [...this.episode];
        this.reason = `speeding up after ${[...this.episode].join(', ')}: ${Math.round(this.allowed ?? 0)} keys/s`;
      }
      if (this.batchLimit !== null) {
        this.batchLimit = Math.ceil(this.batchLimit * 1.5);
        if (this.batchLimit >= this.configuredBatch) this.batchLimit = null;
      }
    }
    this.applyRate();
    this.wake();
    const snap = this.snapshot();
    this.opts.onSample?.(snap);
    if (`${this.state}|${this.holding.join(',')}` !== before) this.opts.onChange?.(snap);
  }

  private ceiling(): number | null {
    return this.control?.rate ?? this.opts.rate;
  }

  private floor(): number {
    return Math.max(MIN_RATE, this.reference * FLOOR_SHARE);
  }

  private applyRate(): void {
    const ceiling = this.ceiling();
    const rate = this.state === 'running' ? ceiling : Math.min(this.allowed ?? Infinity, ceiling ?? Infinity);
    this.limiter.setRate(rate === Infinity ? null : rate);
  }

  private countPause(guards: string[]): void {
    this.totals.pauses++;
    for (const g of guards) this.stats(g).pauses++;
  }

  private stats(g: string): ThrottleGuardStats {
    return (this.totals.byGuard[g] ??= emptyStats());
  }

  /** Attributes the time since the last sample to what held the run back during it. */
  private account(): void {
    const now = this.now();
    const dt = Math.max(0, now - this.lastAt);
    this.lastAt = now;
    if (this.state === 'paused') {
      this.totals.pausedMs += dt;
      for (const g of this.holding) this.stats(g).pausedMs += dt;
    } else if (this.state === 'throttled') {
      this.totals.throttledMs += dt;
      for (const g of this.holding) this.stats(g).throttledMs += dt;
    }
  }

  private fail(err: GuardStopError): void {
    if (this.failure) return;
    this.failure = err;
    this.reason = err.message;
    this.wake();
    this.abort.abort(err);
    this.opts.onChange?.(this.snapshot());
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  /** Sleeps up to `ms`, less when the state changes; rejects on abort. */
  private wait(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new InterruptedError());
      const done = (): void => {
        clearTimeout(t);
        this.wakers.delete(done);
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        clearTimeout(t);
        this.wakers.delete(done);
        reject(new InterruptedError());
      };
      const t = setTimeout(done, ms);
      this.wakers.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async acquire(n: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      if (signal.aborted) throw new InterruptedError();
      if (this.state === 'paused') {
        await this.wait(250, signal);
        continue;
      }
      const wait = this.limiter.reserve(n);
      if (wait <= 0) {
        this.grant(n);
        return;
      }
      await this.wait(Math.min(wait, 100), signal);
    }
  }

  batchSize(configured: number): number {
    this.configuredBatch = configured;
    const capped = this.batchLimit === null ? configured : Math.min(configured, this.batchLimit);
    const rate = this.limiter.ceiling;
    return rate === null ? capped : pacedBatch(capped, rate);
  }

  private grant(n: number): void {
    const at = this.now();
    this.granted += n;
    this.grants.push({ at, n });
    while (this.grants.length > 0 && at - this.grants[0]!.at > RATE_WINDOW_MS) this.grants.shift();
  }

  /** Keys granted since the run started. */
  keysDone(): number {
    return this.granted;
  }

  /** Keys granted per second over the last {@link RATE_WINDOW_MS}. */
  keysPerSecond(): number {
    const now = this.now();
    while (this.grants.length > 0 && now - this.grants[0]!.at > RATE_WINDOW_MS) this.grants.shift();
    const n = this.grants.reduce((a, g) => a + g.n, 0);
    return Math.round((n * 1000) / RATE_WINDOW_MS);
  }

  /** Throttle accounting so far (time up to now included). */
  summary(): ThrottleSummary {
    this.account();
    const byGuard: Record<string, ThrottleGuardStats> = {};
    for (const [g, s] of Object.entries(this.totals.byGuard))
      byGuard[g] = { pausedMs: Math.round(s.pausedMs), throttledMs: Math.round(s.throttledMs), pauses: s.pauses };
    return { pausedMs: Math.round(this.totals.pausedMs), throttledMs: Math.round(this.totals.throttledMs), pauses: this.totals.pauses, byGuard };
  }

  snapshot(): ControllerSnapshot {
    return {
      state: this.state,
      reason: this.failure ? this.failure.message : this.reason,
      holding: [...this.holding],
      ceiling: this.ceiling(),
      allowedRate: this.limiter.ceiling,
      keysPerSecond: this.keysPerSecond(),
      keysGranted: this.granted,
      batchLimit: this.batchLimit,
      readings: this.readings,
      control: this.control,
      throttle: this.summary(),
    };
  }

  /** Stops sampling and closes the guard connections. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.account();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.opts.signals.close();
    this.wake();
  }
}
