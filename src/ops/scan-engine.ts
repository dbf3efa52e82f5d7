/**
 * The scan engine: one SCAN loop shared by backfill, reverse backfill, verify
 * and cleanup. It owns everything about walking a keyspace; callers only say
 * what to do with each batch of keys.
 *
 * API (stable; cleanup and rollback call it):
 *
 *   const res = await runScan(ctx.client, ctx.keys, {
 *     op: 'cleanup',                 // checkpoint name (<p>:migration:jobs:checkpoint:<op>), or null = no checkpoint
 *     match: ctx.keys.legacyPattern, // SCAN MATCH
 *     type: 'hash',                  // optional SCAN TYPE (omit to see every type, e.g. to report foreign keys)
 *     batchSize: 1000,               // SCAN COUNT
 *     concurrency: 4,                // batches processed at once (p-limit), across all masters
 *     rate: 5000,                    // optional keys/s cap (all masters together)
 *     restart: false,                // ignore the checkpoint and start every node from cursor 0
 *     shard: { index: 0, count: 2 }, // optional: only the masters of this shard (sorted by address, i % count)
 *     signal: ctx.signal,            // abort = stop scanning, finish the batches in flight, save, throw
 *     process: async ({ node, nodeAddr, keys }) => ({ deleted: n, kept: m }), // counter increments of the batch
 *     onProgress: ({ scanned, counters }) => …,                               // after every committed batch
 *   });
 *   // res: { nodes[], counters (cumulative, resumed runs included), runCounters (this run only),
 *   //        resumed, complete (every selected node scanned to the end), durationMs, shardNodes, allNodes }
 *
 * Guarantees:
 *  - Its own SCAN loop per master (never scanStream), all selected masters in
 *    parallel. Memory is bounded: at most `concurrency + nodes` batches exist at
 *    once; the SCAN of the next batch overlaps the processing of earlier ones.
 *  - Checkpoint per master `{run_id, cursor, done, counters}` (src/ops/checkpoint.ts).
 *    A node's cursor only advances past a batch once that batch and every
 *    earlier one of the node were processed, so a resume never skips a key.
 *    `counters.scanned` is maintained by the engine.
 *  - A checkpoint whose run_id differs from the node's current run_id (restart,
 *    failover) is discarded: the node is rescanned from 0 (`rescanned: true`).
 *    A checkpoint in which every selected node is done starts a fresh pass.
 *  - A connection to a master that drops mid-run fails the run with
 *    RedisUnavailableError (exit 5) even if ioredis reconnects, since a SCAN
 *    cursor means nothing on a restarted server. The last checkpoint is kept.
 *  - On abort (SIGINT/SIGTERM, lost lease) it stops scanning, lets the batches
 *    in flight finish, saves the checkpoint and throws InterruptedError (or the
 *    abort reason when that is an OrchError, e.g. FencedError).
 *  - SCAN may return a key twice (rehashing); `process` must be idempotent.
 */
import type { Redis } from 'ioredis';
import pLimit from 'p-limit';
import { InterruptedError, OrchError, RedisUnavailableError } from '../core/errors.js';
import type { Keyspace } from '../core/keys.js';
import { masterNodes, nodeAddress, type RedisClient } from '../core/redis.js';
import { sleep } from '../core/state.js';
import { loadCheckpoint, saveCheckpointMeta, saveNodeCheckpoint, type CheckpointMeta, type Counters, type NodeCheckpoint } from './checkpoint.js';

/** Default SCAN COUNT. */
export const DEFAULT_BATCH_SIZE = 1000;
/** Default number of batches processed at once. */
export const DEFAULT_CONCURRENCY = 4;
const DEFAULT_CHECKPOINT_EVERY_MS = 1000;

/** One batch of keys from one master. */
export interface ScanBatch {
  /** The master the keys came from (the client itself on a single node). */
  node: Redis;
  /** `host:port` of that master. */
  nodeAddr: string;
  keys: string[];
}

/** Progress after a committed batch. */
export interface ScanProgress {
  /** Keys scanned, cumulative (resumed runs included). */
  scanned: number;
  /** Every counter, cumulative. */
  counters: Counters;
  /** Keys scanned by this run only. */
  runScanned: number;
}

/** Options of {@link runScan}. */
export interface ScanEngineOptions {
  /** Checkpoint name, or null to run without a checkpoint (verify). */
  op: string | null;
  /** SCAN MATCH pattern. */
  match: string;
  /** SCAN TYPE filter; omit to see keys of every type. */
  type?: string;
  /** SCAN COUNT (default 1000). */
  batchSize?: number;
  /** Batches processed at once across all masters (default 4). */
  concurrency?: number;
  /** Keys per second, all masters together; null/undefined = unlimited. */
  rate?: number | null;
  /** Ignore the checkpoint and start over. */
  restart?: boolean;
  /** Only the masters of shard `index` of `count`. */
  shard?: { index: number; count: number } | null;
  signal: AbortSignal;
  /** Handles one batch; returns counter increments. Must be idempotent. */
  process: (batch: ScanBatch) => Promise<Counters>;
  onProgress?: (p: ScanProgress) => void;
  /** Stored in the checkpoint's meta field (shown by status). */
  meta?: Record<string, unknown>;
  /** State epoch stored in the checkpoint's meta field. */
  epoch?: number;
  /** State lineage stored in the checkpoint's meta field. */
  lineage?: number;
  /**
   * Whether a saved checkpoint may be resumed (e.g. only within the lineage
   * or epoch it was written in); false starts a fresh pass. Default: yes.
   */
  resumeIf?: (meta: CheckpointMeta | null) => boolean;
  /** Called once before scanning when this run starts a fresh pass (not a resume), e.g. to clear findings. */
  onFreshPass?: () => Promise<void>;
  /** Called before every checkpoint write; throws to refuse it (a run that lost its lock must not move positions). */
  guard?: () => Promise<void>;
  /** How often a node's checkpoint is written at most (default 1000 ms). */
  checkpointEveryMs?: number;
}

/** Per-node outcome. */
export interface NodeScanResult {
  node: string;
  runId: string;
  /** The cursor the node resumed from, or null when it started at 0. */
  resumedFrom: string | null;
  /** A checkpoint existed but the node's run_id changed: rescanned from 0. */
  rescanned: boolean;
  /** Scanned to the end. */
  done: boolean;
  /** Cursor after the last committed batch. */
  cursor: string;
  /** Cumulative counters. */
  counters: Counters;
  /** Counters of this run only. */
  runCounters: Counters;
}

/** Result of {@link runScan}. */
export interface ScanEngineResult {
  nodes: NodeScanResult[];
  /** Summed cumulative counters (resumed runs included). */
  counters: Counters;
  /** Summed counters of this run. */
  runCounters: Counters;
  /** True when at least one node resumed from a checkpoint. */
  resumed: boolean;
  /** Every selected node was scanned to the end. */
  complete: boolean;
  /** Masters selected by the shard. */
  shardNodes: number;
  /** Masters in total. */
  allNodes: number;
  durationMs: number;
}

/** Per-key work in flight inside one batch on a cluster (bounds memory; the client autopipelines). */
export const PER_KEY_CONCURRENCY = 64;

/** Maps `items` through `fn` with at most `limit` calls in flight; results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Adds `inc` into `into`. */
export function addCounters(into: Counters, inc: Counters): void {
  for (const [k, v] of Object.entries(inc)) into[k] = (into[k] ?? 0) + v;
}

/** The masters of one shard: sorted by address, every `count`-th starting at `index`. */
export function selectShard<T>(nodes: Array<{ addr: string; node: T }>, shard: { index: number; count: number } | null | undefined): Array<{ addr: string; node: T }> {
  const sorted = [...nodes].sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  if (!shard || shard.count <= 1) return sorted;
  return sorted.filter((_, i) => i % shard.count === shard.index);
}

/** The node's INFO run_id (changes on every restart and differs on a failed-over replica). */
export async function nodeRunId(node: Redis): Promise<string> {
  const info = await node.info('server');
  const m = /^run_id:([0-9a-f]+)\s*$/m.exec(info);
  return m?.[1] ?? '';
}

/**
 * Keys-per-second limiter shared by every master: after `consume(n)` the
 * caller has been held back until `n` more keys fit in the budget.
 */
export class RateLimiter {
  private readonly start = Date.now();
  private used = 0;
  constructor(private readonly rate: number) {}
  async consume(n: number, signal: AbortSignal): Promise<void> {
    this.used += n;
    const due = this.start + (this.used / this.rate) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait, signal);
  }
}

interface PendingBatch {
  next: string;
  settled: boolean;
  counters: Counters;
}

interface NodeState {
  addr: string;
  node: Redis;
  runId: string;
  cursor: string;
  done: boolean;
  resumedFrom: string | null;
  rescanned: boolean;
  counters: Counters;
  runCounters: Counters;
  pending: PendingBatch[];
  lastSave: number;
  saveChain: Promise<void>;
}

/** Runs one scan over every selected master. See the module header for the contract. */
export async function runScan(client: RedisClient, keys: Keyspace, opts: ScanEngineOptions): Promise<ScanEngineResult> {
  const started = Date.now();
  const batchSize = Math.max(1, opts.batchSize ?? DEFAULT_BATCH_SIZE);
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  const every = opts.checkpointEveryMs ?? DEFAULT_CHECKPOINT_EVERY_MS;
  const all = masterNodes(client).map((node) => ({ addr: nodeAddress(node), node }));
  const selected = selectShard(all, opts.shard);

  // Load positions: a node whose run_id changed is rescanned from 0.
  const loaded = opts.op !== null && !opts.restart ? await loadCheckpoint(client, keys, opts.op) : null;
  const cp = loaded && (opts.resumeIf?.(loaded.meta) ?? true) ? loaded : { meta: null, nodes: [] as NodeCheckpoint[] };
  const byAddr = new Map(cp.nodes.map((n) => [n.node, n]));
  const states: NodeState[] = await Promise.all(
    selected.map(async ({ addr, node }) => {
      const runId = await nodeRunId(node);
      return { addr, node, runId, cp: byAddr.get(addr) };
    }),
  ).then((rows) => {
    // A checkpoint in which every selected node is done is a finished pass: start a new one.
    const finished = rows.length > 0 && rows.every((r) => r.cp && r.cp.done && r.cp.runId === r.runId);
    return rows.map(({ addr, node, runId, cp: c }): NodeState => {
      const usable = !finished && c !== undefined && c.runId === runId;
      return {
        addr,
        node,
        runId,
        cursor: usable ? c.cursor : '0',
        done: usable ? c.done : false,
        resumedFrom: usable && (c.cursor !== '0' || c.done) ? c.cursor : null,
        rescanned: !finished && c !== undefined && c.runId !== runId,
        counters: usable ? { ...c.counters } : {},
        runCounters: {},
        pending: [],
        lastSave: Date.now(),
        saveChain: Promise.resolve(),
      };
    });
  });
  const resumed = states.some((s) => s.resumedFrom !== null);
  if (!resumed) await opts.onFreshPass?.();
  if (opts.op !== null) {
    await opts.guard?.();
    await saveCheckpointMeta(client, keys, opts.op, {
      startedAt: resumed && cp.meta ? cp.meta.startedAt : Date.now(),
      epoch: opts.epoch ?? cp.meta?.epoch ?? 0,
      ...(opts.lineage === undefined ? {} : { lineage: opts.lineage }),
      options: { match: opts.match, ...(opts.type ? { type: opts.type } : {}), ...(opts.meta ?? {}) },
    });
  }

  const limit = pLimit(concurrency);
  const limiter = opts.rate ? new RateLimiter(opts.rate) : null;
  let failure: unknown = null;
  let stopping = false;
  const fail = (err: unknown): void => {
    if (failure === null) failure = err;
    stopping = true;
  };

  // In-flight bound: the scanners wait while this many batches are queued or running.
  let inflight = 0;
  const maxInflight = concurrency + 1;
  let wakeups: Array<() => void> = [];
  const wake = (): void => {
    const w = wakeups;
    wakeups = [];
    for (const f of w) f();
  };
  const waitForSlot = async (): Promise<void> => {
    while (inflight >= maxInflight && !stopping && !opts.signal.aborted) {
      await new Promise<void>((resolve) => wakeups.push(resolve));
    }
  };
  const onAbort = (): void => wake();
  opts.signal.addEventListener('abort', onAbort);

  // A dropped connection invalidates the cursor even if ioredis reconnects.
  const closers = states.map((s) => {
    const onClose = (): void => {
      fail(new RedisUnavailableError(s.addr, 'the connection to this node was lost mid-run (a restarted node has a new SCAN order); checkpoint kept, rerun to resume'));
      wake();
    };
    s.node.on('close', onClose);
    return () => s.node.off('close', onClose);
  });

  const totals = (): ScanProgress => {
    const counters: Counters = {};
    let runScanned = 0;
    for (const s of states) {
      addCounters(counters, s.counters);
      runScanned += s.runCounters.scanned ?? 0;
    }
    return { scanned: counters.scanned ?? 0, counters, runScanned };
  };

  const save = (s: NodeState): Promise<void> => {
    if (opts.op === null) return Promise.resolve();
    const op = opts.op;
    const entry: NodeCheckpoint = { node: s.addr, runId: s.runId, cursor: s.cursor, done: s.done, counters: { ...s.counters }, updatedAt: Date.now() };
    s.lastSave = Date.now();
    // Chained so that positions are written in order.
    s.saveChain = s.saveChain.then(async () => {
      await opts.guard?.();
      await saveNodeCheckpoint(client, keys, op, entry);
    });
    return s.saveChain;
  };

  const commit = (s: NodeState): void => {
    let moved = false;
    while (s.pending.length > 0 && s.pending[0]!.settled) {
      const b = s.pending.shift()!;
      s.cursor = b.next;
      addCounters(s.counters, b.counters);
      addCounters(s.runCounters, b.counters);
      moved = true;
    }
    if (!moved) return;
    if (Date.now() - s.lastSave >= every) save(s).catch(fail);
    opts.onProgress?.(totals());
  };

  const scanNode = async (s: NodeState): Promise<void> => {
    if (s.done) return;
    let cursor = s.cursor;
    const tasks: Array<Promise<void>> = [];
    const typeArgs = opts.type ? ['TYPE', opts.type] : [];
    let count = batchSize;
    // A low rate gets small batches, so progress and interrupts stay responsive.
    if (opts.rate) count = Math.max(10, Math.min(batchSize, Math.ceil(opts.rate / 10)));
    let reachedEnd = false;
    while (!stopping && !opts.signal.aborted) {
      await waitForSlot();
      if (stopping || opts.signal.aborted) break;
      const [next, found] = (await s.node.scan(cursor, 'MATCH', opts.match, 'COUNT', count, ...(typeArgs as [])) as [string, string[]]);
      if (limiter && found.length > 0) {
        try {
          await limiter.consume(found.length, opts.signal);
        } catch {
          break; // aborted while throttled: this batch is not taken, the cursor stays before it
        }
      }
      if (stopping || opts.signal.aborted) break;
      const batch: PendingBatch = { next, settled: false, counters: { scanned: found.length } };
      s.pending.push(batch);
      if (found.length === 0) {
        batch.settled = true;
        commit(s);
      } else {
        inflight++;
        tasks.push(
          limit(() => opts.process({ node: s.node, nodeAddr: s.addr, keys: found }))
            .then(
              (inc) => {
                addCounters(batch.counters, inc);
                batch.settled = true;
                commit(s);
              },
              (err: unknown) => fail(err),
            )
            .finally(() => {
              inflight--;
              wake();
            }),
        );
      }
      cursor = next;
      if (next === '0') {
        reachedEnd = true;
        break;
      }
    }
    await Promise.all(tasks);
    if (reachedEnd && failure === null && s.pending.length === 0) s.done = true;
  };

  try {
    await Promise.all(states.map((s) => scanNode(s).catch(fail)));
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    for (const off of closers) off();
  }

  // Save what was committed, whatever happened.
  if (opts.op !== null) {
    const saved = Promise.all(states.map((s) => save(s)));
    if (failure === null) await saved;
    else await saved.catch(() => undefined);
  }
  if (failure !== null) throw failure;
  if (opts.signal.aborted) {
    const reason: unknown = opts.signal.reason;
    throw reason instanceof OrchError ? reason : new InterruptedError();
  }

  const t = totals();
  const runCounters: Counters = {};
  for (const s of states) addCounters(runCounters, s.runCounters);
  return {
    nodes: states.map((s) => ({
      node: s.addr,
      runId: s.runId,
      resumedFrom: s.resumedFrom,
      rescanned: s.rescanned,
      done: s.done,
      cursor: s.cursor,
      counters: s.counters,
      runCounters: s.runCounters,
    })),
    counters: t.counters,
    runCounters,
    resumed,
    complete: states.every((s) => s.done),
    shardNodes: states.length,
    allNodes: all.length,
    durationMs: Date.now() - started,
  };
}
