/**
 * `backfill`: copies every legacy record into v2 (record + index entry), or in
 * reverse (v2 → legacy, used by rollback from new-only), on the scan engine.
 *
 * How data moves (DESIGN §4):
 *  - single node: one round trip per SCAN batch after a pipelined HMGET of
 *    workspace_id/created_at/rev; the backfill-batch script COPYs into absent
 *    targets (COPY without REPLACE keeps bytes and TTL) and ZADDs the index.
 *    Targets that exist and are older (or differ at the same rev) go through
 *    apply-if-newer, the one way data reaches an existing mirror.
 *  - Redis Cluster: source and target live in different slots, so every record
 *    is read as a snapshot (HGETALL + PEXPIRETIME as bytes) and written with
 *    apply-if-newer plus an idempotent ZADD; the cluster client autopipelines.
 *
 * Unmigratable records are counted and listed, never touched; the run then
 * exits 1. Resumes from the checkpoint by default.
 */
import type { Redis } from 'ioredis';
import { ExitCode } from '../core/errors.js';
import { JobField, parseRev } from '../core/job.js';
import { readRecord } from './record-compare.js';
import { Phase } from '../core/phase.js';
import { applyIfNewer, ApplyOutcome, snapshotField, type Snapshot } from '../core/protocol.js';
import { isCluster } from '../core/redis.js';
import { callScript, ScriptName } from '../core/scripts.js';
import { StateField } from '../core/state.js';
import type { Counters } from './checkpoint.js';
import { fenceOf, type OpContext, type ProgressFn } from './context.js';
import { estimateLayout } from './count.js';
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
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, mapLimit, PER_KEY_CONCURRENCY, runScan, type NodeScanResult, type ScanBatch } from './scan-engine.js';
import type { BackfillSummary } from './summaries.js';

/** Checkpoint / operation name of a direction. */
export function backfillOpName(direction: Direction): 'backfill' | 'reverse-backfill' {
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
  /** Ignore the checkpoint and start over. */
  restart?: boolean;
  /** Classify only: write nothing (no copies, no checkpoint, no summary). */
  dryRun?: boolean;
  /** Only the masters of shard i of n. */
  shard?: { index: number; count: number } | null;
  /** Override forceable gates (backfill has none today; kept for symmetry). */
  force?: boolean;
  reason?: string;
  /** Most unmigratable records listed in the result (all are counted). Default 1000. */
  maxListed?: number;
  onProgress?: ProgressFn;
}

/** Counters of one run. */
export interface BackfillCounts {
  scanned: number;
  copied: number;
  skipped: number;
  unmigratable: number;
}

/** Result of {@link backfill} (`--json`). */
export interface BackfillResult extends BackfillCounts {
  direction: Direction;
  op: string;
  dryRun: boolean;
  /** Total wall time of the operation, settle wait included. */
  durationMs: number;
  /** Keys scanned by this run per second of scanning. */
  keysPerSecond: number;
  /** At least one node resumed from a checkpoint. */
  resumed: boolean;
  /** Full, un-sharded, non-dry run that finished every node. */
  complete: boolean;
  /** This run's share of the counters (the top-level ones include resumed progress). */
  thisRun: BackfillCounts;
  /** Records that vanished between SCAN and copy (expired or deleted); counted in skipped. */
  vanished: number;
  /** Records copied through apply-if-newer because the target already existed but was older. */
  applied: number;
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
}

function counts(c: Counters): BackfillCounts {
  return { scanned: c.scanned ?? 0, copied: c.copied ?? 0, skipped: c.skipped ?? 0, unmigratable: c.unmigratable ?? 0 };
}

/** Runs a backfill. Throws GateError (3), InterruptedError (130), RedisUnavailableError (5). */
export async function backfill(ctx: OpContext, opts: BackfillOptions = {}): Promise<BackfillResult> {
  const startedAt = Date.now();
  const direction: Direction = opts.direction ?? 'forward';
  const op = backfillOpName(direction);
  const dryRun = opts.dryRun ?? false;
  const stage = direction === 'forward' ? 'backfill' : 'reverse backfill';
  const state = await ctx.state.read();
  const now = await ctx.state.serverTime();
  const forced = enforceGates(gatesFor('backfill', { state, now }), { force: opts.force ?? false, reason: opts.reason ?? '' });

  // Writers may act on the previous phase until the settle window is over.
  const settleStart = Date.now();
  await ctx.state.waitForSettle(state, {
    signal: ctx.signal,
    onWait: (ms) => opts.onProgress?.({ stage, done: 0, total: null, totalIsEstimate: true, message: `waiting ${(ms / 1000).toFixed(1)}s for the settle window (writers may still act on the previous phase)` }),
  });
  const settleWaitMs = Date.now() - settleStart;

  const maxListed = opts.maxListed ?? 1000;
  const listed: UnmigratableRecord[] = [];
  let truncated = false;
  const note = (r: UnmigratableRecord): void => {
    if (listed.length < maxListed) listed.push(r);
    else truncated = true;
  };

  const estimate = await estimateLayout(ctx.client, ctx.keys, direction === 'forward' ? 'legacy' : 'v2').catch(() => null);
  const shardShare = opts.shard && opts.shard.count > 1 ? 1 / opts.shard.count : 1;
  const total = estimate === null ? null : Math.round(estimate * shardShare);
  let lastReport = 0;

  const mover = new BatchMover(ctx, direction, dryRun, note);
  const scanStart = Date.now();
  const res = await runScan(ctx.client, ctx.keys, {
    op: dryRun ? null : op,
    match: direction === 'forward' ? ctx.keys.legacyPattern : ctx.keys.v2Pattern(),
    batchSize: opts.batchSize ?? DEFAULT_BATCH_SIZE,
    concurrency: opts.concurrency ?? DEFAULT_CONCURRENCY,
    rate: opts.rate ?? null,
    restart: opts.restart ?? false,
    shard: opts.shard ?? null,
    signal: ctx.signal,
    epoch: state.epoch,
    meta: { direction, shard: opts.shard ? `${opts.shard.index}/${opts.shard.count}` : null },
    process: (batch) => mover.process(batch),
    onProgress: (p) => {
      const t = Date.now();
      if (t - lastReport < 200) return;
      lastReport = t;
      opts.onProgress?.({ stage, done: p.scanned, total: total === null ? null : Math.max(total, p.scanned), totalIsEstimate: true });
    },
  });
  const scanMs = Math.max(1, Date.now() - scanStart);
  const finishedAt = Date.now();
  const all = counts(res.counters);
  const run = counts(res.runCounters);
  const shard = opts.shard && opts.shard.count > 1 ? `${opts.shard.index}/${opts.shard.count}` : null;
  const complete = res.complete && shard === null && !dryRun;
  const result: BackfillResult = {
    ...all,
    direction,
    op,
    dryRun,
    durationMs: finishedAt - startedAt,
    keysPerSecond: Math.round((run.scanned / scanMs) * 1000),
    resumed: res.resumed,
    complete,
    thisRun: run,
    vanished: res.counters.vanished ?? 0,
    applied: res.counters.applied ?? 0,
    unmigratableRecords: listed,
    unmigratableTruncated: truncated || (listed.length < all.unmigratable && res.resumed),
    nodes: res.nodes,
    shard,
    epoch: state.epoch,
    phase: state.phase,
    settleWaitMs,
    startedAt,
    finishedAt,
    forced,
  };
  if (!dryRun) {
    const summary: BackfillSummary = {
      direction,
      epoch: state.epoch,
      startedAt,
      finishedAt,
      complete,
      scanned: all.scanned,
      copied: all.copied,
      skipped: all.skipped,
      unmigratable: all.unmigratable,
      durationMs: result.durationMs,
      keysPerSecond: result.keysPerSecond,
      resumed: res.resumed,
      shard,
    };
    const fields: Record<string, string> = { [StateField.LastBackfill]: JSON.stringify(summary) };
    // Legacy is whole again only when every v2 record made it back.
    if (direction === 'reverse' && complete && all.unmigratable === 0) fields[StateField.LegacyComplete] = '1';
    await ctx.state.setFields(fenceOf(ctx), fields);
  }
  return result;
}

/** Exit code of a finished backfill: 1 when records could not be migrated. */
export function backfillExitCode(r: BackfillResult): number {
  return r.unmigratable > 0 ? ExitCode.Problems : ExitCode.Ok;
}

const BACKFILL_CODES = { copied: 1, skipped: 0, apply: 2, targetWrongType: -1, targetBadRev: -2, vanished: -3, badRev: -4 } as const;

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
const DASH = 0x2d;

/** Decodes one read-fields-batch reply string (see the script header for the format). */
export function decodeFieldsRow(buf: Buffer, nf: number): Array<string | null> {
  const tag = buf[0];
  const row: Array<string | null> = [];
  if (tag === 0x6e /* n */) row.push('none');
  else if (tag === 0x65 /* e */) row.push('exists');
  else if (tag === 0x74 /* t */) row.push(buf.toString('utf8', 1));
  else {
    row.push('hash');
    let pos = 1;
    for (let j = 0; j < nf; j++) {
      if (buf[pos] === DASH) {
        row.push(null);
        pos += 1;
        continue;
      }
      let len = 0;
      while (pos < buf.length && buf[pos] !== COLON) len = len * 10 + (buf[pos++]! - 0x30);
      pos += 1;
      row.push(buf.toString('utf8', pos, pos + len));
      pos += len;
    }
    return row;
  }
  for (let j = 0; j < nf; j++) row.push(null);
  return row;
}

/** Moves one SCAN batch. */
class BatchMover {
  private readonly cluster: boolean;

  constructor(
    private readonly ctx: OpContext,
    private readonly direction: Direction,
    private readonly dryRun: boolean,
    private readonly note: (r: UnmigratableRecord) => void,
  ) {
    this.cluster = isCluster(ctx.client);
  }

  process(batch: ScanBatch): Promise<Counters> {
    return this.cluster ? this.processPerKey(batch) : this.processBatch(batch);
  }

  private parse(keys: string[], c: Counters): ParsedSource[] {
    const out: ParsedSource[] = [];
    for (const key of keys) {
      const p = parseSourceKey(this.ctx.keys, this.direction, key);
      if (isUnmigratable(p)) this.bad(p, c);
      else out.push(p);
    }
    return out;
  }

  private bad(r: UnmigratableRecord, c: Counters): void {
    c.unmigratable = (c.unmigratable ?? 0) + 1;
    this.note(r);
  }

  /** Single node: HMGET pipeline, then one batch script. */
  private async processBatch(batch: ScanBatch): Promise<Counters> {
    const c: Counters = { copied: 0, skipped: 0, unmigratable: 0, vanished: 0, applied: 0 };
    const parsed = this.parse(batch.keys, c);
    if (parsed.length === 0) return c;
    const node = batch.node;
    const rows = await readFieldsBatch(node, parsed.map((p) => p.key), [JobField.WorkspaceId, JobField.CreatedAt, JobField.Rev]);
    const good: MigratableSource[] = [];
    parsed.forEach((p, i) => {
      const [kind, ws, createdAt, rev] = rows[i]!;
      if (kind === 'none') {
        c.skipped! += 1;
        c.vanished! += 1;
        return;
      }
      if (kind !== 'hash') return this.bad({ key: p.key, reason: UnmigratableReason.WrongType, detail: kind ?? '?' }, c);
      const checked = checkSource(this.ctx.keys, this.direction, p, ws, createdAt, rev);
      if (isUnmigratable(checked)) this.bad(checked, c);
      else good.push(checked);
    });
    if (good.length === 0) return c;

    const stride = this.direction === 'forward' ? 3 : 2;
    const keyArgs: string[] = [];
    const argv: Array<string | number> = [stride, this.dryRun ? '1' : '0'];
    for (const g of good) {
      keyArgs.push(g.key, g.target);
      if (stride === 3) {
        keyArgs.push(g.index!);
        argv.push(g.score, g.jobId);
      }
    }
    const codes = await callScript<number[]>(node, ScriptName.BackfillBatch, [keyArgs.length, ...keyArgs, ...argv]);
    const slow: MigratableSource[] = [];
    good.forEach((g, i) => {
      const code = Number(codes[i]);
      if (code === BACKFILL_CODES.copied) c.copied! += 1;
      else if (code === BACKFILL_CODES.skipped) c.skipped! += 1;
      else if (code === BACKFILL_CODES.vanished) {
        c.skipped! += 1;
        c.vanished! += 1;
      } else if (code === BACKFILL_CODES.apply) {
        if (this.dryRun) c.skipped! += 1;
        else slow.push(g);
      } else if (code === BACKFILL_CODES.targetWrongType) this.bad({ key: g.key, reason: UnmigratableReason.TargetWrongType, detail: g.target }, c);
      else if (code === BACKFILL_CODES.targetBadRev) this.bad({ key: g.key, reason: UnmigratableReason.TargetInvalidRev, detail: g.target }, c);
      else this.bad({ key: g.key, reason: UnmigratableReason.InvalidRev }, c);
    });
    await Promise.all(slow.map((g) => this.applyOne(g, c)));
    return c;
  }

  /** Reads a source snapshot atomically: null when it vanished, a type name when it is not a hash. */
  private async snapshot(key: string): Promise<Snapshot | null | string> {
    const raw = await readRecord(this.ctx.client, key);
    if (raw.type === 'none') return null;
    if (raw.type !== 'hash') return raw.type;
    let rev = 0;
    for (let i = 0; i + 1 < raw.fields.length; i += 2) {
      if (raw.fields[i]!.toString() === JobField.Rev) rev = parseRev(raw.fields[i + 1]) ?? 0;
    }
    return { rev, pexpireAt: raw.pexpireAt, fields: raw.fields };
  }

  /** apply-if-newer for one record whose target already exists. */
  private async applyOne(g: MigratableSource, c: Counters): Promise<void> {
    const snap = await this.snapshot(g.key);
    if (snap === null) {
      c.skipped! += 1;
      c.vanished! += 1;
      return;
    }
    if (typeof snap === 'string') return this.bad({ key: g.key, reason: UnmigratableReason.WrongType, detail: snap }, c);
    // The record may have changed since the HMGET: check it again before it moves.
    const again = checkSource(this.ctx.keys, this.direction, g, snapshotField(snap, JobField.WorkspaceId), snapshotField(snap, JobField.CreatedAt), snapshotField(snap, JobField.Rev));
    if (isUnmigratable(again)) return this.bad(again, c);
    await this.applySnapshot(again, snap, c);
  }

  private async applySnapshot(g: MigratableSource, snap: Snapshot, c: Counters): Promise<void> {
    const index = g.index === null ? null : { key: g.index, score: g.score, member: g.jobId };
    const outcome = await applyIfNewer(this.ctx.client, g.target, snap, index);
    if (outcome === ApplyOutcome.Applied) {
      c.copied! += 1;
      c.applied! += 1;
    } else if (outcome === ApplyOutcome.Skipped) c.skipped! += 1;
    else if (outcome === ApplyOutcome.WrongType) this.bad({ key: g.key, reason: UnmigratableReason.TargetWrongType, detail: g.target }, c);
    else if (outcome === ApplyOutcome.OwnerConflict) this.bad({ key: g.key, reason: UnmigratableReason.TargetOwnerConflict, detail: g.target }, c);
    else this.bad({ key: g.key, reason: UnmigratableReason.TargetInvalidRev, detail: g.target }, c);
  }

  /**
   * Redis Cluster: source and target live in different slots, so no script can
   * span them. One pipeline on the source master reads HMGET + DUMP +
   * PEXPIRETIME of the whole batch; absent targets are created with RESTORE
   * … ABSTTL without REPLACE (create-if-absent, bytes and expiry exact), an
   * existing target (BUSYKEY) goes through apply-if-newer. The cluster client
   * autopipelines the writes per master.
   */
  private async processPerKey(batch: ScanBatch): Promise<Counters> {
    const c: Counters = { copied: 0, skipped: 0, unmigratable: 0, vanished: 0, applied: 0 };
    const parsed = this.parse(batch.keys, c);
    if (parsed.length === 0) return c;
    const pipe = batch.node.pipeline();
    for (const p of parsed) {
      pipe.hmget(p.key, JobField.WorkspaceId, JobField.CreatedAt, JobField.Rev);
      pipe.dumpBuffer(p.key);
      pipe.pexpiretime(p.key);
    }
    const replies = (await pipe.exec()) ?? [];
    await mapLimit(parsed, PER_KEY_CONCURRENCY, async (p, i) => {
      const [hErr, hVal] = replies[i * 3] ?? [new Error('no reply'), null];
      const [dErr, payload] = replies[i * 3 + 1] ?? [new Error('no reply'), null];
      const [, pexpire] = replies[i * 3 + 2] ?? [null, -2];
      if (hErr) {
        if (!/WRONGTYPE/.test(hErr.message)) throw hErr;
        const type = await this.ctx.client.type(p.key);
        return this.bad({ key: p.key, reason: UnmigratableReason.WrongType, detail: type }, c);
      }
      if (dErr) throw dErr;
      const [ws, createdAt, rev] = hVal as Array<string | null>;
      if (payload === null || Number(pexpire) === -2) {
        c.skipped! += 1;
        c.vanished! += 1;
        return;
      }
      const checked = checkSource(this.ctx.keys, this.direction, p, ws, createdAt, rev);
      if (isUnmigratable(checked)) return this.bad(checked, c);
      if (this.dryRun) {
        if ((await this.ctx.client.exists(checked.target)) === 0) c.copied! += 1;
        else c.skipped! += 1;
        return;
      }
      const at = Number(pexpire);
      try {
        if (at > 0) await this.ctx.client.restore(checked.target, at, payload as Buffer, 'ABSTTL');
        else await this.ctx.client.restore(checked.target, 0, payload as Buffer);
      } catch (err) {
        if (!(err instanceof Error) || !/BUSYKEY/.test(err.message)) throw err;
        // The target exists: only apply-if-newer may write over it.
        return this.applyOne(checked, c);
      }
      c.copied! += 1;
      if (checked.index !== null) await this.ctx.client.zadd(checked.index, checked.score, checked.jobId);
      });
    return c;
  }
}
