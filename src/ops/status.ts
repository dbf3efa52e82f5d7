/**
 * `status`: everything an SRE needs at 3 a.m. in one read: phase, epoch, who
 * changed it, key counts, backfill checkpoint, last verify, lock, gates, recent
 * history, and the next command to run.
 */
import { LeaseLock, type LockInfo } from '../core/lock.js';
import { masterNodes, nodeAddress } from '../core/redis.js';
import { listWriters, type WriterStatus } from '../core/writers.js';
import { readWorkspaceStates } from '../core/workspaces.js';
import { workspaceGates } from './canary.js';
import { Phase, phaseDiagram } from '../core/phase.js';
import { phaseOf, type HistoryEntry, type MigrationState } from '../core/state.js';
import { loadCheckpoint, sumCounter } from './checkpoint.js';
import type { OpContext } from './context.js';
import { countKeys, type KeyCounts } from './count.js';
import { humanDuration } from '../core/durations.js';
import { gatesFor, onlySourceProblems, type GateStatus } from './gates.js';
import { asBackfillSummary, asCleanupSummary, asVerifySummary, type BackfillSummary, type CleanupSummary, type VerifySummary } from './summaries.js';
import { readControl, type ControlState } from './control.js';
import { readRuns, type RunInFlight } from './run-heartbeat.js';
import { selectShard } from './scan-engine.js';
import type { Checkpoint } from './checkpoint.js';

/** Options of {@link getStatus}. */
export interface StatusOptions {
  /** Count keys with SCAN instead of sampling. */
  exact?: boolean;
  /** History entries to include (default 5). */
  historyCount?: number;
  maxVerifyAgeMs?: number;
  minSoakMs?: number;
}

/** One canary workspace in status. */
export interface CanaryStatus {
  workspace: string;
  phase: Phase;
  legacyComplete: boolean;
  /** The step that moves it on (or back), and its gates. */
  next: 'cleanup' | 'rollback';
  gates: GateStatus[];
}

/** Canaries listed by name in status (the rest are counted). */
const CANARIES_LISTED = 10;

/** Backfill checkpoint progress. */
export interface CheckpointProgress {
  op: string;
  nodes: number;
  nodesDone: number;
  scanned: number;
  copied: number;
  updatedAt: number | null;
}

/** One live shard of a sharded backfill (`backfill --shard i/n`): its lease and its progress. */
export interface ShardStatus {
  /** `i/n`. */
  shard: string;
  /** The holder of its lease (who, where, what, how long left). */
  holder: LockInfo;
  /** Its masters (host:port), and how far the checkpoint has them. */
  nodes: string[];
  nodesDone: number;
  scanned: number;
  copied: number;
  /** Its run heartbeat (progress, rate, ETA, throttle), matched by host and pid; null before the first beat. */
  run: RunInFlight | null;
}

/** Result of {@link getStatus} (`--json`). */
export interface StatusResult {
  phase: Phase;
  epoch: number;
  diagram: string;
  changedAt: number | null;
  changedBy: string | null;
  reason: string | null;
  /** ms since the last transition (server clock). */
  sinceChangeMs: number | null;
  settleMs: number;
  legacyComplete: boolean;
  v2Complete: boolean;
  counts: KeyCounts;
  /** The first live holder of the lock (the global one, else a shard), or null when it is free. */
  lock: LockInfo | null;
  /** Every live holder of the lock: the global one, or the shards of a sharded backfill. */
  locks: LockInfo[];
  /** One entry per live shard of a sharded backfill. */
  shards: ShardStatus[];
  lastBackfill: BackfillSummary | null;
  lastVerify: VerifySummary | null;
  lastCleanup: CleanupSummary | null;
  checkpoints: CheckpointProgress[];
  /** Gates of each command, by command name. */
  gates: Record<string, { open: boolean; gates: GateStatus[] }>;
  history: HistoryEntry[];
  /** Registered writers (queue-core processes) and the epoch each acts on. */
  writers: WriterStatus[];
  /** Legacy keys accepted as unmigratable (`orch-migrate accept`). */
  accepted: number;
  /** Canary workspaces ahead of the global phase: how many per phase, and the first few with the gates of their next step. */
  canaries: { byPhase: Record<string, number>; listed: CanaryStatus[] };
  /** The command to run next, with why. */
  next: { command: string; why: string };
  serverTime: number;
  /** The runs in flight, from their heartbeats (src/ops/run-heartbeat.ts). */
  runs: RunInFlight[];
  /** What `orch-migrate control` set (src/ops/control.ts), or null. */
  control: ControlState | null;
}

const GATED_COMMANDS = ['enable-dual-write', 'backfill', 'flip-read', 'cleanup', 'rollback'] as const;
const CHECKPOINT_OPS = ['backfill', 'reverse-backfill', 'cleanup'] as const;

/** Reads the whole picture. Read-only: takes no lock. */
export async function getStatus(ctx: OpContext, opts: StatusOptions = {}): Promise<StatusResult> {
  const [state, now, locks, history, counts, accepted, control, ...cps] = await Promise.all([
    ctx.state.read(),
    ctx.state.serverTime(),
    LeaseLock.inspectAll(ctx.client, ctx.keys),
    ctx.state.history(opts.historyCount ?? 5),
    countKeys(ctx.client, ctx.keys, { exact: opts.exact ?? false, signal: ctx.signal }),
    ctx.client.hlen(ctx.keys.accepted),
    readControl(ctx.client, ctx.keys),
    ...CHECKPOINT_OPS.map((op) => loadCheckpoint(ctx.client, ctx.keys, op)),
  ]);
  const runs = await readRuns(ctx.client, ctx.keys, now);
  const lock = locks[0] ?? null;
  const shards = shardStatus(ctx, locks, runs, cps[CHECKPOINT_OPS.indexOf('backfill')]!);
  const checkpoints: CheckpointProgress[] = [];
  CHECKPOINT_OPS.forEach((op, i) => {
    const cp = cps[i]!;
    if (cp.nodes.length === 0 && !cp.meta) return;
    checkpoints.push({
      op,
      nodes: cp.nodes.length,
      nodesDone: cp.nodes.filter((n) => n.done).length,
      scanned: sumCounter(cp, 'scanned'),
      copied: sumCounter(cp, 'copied') + sumCounter(cp, 'deleted'),
      updatedAt: cp.nodes.reduce<number | null>((acc, n) => (acc === null || n.updatedAt > acc ? n.updatedAt : acc), null),
    });
  });
  const writers = await listWriters(ctx.client, ctx.keys, now);
  const inputs = { state, now, writers, maxVerifyAgeMs: opts.maxVerifyAgeMs, minSoakMs: opts.minSoakMs };
  const gates: StatusResult['gates'] = {};
  for (const cmd of GATED_COMMANDS) {
    const g = gatesFor(cmd, inputs);
    gates[cmd] = { open: g.every((x) => x.open), gates: g };
  }
  if (state.phase === Phase.ReadNew && !state.legacyComplete) {
    // What `rollback --execute` does now is resume the reverse backfill, which no gate holds back.
    gates.rollback = {
      open: true,
      gates: [
        {
          name: 'phase',
          open: true,
          reason: 'rollback --execute resumes the reverse backfill (legacy is incomplete); read-new → dual-write follows once legacy is complete',
          opensWith: null,
          forceable: false,
        },
      ],
    };
  }
  const lastBackfill = asBackfillSummary(state.lastBackfill);
  const lastVerify = asVerifySummary(state.lastVerify);
  const canaries = await canaryStatus(ctx, state, now, writers, opts);
  return {
    phase: state.phase,
    epoch: state.epoch,
    diagram: phaseDiagram(state.phase),
    changedAt: state.changedAt,
    changedBy: state.changedBy,
    reason: state.reason,
    sinceChangeMs: state.changedAt === null ? null : Math.max(0, now - state.changedAt),
    settleMs: state.settleMs,
    legacyComplete: state.legacyComplete,
    v2Complete: state.v2Complete,
    counts,
    lock,
    locks,
    shards,
    lastBackfill,
    lastVerify,
    lastCleanup: asCleanupSummary(state.lastCleanup),
    checkpoints,
    gates,
    history,
    writers,
    accepted,
    canaries,
    next:
      control?.paused && (runs.length > 0 || lock !== null)
        ? {
            command: 'orch-migrate control resume',
            why: `the run in flight is paused by \`orch-migrate control pause\`${control.by ? ` (${control.by})` : ''}${control.reason ? `: "${control.reason}"` : ''}`,
          }
        : nextStep(state, gates, lock, lastBackfill, now, checkpoints),
    serverTime: now,
    runs,
    control,
  };
}

/** The live shards: each one's lease, its masters' checkpoint progress, and its heartbeat. */
function shardStatus(ctx: OpContext, locks: LockInfo[], runs: RunInFlight[], cp: Checkpoint): ShardStatus[] {
  const live = locks.filter((l) => l.shard !== null);
  if (live.length === 0) return [];
  const masters = masterNodes(ctx.client).map((node) => ({ addr: nodeAddress(node), node }));
  const byAddr = new Map(cp.nodes.map((n) => [n.node, n]));
  return live.map((holder) => {
    const [index, count] = holder.shard!.split('/').map(Number) as [number, number];
    const nodes = selectShard(masters, { index, count }).map((m) => m.addr);
    const entries = nodes.map((a) => byAddr.get(a)).filter((n) => n !== undefined);
    return {
      shard: holder.shard!,
      holder,
      nodes,
      nodesDone: entries.filter((n) => n.done).length,
      scanned: entries.reduce((acc, n) => acc + (n.counters.scanned ?? 0), 0),
      copied: entries.reduce((acc, n) => acc + (n.counters.copied ?? 0), 0),
      run: runs.find((r) => r.pid === holder.pid && r.host === holder.host) ?? null,
    };
  });
}

/** What to run next, and why. */
export function nextStep(
  state: MigrationState,
  gates: StatusResult['gates'],
  lock: LockInfo | null,
  lastBackfill: BackfillSummary | null,
  now: number,
  checkpoints: CheckpointProgress[] = [],
): { command: string; why: string } {
  if (lock) {
    // A holder renews at a third of its lease: one far below its lease has stopped renewing.
    if (lock.ttlMs > 0 && lock.remainingMs < lock.ttlMs / 2) {
      return {
        command: `orch-migrate ${lock.command.split(' ')[0] ?? 'status'}${lock.shard ? ` --shard ${lock.shard}` : ''}`,
        why: `\`${lock.command}\` (${lock.actor}) stopped renewing its lock: the holder is probably dead; the lock frees itself in ${Math.ceil(lock.remainingMs / 1000)}s, then rerun it (it resumes from its checkpoint); see runbooks/incident-stuck-lock.md`,
      };
    }
    return { command: 'orch-migrate status', why: `\`${lock.command}\` is running (lock held by ${lock.actor}); wait for it` };
  }
  const closed = (cmd: string): GateStatus | undefined => gates[cmd]?.gates.find((g) => !g.open);
  const pending = (op: string): CheckpointProgress | undefined => checkpoints.find((c) => c.op === op && c.nodesDone < Math.max(1, c.nodes));
  const v = asVerifySummary(state.lastVerify);
  const verifyHint = (g: GateStatus): { command: string; why: string } => {
    if (!(v && v.epoch === state.epoch && !v.ok && g.name === 'verify')) return { command: 'orch-migrate verify', why: `gated: ${g.reason}` };
    if (onlySourceProblems(v.byKind)) {
      return {
        command: 'orch-migrate accept <key>… --reason "…"',
        why: `${g.reason}: fix them at the source or accept the known junk; see runbooks/incident-unmigratable.md`,
      };
    }
    return { command: 'orch-migrate verify --report mismatches.ndjson', why: `${g.reason}; see runbooks/incident-verify-mismatches.md` };
  };
  switch (state.phase) {
    case Phase.Legacy:
      return { command: 'orch-migrate enable-dual-write --reason "start migration"', why: 'writers start mirroring into v2' };
    case Phase.DualWrite: {
      if (pending('backfill')) return { command: 'orch-migrate backfill', why: 'a backfill was interrupted; it resumes from its checkpoint' };
      // Started in this global phase: a canary's move bumps the epoch but does not undo a backfill.
      const backfilled =
        lastBackfill !== null &&
        lastBackfill.direction === 'forward' &&
        lastBackfill.complete &&
        (lastBackfill.epoch === state.epoch || lastBackfill.startedAt >= (state.phaseChangedAt ?? Infinity));
      if (!backfilled) return { command: 'orch-migrate backfill', why: 'copy the history into v2' };
      const g = closed('flip-read');
      if (g) return verifyHint(g);
      return { command: 'orch-migrate flip-read --reason "verify clean"', why: 'v2 is verified; reads can move to v2' };
    }
    case Phase.ReadNew: {
      if (!state.legacyComplete) {
        return {
          command: 'orch-migrate rollback --execute',
          why: 'legacy is incomplete (a rollback from new-only has not finished): this resumes the reverse backfill; reads stay on v2',
        };
      }
      const g = closed('cleanup');
      if (g?.name === 'soak') {
        const vg = gates.cleanup?.gates.find((x) => x.name === 'verify' && !x.open);
        return vg ? verifyHint(vg) : { command: 'orch-migrate cleanup', why: `soaking in read-new: ${g.reason}; the dry run shows what --execute will delete` };
      }
      if (g) return verifyHint(g);
      return { command: 'orch-migrate cleanup', why: 'dry run first; then cleanup --execute deletes legacy keys proven in v2' };
    }
    case Phase.NewOnly: {
      const lc = asCleanupSummary(state.lastCleanup);
      if (pending('cleanup') || !lc || !lc.complete || lc.dryRun || lc.epoch !== state.epoch) {
        return { command: 'orch-migrate cleanup --execute', why: 'legacy keys remain; cleanup resumes where it stopped' };
      }
      const kept = lc.kept > 0 ? `; ${lc.kept} legacy key(s) were kept (see runbooks/incident-unmigratable.md)` : '';
      return {
        command: 'none',
        why: `migration complete ${humanDuration(now - (state.changedAt ?? now))} ago${kept}; \`orch-migrate rollback\` previews a way back`,
      };
    }
    default:
      return { command: 'orch-migrate status', why: 'unknown phase' };
  }
}

/** The canaries: counted per phase, the first few with the gates of the step that moves them on. */
async function canaryStatus(
  ctx: OpContext,
  state: MigrationState,
  now: number,
  writers: WriterStatus[],
  opts: StatusOptions,
): Promise<StatusResult['canaries']> {
  const ahead = Object.keys(state.overrides)
    .filter((ws) => phaseOf(state, ws) !== state.phase)
    .sort();
  const byPhase: Record<string, number> = {};
  for (const ws of ahead) byPhase[phaseOf(state, ws)] = (byPhase[phaseOf(state, ws)] ?? 0) + 1;
  const shown = ahead.slice(0, CANARIES_LISTED);
  const states = await readWorkspaceStates(ctx.client, ctx.keys, shown);
  const listed = shown.map((ws): CanaryStatus => {
    const phase = phaseOf(state, ws);
    const wsState = states.get(ws)!;
    const next = phase === Phase.ReadNew ? 'cleanup' : 'rollback';
    const tuning = {
      ...(opts.maxVerifyAgeMs === undefined ? {} : { maxVerifyAgeMs: opts.maxVerifyAgeMs }),
      ...(opts.minSoakMs === undefined ? {} : { minSoakMs: opts.minSoakMs }),
    };
    return {
      workspace: ws,
      phase,
      legacyComplete: wsState.legacyComplete,
      next,
      gates: workspaceGates(next, { state, now, workspace: ws, wsState, writers, ...tuning }),
    };
  });
  return { byPhase, listed };
}
