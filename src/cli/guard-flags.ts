/**
 * The guard flags every long run shares (backfill, verify, cleanup, rollback's
 * reverse backfill), and the glue that runs an operation under the guards:
 * the controller (src/ops/guards/controller.ts) paces the scan engine, the
 * run's heartbeat (src/ops/run-heartbeat.ts) feeds `status`, throttle changes
 * become progress lines, and `--metrics-file` is kept up to date
 * (src/cli/metrics-file.ts).
 *
 * Defaults: the replica-lag guard is on, latency is opt-in, and the memory
 * guard is on for the runs that add memory (backfill, the reverse backfill,
 * verify --repair). The others (a dry run, verify, cleanup, which frees
 * memory) add none, so stopping them at a memory level would protect nothing;
 * their memory guard is off unless asked for.
 */
import type { Command } from 'commander';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError, GuardStopError } from '../core/errors.js';
import { readControl, describeControl } from '../ops/control.js';
import type { OpContext, Progress, ProgressFn } from '../ops/context.js';
import { GuardController, type ControllerSnapshot, type ThrottleSummary } from '../ops/guards/controller.js';
import { fmtLag, RedisGuardSignals, type GuardSettings, type LagLevel } from '../ops/guards/guards.js';
import { openProbes } from '../ops/guards/signals.js';
import { etaMs, HEARTBEAT_EVERY_MS, RunHeartbeat } from '../ops/run-heartbeat.js';
import { MetricsFile, RunMetrics } from './metrics-file.js';
import { dflt } from './options.js';
import { commandLine, type CommandIO } from './runner.js';

/** Default throttle level of the memory guard, % of maxmemory. */
export const DEFAULT_MAX_MEMORY_PCT = 90;
/** Default critical level of the memory guard, % of maxmemory. */
export const DEFAULT_CRITICAL_MEMORY_PCT = 95;
/** Default throttle level of the replica-lag guard. */
export const DEFAULT_MAX_REPLICA_LAG: LagLevel = { value: 10, unit: 's' };

const shown = (v: string): string => JSON.stringify(v.slice(0, 40));
const OFF = 'off';

/** A refinement that fails with `message(v)` unless `parse(v)` gives a value. */
function parsed<T>(parse: (v: string) => T | null, message: (v: string) => string) {
  return z.string().transform((v, ctx) => {
    const r = parse(v);
    if (r === null) {
      ctx.addIssue({ code: 'custom', message: message(v) });
      return z.NEVER;
    }
    return r;
  });
}

/** `off`, or a percentage in (0, 100]. */
export function parsePct(v: string): number | 'off' | null {
  if (v === OFF) return OFF;
  if (!/^[0-9]{1,3}(\.[0-9]{1,2})?$/.test(v)) return null;
  const n = Number(v);
  return n > 0 && n <= 100 ? n : null;
}

/** `off`, or milliseconds (decimals allowed) in (0, 600000]. */
export function parseMs(v: string): number | 'off' | null {
  if (v === OFF) return OFF;
  if (!/^[0-9]{1,6}(\.[0-9]{1,3})?$/.test(v)) return null;
  const n = Number(v);
  return n > 0 && n <= 600_000 ? n : null;
}

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const TIME_UNITS: Record<string, number> = { s: 1, m: 60 };

/** `off`, seconds (`10s`, `2m`) or bytes (`64mb`, `512kb`, `1gb`, `1000b`). */
export function parseLag(v: string): LagLevel | 'off' | null {
  if (v === OFF) return OFF;
  const m = /^([0-9]{1,9})(s|m|b|kb|mb|gb)$/.exec(v);
  if (!m) return null;
  const n = Number(m[1]);
  if (n <= 0) return null;
  const unit = m[2]!;
  return unit in TIME_UNITS ? { value: n * TIME_UNITS[unit]!, unit: 's' } : { value: n * BYTE_UNITS[unit]!, unit: 'bytes' };
}

const pctFlag = parsed(parsePct, (v) => `expected a percentage of maxmemory greater than 0 and at most 100 (e.g. 90), or off, got ${shown(v)}`);
const msFlag = parsed(parseMs, (v) => `expected milliseconds greater than 0 (e.g. 20 or 2.5), or off, got ${shown(v)}`);
const lagFlag = parsed(parseLag, (v) => `expected seconds behind (e.g. 10s, 2m) or bytes behind (e.g. 64mb, 512kb), or off, got ${shown(v)}`);
const metricsFlag = z.string().transform((v, ctx) => {
  const dir = path.dirname(path.resolve(v));
  if (v === '' || v.endsWith('/') || !existsSync(dir) || !statSync(dir).isDirectory()) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a file in an existing directory (e.g. /var/lib/node_exporter/textfile/orch-migrate.prom), got ${shown(v)}`,
    });
    return z.NEVER;
  }
  return v;
});

/** The guard flags' schema fields: spread into each long command's schema. */
export const guardFlagFields = {
  maxMemoryPct: pctFlag.optional(),
  criticalMemoryPct: pctFlag.optional(),
  maxLatencyMs: msFlag.optional(),
  criticalLatencyMs: msFlag.optional(),
  maxReplicaLag: lagFlag.optional(),
  criticalReplicaLag: lagFlag.optional(),
  metricsFile: metricsFlag.optional(),
};

/** The parsed guard flags (undefined = the default of the operation). */
export interface GuardFlags {
  maxMemoryPct?: number | 'off' | undefined;
  criticalMemoryPct?: number | 'off' | undefined;
  maxLatencyMs?: number | 'off' | undefined;
  criticalLatencyMs?: number | 'off' | undefined;
  maxReplicaLag?: LagLevel | 'off' | undefined;
  criticalReplicaLag?: LagLevel | 'off' | undefined;
  metricsFile?: string | undefined;
}

/** Which operation runs (the heartbeat's and the metrics' `op`). */
export type GuardedOp = 'backfill' | 'reverse-backfill' | 'verify' | 'cleanup';

/** Adds the guard flags (help only; defaults live in {@link guardSettings}). */
export function addGuardOptions(cmd: Command, op: GuardedOp): Command {
  const when =
    op === 'cleanup' ? 'off: cleanup frees memory' : op === 'verify' ? 'with --repair; off otherwise' : op === 'backfill' ? 'off with --dry-run' : '';
  const memDefault = op === 'cleanup' ? when : `${DEFAULT_MAX_MEMORY_PCT}${when ? ` ${when}` : ''}`;
  const critDefault = op === 'cleanup' ? 'off' : `${DEFAULT_CRITICAL_MEMORY_PCT}${when ? ` ${when}` : ''}`;
  return cmd
    .option('--max-memory-pct <pct|off>', `slow the run while used_memory is over this % of maxmemory ${dflt(memDefault)}`)
    .option('--critical-memory-pct <pct|off>', `stop the run at this % of maxmemory: checkpoint kept, exit 6 ${dflt(critDefault)}`)
    .option('--max-latency-ms <ms>', 'slow, then pause, while the p99 of a PING probe on any master is over this (default: off)')
    .option('--critical-latency-ms <ms>', 'stop the run (exit 6) when the probe p99 reaches this (default: off)')
    .option(
      '--max-replica-lag <10s|64mb|off>',
      `slow, then pause, while a replica is this far behind: seconds since its last ACK, or bytes ${dflt(fmtLag(DEFAULT_MAX_REPLICA_LAG))}`,
    )
    .option('--critical-replica-lag <10s|64mb|off>', 'stop the run (exit 6) when a replica is this far behind (default: off)')
    .option('--metrics-file <path>', 'keep the run metrics in this file, in the Prometheus text format (for the node_exporter textfile collector)');
}

const pick = <T>(v: T | 'off' | undefined, dflt: T | null): T | null => (v === undefined ? dflt : v === OFF ? null : v);

/**
 * Resolves the flags into levels; a critical level below its throttle level
 * is a usage error. `addsMemory`: whether this run writes copies (the memory
 * guard's default is on only then).
 */
export function guardSettings(op: GuardedOp, f: GuardFlags, addsMemory = op === 'backfill' || op === 'reverse-backfill'): GuardSettings {
  const mem = addsMemory && op !== 'cleanup';
  const s: GuardSettings = {
    memory: {
      throttlePct: pick(f.maxMemoryPct, mem ? DEFAULT_MAX_MEMORY_PCT : null),
      criticalPct: pick(f.criticalMemoryPct, mem ? DEFAULT_CRITICAL_MEMORY_PCT : null),
    },
    latency: { throttleMs: pick(f.maxLatencyMs, null), criticalMs: pick(f.criticalLatencyMs, null) },
    replicaLag: { throttle: pick(f.maxReplicaLag, DEFAULT_MAX_REPLICA_LAG), critical: pick(f.criticalReplicaLag, null) },
  };
  const below = (crit: number | null, thr: number | null): boolean => crit !== null && thr !== null && crit < thr;
  if (below(s.memory.criticalPct, s.memory.throttlePct)) {
    throw new ConfigError(`--critical-memory-pct ${s.memory.criticalPct} is below --max-memory-pct ${s.memory.throttlePct}`, {
      suggestion: 'The critical level stops the run; it must be at or above the level that slows it.',
    });
  }
  if (below(s.latency.criticalMs, s.latency.throttleMs)) {
    throw new ConfigError(`--critical-latency-ms ${s.latency.criticalMs} is below --max-latency-ms ${s.latency.throttleMs}`, {
      suggestion: 'The critical level stops the run; it must be at or above the level that slows it.',
    });
  }
  const t = s.replicaLag.throttle;
  const c = s.replicaLag.critical;
  if (t && c && t.unit === c.unit && c.value < t.value) {
    throw new ConfigError(`--critical-replica-lag ${fmtLag(c)} is below --max-replica-lag ${fmtLag(t)}`, {
      suggestion: 'The critical level stops the run; it must be at or above the level that slows it.',
    });
  }
  return s;
}

/** One progress line for a throttle change. */
export function describeSnapshot(s: ControllerSnapshot): string {
  if (s.state === 'running') {
    const t = s.throttle;
    return `running${s.ceiling !== null ? ` (ceiling ${s.ceiling} keys/s)` : ' at full speed'}${t.pausedMs + t.throttledMs > 0 ? `; held back ${((t.pausedMs + t.throttledMs) / 1000).toFixed(1)}s so far (${t.pauses} pause(s))` : ''}`;
  }
  return s.reason ?? s.state;
}

/** What the guarded operation receives. */
export interface Guarded {
  /** The context, its signal also aborted when a guard stops the run. */
  ctx: OpContext;
  guards: GuardController;
  /** Progress: shown, and fed to the heartbeat. */
  onProgress: ProgressFn;
}

/**
 * Runs `fn` under the guards: starts the controller (a guard that cannot read
 * its signal refuses to start, exit 6), writes the heartbeat every second,
 * reports throttle changes as progress lines, keeps `--metrics-file`; stops
 * all of it when `fn` ends. A guard's critical level comes out as its
 * {@link GuardStopError} (exit 6) with the throttle accounting attached.
 */
export async function runGuarded<R>(
  io: CommandIO<GuardFlags>,
  run: { op: GuardedOp; command: string; rate: number | null; addsMemory?: boolean },
  fn: (g: Guarded) => Promise<R>,
): Promise<R & { throttle: ThrottleSummary }> {
  const { op } = run;
  const { ctx, out, progress } = io;
  const settings = guardSettings(op, io.opts, run.addsMemory);
  let last: Progress = { stage: op, done: 0, total: null, totalIsEstimate: true };
  const heartbeat = new RunHeartbeat(ctx.client, ctx.keys, { op, command: commandLine(run.command), actor: ctx.actor });
  let lastBeat = 0;
  const beat = (s: ControllerSnapshot): void => {
    const now = Date.now();
    if (now - lastBeat < HEARTBEAT_EVERY_MS - 50) return;
    lastBeat = now;
    void heartbeat.beat({
      stage: last.stage,
      done: last.done,
      total: last.total,
      totalIsEstimate: last.totalIsEstimate,
      keysPerSecond: s.keysPerSecond,
      etaMs: etaMs(last.done, last.total, s.keysPerSecond),
      ceiling: s.ceiling,
      allowedRate: s.allowedRate,
      state: s.state,
      reason: s.reason,
      holding: s.holding,
      guards: s.readings.map((r) => ({ guard: r.guard, level: r.level, node: r.node, text: r.text })),
      throttle: s.throttle,
    });
  };
  const guards = new GuardController({
    settings,
    signals: new RedisGuardSignals(openProbes(ctx.client), settings),
    rate: run.rate,
    readControl: () => readControl(ctx.client, ctx.keys),
    onSample: beat,
    onChange: (s) => progress.update({ ...last, message: describeSnapshot(s) }),
  });
  const metrics = io.opts.metricsFile
    ? new MetricsFile(
        io.opts.metricsFile,
        new RunMetrics(op),
        () => ({ keysDone: guards.keysDone(), keysPerSecond: guards.keysPerSecond(), throttle: guards.summary() }),
        (m) => out.warn(m),
      )
    : null;
  const onProgress: ProgressFn = (p) => {
    last = p;
    progress.update(p);
  };
  try {
    await guards.start();
    const snap = guards.snapshot();
    if (snap.control?.paused || snap.control?.rate != null)
      out.warn(`control: ${describeControl(snap.control)} — set with orch-migrate control; it applies to this run`);
    beat(snap);
    metrics?.start();
    const signal = AbortSignal.any([ctx.signal, guards.signal]);
    const result = await fn({ ctx: { ...ctx, signal }, guards, onProgress });
    return { ...result, throttle: guards.summary() };
  } catch (err) {
    // Whatever surfaced first (an interrupted wait, a refused batch), a guard's stop is the reason.
    const stop = guards.failure ?? (err instanceof GuardStopError ? err : null);
    if (stop) {
      stop.throttle = { ...guards.summary() };
      throw stop;
    }
    throw err;
  } finally {
    guards.stop();
    await heartbeat.end();
    await metrics?.stop();
  }
}
