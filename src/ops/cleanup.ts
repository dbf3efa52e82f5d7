/**
 * `cleanup`: read-new → new-only, then delete the legacy keys that v2 provably
 * holds (DESIGN §5). A dry run unless `execute`.
 *
 * Order of an `--execute` run:
 *  1. gates (soak in read-new, clean verify; `--force --reason` overrides);
 *  2. read-new → new-only with legacy_complete=0 in the same fenced step (in
 *     new-only, a resumed run re-marks legacy_complete=0, fenced, and makes no
 *     transition);
 *  3. wait out the settle window: until then a writer holding the cached
 *     read-new phase may still mirror into legacy and would re-create a key;
 *  4. convert the bare references on the pending list (DESIGN §6);
 *  5. SCAN `keys.legacyPattern` only (checkpoint op `cleanup`, resumable),
 *     and for each key: parse it with keys.parseLegacy (else keep), read the
 *     legacy workspace/rev, read the v2 rev, then the single-key script
 *     cleanup-unlink.lua UNLINKs the legacy key only if it is still a hash of
 *     that workspace with rev ≤ the v2 rev. Everything else is kept and
 *     reported: unmigratable records, foreign key types, records v2 lacks or
 *     holds at a lower rev;
 *  6. store a CleanupSummary in last_cleanup (fenced).
 *
 * It never touches `<p>:job:*`: the only pattern it scans is the legacy one and
 * {@link assertLegacyKey} refuses any key that does not parse as legacy.
 */
import { OrchError, ExitCode } from '../core/errors.js';
import { describeInput } from '../core/ids.js';
import { JobField, parseRev } from '../core/job.js';
import type { Keyspace } from '../core/keys.js';
import { Phase } from '../core/phase.js';
import { callScript, ScriptName } from '../core/scripts.js';
import { StateField, type MigrationState } from '../core/state.js';
import { loadCheckpoint, type Counters } from './checkpoint.js';
import { fenceOf, type OpContext, type ProgressFn } from './context.js';
import { estimateLayout } from './count.js';
import { enforceGates, gatesFor, type GateStatus } from './gates.js';
import { checkSource, isUnmigratable, parseSourceKey } from './migratable.js';
import { convertQueueRefs, type QueueConversion } from './queue-refs.js';
import { runScan, type ScanBatch } from './scan-engine.js';
import type { CleanupSummary } from './summaries.js';
import { runTransition } from './transition.js';

/** Checkpoint name of cleanup's scan. */
export const CLEANUP_OP = 'cleanup';

/** Why a legacy key was kept. */
export const KeepReason = {
  /** The key's suffix is not a valid job id. */
  InvalidJobId: 'invalid-job-id',
  /** Not a hash (a string, list, ... under the legacy pattern). */
  ForeignType: 'foreign-type',
  /** The record names no workspace. */
  MissingWorkspace: 'missing-workspace',
  /** The record's workspace_id fails the workspace rule. */
  InvalidWorkspace: 'invalid-workspace',
  /** The legacy rev field is not an integer. */
  InvalidRev: 'invalid-rev',
  /** v2 has no record for this job. */
  V2Missing: 'v2-missing',
  /** The v2 key exists but is not a hash. */
  V2ForeignType: 'v2-foreign-type',
  /** The v2 rev field is not an integer. */
  V2InvalidRev: 'v2-invalid-rev',
  /** v2 holds the record at a lower rev than legacy. */
  V2Older: 'v2-older',
  /** The legacy record changed between the read and the delete (workspace differs). */
  Changed: 'changed',
} as const;
export type KeepReason = (typeof KeepReason)[keyof typeof KeepReason];

/** One kept key, for the report. */
export interface KeptKey {
  key: string;
  reason: KeepReason;
  /** Bounded, printable detail (workspace, revs, type). */
  detail?: string;
}

/** Options of {@link cleanup}. */
export interface CleanupOptions {
  /** Delete for real; without it nothing is written (a dry run, no lock needed). */
  execute?: boolean;
  reason?: string;
  /** Override closed data gates (needs `reason`; recorded in the history). */
  force?: boolean;
  /** Minimum time in read-new (default 1h). */
  minSoakMs?: number;
  /** Freshness the verify gate requires (default 1h). */
  maxVerifyAgeMs?: number;
  /** Keys per second, all masters together (default unlimited). */
  rate?: number | null;
  batchSize?: number;
  concurrency?: number;
  /** Ignore the cleanup checkpoint and scan from the start. */
  restart?: boolean;
  onProgress?: ProgressFn;
  /** Called for every kept key (the CLI writes them to --report). */
  onKept?: (k: KeptKey) => void;
}

/** Result of {@link cleanup} (`--json`: dryRun, deleted, kept, phase, ok, ...). */
export interface CleanupResult {
  /** True when the run completed and nothing was kept (a clean finish). */
  ok: boolean;
  dryRun: boolean;
  /** Phase after the run. */
  phase: Phase;
  /** Phase before the run. */
  from: Phase;
  /** Epoch after the run. */
  epoch: number;
  /** read-new → new-only happened in this run. */
  transitioned: boolean;
  /** Legacy keys scanned (cumulative across resumed runs). */
  scanned: number;
  /**
   * Legacy keys deleted (cumulative). On a dry run, the keys that would be
   * deleted: an estimate from SCAN, which can return a key twice while the
   * keyspace is resized; an --execute run counts each delete exactly once.
   */
  deleted: number;
  /** Legacy keys kept (cumulative). */
  kept: number;
  /** Keys that expired or vanished between the scan and the check. */
  gone: number;
  keptByReason: Record<string, number>;
  /** Up to 20 kept keys. */
  keptSamples: KeptKey[];
  queue: QueueConversion;
  /** Every node was scanned to the end. */
  complete: boolean;
  resumed: boolean;
  durationMs: number;
  keysPerSecond: number;
  /** The gates as evaluated (on a dry run, closed ones are reported, not enforced). */
  gates: GateStatus[];
  forced: string[];
  /** Dry run only: the first closed gate `--execute` would be refused by. */
  blockedBy: { gate: string; reason: string; opensWith: string | null } | null;
  /** How long the run waited for the settle window. */
  settleWaitMs: number;
}

const SAMPLE_LIMIT = 20;
const KEPT_DEDUPE_LIMIT = 100_000;
const KEPT_PREFIX = 'kept.';

/**
 * The invariant that keeps v2 safe: a key cleanup deletes must be a legacy key
 * (`<p>:jobs:<valid job id>`) and must not parse as a v2 key. Throws (an
 * internal error, exit 1) otherwise; the run stops before touching it.
 */
export function assertLegacyKey(keys: Keyspace, key: string): string {
  const jobId = keys.parseLegacy(key);
  if (jobId === null || keys.parseV2(key) !== null || keys.parseIndex(key) !== null || !key.startsWith(`${keys.prefix}:jobs:`)) {
    throw new OrchError(`Refusing to delete ${describeInput(key)}: it is not a legacy job key`, { code: 'ERR_CLEANUP_INVARIANT', exitCode: ExitCode.Problems });
  }
  return jobId;
}

interface Classified {
  key: string;
  jobId: string;
  workspaceId: string;
  legacyRev: number;
  target: string;
}

/** Per-batch work: classify every key, then delete the covered ones (unless a dry run). */
async function processBatch(
  ctx: OpContext,
  batch: ScanBatch,
  execute: boolean,
  keep: (k: KeptKey) => boolean,
): Promise<Counters> {
  const { keys, client } = ctx;
  const c: Counters = { deleted: 0, kept: 0, gone: 0 };
  const kept = (k: KeptKey): void => {
    // SCAN may return a key twice while the keyspace is resized: count a kept key once.
    if (!keep(k)) return;
    c.kept = (c.kept ?? 0) + 1;
    c[KEPT_PREFIX + k.reason] = (c[KEPT_PREFIX + k.reason] ?? 0) + 1;
  };

  // 1. Key names: only valid legacy keys go further.
  const named: Array<{ key: string; jobId: string }> = [];
  for (const key of batch.keys) {
    const parsed = parseSourceKey(keys, 'forward', key);
    if (isUnmigratable(parsed)) kept({ key, reason: KeepReason.InvalidJobId, ...(parsed.detail ? { detail: parsed.detail } : {}) });
    else named.push({ key, jobId: parsed.jobId });
  }
  if (named.length === 0) return c;

  // 2. The legacy records (on the node they came from).
  const p = batch.node.pipeline();
  for (const n of named) {
    p.type(n.key);
    p.hmget(n.key, JobField.WorkspaceId, JobField.Rev);
  }
  const replies = (await p.exec()) ?? [];
  const candidates: Classified[] = [];
  named.forEach((n, i) => {
    const [tErr, type] = replies[i * 2] ?? [null, null];
    const [hErr, vals] = replies[i * 2 + 1] ?? [null, null];
    if (tErr) throw tErr;
    if (type === 'none') {
      c.gone = (c.gone ?? 0) + 1;
      return;
    }
    if (type !== 'hash') {
      kept({ key: n.key, reason: KeepReason.ForeignType, detail: String(type) });
      return;
    }
    if (hErr) throw hErr;
    const [ws, rev] = (vals as Array<string | null>) ?? [null, null];
    const checked = checkSource(keys, 'forward', { key: n.key, jobId: n.jobId, keyWorkspace: null }, ws, null, rev);
    if (isUnmigratable(checked)) {
      const reason =
        checked.reason === 'missing-workspace' ? KeepReason.MissingWorkspace : checked.reason === 'invalid-rev' ? KeepReason.InvalidRev : KeepReason.InvalidWorkspace;
      kept({ key: n.key, reason, ...(checked.detail ? { detail: checked.detail } : {}) });
      return;
    }
    candidates.push({ key: n.key, jobId: n.jobId, workspaceId: checked.workspaceId, legacyRev: checked.rev, target: checked.target });
  });

  // 3. The v2 rev of each (v2 keys live on any node: through the client).
  const v2 = await Promise.all(
    candidates.map(async (r) => {
      const type = await client.type(r.target);
      if (type !== 'hash') return { type, rev: null as string | null };
      return { type, rev: await client.hget(r.target, JobField.Rev) };
    }),
  );

  // 4. Delete what v2 covers; keep the rest.
  await Promise.all(
    candidates.map(async (r, i) => {
      const v = v2[i]!;
      if (v.type === 'none') return kept({ key: r.key, reason: KeepReason.V2Missing, detail: `workspace ${r.workspaceId}` });
      if (v.type !== 'hash') return kept({ key: r.key, reason: KeepReason.V2ForeignType, detail: `${r.target} is a ${v.type}` });
      const v2Rev = parseRev(v.rev);
      if (v2Rev === null) return kept({ key: r.key, reason: KeepReason.V2InvalidRev, detail: describeInput(v.rev ?? '') });
      if (v2Rev < r.legacyRev) return kept({ key: r.key, reason: KeepReason.V2Older, detail: `legacy rev ${r.legacyRev} > v2 rev ${v2Rev}` });
      if (!execute) {
        c.deleted = (c.deleted ?? 0) + 1;
        return;
      }
      assertLegacyKey(keys, r.key);
      const code = await callScript<number>(client, ScriptName.CleanupUnlink, [r.key, v2Rev, r.workspaceId]);
      switch (code) {
        case 1:
          c.deleted = (c.deleted ?? 0) + 1;
          return;
        case 0:
          return kept({ key: r.key, reason: KeepReason.V2Older, detail: `legacy rev rose above v2 rev ${v2Rev}` });
        case -1:
          return kept({ key: r.key, reason: KeepReason.ForeignType });
        case -2:
          return kept({ key: r.key, reason: KeepReason.InvalidRev });
        case -3:
          return kept({ key: r.key, reason: KeepReason.Changed, detail: 'workspace_id changed' });
        case -4:
          c.gone = (c.gone ?? 0) + 1;
          return;
        default:
          throw new Error(`cleanup-unlink returned unexpected ${String(code)}`);
      }
    }),
  );
  return c;
}

function keptByReason(counters: Counters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(counters)) if (k.startsWith(KEPT_PREFIX) && v > 0) out[k.slice(KEPT_PREFIX.length)] = v;
  return out;
}

/**
 * Runs cleanup. Throws GateError (exit 3) when `execute` is refused by a gate;
 * a dry run reports closed data gates in `blockedBy` instead.
 */
export async function cleanup(ctx: OpContext, opts: CleanupOptions = {}): Promise<CleanupResult> {
  const startedAt = Date.now();
  const execute = opts.execute === true;
  let state: MigrationState = await ctx.state.read();
  const from = state.phase;
  const now = await ctx.state.serverTime();
  const gateInputs = {
    ...(opts.minSoakMs === undefined ? {} : { minSoakMs: opts.minSoakMs }),
    ...(opts.maxVerifyAgeMs === undefined ? {} : { maxVerifyAgeMs: opts.maxVerifyAgeMs }),
  };
  const gates = gatesFor('cleanup', { state, now, ...gateInputs });
  // The phase precondition is enforced even on a dry run; data gates only block --execute.
  enforceGates(
    gates.filter((g) => !g.forceable),
    {},
  );
  let forced: string[];
  let blockedBy: CleanupResult['blockedBy'] = null;
  let transitioned = false;
  let restart = opts.restart ?? false;
  let settleWaitMs = 0;

  if (execute) {
    forced = enforceGates(gates, { force: opts.force ?? false, reason: opts.reason ?? '' });
    if (state.phase === Phase.ReadNew) {
      // legacy_complete=0 in the same fenced step as the phase change: before anything is deleted.
      await runTransition(ctx, {
        command: 'cleanup',
        to: () => Phase.NewOnly,
        ...(opts.reason === undefined ? {} : { reason: opts.reason }),
        force: opts.force ?? false,
        gates: gateInputs,
        state,
        extra: () => ({ [StateField.LegacyComplete]: '0' }),
      });
      transitioned = true;
      opts.onProgress?.({ stage: 'cleanup', done: 0, total: null, totalIsEstimate: false, message: 'moved read-new → new-only (legacy marked incomplete)' });
      // A new pass: an old checkpoint (from before a rollback) must not make this run skip keys.
      restart = true;
      state = await ctx.state.read();
    } else {
      await ctx.state.setFields(fenceOf(ctx), { [StateField.LegacyComplete]: '0' });
      // Resume only a checkpoint of this new-only epoch; an older one (before a rollback) is stale.
      const cp = await loadCheckpoint(ctx.client, ctx.keys, CLEANUP_OP);
      if (cp.meta !== null && cp.meta.epoch !== state.epoch) restart = true;
    }
    const before = Date.now();
    await ctx.state.waitForSettle(state, {
      signal: ctx.signal,
      onWait: (ms) =>
        opts.onProgress?.({ stage: 'cleanup', done: 0, total: null, totalIsEstimate: false, message: `waiting ${(ms / 1000).toFixed(1)}s for the settle window (writers drop the read-new phase)` }),
    });
    settleWaitMs = Date.now() - before;
  } else {
    const closed = gates.find((g) => !g.open && !(opts.force && g.forceable));
    if (closed) blockedBy = { gate: closed.name, reason: closed.reason, opensWith: closed.opensWith };
    forced = opts.force ? gates.filter((g) => !g.open && g.forceable).map((g) => g.name) : [];
  }

  // Pending references first: once legacy records go, a bare reference cannot be resolved.
  const queue = await convertQueueRefs(ctx.client, ctx.keys, { dryRun: !execute });

  const samples: KeptKey[] = [];
  // Kept keys are expected to be few; remembering them (bounded) makes their count exact within a run.
  const seenKept = new Set<string>();
  const onKept = (k: KeptKey): boolean => {
    if (seenKept.has(k.key)) return false;
    if (seenKept.size < KEPT_DEDUPE_LIMIT) seenKept.add(k.key);
    if (samples.length < SAMPLE_LIMIT) samples.push(k);
    opts.onKept?.(k);
    return true;
  };
  const total = await estimateLayout(ctx.client, ctx.keys, 'legacy').catch(() => null);
  let summaryWritten = false;
  const writeSummary = async (s: CleanupSummary): Promise<void> => {
    if (!execute || summaryWritten) return;
    summaryWritten = true;
    await ctx.state.setFields(fenceOf(ctx), { [StateField.LastCleanup]: JSON.stringify(s) });
  };

  let scan;
  try {
    scan = await runScan(ctx.client, ctx.keys, {
      // A dry run keeps no checkpoint: it must not disturb a resumable --execute.
      op: execute ? CLEANUP_OP : null,
      match: ctx.keys.legacyPattern,
      ...(opts.batchSize === undefined ? {} : { batchSize: opts.batchSize }),
      ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
      rate: opts.rate ?? null,
      restart,
      signal: ctx.signal,
      epoch: state.epoch,
      meta: { execute },
      process: (batch) => processBatch(ctx, batch, execute, onKept),
      onProgress: (p) =>
        opts.onProgress?.({ stage: execute ? 'cleanup' : 'cleanup (dry run)', done: p.scanned, total, totalIsEstimate: true }),
    });
  } catch (err) {
    // Interrupted or failed: record how far it got (from the saved checkpoint), so status can say "resume".
    const cp = execute ? await loadCheckpoint(ctx.client, ctx.keys, CLEANUP_OP).catch(() => null) : null;
    const sums: Counters = {};
    for (const n of cp?.nodes ?? []) for (const [k, v] of Object.entries(n.counters)) sums[k] = (sums[k] ?? 0) + v;
    await writeSummary({
      epoch: state.epoch,
      startedAt,
      finishedAt: Date.now(),
      dryRun: false,
      complete: false,
      scanned: sums.scanned ?? 0,
      deleted: sums.deleted ?? 0,
      kept: sums.kept ?? 0,
      keptByReason: keptByReason(sums),
      queueConverted: queue.converted,
      queueUnresolved: queue.unresolved,
      durationMs: Date.now() - startedAt,
      resumed: false,
    }).catch(() => undefined);
    throw err;
  }

  const counters = scan.counters;
  const durationMs = Date.now() - startedAt;
  const scanned = counters.scanned ?? 0;
  const result: CleanupResult = {
    ok: scan.complete && (counters.kept ?? 0) === 0,
    dryRun: !execute,
    phase: state.phase,
    from,
    epoch: state.epoch,
    transitioned,
    scanned,
    deleted: counters.deleted ?? 0,
    kept: counters.kept ?? 0,
    gone: counters.gone ?? 0,
    keptByReason: keptByReason(counters),
    keptSamples: samples,
    queue,
    complete: scan.complete,
    resumed: scan.resumed,
    durationMs,
    keysPerSecond: durationMs > 0 ? Math.round(((scan.runCounters.scanned ?? 0) * 1000) / durationMs) : 0,
    gates,
    forced,
    blockedBy,
    settleWaitMs,
  };
  await writeSummary({
    epoch: state.epoch,
    startedAt,
    finishedAt: Date.now(),
    dryRun: false,
    complete: scan.complete,
    scanned,
    deleted: result.deleted,
    kept: result.kept,
    keptByReason: result.keptByReason,
    queueConverted: queue.converted,
    queueUnresolved: queue.unresolved,
    durationMs,
    resumed: scan.resumed,
  });
  return result;
}
