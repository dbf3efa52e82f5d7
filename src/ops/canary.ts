/**
 * Canaries: a few workspaces move ahead of the global phase first, each behind
 * gates computed for it alone (docs/design.md "Canaries"):
 *
 *   flip-read --workspace a,b     dual-write → read-new for a and b: a clean
 *                                 verify covering them in this epoch, fresh;
 *   cleanup --workspace a         read-new → new-only for a: its soak, its
 *                                 verify; then deletes exactly a's legacy keys;
 *   rollback --workspace a        one step back for a: new-only → read-new
 *                                 (reverse backfill of a's v2 keys), or back to
 *                                 the global phase (needs a's legacy complete).
 *
 * A canary move is a workspace transition (src/core/state.ts): the epoch
 * moves, so writers re-read and acknowledge exactly as for a global one.
 */
import { createHash } from 'node:crypto';
import { ValidationError } from '../core/errors.js';
import { assertWorkspaceId } from '../core/ids.js';
import { Phase, phaseRank } from '../core/phase.js';
import { masterNodes } from '../core/redis.js';
import { phaseOf, type MigrationState } from '../core/state.js';
import { defaultWorkspaceState, readWorkspaceStates, type WorkspaceState } from '../core/workspaces.js';
import { listWriters, type WriterStatus } from '../core/writers.js';
import { asBackfillSummary, asVerifySummary } from './summaries.js';
import { fenceOf, leaseDeadline, type OpContext } from './context.js';
import { DEFAULT_MAX_VERIFY_AGE_MS, DEFAULT_MIN_SOAK_MS, enforceGates, writersGate, type GateStatus } from './gates.js';
import { awaitAcks } from './transition.js';
import { humanDuration } from '../core/durations.js';

/** Parses and checks a `--workspace a,b` list (full-match ids, no duplicates). */
export function parseWorkspaceList(list: readonly string[]): string[] {
  const out: string[] = [];
  for (const ws of list) {
    assertWorkspaceId(ws);
    if (!out.includes(ws)) out.push(ws);
  }
  if (out.length === 0) throw new ValidationError('No workspace given', { suggestion: 'Pass --workspace a,b or --canary <n>.' });
  return out;
}

/** Workspaces that hold jobs in v2 (one index each), from the index keys on every master. */
export async function workspacesWithJobs(ctx: Pick<OpContext, 'client' | 'keys'>): Promise<string[]> {
  const found = new Set<string>();
  for (const node of masterNodes(ctx.client)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', ctx.keys.indexPattern, 'COUNT', 1000, 'TYPE', 'zset');
      cursor = next;
      for (const k of keys) {
        const ws = ctx.keys.parseIndex(k);
        if (ws !== null) found.add(ws);
      }
    } while (cursor !== '0');
  }
  return [...found].sort();
}

/**
 * `--canary n`: n workspaces chosen deterministically among those with jobs
 * and still at the global phase: the smallest sha256 of their ids, so the same
 * keyspace always gives the same canaries (and a rerun widens, never reshuffles).
 */
export async function chooseCanaries(ctx: Pick<OpContext, 'client' | 'keys'>, state: MigrationState, n: number): Promise<string[]> {
  const candidates = (await workspacesWithJobs(ctx)).filter((ws) => phaseOf(state, ws) === state.phase);
  const rank = (ws: string): string => createHash('sha256').update(ws).digest('hex');
  return candidates.sort((a, b) => (rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0)).slice(0, n);
}

/** Inputs of {@link workspaceGates}. */
export interface WorkspaceGateInputs {
  state: MigrationState;
  now: number;
  workspace: string;
  wsState: WorkspaceState;
  writers: WriterStatus[];
  maxVerifyAgeMs?: number;
  minSoakMs?: number;
}

/**
 * The workspace is where the step starts from, and the step leads ahead of the
 * global phase (an override only runs ahead, and only from dual-write on). Never forceable.
 */
function wsPhaseGate(inp: WorkspaceGateInputs, required: Phase, target: Phase, command: string): GateStatus {
  const global = inp.state.phase;
  const now = phaseOf(inp.state, inp.workspace);
  const globalOk = phaseRank(global) >= phaseRank(Phase.DualWrite) && phaseRank(global) < phaseRank(target);
  const open = now === required && globalOk;
  return {
    name: 'phase',
    open,
    reason: open
      ? `workspace ${inp.workspace} is in ${now}`
      : !globalOk
        ? `${command} --workspace needs the global phase dual-write or later and behind the target, but it is ${global}`
        : `${command} --workspace needs workspace ${inp.workspace} in ${required}, but it is in ${now}`,
    opensWith: open ? null : 'orch-migrate status',
    forceable: false,
  };
}

/** A clean verify that covered this workspace (a full one, or `verify --workspace`), in this epoch, after the last backfill, fresh. */
function wsVerifyGate(inp: WorkspaceGateInputs): GateStatus {
  const closed = (reason: string): GateStatus => ({
    name: 'verify',
    open: false,
    reason,
    opensWith: `orch-migrate verify --workspace ${inp.workspace}`,
    forceable: true,
  });
  const full = asVerifySummary(inp.state.lastVerify);
  const own = inp.wsState.lastVerify;
  const candidates = [
    full && full.scope === 'full'
      ? { ok: full.ok, epoch: full.epoch, startedAt: full.startedAt, finishedAt: full.finishedAt, mismatches: full.mismatches }
      : null,
    own,
  ].filter((v): v is NonNullable<typeof v> => v !== null);
  const v = candidates.sort((a, b) => b.finishedAt - a.finishedAt)[0];
  if (!v) return closed(`no verify has covered workspace ${inp.workspace}`);
  if (v.epoch !== inp.state.epoch)
    return closed(`the last verify of workspace ${inp.workspace} ran in epoch ${v.epoch}; the routing changed since (epoch ${inp.state.epoch})`);
  if (!v.ok) return closed(`the last verify of workspace ${inp.workspace} found ${v.mismatches} persistent mismatch(es)`);
  const b = asBackfillSummary(inp.state.lastBackfill);
  if (b && b.finishedAt > v.startedAt) return closed('a backfill finished after the last verify started');
  const age = inp.now - v.finishedAt;
  const max = inp.maxVerifyAgeMs ?? DEFAULT_MAX_VERIFY_AGE_MS;
  if (age > max) return closed(`the last clean verify of workspace ${inp.workspace} is ${humanDuration(age)} old (max ${humanDuration(max)})`);
  return { name: 'verify', open: true, reason: `clean verify of ${inp.workspace} ${humanDuration(age)} ago`, opensWith: null, forceable: true };
}

/** The workspace has been in read-new long enough. */
function wsSoakGate(inp: WorkspaceGateInputs): GateStatus {
  const min = inp.minSoakMs ?? DEFAULT_MIN_SOAK_MS;
  const since = inp.now - inp.wsState.changedAt;
  const open = since >= min;
  return {
    name: 'soak',
    open,
    reason: open
      ? `workspace ${inp.workspace} in read-new for ${humanDuration(since)}`
      : `workspace ${inp.workspace} in read-new for ${humanDuration(since)}; soak needs ${humanDuration(min)} (${humanDuration(min - since)} to go)`,
    opensWith: open ? null : `orch-migrate cleanup --workspace ${inp.workspace} --execute in ${humanDuration(min - since)}`,
    forceable: true,
  };
}

/** Its legacy records are complete (before reads go back to legacy for it). */
function wsLegacyGate(inp: WorkspaceGateInputs): GateStatus {
  const open = inp.wsState.legacyComplete;
  return {
    name: 'legacy-complete',
    open,
    reason: open
      ? `workspace ${inp.workspace}'s legacy records are complete`
      : `workspace ${inp.workspace}'s legacy records are incomplete (its cleanup ran) and its reverse backfill has not finished`,
    opensWith: open ? null : `orch-migrate rollback --workspace ${inp.workspace} --execute (resumes its reverse backfill)`,
    forceable: true,
  };
}

/** The gates of a canary step for one workspace. */
export function workspaceGates(command: 'flip-read' | 'cleanup' | 'rollback', inp: WorkspaceGateInputs): GateStatus[] {
  const writers = writersGate({ state: inp.state, now: inp.now, writers: inp.writers });
  const current = phaseOf(inp.state, inp.workspace);
  switch (command) {
    case 'flip-read':
      return [wsPhaseGate(inp, Phase.DualWrite, Phase.ReadNew, command), wsVerifyGate(inp), writers];
    case 'cleanup':
      if (current === Phase.NewOnly)
        return [{ name: 'phase', open: true, reason: `workspace ${inp.workspace} is in new-only: cleanup resumes`, opensWith: null, forceable: false }];
      return [wsPhaseGate(inp, Phase.ReadNew, Phase.NewOnly, command), wsSoakGate(inp), wsVerifyGate(inp), writers];
    case 'rollback': {
      if (current === inp.state.phase) {
        return [
          {
            name: 'phase',
            open: false,
            reason: `workspace ${inp.workspace} is at the global phase (${inp.state.phase}): roll back the global phase instead`,
            opensWith: 'orch-migrate rollback',
            forceable: false,
          },
        ];
      }
      const back = current === Phase.NewOnly ? [] : [wsLegacyGate(inp)];
      return [{ name: 'phase', open: true, reason: `workspace ${inp.workspace} is in ${current}`, opensWith: null, forceable: false }, ...back, writers];
    }
  }
}

/** Everything a canary step reads before it moves. */
export interface CanaryContext {
  state: MigrationState;
  now: number;
  writers: WriterStatus[];
  states: Map<string, WorkspaceState>;
}

/** Reads the state record, the server time, the writers and the workspaces' records. */
export async function canaryContext(ctx: OpContext, workspaces: readonly string[]): Promise<CanaryContext> {
  const state = await ctx.state.read();
  const now = await ctx.state.serverTime();
  const [writers, states] = await Promise.all([listWriters(ctx.client, ctx.keys, now), readWorkspaceStates(ctx.client, ctx.keys, workspaces)]);
  return { state, now, writers, states };
}

/** Options shared by the canary steps. */
export interface CanaryStepOptions {
  force?: readonly string[];
  /** Bound of the wait for writer acknowledgements after the move (default 10 s). */
  ackTimeoutMs?: number;
  reason?: string;
  maxVerifyAgeMs?: number;
  minSoakMs?: number;
  dryRun?: boolean;
}

/** Result of one canary move. */
export interface CanaryMoveResult {
  workspaces: string[];
  from: Phase;
  to: Phase;
  epoch: number;
  dryRun: boolean;
  /** Workspaces already where the step leads (nothing done for them). */
  already: string[];
  forced: string[];
  gates: Record<string, GateStatus[]>;
}

/**
 * Enforces the gates of every workspace and moves the ones not already there,
 * in one workspace transition. `nextState` gives each one's new state record.
 */
export async function moveWorkspaces(
  ctx: OpContext,
  workspaces: string[],
  step: { command: 'flip-read' | 'cleanup' | 'rollback'; from: Phase; to: Phase; already: (ws: string, c: CanaryContext) => boolean },
  nextState: (ws: string, st: WorkspaceState, c: CanaryContext) => WorkspaceState,
  opts: CanaryStepOptions,
): Promise<CanaryMoveResult> {
  const c = await canaryContext(ctx, workspaces);
  const already = workspaces.filter((ws) => step.already(ws, c));
  const moving = workspaces.filter((ws) => !already.includes(ws));
  const gates: Record<string, GateStatus[]> = {};
  const forced = new Set<string>();
  for (const ws of moving) {
    const g = workspaceGates(step.command, {
      state: c.state,
      now: c.now,
      workspace: ws,
      wsState: c.states.get(ws) ?? defaultWorkspaceState(),
      writers: c.writers,
      ...gateTuning(opts),
    });
    gates[ws] = g;
    for (const name of enforceGates(g, { force: opts.force ?? [], reason: opts.reason ?? '' })) forced.add(name);
  }
  const base = { workspaces, from: step.from, to: step.to, already, forced: [...forced], gates };
  if (moving.length === 0 || opts.dryRun) return { ...base, epoch: c.state.epoch, dryRun: opts.dryRun === true };
  const expected: Record<string, Phase | null> = {};
  for (const ws of moving) expected[ws] = c.state.overrides[ws] ?? null;
  const states = new Map(moving.map((ws) => [ws, nextState(ws, c.states.get(ws) ?? defaultWorkspaceState(), c)]));
  const res = await ctx.state.transitionWorkspaces({
    workspaces: moving,
    expected,
    to: step.to === c.state.phase ? null : step.to,
    states,
    expectedEpoch: c.state.epoch,
    fence: fenceOf(ctx),
    actor: ctx.actor,
    ...(opts.reason === undefined ? {} : { reason: opts.reason }),
    forcedGates: [...forced],
    data: { command: step.command, from: step.from },
    leaseDeadlineMs: leaseDeadline(ctx),
  });
  if (forced.size > 0)
    await ctx.state.appendHistory('force', ctx.actor, {
      command: `${step.command} --workspace`,
      workspaces: moving,
      gates: [...forced],
      reason: opts.reason ?? '',
      epoch: res.epoch,
    });
  if (!forced.has('writers')) await awaitAcks(ctx, step.from, step.to, res.epoch, opts.ackTimeoutMs);
  return { ...base, epoch: res.epoch, dryRun: false };
}

function gateTuning(opts: CanaryStepOptions): { maxVerifyAgeMs?: number; minSoakMs?: number } {
  return {
    ...(opts.maxVerifyAgeMs === undefined ? {} : { maxVerifyAgeMs: opts.maxVerifyAgeMs }),
    ...(opts.minSoakMs === undefined ? {} : { minSoakMs: opts.minSoakMs }),
  };
}

/** `flip-read --workspace`: the workspaces' reads move to v2 (writers keep mirroring into legacy for them). */
export function flipWorkspaces(ctx: OpContext, workspaces: string[], opts: CanaryStepOptions): Promise<CanaryMoveResult> {
  return moveWorkspaces(
    ctx,
    workspaces,
    { command: 'flip-read', from: Phase.DualWrite, to: Phase.ReadNew, already: (ws, c) => phaseOf(c.state, ws) === Phase.ReadNew },
    (_ws, st, c) => ({ ...st, changedAt: c.now, epoch: c.state.epoch + 1, legacyComplete: true }),
    opts,
  );
}

/** Which workspaces a canary command acts on: the named ones, or `--canary n` chosen deterministically. */
export async function resolveWorkspaces(
  ctx: OpContext,
  sel: { workspaces: readonly string[] | null; canary: number | null },
): Promise<{ workspaces: string[]; chosen: boolean }> {
  if (sel.workspaces && sel.workspaces.length > 0) return { workspaces: parseWorkspaceList(sel.workspaces), chosen: false };
  if (sel.canary === null) throw new ValidationError('No workspace given', { suggestion: 'Pass --workspace a,b or --canary <n>.' });
  const picked = await chooseCanaries(ctx, await ctx.state.read(), sel.canary);
  if (picked.length === 0) {
    throw new ValidationError('No workspace can be a canary: none with jobs in v2 is still at the global phase', {
      suggestion: 'Run the backfill first (canaries are chosen among workspaces with a v2 index).',
    });
  }
  return { workspaces: picked, chosen: true };
}
