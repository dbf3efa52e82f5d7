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
 *     rate: 5000,                    // optional keys/s ceiling (all masters together)
 *     pacer: guards,                 // optional ScanPacer (e.g. the guard controller); replaces `rate`
 *     restart: false,                // ignore the checkpoint and start every node from cursor 0
 *     shard: { index: 0, count: 2 }, // optional: only the masters of this shard (sorted by address, i % count)
 *     signal: ctx.signal,            // abort = stop scanning, finish the batches in flight, save, throw
 *     process: async ({ node, nodeAddr, keys }) => ({ deleted: n, kept: m }), // counter increments of the batch
 *     onProgress: ({ scanned, counters }) => …,                               // after every committed batch
 *   });
 *   // res: { nodes[], counters (cumulative, resumed runs included), runCounters (this run only),
 *   //        resumed, complete (every selected node scanned to the end), durationMs, shardNodes, allNodes }
 *
 * Shape: one {@link NodeScanner} per selected master (its cursor, run_id,
 * checkpoint and the batches it has in flight), all driven through one p-limit
 * for the processing, with one pacer beside it: before a batch is taken the
 * scanner asks the pacer (a {@link RateLimiter} for `--rate`, or the guard
 * controller of src/ops/guards/controller.ts) for its keys, and the pacer may
 * hold it (slow down, pause) or refuse it (a guard's critical level: the run
 * stops like on a failure, checkpoint saved).
 *
 * Guarantees:
 *  - Its own SCAN loop per master (never scanStream), all selected masters in
 *    parallel. Memory is bounded: at most `concurrency + 1` batches are queued
 *    or processing at once; the SCAN of the next batch overlaps the processing
 *    of earlier ones.
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
import pLimit, { type LimitFunction } from 'p-limit';
import { ExitCode, InterruptedError, OrchError, RedisUnavailableError } from '../core/errors.js';
import type { Keyspace } from '../core/keys.js';
import { isCluster, masterNodes, nodeAddress, type RedisClient } from '../core/redis.js';
import { createHash } from 'node:crypto';
import type { Cluster } from 'ioredis';
import { keySlot } from './cluster-batch.js';
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
  /** Keys per second, all masters together; null/undefined = unlimited. Ignored when `pacer` is given. */
  rate?: number | null;
  /** Paces the batches (see {@link ScanPacer}); default: a {@link RateLimiter} for `rate`, or none. */
  pacer?: ScanPacer | null;
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

/** Per-key work in flight inside one batch on a cluster (bounds memory and the commands outstanding on the cluster client). */
export const PER_KEY_CONCURRENCY = 64;

/** Maps `items` through `fn` with at most `limit` calls in flight; results in order. */
export function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  return pLimit(limit).map(items, fn);
}

/** Adds `inc` into `into`. */
export function addCounters(into: Counters, inc: Counters): void {
  for (const [k, v] of Object.entries(inc)) into[k] = (into[k] ?? 0) + v;
}

/** The masters of one shard: sorted by address, every `count`-th starting at `index`. */
export function selectShard<T>(
  nodes: Array<{ addr: string; node: T }>,
  shard: { index: number; count: number } | null | undefined,
): Array<{ addr: string; node: T }> {
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
 * Paces a scan. Called by every scanner before it takes a batch of `n` keys;
 * the batch is taken when the promise resolves. A rejection stops the run
 * like a failed batch does (batches in flight finish, the checkpoint is
 * saved, the error is thrown); the batch that was refused is not taken, so
 * the cursor stays before it.
 */
export interface ScanPacer {
  acquire(n: number, signal: AbortSignal): Promise<void>;
  /**
   * The SCAN COUNT for the next batch, given the configured one: a low rate or
   * a latency guard asks for smaller batches (shorter scripts, and a pause or
   * a rate change lands sooner). Optional: default the configured one.
   */
  batchSize?(configured: number): number;
}

/** Smallest SCAN COUNT a pacer asks for. */
export const MIN_PACED_BATCH = 10;

/**
 * A true ceiling of `rate` keys per second, shared by every master. A grant
 * of `n` keys books the next `n / rate` seconds; a caller that comes after a
 * slow stretch is granted at once but books from now, never from the past,
 * so no budget piles up and there is no catch-up burst: over any interval T,
 * at most `rate × T` keys plus one batch are taken. Batches are kept to a
 * tenth of a second's worth ({@link batchSize}), so that one batch stays small.
 */
export class RateLimiter implements ScanPacer {
  /** When the next grant may start (performance.now() ms). */
  private next = 0;

  constructor(private rate: number | null) {}

  /** Current ceiling (null = none). */
  get ceiling(): number | null {
    return this.rate;
  }

  /** Changes the ceiling; it applies to the next grant (waiters re-check at least every 100 ms). */
  setRate(rate: number | null): void {
    if (rate === this.rate) return;
    const now = performance.now();
    // Rebook the outstanding slot at the new rate, so a lowered ceiling holds at once.
    if (this.rate !== null && rate !== null && this.next > now) this.next = now + ((this.next - now) * this.rate) / rate;
    else if (rate === null) this.next = 0;
    this.rate = rate;
  }

  /** Books `n` keys now and returns 0, or returns the ms to wait before asking again (nothing booked). */
  reserve(n: number): number {
    if (this.rate === null) return 0;
    const now = performance.now();
    if (this.next > now) return this.next - now;
    this.next = now + (n / this.rate) * 1000;
    return 0;
  }

  async acquire(n: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      const wait = this.reserve(n);
      if (wait <= 0) return;
      // In slices: a rate changed meanwhile (live control) applies within 100 ms.
      await sleep(Math.min(wait, 100), signal);
    }
  }

  batchSize(configured: number): number {
    return this.rate === null ? configured : pacedBatch(configured, this.rate);
  }
}

/** A tenth of a second's worth of keys at `rate`, within [MIN_PACED_BATCH, configured]. */
export function pacedBatch(configured: number, rate: number): number {
  return Math.max(Math.min(MIN_PACED_BATCH, configured), Math.min(configured, Math.ceil(rate / 10)));
}

/** One SCAN batch whose processing may finish out of order. */
interface PendingBatch {
  next: string;
  settled: boolean;
  counters: Counters;
}

/** What every scanner of one run shares. */
interface ScanRun {
  client: RedisClient;
  keys: Keyspace;
  opts: ScanEngineOptions;
  /** The processing of batches (p-limit: `concurrency` at once). */
  limit: LimitFunction;
  /** Batches queued or processing, across all masters: the memory bound. */
  inflight: Set<Promise<void>>;
  maxInflight: number;
  pacer: ScanPacer | null;
  checkpointEveryMs: number;
  /** Stops every scanner: the first failure wins. */
  fail(err: unknown): void;
  stopped(): boolean;
  progress(): void;
}

/**
 * One master: its SCAN loop, its cursor and run_id, its checkpoint. A
 * cursor moves past a batch only once that batch and every earlier one of the
 * node are processed, so a resume never skips a key.
 */
class NodeScanner {
  cursor: string;
  done: boolean;
  readonly resumedFrom: string | null;
  readonly rescanned: boolean;
  readonly counters: Counters;
  readonly runCounters: Counters = {};
  private readonly pending: PendingBatch[] = [];
  private lastSave = Date.now();
  private saveChain: Promise<void> = Promise.resolve();

  constructor(
    readonly addr: string,
    readonly node: Redis,
    readonly runId: string,
    cp: NodeCheckpoint | undefined,
    usable: boolean,
  ) {
    this.cursor = usable && cp ? cp.cursor : '0';
    this.done = usable && cp ? cp.done : false;
    this.resumedFrom = usable && cp && (cp.cursor !== '0' || cp.done) ? cp.cursor : null;
    this.rescanned = cp !== undefined && !usable && cp.runId !== runId;
    this.counters = usable && cp ? { ...cp.counters } : {};
  }

  /** Writes this node's position (in order; refused by the guard once the run lost its lock). */
  save(run: ScanRun): Promise<void> {
    const op = run.opts.op;
    if (op === null) return Promise.resolve();
    const entry: NodeCheckpoint = {
      node: this.addr,
      runId: this.runId,
      cursor: this.cursor,
      done: this.done,
      counters: { ...this.counters },
      updatedAt: Date.now(),
    };
    this.lastSave = Date.now();
    this.saveChain = this.saveChain.then(async () => {
      await run.opts.guard?.();
      await saveNodeCheckpoint(run.client, run.keys, op, entry);
    });
    return this.saveChain;
  }

  /** Moves the cursor past every leading batch that is processed. */
  private commit(run: ScanRun): void {
    let moved = false;
    while (this.pending.length > 0 && this.pending[0]!.settled) {
      const b = this.pending.shift()!;
      this.cursor = b.next;
      addCounters(this.counters, b.counters);
      addCounters(this.runCounters, b.counters);
      moved = true;
    }
    if (!moved) return;
    if (Date.now() - this.lastSave >= run.checkpointEveryMs) this.save(run).catch((err: unknown) => run.fail(err));
    run.progress();
  }

  /** Hands one batch to the shared limit; its result commits when it and every earlier batch are done. */
  private submit(run: ScanRun, batch: PendingBatch, found: string[]): void {
    const task = run
      .limit(() => run.opts.process({ node: this.node, nodeAddr: this.addr, keys: found }))
      .then(
        (inc) => {
          addCounters(batch.counters, inc);
          batch.settled = true;
          this.commit(run);
        },
        (err: unknown) => run.fail(err),
      )
      .finally(() => run.inflight.delete(task));
    run.inflight.add(task);
  }

  /** The SCAN loop of this master. */
  async scan(run: ScanRun): Promise<void> {
    if (this.done) return;
    const { opts } = run;
    const typeArgs = opts.type ? ['TYPE', opts.type] : [];
    const configured = Math.max(1, opts.batchSize ?? DEFAULT_BATCH_SIZE);
    let cursor = this.cursor;
    let reachedEnd = false;
    while (!run.stopped()) {
      // Backpressure: never more than maxInflight batches queued or processing, across all masters.
      while (run.inflight.size >= run.maxInflight && !run.stopped()) await Promise.race(run.inflight);
      if (run.stopped()) break;
      // A low rate or a latency guard gets small batches, so progress, interrupts and pauses stay responsive.
      const count = Math.max(1, run.pacer?.batchSize?.(configured) ?? configured);
      const [next, found] = (await this.node.scan(cursor, 'MATCH', opts.match, 'COUNT', count, ...(typeArgs as []))) as [string, string[]];
      if (run.pacer && found.length > 0) {
        try {
          await run.pacer.acquire(found.length, opts.signal);
        } catch (err) {
          // Not taken: the cursor stays before this batch. An abort is handled below; a refusal (a guard's critical level) fails the run.
          if (!opts.signal.aborted) run.fail(err);
          break;
        }
      }
      if (run.stopped()) break;
      const batch: PendingBatch = { next, settled: found.length === 0, counters: { scanned: found.length } };
      this.pending.push(batch);
      if (found.length === 0) this.commit(run);
      else this.submit(run, batch, found);
      cursor = next;
      if (next === '0') {
        reachedEnd = true;
        break;
      }
    }
    // Wait for this node's batches (a failure elsewhere lets them finish too: their counts are real).
    while (this.pending.some((b) => !b.settled) && run.inflight.size > 0) await Promise.race(run.inflight);
    if (reachedEnd && this.pending.length === 0) this.done = true;
  }

  result(): NodeScanResult {
    return {
      node: this.addr,
      runId: this.runId,
      resumedFrom: this.resumedFrom,
      rescanned: this.rescanned,
      done: this.done,
      cursor: this.cursor,
      counters: this.counters,
      runCounters: this.runCounters,
    };
  }
}

/** Creates the scanners of a run from the saved checkpoint (a node whose run_id changed starts at 0). */
async function scannersFor(
  client: RedisClient,
  keys: Keyspace,
  opts: ScanEngineOptions,
  slots: string | null,
): Promise<{ scanners: NodeScanner[]; meta: CheckpointMeta | null; allNodes: number }> {
  const all = masterNodes(client).map((node) => ({ addr: nodeAddress(node), node }));
  const selected = selectShard(all, opts.shard);
  const loaded = opts.op !== null && !opts.restart ? await loadCheckpoint(client, keys, opts.op) : null;
  // Slots that moved between masters since the checkpoint void every cursor (a key may have moved behind one).
  const sameSlots = (meta: CheckpointMeta | null): boolean => slots === null || meta?.options?.slots === undefined || meta.options.slots === slots;
  const cp = loaded && (opts.resumeIf?.(loaded.meta) ?? true) && sameSlots(loaded.meta) ? loaded : { meta: null, nodes: [] as NodeCheckpoint[] };
  const byAddr = new Map(cp.nodes.map((n) => [n.node, n]));
  const rows = await Promise.all(selected.map(async ({ addr, node }) => ({ addr, node, runId: await nodeRunId(node), cp: byAddr.get(addr) })));
  // A checkpoint in which every selected node is done is a finished pass: start a new one.
  const finished = rows.length > 0 && rows.every((r) => r.cp && r.cp.done && r.cp.runId === r.runId);
  const scanners = rows.map(
    (r) => new NodeScanner(r.addr, r.node, r.runId, finished ? undefined : r.cp, !finished && r.cp !== undefined && r.cp.runId === r.runId),
  );
  return { scanners, meta: cp.meta, allNodes: all.length };
}

/** Rounds of {@link sweepMovedSlots} before a run that keeps seeing slots move gives up (checkpoint kept). */
const MAX_SLOT_SWEEPS = 3;
/** How long the slot map must stay the same, with no slot migrating, before moved slots are swept. */
const SLOTS_STABLE_MS = 1000;
/** How long a run waits at its end for a resharding in progress to finish. */
const SLOTS_SETTLE_MAX_MS = 60_000;

function reshardingError(): OrchError {
  return new OrchError('Cluster slots kept moving between masters at the end of the scan: keys may have moved behind a cursor', {
    code: 'ERR_CLUSTER_RESHARDING',
    exitCode: ExitCode.Unavailable,
    suggestion: 'Rerun once the resharding is over; progress is checkpointed (a checkpoint taken before the slots moved is rescanned from the start).',
  });
}

/** A master that has a slot MIGRATING or IMPORTING (CLUSTER NODES shows `[slot->-id]` / `[slot-<-id]` on its own line). */
async function anyMigrating(client: Cluster): Promise<boolean> {
  const views = await Promise.all(client.nodes('master').map((n) => n.cluster('NODES') as Promise<string>));
  return views.some((v) => v.split('\n').some((line) => line.includes('myself') && line.includes('[')));
}

/**
 * The slot map once it is settled: unchanged since `start` with nothing
 * migrating (the usual case: one CLUSTER SLOTS, one CLUSTER NODES per master),
 * or else the same for {@link SLOTS_STABLE_MS} with nothing migrating.
 */
async function settledOwners(client: Cluster, start: string[], signal: AbortSignal): Promise<string[]> {
  let last = await slotOwners(client);
  if (movedSlots(start, last).size === 0 && !(await anyMigrating(client))) return last;
  const deadline = Date.now() + SLOTS_SETTLE_MAX_MS;
  for (;;) {
    await sleep(SLOTS_STABLE_MS, signal);
    const now = await slotOwners(client);
    if (movedSlots(last, now).size === 0 && !(await anyMigrating(client))) return now;
    if (Date.now() > deadline) throw reshardingError();
    last = now;
  }
}

/** The owning master (`host:port`) of every slot, from a refreshed slot map of the cluster client. */
async function slotOwners(client: Cluster): Promise<string[]> {
  await new Promise<void>((resolve, reject) => client.refreshSlotsCache((err) => (err ? reject(err) : resolve())));
  const out = new Array<string>(16384);
  for (let i = 0; i < 16384; i++) out[i] = client.slots[i]?.[0] ?? '';
  return out;
}

function digestOf(owners: string[]): string {
  return createHash('sha1').update(owners.join(',')).digest('hex').slice(0, 16);
}

function movedSlots(before: string[], after: string[]): Set<number> {
  const moved = new Set<number>();
  for (let i = 0; i < before.length; i++) if (before[i] !== after[i]) moved.add(i);
  return moved;
}

/**
 * Processes again every key of the moved slots, on the masters that own them
 * now (a full SCAN of each, keeping only those slots' keys): SCAN guarantees
 * nothing for keys that moved in behind a cursor. Done by every run whose
 * shard held the slot before or holds it now (processing is idempotent).
 * Counters go to the scanner of the master that had the slot.
 */
async function sweepMovedSlots(run: ScanRun, client: Cluster, scanners: NodeScanner[], before: string[], after: string[], moved: Set<number>): Promise<void> {
  const mine = new Set(scanners.map((s) => s.addr));
  const targets = new Map<string, Set<number>>();
  for (const slot of moved) {
    if (!mine.has(before[slot]!) && !mine.has(after[slot]!)) continue;
    let set = targets.get(after[slot]!);
    if (!set) targets.set(after[slot]!, (set = new Set()));
    set.add(slot);
  }
  const nodes = new Map(client.nodes('master').map((n) => [nodeAddress(n), n]));
  const typeArgs = run.opts.type ? ['TYPE', run.opts.type] : [];
  const count = Math.max(1, run.opts.batchSize ?? DEFAULT_BATCH_SIZE);
  for (const [addr, slots] of targets) {
    const node = nodes.get(addr);
    if (!node) throw new RedisUnavailableError(addr, 'a slot moved to a master this run cannot reach; checkpoint kept, rerun to resume');
    let cursor = '0';
    do {
      const [next, found] = (await node.scan(cursor, 'MATCH', run.opts.match, 'COUNT', count, ...(typeArgs as []))) as [string, string[]];
      cursor = next;
      const keys = found.filter((k) => slots.has(keySlot(k)));
      if (keys.length === 0) continue;
      if (run.stopped()) return;
      const inc = await run.opts.process({ node, nodeAddr: addr, keys });
      const owner = scanners.find((s) => s.addr === before[keySlot(keys[0]!)]) ?? scanners.find((s) => s.addr === addr) ?? scanners[0]!;
      addCounters(owner.counters, { ...inc, scanned: keys.length });
      addCounters(owner.runCounters, { ...inc, scanned: keys.length });
      run.progress();
    } while (cursor !== '0');
  }
}

/** Sums the counters of the scanners. */
function totals(scanners: NodeScanner[]): ScanProgress {
  const counters: Counters = {};
  let runScanned = 0;
  for (const s of scanners) {
    addCounters(counters, s.counters);
    runScanned += s.runCounters.scanned ?? 0;
  }
  return { scanned: counters.scanned ?? 0, counters, runScanned };
}

/**
 * Whether the saved checkpoint `op` covers every master: each one's entry is
 * done, under its current run_id, in a pass `resumeIf` accepts. A shard
 * (`--shard i/n`) asks this after saving its own nodes, to learn whether the
 * other shards' masters are done too (in this pass, or in a run of it that
 * finished earlier, as a resumed run counts them): then the whole pass is
 * complete. Two shards that finish together each save before they ask, so
 * the later one to ask sees both. Also returns the counters summed over
 * every master.
 */
export async function passComplete(
  client: RedisClient,
  keys: Keyspace,
  op: string,
  resumeIf?: (meta: CheckpointMeta | null) => boolean,
): Promise<{ complete: boolean; counters: Counters }> {
  const cp = await loadCheckpoint(client, keys, op);
  const counters: Counters = {};
  for (const n of cp.nodes) addCounters(counters, n.counters);
  if (!(resumeIf?.(cp.meta) ?? true)) return { complete: false, counters };
  const byAddr = new Map(cp.nodes.map((n) => [n.node, n]));
  const masters = masterNodes(client);
  const done = await Promise.all(
    masters.map(async (node) => {
      const entry = byAddr.get(nodeAddress(node));
      return entry !== undefined && entry.done && entry.runId === (await nodeRunId(node));
    }),
  );
  return { complete: masters.length > 0 && done.every(Boolean), counters };
}

/** Runs one scan over every selected master. See the module header for the contract. */
export async function runScan(client: RedisClient, keys: Keyspace, opts: ScanEngineOptions): Promise<ScanEngineResult> {
  const started = Date.now();
  let owners = isCluster(client) ? await slotOwners(client) : null;
  const { scanners, meta, allNodes } = await scannersFor(client, keys, opts, owners && digestOf(owners));
  const resumed = scanners.some((s) => s.resumedFrom !== null);
  if (!resumed) await opts.onFreshPass?.();
  if (opts.op !== null) {
    await opts.guard?.();
    await saveCheckpointMeta(client, keys, opts.op, {
      startedAt: resumed && meta ? meta.startedAt : Date.now(),
      epoch: opts.epoch ?? meta?.epoch ?? 0,
      ...(opts.lineage === undefined ? {} : { lineage: opts.lineage }),
      options: { match: opts.match, ...(opts.type ? { type: opts.type } : {}), ...(opts.meta ?? {}), ...(owners ? { slots: digestOf(owners) } : {}) },
    });
  }

  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  let failure: unknown = null;
  const run: ScanRun = {
    client,
    keys,
    opts,
    limit: pLimit(concurrency),
    inflight: new Set(),
    maxInflight: concurrency + 1,
    pacer: opts.pacer ?? (opts.rate ? new RateLimiter(opts.rate) : null),
    checkpointEveryMs: opts.checkpointEveryMs ?? DEFAULT_CHECKPOINT_EVERY_MS,
    fail: (err) => {
      if (failure === null) failure = err;
    },
    stopped: () => failure !== null || opts.signal.aborted,
    progress: () => opts.onProgress?.(totals(scanners)),
  };

  // A dropped connection invalidates the cursor even if ioredis reconnects.
  const closers = scanners.map((s) => {
    const onClose = (): void =>
      run.fail(
        new RedisUnavailableError(
          s.addr,
          'the connection to this node was lost mid-run (a restarted node has a new SCAN order); checkpoint kept, rerun to resume',
        ),
      );
    s.node.on('close', onClose);
    return () => s.node.off('close', onClose);
  });
  try {
    await Promise.all(scanners.map((s) => s.scan(run).catch(run.fail)));
    // Slots that moved to another master during the run: their keys may have landed behind that master's cursor.
    for (let round = 0; owners !== null && !run.stopped() && scanners.every((s) => s.done); round++) {
      const now = await settledOwners(client as Cluster, owners, opts.signal);
      const moved = movedSlots(owners, now);
      if (moved.size === 0) break;
      if (round >= MAX_SLOT_SWEEPS) throw reshardingError();
      await sweepMovedSlots(run, client as Cluster, scanners, owners, now, moved);
      owners = now;
    }
  } catch (err) {
    run.fail(err);
  } finally {
    for (const off of closers) off();
  }

  // Save what was committed, whatever happened (a run that lost its lock is refused by the guard).
  if (opts.op !== null) {
    const saved = Promise.all(scanners.map((s) => s.save(run)));
    if (failure === null) await saved;
    else await saved.catch(() => undefined);
  }
  if (failure !== null) throw failure;
  if (opts.signal.aborted) {
    const reason: unknown = opts.signal.reason;
    throw reason instanceof OrchError ? reason : new InterruptedError();
  }
  const t = totals(scanners);
  const runCounters: Counters = {};
  for (const s of scanners) addCounters(runCounters, s.runCounters);
  return {
    nodes: scanners.map((s) => s.result()),
    counters: t.counters,
    runCounters,
    resumed,
    complete: scanners.every((s) => s.done),
    shardNodes: scanners.length,
    allNodes,
    durationMs: Date.now() - started,
  };
}
