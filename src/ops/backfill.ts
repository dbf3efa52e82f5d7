/**
 * `backfill`: copies every legacy record into v2 (record + index entry), or in
 * reverse (v2 → legacy, used by rollback from new-only), on the scan engine.
 *
 * Who wins where both layouts hold a record: the primary. When the source is
 * the primary (forward in dual-write, reverse in read-new), a target that
 * differs in any way becomes an exact copy of the source: copies left from
 * before a rollback may carry the same rev as a legacy record changed since by
 * a writer that does not bump rev. When the target is the primary (forward in
 * read-new), an existing target is never written. A target that names another
 * workspace is an id conflict: never touched, reported as unmigratable.
 *
 * How data moves:
 *  - single node: one read script and one copy script per SCAN batch
 *    (backfill-batch.lua); the copy script checks the operator lock, so a run
 *    that lost its lease changes nothing;
 *  - Redis Cluster: source and target live in different slots, so each step
 *    of a batch is one pipeline per master (src/ops/cluster-batch.ts): read
 *    the sources (HMGET + DUMP + PEXPIRETIME), create the absent targets
 *    (backfill-create.lua: RESTORE … ABSTTL without REPLACE, create-if-absent),
 *    add the index entries (index-add.lua); on Redis 7+ each step is one
 *    cross-slot script per master instead (xslot-read.lua, xslot-create.lua,
 *    xslot-index-add.lua), with the per-key step for keys that moved. The lock lives in a third slot:
 *    it is checked before every batch, and every write script checks the
 *    lease deadline (docs/design.md "Every mutation of a run is fenced by its
 *    lock"). An existing target the source must win over is replaced with a
 *    compare-and-swap and the source re-read, until both agree.
 *
 * A forward checkpoint belongs to a lineage: a move back to legacy voids it
 * and the next forward backfill rescans everything. Unmigratable records are
 * kept in the findings hash (so counts and listings agree across resumes),
 * never touched; accepted ones (`orch-migrate accept`) are counted apart.
 */
import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { readWorkspaceStates, writeWorkspaceStates } from '../core/workspaces.js';
import { ExitCode } from '../core/errors.js';
import { JobField } from '../core/job.js';
import { Layout, routeFor, type Phase } from '../core/phase.js';
import { digestOf, rawRev, readRecord, snapshotField, snapshotOf, type RawRecord } from '../core/protocol.js';
import { isCluster } from '../core/redis.js';
import {
  BackfillBatchReply as BACKFILL_CODES,
  BackfillCreateReply,
  RepairCasReply,
  XslotCreateReply,
  XslotIndexAddReply,
  XslotReply,
} from '../core/script-replies.js';
import { callScript, ensureScripts, ScriptName } from '../core/scripts.js';
import { phaseOf, StateField, type MigrationState } from '../core/state.js';
import { loadAccepted } from './accept.js';
import type { CheckpointMeta, Counters } from './checkpoint.js';
import { assertLockHeld, fenceOf, leaseDeadline, lockArgs, throttled, type OpContext, type ProgressFn } from './context.js';
import { estimateLayout } from './count.js';
import { FindingsStore, type Finding } from './findings.js';
import { enforceGates, gatesFor } from './gates.js';
import {
  checkSource,
  isUnmigratable,
  parseSourceKey,
  UnmigratableReason,
  type Direction,
  type MigratableSource,
  type ParsedSource,
  type UnmigratableRecord,
} from './migratable.js';
import type { GuardController, ThrottleSummary } from './guards/controller.js';
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_CONCURRENCY,
  mapLimit,
  passComplete,
  PER_KEY_CONCURRENCY,
  runScan,
  type NodeScanResult,
  type ScanBatch,
} from './scan-engine.js';
import { waitForWriters } from './settle.js';
import { crossSlotBatches, perMaster, perMasterScript, valueOf, type Reply } from './cluster-batch.js';
import { decodeFieldsAt } from '../core/script-replies.js';
import type { BackfillSummary } from './summaries.js';

/** Checkpoint / operation name of a direction (a canary's reverse backfill has one of its own). */
export function backfillOpName(direction: Direction, workspace: string | null = null): string {
  if (workspace !== null) return `reverse-ws-${createHash('sha1').update(workspace).digest('hex').slice(0, 16)}`;
  return direction === 'forward' ? 'backfill' : 'reverse-backfill';
}

/** Options of {@link backfill}. */
export interface BackfillOptions {
  /** forward = legacy → v2 (default); reverse = v2 → legacy, no index (rollback from new-only). */
  direction?: Direction;
  /** SCAN COUNT (default 1000). */
  batchSize?: number;
  /** Batches in flight (default 4). */
  concurrency?: number;
  /** Keys per second (default unlimited). */
  rate?: number | null;
  /** Paces the scan on the guards and live control (src/ops/guards/controller.ts); its ceiling replaces `rate`. */
  guards?: GuardController | null;
  /** Ignore the checkpoint and start over. */
  restart?: boolean;
  /** Classify only: write nothing (no copies, no checkpoint, no summary). */
  dryRun?: boolean;
  /** Only the masters of shard i of n. */
  shard?: { index: number; count: number } | null;
  /** Gates to override by name (backfill has no forceable gate today; kept for symmetry). */
  force?: readonly string[];
  reason?: string;
  /** Most unmigratable records listed in the result (all are counted). Default 1000. */
  maxListed?: number;
  /** Bound of the wait for writer acknowledgements before copying (default 10 s). */
  ackTimeoutMs?: number;
  /**
   * Reverse only: copy back this one workspace's v2 records (a canary rolled
   * back after its cleanup). Its own checkpoint; its legacy completeness is
   * recorded in its workspace record, not in the global one.
   */
  workspace?: string | null;
  onProgress?: ProgressFn;
}

/** Counters of one run. */
export interface BackfillCounts {
  scanned: number;
  copied: number;
  skipped: number;
  unmigratable: number;
}

/** Who wins where both layouts hold a record and they differ. */
export type CopyMode = 'source' | 'target';

/** The copy mode of a direction in a phase: the primary wins. */
export function copyModeFor(direction: Direction, phase: Phase): CopyMode {
  const source = direction === 'forward' ? Layout.Legacy : Layout.V2;
  return routeFor(phase).primary === source ? 'source' : 'target';
}

/** Result of {@link backfill} (`--json`). */
export interface BackfillResult extends BackfillCounts {
  direction: Direction;
  op: string;
  /** The canary workspace of a reverse backfill, or null. */
  workspace: string | null;
  dryRun: boolean;
  /** Total wall time of the operation, settle wait included. */
  durationMs: number;
  /** Keys scanned by this run per second of scanning. */
  keysPerSecond: number;
  /** At least one node resumed from a checkpoint. */
  resumed: boolean;
  /**
   * A non-dry run after which every master is done: an un-sharded run that
   * finished every node, or the shard that found the other shards' masters
   * done too (src/ops/scan-engine.ts passComplete).
   */
  complete: boolean;
  /** This run's share of the counters (the top-level ones include resumed progress). */
  thisRun: BackfillCounts;
  /** Records that vanished between SCAN and copy (expired or deleted); counted in skipped. */
  vanished: number;
  /** Existing targets replaced because the source (the primary) differed from them. */
  applied: number;
  /** Unmigratable records that were accepted with `orch-migrate accept` (not counted in unmigratable). */
  accepted: number;
  /** Who won where both layouts held a record, at the global phase (a canary workspace follows its own). */
  mode: CopyMode;
  unmigratableRecords: UnmigratableRecord[];
  /** More unmigratable records exist than are listed. */
  unmigratableTruncated: boolean;
  nodes: NodeScanResult[];
  shard: string | null;
  epoch: number;
  phase: Phase;
  settleWaitMs: number;
  startedAt: number;
  finishedAt: number;
  forced: string[];
  /** Time the guards held the run back (null without guards). */
  throttle: ThrottleSummary | null;
}

function counts(c: Counters): BackfillCounts {
  return { scanned: c.scanned ?? 0, copied: c.copied ?? 0, skipped: c.skipped ?? 0, unmigratable: c.unmigratable ?? 0 };
}

/** A checkpoint may be resumed only in the pass it belongs to (see the module header). */
function resumable(direction: Direction, state: MigrationState): (meta: CheckpointMeta | null) => boolean {
  if (direction === 'forward') return (meta) => meta !== null && (meta.lineage ?? 0) === state.lineage;
  // A reverse pass belongs to one rollback from new-only: one epoch.
  return (meta) => meta !== null && meta.epoch === state.epoch;
}

/** Runs a backfill. Throws GateError (3), InterruptedError (130), RedisUnavailableError (5), FencedError (4). */
export async function backfill(ctx: OpContext, opts: BackfillOptions = {}): Promise<BackfillResult> {
  const startedAt = Date.now();
  const direction: Direction = opts.direction ?? 'forward';
  const workspace = direction === 'reverse' ? (opts.workspace ?? null) : null;
  const op = backfillOpName(direction, workspace);
  const dryRun = opts.dryRun ?? false;
  const stage = direction === 'forward' ? 'backfill' : 'reverse backfill';
  const state = await ctx.state.read();
  const now = await ctx.state.serverTime();
  const forced = enforceGates(gatesFor('backfill', { state, now }), { force: opts.force ?? [], reason: opts.reason ?? '' });

  // Writers may act on the previous phase until they acknowledge this epoch and the settle window is over.
  const settleWaitMs = await waitForWriters(ctx, state, {
    ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
    onWait: (message) => opts.onProgress?.({ stage, done: 0, total: null, totalIsEstimate: true, message }),
  });

  const mode = copyModeFor(direction, state.phase);
  // A shard's store clears, counts and lists its own masters' findings only.
  const findings = dryRun ? null : new FindingsStore(ctx.client, ctx.keys, op, { shard: opts.shard ?? null });
  const dryListed: UnmigratableRecord[] = [];
  const maxListed = opts.maxListed ?? 1000;
  const accepted = direction === 'forward' ? await loadAccepted(ctx.client, ctx.keys) : new Set<string>();

  const estimate =
    workspace !== null
      ? await ctx.client.zcard(ctx.keys.index(workspace))
      : await estimateLayout(ctx.client, ctx.keys, direction === 'forward' ? 'legacy' : 'v2');
  const shardShare = opts.shard && opts.shard.count > 1 ? 1 / opts.shard.count : 1;
  const total = Math.round(estimate * shardShare);
  const progress = throttled(opts.onProgress);

  const mover = new BatchMover(ctx, { direction, dryRun, state, accepted, findings, dryListed, maxListed });
  const scanStart = Date.now();
  const res = await runScan(ctx.client, ctx.keys, {
    op: dryRun ? null : op,
    match: direction === 'forward' ? ctx.keys.legacyPattern : ctx.keys.v2Pattern(workspace ?? undefined),
    batchSize: opts.batchSize ?? DEFAULT_BATCH_SIZE,
    concurrency: opts.concurrency ?? DEFAULT_CONCURRENCY,
    rate: opts.rate ?? null,
    pacer: opts.guards ?? null,
    restart: opts.restart ?? false,
    shard: opts.shard ?? null,
    signal: ctx.signal,
    epoch: state.epoch,
    lineage: state.lineage,
    resumeIf: resumable(direction, state),
    onFreshPass: async () => {
      await findings?.clear();
    },
    guard: () => assertLockHeld(ctx),
    meta: { direction, mode, shard: opts.shard ? `${opts.shard.index}/${opts.shard.count}` : null },
    process: (batch) => mover.process(batch),
    onProgress: (p) => progress({ stage, done: p.scanned, total, totalIsEstimate: true }),
  });
  // The last sample may be up to 200 ms old: the final count, unthrottled.
  opts.onProgress?.({ stage, done: res.counters.scanned ?? 0, total, totalIsEstimate: true });
  const scanMs = Math.max(1, Date.now() - scanStart);
  // Counts of findings come from the findings hash (deduplicated across resumes), like the listing.
  const found = findings ? await findings.summary() : summarize(dryListed, res.counters);
  const acceptedCount = found.byReason.accepted ?? 0;
  const unmigratable = found.total - acceptedCount;
  const listing = findings ? (await findings.list(maxListed + acceptedCount)).filter((f) => f.reason !== 'accepted') : dryListed;
  const finishedAt = Date.now();
  const all = { ...counts(res.counters), unmigratable };
  const run = counts(res.runCounters);
  const shard = opts.shard && opts.shard.count > 1 ? `${opts.shard.index}/${opts.shard.count}` : null;
  // A shard completes the pass when the other shards' masters are done too.
  const whole = async (): Promise<boolean> =>
    res.complete && !dryRun && (shard === null || (await passComplete(ctx.client, ctx.keys, op, resumable(direction, state))).complete);
  const complete = await whole();
  const result: BackfillResult = {
    ...all,
    direction,
    op,
    workspace,
    dryRun,
    durationMs: finishedAt - startedAt,
    keysPerSecond: Math.round((run.scanned / scanMs) * 1000),
    resumed: res.resumed,
    complete,
    thisRun: run,
    vanished: res.counters.vanished ?? 0,
    applied: res.counters.applied ?? 0,
    accepted: acceptedCount,
    mode,
    unmigratableRecords: listing
      .slice(0, maxListed)
      .map((f) => ({ key: f.key, reason: f.reason as UnmigratableReason, ...(f.detail ? { detail: f.detail } : {}) })),
    unmigratableTruncated: unmigratable > Math.min(maxListed, listing.length),
    nodes: res.nodes,
    shard,
    epoch: state.epoch,
    phase: state.phase,
    settleWaitMs,
    startedAt,
    finishedAt,
    forced,
    throttle: opts.guards?.summary() ?? null,
  };
  if (!dryRun && workspace !== null) {
    // A canary's legacy records are whole again only when every one of its v2 records made it back.
    if (complete && all.unmigratable === 0) {
      const states = await readWorkspaceStates(ctx.client, ctx.keys, [workspace]);
      states.set(workspace, { ...states.get(workspace)!, legacyComplete: true });
      await assertLockHeld(ctx);
      await writeWorkspaceStates(ctx.client, ctx.keys, states);
    }
  } else if (!dryRun) {
    await recordBackfill(ctx, { direction, state, op, shard, complete, all, startedAt, result, whole });
  }
  return result;
}

/**
 * Records the last backfill in the state record. A shard that completes the
 * pass records the whole pass (counters of every master, every finding). One
 * that does not records its own run, then looks again: another shard may have
 * completed the pass (and recorded it) between its look and its write, and
 * the last write must not leave "incomplete" over a complete pass.
 */
async function recordBackfill(
  ctx: OpContext,
  r: {
    direction: Direction;
    state: MigrationState;
    op: string;
    shard: string | null;
    complete: boolean;
    all: BackfillCounts;
    startedAt: number;
    result: BackfillResult;
    whole: () => Promise<boolean>;
  },
): Promise<void> {
  const { direction, state, startedAt, result } = r;
  const write = async (complete: boolean): Promise<void> => {
    let all = r.all;
    if (r.shard !== null && complete) {
      const pass = await passComplete(ctx.client, ctx.keys, r.op);
      const found = await new FindingsStore(ctx.client, ctx.keys, r.op).summary();
      all = { ...counts(pass.counters), unmigratable: found.total - (found.byReason.accepted ?? 0) };
    }
    const finishedAt = Date.now();
    const summary: BackfillSummary = {
      direction,
      epoch: state.epoch,
      startedAt,
      finishedAt: r.shard === null ? result.finishedAt : finishedAt,
      complete,
      scanned: all.scanned,
      copied: all.copied,
      skipped: all.skipped,
      unmigratable: all.unmigratable,
      durationMs: result.durationMs,
      keysPerSecond: result.keysPerSecond,
      resumed: result.resumed,
      shard: r.shard,
    };
    const fields: Record<string, string> = { [StateField.LastBackfill]: JSON.stringify(summary) };
    // Legacy is whole again only when every v2 record made it back (an id conflict keeps it incomplete).
    if (direction === 'reverse' && complete && all.unmigratable === 0) fields[StateField.LegacyComplete] = '1';
    await ctx.state.setFields(fenceOf(ctx), fields);
  };
  await write(r.complete);
  if (r.shard !== null && !r.complete && (await r.whole())) {
    result.complete = true;
    await write(true);
  }
}

/** Counts of a dry run's in-memory findings (the counters hold the totals; the listing is bounded). */
function summarize(listed: UnmigratableRecord[], counters: Counters): { total: number; byReason: Record<string, number> } {
  const byReason: Record<string, number> = {};
  for (const r of listed) byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
  return { total: (counters.unmigratable ?? 0) + (counters.accepted ?? 0), byReason: { ...byReason, accepted: counters.accepted ?? 0 } };
}

/** Exit code of a finished backfill: 1 when records could not be migrated. */
export function backfillExitCode(r: BackfillResult): number {
  return r.unmigratable > 0 ? ExitCode.Problems : ExitCode.Ok;
}

/**
 * Reads `fields` of many keys in one command (single node): per key its kind
 * ('hash', 'none' or the key's type; with no fields only 'exists' or 'none')
 * and the field values as strings (null when absent).
 */
export async function readFieldsBatch(node: Redis, keys: string[], fields: string[]): Promise<Array<Array<string | null>>> {
  if (keys.length === 0) return [];
  const reply = await callScript<Buffer[]>(node, ScriptName.ReadFieldsBatch, [keys.length, ...keys, ...fields], true);
  return reply.map((b) => decodeFieldsRow(b, fields.length));
}

const COLON = 0x3a;

/** Decodes one read-fields-batch reply string (see the script header for the format). */
export function decodeFieldsRow(buf: Buffer, nf: number): Array<string | null> {
  const tag = buf[0];
  const row: Array<string | null> = [];
  if (tag === 0x6e /* n */) row.push('none');
  else if (tag === 0x65 /* e */) row.push('exists');
  else if (tag === 0x74 /* t */) row.push(buf.toString('utf8', 1));
  else return ['hash', ...decodeFieldsAt(buf, 1, nf)];
  for (let j = 0; j < nf; j++) row.push(null);
  return row;
}

/** What a {@link BatchMover} needs besides the context. */
interface MoverOptions {
  direction: Direction;
  dryRun: boolean;
  /** The copy mode of each record follows the phase of its workspace (a canary's may be ahead). */
  state: MigrationState;
  /** Legacy keys accepted as unmigratable. */
  accepted: ReadonlySet<string>;
  /** Where findings go (null on a dry run). */
  findings: FindingsStore | null;
  /** A dry run's findings, bounded. */
  dryListed: UnmigratableRecord[];
  maxListed: number;
}

/** One target to create on a cluster: the checked source and what was read of it. */
interface ClusterCreate {
  g: MigratableSource;
  payload: Buffer;
  /** Absolute expiry (unix ms), 0 = persistent. */
  pexpireAt: number;
}

/** Attempts of the cluster compare-and-swap before the record is left to verify. */
const CAS_ATTEMPTS = 5;

/** Moves one SCAN batch. */
class BatchMover {
  private readonly cluster: boolean;

  constructor(
    private readonly ctx: OpContext,
    private readonly o: MoverOptions,
  ) {
    this.cluster = isCluster(ctx.client);
  }

  /** Who wins for this workspace's records: the primary of the phase it is in. */
  private modeOf(workspaceId: string): CopyMode {
    return copyModeFor(this.o.direction, phaseOf(this.o.state, workspaceId));
  }

  async process(batch: ScanBatch): Promise<Counters> {
    const c: Counters = { copied: 0, skipped: 0, unmigratable: 0, accepted: 0, vanished: 0, applied: 0 };
    const bad: UnmigratableRecord[] = [];
    if (this.cluster) await this.processCluster(batch, c, bad);
    else await this.processSingle(batch, c, bad);
    await this.record(bad, c, batch.nodeAddr);
    return c;
  }

  /** Findings go to the findings hash (or the dry run's list); accepted keys are counted apart. */
  private async record(bad: UnmigratableRecord[], c: Counters, node: string): Promise<void> {
    const items: Finding[] = [];
    for (const r of bad) {
      if (this.o.accepted.has(r.key)) {
        c.accepted! += 1;
        items.push({ key: r.key, reason: 'accepted', detail: r.reason });
        continue;
      }
      c.unmigratable! += 1;
      items.push(r);
      if (!this.o.findings && this.o.dryListed.length < this.o.maxListed) this.o.dryListed.push(r);
    }
    await this.o.findings?.add(items, node);
  }

  private parse(keys: string[], bad: UnmigratableRecord[]): ParsedSource[] {
    const out: ParsedSource[] = [];
    for (const key of keys) {
      const p = parseSourceKey(this.ctx.keys, this.o.direction, key);
      if (isUnmigratable(p)) bad.push(p);
      else out.push(p);
    }
    return out;
  }

  /** Single node: one read script, then one copy script that checks the lock. */
  private async processSingle(batch: ScanBatch, c: Counters, bad: UnmigratableRecord[]): Promise<void> {
    const parsed = this.parse(batch.keys, bad);
    if (parsed.length === 0) return;
    const node = batch.node;
    const rows = await readFieldsBatch(
      node,
      parsed.map((p) => p.key),
      [JobField.WorkspaceId, JobField.CreatedAt, JobField.Rev],
    );
    const good: MigratableSource[] = [];
    parsed.forEach((p, i) => {
      const [kind, ws, createdAt, rev] = rows[i]!;
      if (kind === 'none') {
        c.skipped! += 1;
        c.vanished! += 1;
        return;
      }
      if (kind !== 'hash') return void bad.push({ key: p.key, reason: UnmigratableReason.WrongType, detail: kind ?? '?' });
      const checked = checkSource(this.ctx.keys, this.o.direction, p, ws, createdAt, rev);
      if (isUnmigratable(checked)) bad.push(checked);
      else good.push(checked);
    });
    if (good.length === 0) return;

    const stride = this.o.direction === 'forward' ? 3 : 2;
    const lock = lockArgs(this.ctx);
    const keyArgs: string[] = [lock.key];
    const argv: Array<string | number> = [lock.value, stride, this.o.dryRun ? '1' : '0'];
    for (const g of good) {
      keyArgs.push(g.key, g.target);
      argv.push(g.workspaceId, this.modeOf(g.workspaceId));
      if (stride === 3) {
        keyArgs.push(g.index!);
        argv.push(g.score, g.jobId);
      }
    }
    const codes = await callScript<number[]>(node, ScriptName.BackfillBatch, [keyArgs.length, ...keyArgs, ...argv]);
    good.forEach((g, i) => this.count(g, Number(codes[i]), c, bad));
  }

  private count(g: MigratableSource, code: number, c: Counters, bad: UnmigratableRecord[]): void {
    switch (code) {
      case BACKFILL_CODES.copied:
        c.copied! += 1;
        return;
      case BACKFILL_CODES.replaced:
        c.copied! += 1;
        c.applied! += 1;
        return;
      case BACKFILL_CODES.skipped:
        c.skipped! += 1;
        return;
      case BACKFILL_CODES.vanished:
        c.skipped! += 1;
        c.vanished! += 1;
        return;
      case BACKFILL_CODES.targetWrongType:
        return void bad.push({ key: g.key, reason: UnmigratableReason.TargetWrongType, detail: g.target });
      case BACKFILL_CODES.targetBadRev:
        return void bad.push({ key: g.key, reason: UnmigratableReason.TargetInvalidRev, detail: g.target });
      case BACKFILL_CODES.idConflict:
        return void bad.push({ key: g.key, reason: UnmigratableReason.IdConflict, detail: `${g.target} holds another workspace's job` });
      case BACKFILL_CODES.badRev:
        return void bad.push({ key: g.key, reason: UnmigratableReason.InvalidRev });
      default:
        throw new Error(`backfill-batch returned unexpected ${String(code)}`);
    }
  }

  /**
   * Redis Cluster, one batch in three steps. On Redis 7+ each step is one
   * cross-slot script per master ({@link perMasterScript}; a key a master does
   * not serve any more is answered "not here" and goes through the per-key
   * step); otherwise, and for those keys, one pipeline per master with
   * per-key commands ({@link perMaster}; MOVED/ASK followed):
   *  1. read each source's fields, DUMP and PEXPIRETIME (xslot-read.lua, or
   *     HMGET + DUMP + PEXPIRETIME);
   *  2. create every target on the target's master (xslot-create.lua, or
   *     backfill-create.lua): RESTORE … ABSTTL without REPLACE
   *     (create-if-absent, bytes and expiry exact), refused past the lease
   *     deadline; the targets that already exist are read back in one more
   *     pipeline per master and, unless that settles them (equal bytes,
   *     another workspace, the target is the primary), go through
   *     {@link settleExisting};
   *  3. the index entries, after the records exist (xslot-index-add.lua, or
   *     one index-add.lua per workspace index), also fenced by the lease
   *     deadline.
   * A create is create-if-absent and fenced, so a key whose slot moves
   * between its read and its create is safe to send again by the per-key step.
   */
  private async processCluster(batch: ScanBatch, c: Counters, bad: UnmigratableRecord[]): Promise<void> {
    await assertLockHeld(this.ctx);
    const parsed = this.parse(batch.keys, bad);
    if (parsed.length === 0) return;
    const client = this.ctx.client as Cluster;
    const xs = await crossSlotBatches(client);
    const reads = await readSources(client, parsed, xs, batch.node);
    const creates: ClusterCreate[] = [];
    for (let i = 0; i < parsed.length; i++) {
      const p = parsed[i]!;
      const r = reads[i]!;
      if (r.type === 'none') {
        c.skipped! += 1;
        c.vanished! += 1;
        continue;
      }
      if (r.type !== 'hash') {
        bad.push({ key: p.key, reason: UnmigratableReason.WrongType, detail: r.type });
        continue;
      }
      const checked = checkSource(this.ctx.keys, this.o.direction, p, r.ws, r.createdAt, r.rev);
      if (isUnmigratable(checked)) bad.push(checked);
      else creates.push({ g: checked, payload: r.payload!, pexpireAt: r.pexpire > 0 ? r.pexpire : 0 });
    }
    if (creates.length === 0) return;
    if (this.o.dryRun) {
      const exists = await perMaster(
        client,
        creates,
        (x) => x.g.target,
        1,
        (pipe, x) => pipe.exists(x.g.target),
      );
      exists.forEach((r) => (Number(valueOf(r[0]!)) === 0 ? (c.copied! += 1) : (c.skipped! += 1)));
      return;
    }
    const deadline = leaseDeadline(this.ctx);
    const made = await createTargets(client, creates, deadline, xs);
    const codes = new Array<number>(creates.length);
    const existing: number[] = [];
    made.forEach((created, i) => {
      if (created) codes[i] = BACKFILL_CODES.copied;
      else existing.push(i);
    });
    if (existing.length > 0)
      await this.settleExistingBatch(
        client,
        existing.map((i) => creates[i]!),
        existing,
        codes,
      );
    const indexed = new Map<string, Array<string | number>>();
    creates.forEach((x, i) => {
      this.count(x.g, codes[i]!, c, bad);
      if (codes[i]! < 0 || x.g.index === null) return;
      let members = indexed.get(x.g.index);
      if (!members) indexed.set(x.g.index, (members = []));
      members.push(x.g.score, x.g.jobId);
    });
    await addIndexEntries(
      client,
      [...indexed].map(([index, members]) => ({ index, members })),
      deadline,
      xs,
    );
  }

  /**
   * Targets that already existed: one pipeline per master reads TYPE, the
   * owner, rev, DUMP and PEXPIRETIME of each. Settled here without another
   * round trip: not a hash, another workspace's job (an id conflict, never
   * touched), the same bytes and expiry as the source, or (mode 'target') a
   * primary that stays. The rest (vanished meanwhile, or a source that must
   * win over a different target) go through {@link settleExisting}.
   */
  private async settleExistingBatch(client: Cluster, items: ClusterCreate[], at: number[], codes: number[]): Promise<void> {
    const reads = await perMaster(
      client,
      items,
      (x) => x.g.target,
      4,
      (pipe, x) => pipe.type(x.g.target).dumpBuffer(x.g.target).pexpiretime(x.g.target).hmget(x.g.target, JobField.WorkspaceId, JobField.Rev),
    );
    const slow: number[] = [];
    items.forEach((x, k) => {
      const type = valueOf<string>(reads[k]![0]!);
      const payload = valueOf<Buffer | null>(reads[k]![1]!);
      const pexpire = Number(valueOf(reads[k]![2]!));
      const [oErr, oVal] = reads[k]![3]!;
      if (type === 'none') return void slow.push(k);
      if (type !== 'hash') return void (codes[at[k]!] = BACKFILL_CODES.targetWrongType);
      if (oErr) throw oErr;
      const [owner = null, rev = null] = oVal as Array<string | null>;
      if (owner !== null && owner !== x.g.workspaceId) return void (codes[at[k]!] = BACKFILL_CODES.idConflict);
      if (payload !== null && payload.equals(x.payload) && (pexpire > 0 ? pexpire : 0) === x.pexpireAt) return void (codes[at[k]!] = BACKFILL_CODES.skipped);
      if (this.modeOf(x.g.workspaceId) === 'target')
        return void (codes[at[k]!] = rev === null || /^[0-9]*$/.test(rev) ? BACKFILL_CODES.skipped : BACKFILL_CODES.targetBadRev);
      slow.push(k);
    });
    // Rare (a rerun over changed records, a record expiring meanwhile): one record at a time, bounded.
    await mapLimit(slow, PER_KEY_CONCURRENCY, async (k) => {
      codes[at[k]!] = await this.settleExisting(items[k]!.g);
    });
  }

  /**
   * An existing target on a cluster, where no script spans source and target.
   * Mode 'target': it is the primary and stays. Mode 'source': replace it
   * with a compare-and-swap against what was read, then re-read the source;
   * a live write in between changes one of the two and the loop goes again.
   * Returns a backfill-batch code.
   */
  private async settleExisting(g: MigratableSource): Promise<number> {
    const client = this.ctx.client;
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const [target, source] = await Promise.all([readRecord(client, g.target), readRecord(client, g.key)]);
      if (source.type === 'none') return BACKFILL_CODES.vanished;
      if (source.type !== 'hash' || !/^[0-9]*$/.test(rawRev(source.fields))) return BACKFILL_CODES.badRev;
      if (target.type === 'none') {
        // Expired or deleted meanwhile: the create-if-absent path applies again.
        const snap = snapshotOf(source)!;
        const made = await callScript<number>(client, ScriptName.BackfillCreate, [
          g.target,
          leaseDeadline(this.ctx),
          snap.pexpireAt > 0 ? snap.pexpireAt : 0,
          'fields',
          ...snap.fields,
        ]);
        if (made === BackfillCreateReply.created) return BACKFILL_CODES.copied;
        continue;
      }
      if (target.type !== 'hash') return BACKFILL_CODES.targetWrongType;
      const owner = snapshotField({ rev: 0, pexpireAt: 0, fields: target.fields }, JobField.WorkspaceId)?.toString();
      if (owner !== undefined && owner !== g.workspaceId) return BACKFILL_CODES.idConflict;
      if (sameRecord(source, target)) return BACKFILL_CODES.skipped;
      if (this.modeOf(g.workspaceId) === 'target') return /^[0-9]*$/.test(rawRev(target.fields)) ? BACKFILL_CODES.skipped : BACKFILL_CODES.targetBadRev;
      const replaced = await callScript<number>(client, ScriptName.RepairCasOneKey, [
        g.target,
        'd',
        leaseDeadline(this.ctx),
        'replace',
        'hash',
        rawRev(target.fields),
        digestOf(target.fields),
        source.pexpireAt > 0 ? source.pexpireAt : 0,
        0,
        '',
        g.workspaceId,
        ...source.fields,
      ]);
      if (replaced === RepairCasReply.idConflict) return BACKFILL_CODES.idConflict;
      if (replaced !== RepairCasReply.done) continue;
      // The target now holds what the source held a moment ago; if the source moved since, go again.
      const again = await readRecord(client, g.key);
      if (again.type === 'hash' && digestOf(again.fields) === digestOf(source.fields) && again.pexpireAt === source.pexpireAt) return BACKFILL_CODES.replaced;
      if (again.type === 'none') return BACKFILL_CODES.replaced;
    }
    // Still moving after several rounds: live writes are mirroring it; verify checks it.
    return BACKFILL_CODES.skipped;
  }
}

/** Same content (bytes) and the same expiry. */
function sameRecord(a: RawRecord, b: RawRecord): boolean {
  return a.pexpireAt === b.pexpireAt && digestOf(a.fields) === digestOf(b.fields);
}

/** One source record as the cluster read saw it. */
interface SourceRead {
  /** 'hash', 'none' or the key's type. */
  type: string;
  ws: string | null;
  createdAt: string | null;
  rev: string | null;
  /** The DUMP payload (a hash only). */
  payload: Buffer | null;
  /** PEXPIRETIME. */
  pexpire: number;
}

const SOURCE_FIELDS = [JobField.WorkspaceId, JobField.CreatedAt, JobField.Rev];

/**
 * Step 1 of a cluster batch: what each source holds. Cross-slot: one
 * xslot-read.lua on the master that scanned them; per key (the fallback, and every key of a
 * per-key run): HMGET + DUMP + PEXPIRETIME pipelined per master.
 */
async function readSources(client: Cluster, parsed: ParsedSource[], xs: boolean, node: Redis): Promise<SourceRead[]> {
  const out = new Array<SourceRead>(parsed.length);
  let left = parsed.map((_, i) => i);
  if (xs) {
    // The keys came from this master's SCAN: asked there without routing each; one it does not serve (any more) is answered 'x'.
    ensureScripts(node);
    const reply = await callScript<Array<Buffer | null>>(
      node,
      ScriptName.XslotRead,
      [SOURCE_FIELDS.length, ...SOURCE_FIELDS, ...parsed.map((p) => p.key)],
      true,
    );
    left = [];
    parsed.forEach((_, i) => {
      const r = decodeSourceRow(reply[2 * i]!, reply[2 * i + 1] ?? null);
      if (r) out[i] = r;
      else left.push(i);
    });
  }
  if (left.length === 0) return out;
  const reads = await perMaster(
    client,
    left.map((i) => parsed[i]!),
    (p) => p.key,
    3,
    (pipe, p) =>
      pipe
        .hmget(p.key, ...SOURCE_FIELDS)
        .dumpBuffer(p.key)
        .pexpiretime(p.key),
  );
  for (let k = 0; k < left.length; k++) {
    const p = parsed[left[k]!]!;
    const [[hErr, hVal], [dErr, payload], [, pexpire]] = reads[k] as [Reply, Reply, Reply];
    let r: SourceRead;
    if (hErr) {
      if (!/^WRONGTYPE/.test(hErr.message)) throw hErr;
      r = { type: await client.type(p.key), ws: null, createdAt: null, rev: null, payload: null, pexpire: -2 };
    } else {
      if (dErr) throw dErr;
      const [ws = null, createdAt = null, rev = null] = hVal as Array<string | null>;
      const gone = payload === null || Number(pexpire) === -2;
      r = { type: gone ? 'none' : 'hash', ws, createdAt, rev, payload: gone ? null : (payload as Buffer), pexpire: Number(pexpire) };
    }
    out[left[k]!] = r;
  }
  return out;
}

/** One xslot-read.lua row and payload (see the script header); null for 'x', a key this master does not serve. */
function decodeSourceRow(row: Buffer, payload: Buffer | null): SourceRead | null {
  const tag = row[0];
  if (tag === XslotReply.notHere) return null;
  if (tag === 0x6e /* n */) return { type: 'none', ws: null, createdAt: null, rev: null, payload: null, pexpire: -2 };
  if (tag === 0x74 /* t */) return { type: row.toString('utf8', 1), ws: null, createdAt: null, rev: null, payload: null, pexpire: -2 };
  const colon = row.indexOf(COLON, 1);
  const pexpire = Number(row.toString('latin1', 1, colon));
  const [ws = null, createdAt = null, rev = null] = decodeFieldsAt(row, colon + 1, SOURCE_FIELDS.length);
  return { type: 'hash', ws, createdAt, rev, payload, pexpire };
}

/**
 * Step 2 of a cluster batch: creates each absent target (RESTORE ABSTTL, no
 * REPLACE), fenced by the lease deadline; true where it was created, false
 * where the target exists. Cross-slot: one xslot-create.lua per master; per
 * key: backfill-create.lua pipelined per master.
 */
async function createTargets(client: Cluster, creates: ClusterCreate[], deadline: number | string, xs: boolean): Promise<boolean[]> {
  const out = new Array<boolean>(creates.length);
  let left = creates.map((_, i) => i);
  if (xs) {
    const { replies, rest } = await perMasterScript(
      client,
      creates,
      (x) => x.g.target,
      async (node, group) => {
        const args: Array<string | number | Buffer> = [deadline];
        for (const x of group) args.push(x.g.target, x.pexpireAt, x.payload);
        const codes = await callScript<number[]>(node, ScriptName.XslotCreate, args);
        return codes.map((code) => (Number(code) === XslotCreateReply.notHere ? null : Number(code) === XslotCreateReply.created));
      },
    );
    replies.forEach((r, i) => r !== undefined && (out[i] = r));
    left = rest;
  }
  if (left.length === 0) return out;
  const made = await perMaster(
    client,
    left.map((i) => creates[i]!),
    (x) => x.g.target,
    1,
    (pipe, x) =>
      void (pipe as unknown as Record<string, (a: unknown[]) => unknown>)[ScriptName.BackfillCreate]!([x.g.target, deadline, x.pexpireAt, 'dump', x.payload]),
  );
  made.forEach((r, k) => (out[left[k]!] = Number(valueOf(r[0]!)) === BackfillCreateReply.created));
  return out;
}

/**
 * Step 3 of a cluster batch: the index entries of the records created or
 * kept, fenced by the lease deadline. Cross-slot: one xslot-index-add.lua per
 * master for all its indexes; per index: index-add.lua pipelined per master.
 */
async function addIndexEntries(
  client: Cluster,
  adds: Array<{ index: string; members: Array<string | number> }>,
  deadline: number | string,
  xs: boolean,
): Promise<void> {
  let left = adds.map((_, i) => i);
  if (xs) {
    const { rest } = await perMasterScript(
      client,
      adds,
      (a) => a.index,
      async (node, group) => {
        const args: Array<string | number> = [deadline];
        for (const a of group) args.push(a.index, a.members.length / 2, ...a.members);
        const added = await callScript<number[]>(node, ScriptName.XslotIndexAdd, args);
        return added.map((n) => (Number(n) === XslotIndexAddReply.notHere ? null : Number(n)));
      },
    );
    left = rest;
  }
  if (left.length === 0) return;
  const added = await perMaster(
    client,
    left.map((i) => adds[i]!),
    (a) => a.index,
    1,
    (pipe, a) => void (pipe as unknown as Record<string, (a: unknown[]) => unknown>)[ScriptName.IndexAdd]!([a.index, deadline, ...a.members]),
  );
  for (const r of added) valueOf(r[0]!);
}
