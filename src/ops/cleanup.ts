/**
 * `cleanup`: read-new → new-only, then delete the legacy keys that v2 provably
 * holds (docs/design.md "Cleanup"). A dry run unless `execute`.
 *
 * Order of an `--execute` run:
 *  1. gates (soak in read-new, clean verify, writers on the current epoch;
 *     each overridable by name with `--force <gate> --reason`); a `--min-soak`
 *     shorter than the default needs `--reason` and is recorded;
 *  2. read-new → new-only with legacy_complete=0 in the same fenced step (in
 *     new-only, a resumed run re-marks legacy_complete=0, fenced, and makes no
 *     transition);
 *  3. wait until every registered writer acknowledged new-only and the settle
 *     window is over: until then a writer holding read-new may still mirror
 *     into legacy and would re-create a key;
 *  4. convert the bare references on the pending list;
 *  5. SCAN `keys.legacyPattern` only (checkpoint op `cleanup`, resumable within
 *     its epoch) and delete each legacy record only if it is still a hash of
 *     its workspace with rev ≤ the v2 record's rev. On one node a batch script
 *     checks that and the operator lock atomically (cleanup-batch.lua); on a
 *     cluster the lock is checked before every batch and each key goes
 *     through cleanup-unlink.lua. Everything else is kept and recorded in the
 *     findings hash; accepted keys (`orch-migrate accept`) are kept as
 *     `accepted`, not as problems;
 *  6. store a CleanupSummary in last_cleanup (fenced).
 *
 * It never touches `<p>:job:*`: the only pattern it scans is the legacy one and
 * {@link assertLegacyKey} refuses any key that does not parse as legacy.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { ConfigError, OrchError, ExitCode } from '../core/errors.js';
import { describeInput } from '../core/ids.js';
import { JobField, parseRev } from '../core/job.js';
import type { Keyspace } from '../core/keys.js';
import { Phase } from '../core/phase.js';
import { isCluster } from '../core/redis.js';
import { callScript, ScriptName } from '../core/scripts.js';
import { StateField, type MigrationState } from '../core/state.js';
import { listWriters } from '../core/writers.js';
import { loadAccepted } from './accept.js';
import { readFieldsBatch } from './backfill.js';
import { loadCheckpoint, type Counters } from './checkpoint.js';
import { assertLockHeld, fenceOf, lockArgs, throttled, type OpContext, type ProgressFn } from './context.js';
import { estimateLayout } from './count.js';
import { FindingsStore, type Finding } from './findings.js';
import { DEFAULT_MIN_SOAK_MS, enforceGates, gatesFor, type GateStatus } from './gates.js';
import type { GuardController, ThrottleSummary } from './guards/controller.js';
import { checkSource, isUnmigratable, parseSourceKey, UnmigratableReason } from './migratable.js';
import { convertQueueRefs, type QueueConversion } from './queue-refs.js';
import { runScan, type ScanBatch } from './scan-engine.js';
import { waitForWriters } from './settle.js';
import type { CleanupSummary } from './summaries.js';
import { runTransition } from './transition.js';

/** Checkpoint name of cleanup's scan. */
export const CLEANUP_OP = 'cleanup';

/** Why a legacy key was kept. */
export const KeepReason = {
  /** The key's suffix is not a valid job id. */
  InvalidJobId: 'invalid-job-id',
  /** Not a hash (a string, list, ... under the legacy pattern): the same name in backfill and verify. */
  ForeignType: UnmigratableReason.WrongType,
  /** The record names no workspace. */
  MissingWorkspace: 'missing-workspace',
  /** The record's workspace_id fails the workspace rule. */
  InvalidWorkspace: 'invalid-workspace',
  /** The legacy rev field is not an integer. */
  InvalidRev: 'invalid-rev',
  /** v2 has no record for this job. */
  V2Missing: 'v2-missing',
  /** The v2 key exists but is not a hash. */
  V2ForeignType: 'v2-non-hash',
  /** The v2 rev field is not an integer. */
  V2InvalidRev: 'v2-invalid-rev',
  /** v2 holds the record at a lower rev than legacy. */
  V2Older: 'v2-older',
  /** The legacy record changed between the read and the delete (workspace differs). */
  Changed: 'changed',
  /** The v2 record names another workspace than its key (never deleted against). */
  V2WorkspaceMismatch: 'v2-workspace-mismatch',
  /** Accepted as unmigratable with `orch-migrate accept`: kept, and not a problem. */
  Accepted: 'accepted',
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
  /** Gates to override by name (needs `reason`; recorded in the history). */
  force?: readonly string[];
  /** Bound of the wait for writer acknowledgements (default 10 s). */
  ackTimeoutMs?: number;
  /** Minimum time in read-new (default 1h). */
  minSoakMs?: number;
  /** Freshness the verify gate requires (default 1h). */
  maxVerifyAgeMs?: number;
  /** Keys per second, all masters together (default unlimited). */
  rate?: number | null;
  /** Paces the scan on the guards and live control (src/ops/guards/controller.ts); its ceiling replaces `rate`. */
  guards?: GuardController | null;
  batchSize?: number;
  concurrency?: number;
  /** Ignore the cleanup checkpoint and scan from the start. */
  restart?: boolean;
  /**
   * NDJSON file of every kept key `{key, reason, detail}`. With `execute` it
   * is written from the findings hash when the run ends (also when it fails or
   * is interrupted), so it lists what earlier, resumed runs kept too; a dry
   * run writes the keys as it finds them.
   */
  reportPath?: string | null;
  onProgress?: ProgressFn;
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
  /** Legacy keys deleted (cumulative across resumed runs); 0 on a dry run. */
  deleted: number;
  /**
   * Dry run only: the keys that would be deleted. An estimate from SCAN, which
   * can return a key twice while the keyspace is resized; an --execute run
   * counts each delete exactly once.
   */
  wouldDelete: number;
  /** Legacy keys kept (cumulative, accepted ones included). */
  kept: number;
  /** Of those, keys accepted as unmigratable (not a problem). */
  accepted: number;
  /** Keys that expired or vanished between the scan and the check. */
  gone: number;
  keptByReason: Record<string, number>;
  /** Up to 20 kept keys (accepted ones last). */
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
  /** Time the guards held the run back (null without guards). */
  throttle: ThrottleSummary | null;
}

const SAMPLE_LIMIT = 20;
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

interface Candidate {
  key: string;
  jobId: string;
  workspaceId: string;
  legacyRev: number;
  target: string;
}

/** cleanup-batch.lua's codes (cleanup-unlink.lua shares the legacy-side ones). */
const KEEP_BY_CODE: Record<number, KeepReason | 'deleted' | 'gone'> = {
  1: 'deleted',
  0: KeepReason.V2Older,
  [-1]: KeepReason.ForeignType,
  [-2]: KeepReason.InvalidRev,
  [-3]: KeepReason.Changed,
  [-4]: 'gone',
  [-6]: KeepReason.V2Missing,
  [-7]: KeepReason.V2ForeignType,
  [-8]: KeepReason.V2InvalidRev,
  [-9]: KeepReason.V2WorkspaceMismatch,
};

/** Per-batch work: classify every key, then delete the covered ones (unless a dry run). */
class BatchCleaner {
  private readonly cluster: boolean;

  constructor(
    private readonly ctx: OpContext,
    private readonly execute: boolean,
    private readonly accepted: ReadonlySet<string>,
    private readonly findings: FindingsStore | null,
    private readonly samples: KeptKey[],
    private readonly dryReport: WriteStream | null,
  ) {
    this.cluster = isCluster(ctx.client);
  }

  async process(batch: ScanBatch): Promise<Counters> {
    if (this.cluster && this.execute) await assertLockHeld(this.ctx);
    const c: Counters = { deleted: 0, kept: 0, gone: 0 };
    const kept: KeptKey[] = [];
    const keep = (k: KeptKey): void => void kept.push(this.accepted.has(k.key) ? { key: k.key, reason: KeepReason.Accepted, detail: k.reason } : k);
    const candidates = await this.classify(batch, keep, c);
    if (candidates.length > 0) {
      if (this.cluster) await this.deletePerKey(candidates, keep, c);
      else await this.deleteBatch(batch, candidates, keep, c);
    }
    for (const k of kept) {
      c.kept = (c.kept ?? 0) + 1;
      c[KEPT_PREFIX + k.reason] = (c[KEPT_PREFIX + k.reason] ?? 0) + 1;
      if (this.samples.length < SAMPLE_LIMIT) this.samples.push(k);
    }
    await this.findings?.add(kept as Finding[]);
    for (const k of kept) this.dryReport?.write(`${JSON.stringify(k)}\n`);
    return c;
  }

  /** Key names and the legacy records: only valid, migratable legacy records go further. */
  private async classify(batch: ScanBatch, keep: (k: KeptKey) => void, c: Counters): Promise<Candidate[]> {
    const { keys } = this.ctx;
    const named: Array<{ key: string; jobId: string }> = [];
    for (const key of batch.keys) {
      const parsed = parseSourceKey(keys, 'forward', key);
      if (isUnmigratable(parsed)) keep({ key, reason: KeepReason.InvalidJobId, ...(parsed.detail ? { detail: parsed.detail } : {}) });
      else named.push({ key, jobId: parsed.jobId });
    }
    if (named.length === 0) return [];
    const rows = await this.readLegacy(batch, named.map((n) => n.key));
    const out: Candidate[] = [];
    named.forEach((n, i) => {
      const [kind, ws, rev] = rows[i]!;
      if (kind === 'none') {
        c.gone = (c.gone ?? 0) + 1;
        return;
      }
      if (kind !== 'hash') return keep({ key: n.key, reason: KeepReason.ForeignType, detail: String(kind) });
      const checked = checkSource(keys, 'forward', { key: n.key, jobId: n.jobId, keyWorkspace: null }, ws, null, rev);
      if (isUnmigratable(checked)) {
        const reason =
          checked.reason === UnmigratableReason.MissingWorkspace ? KeepReason.MissingWorkspace : checked.reason === UnmigratableReason.InvalidRev ? KeepReason.InvalidRev : KeepReason.InvalidWorkspace;
        return keep({ key: n.key, reason, ...(checked.detail ? { detail: checked.detail } : {}) });
      }
      if (this.accepted.has(n.key)) return keep({ key: n.key, reason: KeepReason.Accepted });
      out.push({ key: n.key, jobId: n.jobId, workspaceId: checked.workspaceId, legacyRev: checked.rev, target: checked.target });
    });
    return out;
  }

  /** kind, workspace_id and rev of each legacy record (on the node it came from). */
  private async readLegacy(batch: ScanBatch, keyList: string[]): Promise<Array<Array<string | null>>> {
    if (!this.cluster) return readFieldsBatch(batch.node, keyList, [JobField.WorkspaceId, JobField.Rev]);
    const p = batch.node.pipeline();
    for (const k of keyList) {
      p.type(k);
      p.hmget(k, JobField.WorkspaceId, JobField.Rev);
    }
    const replies = (await p.exec()) ?? [];
    return keyList.map((_, i) => {
      const [tErr, type] = replies[i * 2] ?? [null, null];
      const [hErr, vals] = replies[i * 2 + 1] ?? [null, null];
      if (tErr) throw tErr;
      if (type !== 'hash') return [String(type), null, null];
      if (hErr) throw hErr;
      const [ws, rev] = (vals as Array<string | null>) ?? [null, null];
      return ['hash', ws ?? null, rev ?? null];
    });
  }

  private outcome(r: Candidate, code: number, keep: (k: KeptKey) => void, c: Counters, detail?: string): void {
    const what = KEEP_BY_CODE[code];
    if (what === undefined) throw new Error(`cleanup returned unexpected ${String(code)}`);
    if (what === 'deleted') c.deleted = (c.deleted ?? 0) + 1;
    else if (what === 'gone') c.gone = (c.gone ?? 0) + 1;
    else keep({ key: r.key, reason: what, ...(detail ? { detail } : what === KeepReason.V2Missing ? { detail: `workspace ${r.workspaceId}` } : {}) });
  }

  /** Single node: one script decides and deletes the whole batch, checking the lock first. */
  private async deleteBatch(batch: ScanBatch, candidates: Candidate[], keep: (k: KeptKey) => void, c: Counters): Promise<void> {
    const lock = lockArgs(this.ctx);
    const keyArgs: string[] = [lock.key];
    const argv: string[] = [lock.value, this.execute ? '0' : '1'];
    for (const r of candidates) {
      assertLegacyKey(this.ctx.keys, r.key);
      keyArgs.push(r.key, r.target);
      argv.push(r.workspaceId);
    }
    const codes = await callScript<number[]>(batch.node, ScriptName.CleanupBatch, [keyArgs.length, ...keyArgs, ...argv]);
    candidates.forEach((r, i) => this.outcome(r, Number(codes[i]), keep, c));
  }

  /** Cluster: the v2 rev of each (any node), then a single-key check-and-unlink per legacy record. */
  private async deletePerKey(candidates: Candidate[], keep: (k: KeptKey) => void, c: Counters): Promise<void> {
    const client = this.ctx.client;
    const v2 = await Promise.all(
      candidates.map(async (r) => {
        const type = await client.type(r.target);
        if (type !== 'hash') return { type, rev: null as string | null, ws: null as string | null };
        const [rev, ws] = await client.hmget(r.target, JobField.Rev, JobField.WorkspaceId);
        return { type, rev: rev ?? null, ws: ws ?? null };
      }),
    );
    await Promise.all(
      candidates.map(async (r, i) => {
        const v = v2[i]!;
        if (v.type === 'none') return this.outcome(r, -6, keep, c);
        if (v.type !== 'hash') return this.outcome(r, -7, keep, c, `${r.target} is a ${v.type}`);
        if (v.ws !== r.workspaceId) return this.outcome(r, -9, keep, c);
        const v2Rev = parseRev(v.rev);
        if (v2Rev === null) return this.outcome(r, -8, keep, c, describeInput(v.rev ?? ''));
        if (v2Rev < r.legacyRev) return this.outcome(r, 0, keep, c, `legacy rev ${r.legacyRev} > v2 rev ${v2Rev}`);
        if (!this.execute) return this.outcome(r, 1, keep, c);
        assertLegacyKey(this.ctx.keys, r.key);
        const code = await callScript<number>(client, ScriptName.CleanupUnlink, [r.key, v2Rev, r.workspaceId]);
        // cleanup-unlink.lua: 1 unlinked, 0 legacy rev rose above v2, -1 not a hash, -2 bad rev, -3 workspace changed, -4 gone.
        this.outcome(r, code, keep, c, code === 0 ? `legacy rev rose above v2 rev ${v2Rev}` : undefined);
      }),
    );
  }
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
  if (opts.minSoakMs !== undefined && opts.minSoakMs < DEFAULT_MIN_SOAK_MS && execute && state.phase === Phase.ReadNew && (opts.reason ?? '').trim() === '') {
    throw new ConfigError(`--min-soak shorter than the default (1h) shortens the soak gate: it needs --reason "…"`, {
      suggestion: 'Add --reason "why a shorter soak is safe here"; the override is recorded in the history.',
    });
  }
  const gateInputs = {
    ...(opts.minSoakMs === undefined ? {} : { minSoakMs: opts.minSoakMs }),
    ...(opts.maxVerifyAgeMs === undefined ? {} : { maxVerifyAgeMs: opts.maxVerifyAgeMs }),
  };
  const gates = gatesFor('cleanup', { state, now, writers: await listWriters(ctx.client, ctx.keys, now), ...gateInputs });
  // The phase precondition is enforced even on a dry run; data gates only block --execute.
  enforceGates(
    gates.filter((g) => !g.forceable),
    {},
  );
  const force = opts.force ?? [];
  let forced: string[];
  let blockedBy: CleanupResult['blockedBy'] = null;
  let transitioned = false;
  let settleWaitMs = 0;

  if (execute) {
    forced = enforceGates(gates, { force, reason: opts.reason ?? '' });
    if (state.phase === Phase.ReadNew) {
      if (opts.minSoakMs !== undefined && opts.minSoakMs < DEFAULT_MIN_SOAK_MS) {
        await ctx.state.appendHistory('override', ctx.actor, { command: 'cleanup', minSoakMs: opts.minSoakMs, defaultMs: DEFAULT_MIN_SOAK_MS, reason: opts.reason ?? '' });
      }
      // legacy_complete=0 in the same fenced step as the phase change: before anything is deleted.
      await runTransition(ctx, {
        command: 'cleanup',
        to: () => Phase.NewOnly,
        ...(opts.reason === undefined ? {} : { reason: opts.reason }),
        force,
        ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
        gates: gateInputs,
        state,
        extra: () => ({ [StateField.LegacyComplete]: '0' }),
      });
      transitioned = true;
      state = await ctx.state.read();
    } else {
      await ctx.state.setFields(fenceOf(ctx), { [StateField.LegacyComplete]: '0' });
    }
    settleWaitMs = await waitForWriters(ctx, state, {
      ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
      onWait: (message) => opts.onProgress?.({ stage: 'cleanup', done: 0, total: null, totalIsEstimate: false, message }),
    });
  } else {
    const closed = gates.find((g) => !g.open && !(g.forceable && force.includes(g.name)));
    if (closed) blockedBy = { gate: closed.name, reason: closed.reason, opensWith: closed.opensWith };
    forced = gates.filter((g) => !g.open && g.forceable && force.includes(g.name)).map((g) => g.name);
  }

  // Pending references first: once legacy records go, a bare reference cannot be resolved.
  const queue = await convertQueueRefs(ctx.client, ctx.keys, { dryRun: !execute });

  const samples: KeptKey[] = [];
  const findings = execute ? new FindingsStore(ctx.client, ctx.keys, CLEANUP_OP) : null;
  const dryReport = !execute && opts.reportPath ? createWriteStream(opts.reportPath, { flags: 'w' }) : null;
  const cleaner = new BatchCleaner(ctx, execute, await loadAccepted(ctx.client, ctx.keys), findings, samples, dryReport);
  try {
    return await runCleanup();
  } finally {
    if (dryReport) await new Promise<void>((resolve) => dryReport.end(() => resolve()));
    else if (findings && opts.reportPath) await findings.writeReport(opts.reportPath).catch(() => undefined);
  }

  async function runCleanup(): Promise<CleanupResult> {
  const total = await estimateLayout(ctx.client, ctx.keys, 'legacy');
  const progress = throttled(opts.onProgress);
  const summary = async (scanned: number, deleted: number, complete: boolean, resumed: boolean): Promise<CleanupSummary> => {
    const kept = findings ? await findings.summary() : null;
    return {
      epoch: state.epoch,
      startedAt,
      finishedAt: Date.now(),
      dryRun: false,
      complete,
      scanned,
      deleted,
      kept: kept?.total ?? 0,
      keptByReason: kept?.byReason ?? {},
      queueConverted: queue.converted,
      queueUnresolved: queue.unresolved,
      durationMs: Date.now() - startedAt,
      resumed,
    };
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
      pacer: opts.guards ?? null,
      restart: opts.restart ?? false,
      // Resume only a pass of this new-only epoch: one from before a rollback would skip keys.
      resumeIf: (meta) => meta !== null && meta.epoch === state.epoch,
      onFreshPass: async () => {
        await findings?.clear();
      },
      guard: () => assertLockHeld(ctx),
      signal: ctx.signal,
      epoch: state.epoch,
      meta: { execute },
      process: (batch) => cleaner.process(batch),
      onProgress: (p) => progress({ stage: execute ? 'cleanup' : 'cleanup (dry run)', done: p.scanned, total, totalIsEstimate: true }),
    });
  } catch (err) {
    // Interrupted or failed: record how far it got, so status can say "resume". Never
    // when the lease was lost: the run must not write after another took the lock.
    if (execute && !ctx.signal.aborted) {
      const cp = await loadCheckpoint(ctx.client, ctx.keys, CLEANUP_OP).catch(() => null);
      const sums: Counters = {};
      for (const n of cp?.nodes ?? []) for (const [k, v] of Object.entries(n.counters)) sums[k] = (sums[k] ?? 0) + v;
      await summary(sums.scanned ?? 0, sums.deleted ?? 0, false, false)
        .then((s) => ctx.state.setFields(fenceOf(ctx), { [StateField.LastCleanup]: JSON.stringify(s) }))
        .catch(() => undefined);
    }
    throw err;
  }

  const counters = scan.counters;
  opts.onProgress?.({ stage: execute ? 'cleanup' : 'cleanup (dry run)', done: counters.scanned ?? 0, total, totalIsEstimate: true });
  const durationMs = Date.now() - startedAt;
  const scanned = counters.scanned ?? 0;
  const stored = findings ? await findings.summary() : { total: counters.kept ?? 0, byReason: keptByReason(counters) };
  const acceptedCount = stored.byReason[KeepReason.Accepted] ?? 0;
  const result: CleanupResult = {
    ok: scan.complete && stored.total - acceptedCount === 0,
    dryRun: !execute,
    phase: state.phase,
    from,
    epoch: state.epoch,
    transitioned,
    scanned,
    deleted: execute ? (counters.deleted ?? 0) : 0,
    wouldDelete: execute ? 0 : (counters.deleted ?? 0),
    kept: stored.total,
    accepted: acceptedCount,
    gone: counters.gone ?? 0,
    keptByReason: stored.byReason,
    keptSamples: [...samples.filter((k) => k.reason !== KeepReason.Accepted), ...samples.filter((k) => k.reason === KeepReason.Accepted)],
    queue,
    complete: scan.complete,
    resumed: scan.resumed,
    durationMs,
    keysPerSecond: durationMs > 0 ? Math.round(((scan.runCounters.scanned ?? 0) * 1000) / durationMs) : 0,
    gates,
    forced,
    blockedBy,
    settleWaitMs,
    throttle: opts.guards?.summary() ?? null,
  };
  if (execute) await ctx.state.setFields(fenceOf(ctx), { [StateField.LastCleanup]: JSON.stringify(await summary(scanned, result.deleted, scan.complete, scan.resumed)) });
  return result;
  }
}

/** The findings hash of cleanup's kept keys (the CLI writes `--report` from it). */
export function cleanupFindings(ctx: Pick<OpContext, 'client' | 'keys'>): FindingsStore {
  return new FindingsStore(ctx.client, ctx.keys, CLEANUP_OP);
}
