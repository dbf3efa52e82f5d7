/**
 * What every operation receives. Operations never touch the terminal: they take
 * typed options, report progress through a callback, and return a typed result.
 */
import type { Keyspace } from '../core/keys.js';
import type { LeaseLock } from '../core/lock.js';
import type { RedisClient } from '../core/redis.js';
import type { StateStore } from '../core/state.js';

/** Shared inputs of an operation. */
export interface OpContext {
  client: RedisClient;
  keys: Keyspace;
  state: StateStore;
  /** Who is acting (recorded in the state record and the history). */
  actor: string;
  /** Aborted on SIGINT/SIGTERM or when the lock lease is lost. */
  signal: AbortSignal;
  /** The lock held for a mutating operation; its fence guards state writes. */
  lock?: LeaseLock | null;
}

/** A progress report. */
export interface Progress {
  /** What is being done now, e.g. "backfill" or "verify round 2/3". */
  stage: string;
  done: number;
  /** Expected total, or null when unknown. */
  total: number | null;
  /** True when `total` comes from a sampled estimate rather than a count. */
  totalIsEstimate: boolean;
  /** Free text for the log line, e.g. "waiting 1.8s for the settle window". */
  message?: string;
}

/** Progress callback. */
export type ProgressFn = (p: Progress) => void;

/**
 * The fence to pass to state writes: the held lock's (a shard's carries its
 * holder, see src/core/lua/fenced-hset.lua), or null when unlocked.
 */
export function fenceOf(ctx: OpContext): number | string | null {
  return ctx.lock ? ctx.lock.fenceToken : null;
}

/**
 * The lock key and value a single-node data script checks before it changes
 * anything (src/core/lua/includes/holds-lock.lua); value '' when the run holds
 * no lock (a dry run, which writes nothing).
 */
export function lockArgs(ctx: OpContext): { key: string; value: string } {
  return ctx.lock ? { key: ctx.lock.key, value: ctx.lock.value } : { key: ctx.keys.lock, value: '' };
}

/**
 * The lease deadline (server unix ms) a cluster data script compares with
 * TIME before it writes (src/core/lua/includes/within-lease.lua); 0 when the
 * run holds no lock.
 */
export function leaseDeadline(ctx: OpContext): number {
  return ctx.lock ? ctx.lock.deadlineMs : 0;
}

/**
 * Before each batch where no script can check the lock atomically (a cluster:
 * the lock key lives in another slot than the data): stop with exit 4 unless
 * this run still holds its lease.
 */
export async function assertLockHeld(ctx: OpContext): Promise<void> {
  if (ctx.lock) await ctx.lock.assertHeld();
}

/**
 * A progress callback that passes at most one report per `everyMs` (the
 * terminal redraws, a log gets a line every few seconds anyway). The last
 * report of a stage may be dropped: operations send their final count
 * unthrottled when they finish.
 */
export function throttled(fn: ProgressFn | undefined, everyMs = 200): ProgressFn {
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < everyMs && !p.message) return;
    last = now;
    fn?.(p);
  };
}
