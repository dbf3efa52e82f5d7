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
 *     through cleanup-unlink.lua (fenced by the lease deadline), one
 *     pipeline per master (src/ops/cluster-batch.ts). Everything else is kept and recorded in the
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
import { CleanupBatchReply as R, CleanupUnlinkReply } from '../core/script-replies.js';
import { callScript, ScriptName } from '../core/scripts.js';
import { StateField, type MigrationState } from '../core/state.js';
import { listWriters } from '../core/writers.js';
import { loadAccepted } from './accept.js';
import { readFieldsBatch } from './backfill.js';
import { loadCheckpoint, type Counters } from './checkpoint.js';
import { assertLockHeld, fenceOf, leaseDeadline, lockArgs, throttled, type OpContext, type ProgressFn } from './context.js';
import { estimateLayout } from './count.js';
import { FindingsStore, type Finding } from './findings.js';
import { DEFAULT_MIN_SOAK_MS, enforceGates, gatesFor, type GateStatus } from './gates.js';
import type { GuardController, ThrottleSummary } from './guards/controller.js';
import { checkSource, isUnmigratable, parseSourceKey, UnmigratableReason } from './migratable.js';
import { convertQueueRefs, type QueueConversion } from './queue-refs.js';
import { runScan, type ScanBatch } from './scan-engine.js';
import { perMaster, valueOf } from './cluster-batch.js';
import type { Cluster } from 'ioredis';
import { waitForWriters } from './settle.js';
import type { CleanupSummary } from './summaries.js';
import { runTransition } from './transition.js';
import { canaryContext, moveWorkspaces, workspaceGates } from './canary.js';
import { defaultWorkspaceState, readWorkspaceStates, writeWorkspaceStates } from '../core/workspaces.js';

/** Checkpoint name of cleanup's scan. */
export const CLEANUP_OP = 'cleanup';
/** Checkpoint name of a canary cleanup's scan (its meta names the workspaces). */
export const CANARY_CLEANUP_OP = 'cleanup-canary';

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
  /** A canary cleanup: only these workspaces (read-new → new-only for them; exactly their legacy keys). */
  workspaces?: readonly string[] | null;
  onProgress?: ProgressFn;
}

/** Result of {@link cleanup} (`--json`: dryRun, deleted, kept, phase, ok, ...). */
export interface CleanupResult {
  /** True when the run completed and nothing was kept (a clean finish). */
  ok: boolean;
  dryRun: boolean;
  /** Phase after the run. */
  phase: Phase;
  /** Phase before the run (of the canary workspaces, for a canary cleanup). */
  from: Phase;
  /** The canary workspaces, or null for the global cleanup. */
  workspaces: string[] | null;
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

/** What each cleanup-batch.lua code means here (cleanup-unlink.lua's codes are the legacy-side ones, same values). */
const KEEP_BY_CODE: Record<number, KeepReason | 'deleted' | 'gone'> = {
  [R.unlinked]: 'deleted',
  [R.v2Older]: KeepReason.V2Older,
  [R.foreignType]: KeepReason.ForeignType,
  [R.invalidRev]: KeepReason.InvalidRev,
  [R.changed]: KeepReason.Changed,
  [R.gone]: 'gone',
  [R.v2Missing]: KeepReason.V2Missing,
  [R.v2ForeignType]: KeepReason.V2ForeignType,
  [R.v2InvalidRev]: KeepReason.V2InvalidRev,
  [R.v2WorkspaceMismatch]: KeepReason.V2WorkspaceMismatch,
};

/** Per-batch work: classify every key, then delete the covered ones (unless a dry run). */
class BatchCleaner {
  private readonly cluster: boolean;

  private readonly execute: boolean;
  private readonly accepted: ReadonlySet<string>;
  private readonly findings: FindingsStore | null;
  private readonly samples: KeptKey[];
  private readonly dryReport: WriteStream | null;
  /** A canary cleanup: only these workspaces' records are looked at; every other key is skipped, not kept. */
  private readonly only: ReadonlySet<string> | null;

  constructor(
    private readonly ctx: OpContext,
    o: {
      execute: boolean;
      accepted: ReadonlySet<string>;
      findings: FindingsStore | null;
      samples: KeptKey[];
      dryReport: WriteStream | null;
      only: ReadonlySet<string> | null;
    },
  ) {
    this.cluster = isCluster(ctx.client);
    this.execute = o.execute;
    this.accepted = o.accepted;
    this.findings = o.findings;
    this.samples = o.samples;
    this.dryReport = o.dryReport;
    this.only = o.only;
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
      // A key without a valid job id belongs to no canary: only a global cleanup reports it.
      if (isUnmigratable(parsed)) {
        if (this.only === null) keep({ key, reason: KeepReason.InvalidJobId, ...(parsed.detail ? { detail: parsed.detail } : {}) });
      } else named.push({ key, jobId: parsed.jobId });
    }
    if (named.length === 0) return [];
    const rows = await this.readLegacy(
      batch,
      named.map((n) => n.key),
    );
    const out: Candidate[] = [];
    named.forEach((n, i) => {
      const [kind, ws, rev] = rows[i]!;
      // A canary cleanup skips every record that is not one of its workspaces' (never counted, never kept).
      if (this.only !== null && (kind !== 'hash' || typeof ws !== 'string' || !this.only.has(ws))) return;
      if (kind === 'none') {
        c.gone = (c.gone ?? 0) + 1;
        return;
      }
      if (kind !== 'hash') return keep({ key: n.key, reason: KeepReason.ForeignType, detail: String(kind) });
      const checked = checkSource(keys, 'forward', { key: n.key, jobId: n.jobId, keyWorkspace: null }, ws, null, rev);
      if (isUnmigratable(checked)) {
        const reason =
          checked.reason === UnmigratableReason.MissingWorkspace
            ? KeepReason.MissingWorkspace
            : checked.reason === UnmigratableReason.InvalidRev
              ? KeepReason.InvalidRev
              : KeepReason.InvalidWorkspace;
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
    const client = this.ctx.client as Cluster;
    const replies = await perMaster(
      client,
      keyList,
      (k) => k,
      2,
      (pipe, k) => pipe.type(k).hmget(k, JobField.WorkspaceId, JobField.Rev),
    );
    return replies.map(([t, h]) => {
      const type = valueOf<string>(t!);
      if (type !== 'hash') return [String(type), null, null];
      const [ws, rev] = valueOf<Array<string | null>>(h!) ?? [null, null];
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

  /**
   * Cluster: the v2 rev of each candidate in one pipeline per v2 master, then
   * a single-key check-and-unlink (cleanup-unlink.lua, fenced by the lease
   * deadline) per legacy record in one pipeline per legacy master
   * (src/ops/cluster-batch.ts; a MOVED/ASK key goes through the cluster client).
   */
  private async deletePerKey(candidates: Candidate[], keep: (k: KeptKey) => void, c: Counters): Promise<void> {
    const client = this.ctx.client as Cluster;
    const reads = await perMaster(
      client,
      candidates,
      (r) => r.target,
      2,
      (pipe, r) => pipe.type(r.target).hmget(r.target, JobField.Rev, JobField.WorkspaceId),
    );
    const unlink: Array<{ r: Candidate; v2Rev: number }> = [];
    candidates.forEach((r, i) => {
      const type = valueOf<string>(reads[i]![0]!);
      if (type === 'none') return this.outcome(r, R.v2Missing, keep, c);
      if (type !== 'hash') return this.outcome(r, R.v2ForeignType, keep, c, `${r.target} is a ${type}`);
      const [rev = null, ws = null] = valueOf<Array<string | null>>(reads[i]![1]!);
      if (ws !== r.workspaceId) return this.outcome(r, R.v2WorkspaceMismatch, keep, c);
      const v2Rev = parseRev(rev);
      if (v2Rev === null) return this.outcome(r, R.v2InvalidRev, keep, c, describeInput(rev ?? ''));
      if (v2Rev < r.legacyRev) return this.outcome(r, R.v2Older, keep, c, `legacy rev ${r.legacyRev} > v2 rev ${v2Rev}`);
      if (!this.execute) return this.outcome(r, R.unlinked, keep, c);
      assertLegacyKey(this.ctx.keys, r.key);
      unlink.push({ r, v2Rev });
    });
    const deadline = leaseDeadline(this.ctx);
    const args = (u: { r: Candidate; v2Rev: number }): Array<string | number> => [u.r.key, u.v2Rev, u.r.workspaceId, deadline];
    const done = await perMaster(
      client,
      unlink,
      (u) => u.r.key,
      1,
      (pipe, u) => void (pipe as unknown as Record<string, (a: unknown[]) => unknown>)[ScriptName.CleanupUnlink]!(args(u)),
    );
    unlink.forEach((u, i) => {
      const code = Number(valueOf(done[i]![0]!));
      this.outcome(u.r, code, keep, c, code === CleanupUnlinkReply.v2Older ? `legacy rev rose above v2 rev ${u.v2Rev}` : undefined);
    });
  }
}

function keptByReason(counters: Counters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(counters)) if (k.startsWith(KEPT_PREFIX) && v > 0) out[k.slice(KEPT_PREFIX.length)] = v;
  return out;
}

/** What the preparation of a cleanup decided: the phase it sweeps in, its gates, the move it made. */
interface CleanupStart {
  state: MigrationState;
  from: Phase;
  gates: GateStatus[];
  forced: string[];
  blockedBy: CleanupResult['blockedBy'];
  transitioned: boolean;
  settleWaitMs: number;
}

function blockedByOf(gates: GateStatus[], force: readonly string[]): CleanupResult['blockedBy'] {
  const closed = gates.find((g) => !g.open && !(g.forceable && force.includes(g.name)));
  return closed ? { gate: closed.name, reason: closed.reason, opensWith: closed.opensWith } : null;
}

/** A shorter soak than the default is allowed, but only with a reason, and it is recorded. */
async function checkSoakOverride(ctx: OpContext, opts: CleanupOptions, applies: boolean): Promise<void> {
  if (!applies || opts.minSoakMs === undefined || opts.minSoakMs >= DEFAULT_MIN_SOAK_MS) return;
  if ((opts.reason ?? '').trim() === '') {
    throw new ConfigError('--min-soak shorter than the default (1h) shortens the soak gate: it needs --reason "…"', {
      suggestion: 'Add --reason "why a shorter soak is safe here"; the override is recorded in the history.',
    });
  }
  await ctx.state.appendHistory('override', ctx.actor, {
    command: 'cleanup',
    minSoakMs: opts.minSoakMs,
    defaultMs: DEFAULT_MIN_SOAK_MS,
    reason: opts.reason ?? '',
  });
}

function gateTuning(opts: CleanupOptions): { minSoakMs?: number; maxVerifyAgeMs?: number } {
  return {
    ...(opts.minSoakMs === undefined ? {} : { minSoakMs: opts.minSoakMs }),
    ...(opts.maxVerifyAgeMs === undefined ? {} : { maxVerifyAgeMs: opts.maxVerifyAgeMs }),
  };
}

/** Writers must drop the previous phase before anything is deleted. */
function waitBeforeDeleting(ctx: OpContext, opts: CleanupOptions, state: MigrationState): Promise<number> {
  return waitForWriters(ctx, state, {
    ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
    onWait: (message) => opts.onProgress?.({ stage: 'cleanup', done: 0, total: null, totalIsEstimate: false, message }),
  });
}

/** The global cleanup's gates and its read-new → new-only move (legacy_complete=0 in the same fenced step). */
async function startGlobal(ctx: OpContext, opts: CleanupOptions, execute: boolean): Promise<CleanupStart> {
  let state = await ctx.state.read();
  const from = state.phase;
  const now = await ctx.state.serverTime();
  const gates = gatesFor('cleanup', { state, now, writers: await listWriters(ctx.client, ctx.keys, now), ...gateTuning(opts) });
  // The phase precondition is enforced even on a dry run; data gates only block --execute.
  enforceGates(
    gates.filter((g) => !g.forceable),
    {},
  );
  const force = opts.force ?? [];
  if (!execute) {
    return {
      state,
      from,
      gates,
      forced: gates.filter((g) => !g.open && g.forceable && force.includes(g.name)).map((g) => g.name),
      blockedBy: blockedByOf(gates, force),
      transitioned: false,
      settleWaitMs: 0,
    };
  }
  const forced = enforceGates(gates, { force, reason: opts.reason ?? '' });
  let transitioned = false;
  if (state.phase === Phase.ReadNew) {
    await checkSoakOverride(ctx, opts, true);
    await runTransition(ctx, {
      command: 'cleanup',
      to: () => Phase.NewOnly,
      ...(opts.reason === undefined ? {} : { reason: opts.reason }),
      force,
      ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
      gates: gateTuning(opts),
      state,
      extra: () => ({ [StateField.LegacyComplete]: '0' }),
    });
    transitioned = true;
    state = await ctx.state.read();
  } else {
    await ctx.state.setFields(fenceOf(ctx), { [StateField.LegacyComplete]: '0' });
  }
  return { state, from, gates, forced, blockedBy: null, transitioned, settleWaitMs: await waitBeforeDeleting(ctx, opts, state) };
}

/** A canary cleanup's gates (for those workspaces alone) and their read-new → new-only move. */
async function startCanary(ctx: OpContext, opts: CleanupOptions, execute: boolean, workspaces: string[]): Promise<CleanupStart> {
  const c = await canaryContext(ctx, workspaces);
  const force = opts.force ?? [];
  const gates: GateStatus[] = [];
  for (const ws of workspaces) {
    const g = workspaceGates('cleanup', {
      state: c.state,
      now: c.now,
      workspace: ws,
      wsState: c.states.get(ws) ?? defaultWorkspaceState(),
      writers: c.writers,
      ...gateTuning(opts),
    });
    enforceGates(
      g.filter((x) => !x.forceable),
      {},
    );
    gates.push(...g);
  }
  const from = c.state.overrides[workspaces[0]!] ?? c.state.phase;
  if (!execute) {
    return { state: c.state, from, gates, forced: [], blockedBy: blockedByOf(gates, force), transitioned: false, settleWaitMs: 0 };
  }
  const moving = workspaces.filter((ws) => c.state.overrides[ws] === Phase.ReadNew);
  await checkSoakOverride(ctx, opts, moving.length > 0);
  const move = await moveWorkspaces(
    ctx,
    workspaces,
    { command: 'cleanup', from: Phase.ReadNew, to: Phase.NewOnly, already: (ws, cc) => cc.state.overrides[ws] === Phase.NewOnly },
    // Its legacy records stop being complete before the first one is deleted.
    (_ws, st, cc) => ({ ...st, changedAt: cc.now, epoch: cc.state.epoch + 1, legacyComplete: false }),
    {
      force,
      ...(opts.reason === undefined ? {} : { reason: opts.reason }),
      ...gateTuning(opts),
      ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
    },
  );
  const state = await ctx.state.read();
  return {
    state,
    from,
    gates,
    forced: move.forced,
    blockedBy: null,
    transitioned: moving.length > 0,
    settleWaitMs: await waitBeforeDeleting(ctx, opts, state),
  };
}

/**
 * Runs cleanup: the global one, or (with `workspaces`) a canary cleanup of
 * those workspaces alone. Throws GateError (exit 3) when `execute` is refused
 * by a gate; a dry run reports closed data gates in `blockedBy` instead.
 */
export async function cleanup(ctx: OpContext, opts: CleanupOptions = {}): Promise<CleanupResult> {
  const startedAt = Date.now();
  const execute = opts.execute === true;
  const workspaces = opts.workspaces && opts.workspaces.length > 0 ? [...opts.workspaces] : null;
  const start = workspaces === null ? await startGlobal(ctx, opts, execute) : await startCanary(ctx, opts, execute, workspaces);
  // Pending references first: once legacy records go, a bare reference cannot be resolved.
  const queue = await convertQueueRefs(ctx.client, ctx.keys, { dryRun: !execute, ...(workspaces === null ? {} : { workspaces: new Set(workspaces) }) });
  const sweep = await new Sweep(ctx, opts, { execute, workspaces, state: start.state, startedAt, queue }).run();
  const result: CleanupResult = {
    ...sweep,
    dryRun: !execute,
    phase: workspaces === null ? start.state.phase : (start.state.overrides[workspaces[0]!] ?? start.state.phase),
    from: start.from,
    epoch: start.state.epoch,
    transitioned: start.transitioned,
    workspaces,
    queue,
    durationMs: Date.now() - startedAt,
    gates: start.gates,
    forced: start.forced,
    blockedBy: start.blockedBy,
    settleWaitMs: start.settleWaitMs,
    throttle: opts.guards?.summary() ?? null,
  };
  if (execute && workspaces !== null) await recordCanaryCleanup(ctx, workspaces, result);
  return result;
}

/** What a sweep found. */
type SweepResult = Pick<
  CleanupResult,
  'ok' | 'scanned' | 'deleted' | 'wouldDelete' | 'kept' | 'accepted' | 'gone' | 'keptByReason' | 'keptSamples' | 'complete' | 'resumed' | 'keysPerSecond'
>;

/**
 * The deleting scan: legacy keys only, in batches, each key deleted only if v2
 * holds it at the same or a higher rev; the rest kept, in the findings hash.
 * Resumable within its epoch (and, for a canary cleanup, its set of workspaces).
 */
class Sweep {
  private readonly op: string;
  private readonly findings: FindingsStore | null;

  constructor(
    private readonly ctx: OpContext,
    private readonly opts: CleanupOptions,
    private readonly run_: { execute: boolean; workspaces: string[] | null; state: MigrationState; startedAt: number; queue: QueueConversion },
  ) {
    this.op = run_.workspaces === null ? CLEANUP_OP : CANARY_CLEANUP_OP;
    this.findings = run_.execute ? new FindingsStore(ctx.client, ctx.keys, this.op) : null;
  }

  async run(): Promise<SweepResult> {
    const { opts } = this;
    const dryReport = !this.run_.execute && opts.reportPath ? createWriteStream(opts.reportPath, { flags: 'w' }) : null;
    try {
      return await this.scan(dryReport);
    } finally {
      if (dryReport) await new Promise<void>((resolve) => dryReport.end(() => resolve()));
      else if (this.findings && opts.reportPath) await this.findings.writeReport(opts.reportPath).catch(() => undefined);
    }
  }

  private async scan(dryReport: WriteStream | null): Promise<SweepResult> {
    const { ctx, opts, findings } = this;
    const { execute, workspaces, state } = this.run_;
    const samples: KeptKey[] = [];
    const cleaner = new BatchCleaner(ctx, {
      execute,
      accepted: await loadAccepted(ctx.client, ctx.keys),
      findings,
      samples,
      dryReport,
      only: workspaces === null ? null : new Set(workspaces),
    });
    const stage = execute ? 'cleanup' : 'cleanup (dry run)';
    const total = workspaces === null ? await estimateLayout(ctx.client, ctx.keys, 'legacy') : null;
    const progress = throttled(opts.onProgress);
    const setKey = workspaces === null ? null : [...workspaces].sort().join(',');
    let scan;
    try {
      scan = await runScan(ctx.client, ctx.keys, {
        // A dry run keeps no checkpoint: it must not disturb a resumable --execute.
        op: execute ? this.op : null,
        match: ctx.keys.legacyPattern,
        ...(opts.batchSize === undefined ? {} : { batchSize: opts.batchSize }),
        ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
        rate: opts.rate ?? null,
        pacer: opts.guards ?? null,
        restart: opts.restart ?? false,
        // Resume only a pass of this epoch (and these workspaces): one from before a rollback would skip keys.
        resumeIf: (meta) => meta !== null && meta.epoch === state.epoch && (setKey === null || meta.options?.workspaces === setKey),
        onFreshPass: async () => {
          await findings?.clear();
        },
        guard: () => assertLockHeld(ctx),
        signal: ctx.signal,
        epoch: state.epoch,
        meta: { execute, ...(setKey === null ? {} : { workspaces: setKey }) },
        process: (batch) => cleaner.process(batch),
        onProgress: (p) => progress({ stage, done: p.scanned, total, totalIsEstimate: true }),
      });
    } catch (err) {
      // Interrupted (Ctrl-C, SIGTERM) or failed: record how far it got, so status can say
      // "resume". Never when the lease was lost: the run must not write after another took
      // the lock (the fence would refuse it anyway).
      if (execute && workspaces === null && !(ctx.lock?.signal.aborted ?? false)) await this.recordInterrupted().catch(() => undefined);
      throw err;
    }
    const counters = scan.counters;
    opts.onProgress?.({ stage, done: counters.scanned ?? 0, total, totalIsEstimate: true });
    const stored = findings ? await findings.summary() : { total: counters.kept ?? 0, byReason: keptByReason(counters) };
    const acceptedCount = stored.byReason[KeepReason.Accepted] ?? 0;
    const durationMs = Date.now() - this.run_.startedAt;
    const result: SweepResult = {
      ok: scan.complete && stored.total - acceptedCount === 0,
      scanned: counters.scanned ?? 0,
      deleted: execute ? (counters.deleted ?? 0) : 0,
      wouldDelete: execute ? 0 : (counters.deleted ?? 0),
      kept: stored.total,
      accepted: acceptedCount,
      gone: counters.gone ?? 0,
      keptByReason: stored.byReason,
      keptSamples: [...samples.filter((k) => k.reason !== KeepReason.Accepted), ...samples.filter((k) => k.reason === KeepReason.Accepted)],
      complete: scan.complete,
      resumed: scan.resumed,
      keysPerSecond: durationMs > 0 ? Math.round(((scan.runCounters.scanned ?? 0) * 1000) / durationMs) : 0,
    };
    if (execute && workspaces === null)
      await ctx.state.setFields(fenceOf(ctx), {
        [StateField.LastCleanup]: JSON.stringify(await this.summary(result.scanned, result.deleted, scan.complete, scan.resumed)),
      });
    return result;
  }

  private async summary(scanned: number, deleted: number, complete: boolean, resumed: boolean): Promise<CleanupSummary> {
    const kept = this.findings ? await this.findings.summary() : null;
    return {
      epoch: this.run_.state.epoch,
      startedAt: this.run_.startedAt,
      finishedAt: Date.now(),
      dryRun: false,
      complete,
      scanned,
      deleted,
      kept: kept?.total ?? 0,
      keptByReason: kept?.byReason ?? {},
      queueConverted: this.run_.queue.converted,
      queueUnresolved: this.run_.queue.unresolved,
      durationMs: Date.now() - this.run_.startedAt,
      resumed,
    };
  }

  /** The summary of an interrupted global run, from its saved checkpoint. */
  private async recordInterrupted(): Promise<void> {
    const cp = await loadCheckpoint(this.ctx.client, this.ctx.keys, CLEANUP_OP);
    const sums: Counters = {};
    for (const n of cp.nodes) for (const [k, v] of Object.entries(n.counters)) sums[k] = (sums[k] ?? 0) + v;
    const s = await this.summary(sums.scanned ?? 0, sums.deleted ?? 0, false, false);
    await this.ctx.state.setFields(fenceOf(this.ctx), { [StateField.LastCleanup]: JSON.stringify(s) });
  }
}

/** A canary cleanup's outcome in each workspace's record (its status line and its rollback read it). */
async function recordCanaryCleanup(ctx: OpContext, workspaces: string[], r: CleanupResult): Promise<void> {
  const states = await readWorkspaceStates(ctx.client, ctx.keys, workspaces);
  for (const ws of workspaces) {
    const st = states.get(ws)!;
    states.set(ws, { ...st, lastCleanup: { epoch: r.epoch, complete: r.complete, deleted: r.deleted, kept: r.kept, finishedAt: Date.now() } });
  }
  await assertLockHeld(ctx);
  await writeWorkspaceStates(ctx.client, ctx.keys, states);
}

/** The findings hash of cleanup's kept keys (the CLI writes `--report` from it). */
export function cleanupFindings(ctx: Pick<OpContext, 'client' | 'keys'>): FindingsStore {
  return new FindingsStore(ctx.client, ctx.keys, CLEANUP_OP);
}
