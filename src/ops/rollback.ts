/**
 * `rollback`: one step back. A preview unless `execute` (gh-ost style: a no-op
 * until asked to act). What one step means in each phase:
 *
 *  - dual-write → legacy: instant. v2 stops receiving writes, so v2_complete=0.
 *  - read-new → dual-write: instant, gated on legacy being complete (gate
 *    `legacy-complete`: in read-new writers mirror into legacy, so it is, unless
 *    a rollback from new-only has not finished its reverse backfill).
 *  - new-only → read-new: the phase moves first (legacy_complete=0), so writers
 *    mirror full snapshots into legacy again; then, once the settle window is
 *    over, the backfill engine runs in reverse (v2 → legacy, checkpoint
 *    `reverse-backfill`) and marks legacy complete when it finishes. This works
 *    after cleanup deleted the legacy keys.
 *  - read-new with legacy incomplete (that reverse backfill was interrupted, or
 *    the process died after the phase moved): `rollback --execute` RESUMES the
 *    reverse backfill from its checkpoint and stays in read-new. It does not
 *    also move to dual-write: each `rollback --execute` finishes exactly one
 *    step, and the step in progress is "back to read-new with legacy complete".
 *    Run `rollback --execute` again afterwards to move reads back to legacy.
 *
 * `phaseOnly` moves the phase and skips the reverse backfill (a later
 * `rollback --execute` runs it). In read-new with legacy incomplete it asks
 * for read-new → dual-write, which the legacy-complete gate refuses (exit 3)
 * unless `--force legacy-complete --reason`.
 *
 * Back to legacy (dual-write → legacy) ends a lineage: the transition bumps
 * the state record's lineage counter, and the forward checkpoint (with its
 * findings) is discarded, so the next forward backfill rescans everything and
 * makes every v2 copy equal to legacy again (v2 may have fallen behind writers
 * that do not bump rev).
 */
import { ValidationError } from '../core/errors.js';
import { Phase, previousPhase } from '../core/phase.js';
import { phaseOf, StateField, type MigrationState } from '../core/state.js';
import { readWorkspaceStates } from '../core/workspaces.js';
import { canaryContext, moveWorkspaces } from './canary.js';
import { listWriters } from '../core/writers.js';
import { backfill, backfillOpName, type BackfillResult } from './backfill.js';
import { clearCheckpoint } from './checkpoint.js';
import type { OpContext, ProgressFn } from './context.js';
import { enforceGates, gatesFor, type GateStatus } from './gates.js';
import type { GuardController } from './guards/controller.js';
import { runTransition } from './transition.js';

/** What a rollback does (or would do) in the current state. */
export const RollbackAction = {
  /** An instant phase move (dual-write → legacy, read-new → dual-write). */
  Transition: 'transition',
  /** new-only → read-new, then the reverse backfill. */
  TransitionAndReverseBackfill: 'transition+reverse-backfill',
  /** read-new with legacy incomplete: resume the reverse backfill; no phase move. */
  ResumeReverseBackfill: 'resume-reverse-backfill',
} as const;
export type RollbackAction = (typeof RollbackAction)[keyof typeof RollbackAction];

/** Options of {@link rollback}. */
export interface RollbackOptions {
  /** Act; without it the rollback is only previewed (no lock needed). */
  execute?: boolean;
  reason?: string;
  /** Gates to override by name (needs `reason`; recorded in the history). */
  force?: readonly string[];
  /** Bound of the wait for writer acknowledgements (default 10 s). */
  ackTimeoutMs?: number;
  /** Move the phase only; never run the reverse backfill. */
  phaseOnly?: boolean;
  /** Reverse backfill tuning. */
  batchSize?: number;
  concurrency?: number;
  rate?: number | null;
  /** Paces the reverse backfill on the guards and live control (src/ops/guards/controller.ts). */
  guards?: GuardController | null;
  onProgress?: ProgressFn;
}

/** Result of {@link rollback} (`--json`: from, to, epoch, dryRun, ...). */
export interface RollbackResult {
  /** Phase before. */
  from: Phase;
  /** Phase after (on a preview: the phase it would end in). */
  to: Phase;
  /** Epoch after (on a preview: the current one). */
  epoch: number;
  dryRun: boolean;
  action: RollbackAction;
  /** Human steps of the plan, in order. */
  plan: string[];
  changedAt: number | null;
  forced: string[];
  gates: GateStatus[];
  settleMs: number;
  /** The reverse backfill's result, when one ran. */
  reverseBackfill: BackfillResult | null;
  /** Whether legacy is complete after the run (as recorded in the state record). */
  legacyComplete: boolean;
  /** The command to run next. */
  next: string;
}

/** Describes the plan for the current state (no I/O). */
export function planRollback(
  state: MigrationState,
  opts: { phaseOnly?: boolean; force?: readonly string[] },
): { action: RollbackAction; to: Phase; plan: string[] } {
  const back = previousPhase(state.phase) ?? Phase.Legacy;
  switch (state.phase) {
    case Phase.DualWrite:
      return {
        action: RollbackAction.Transition,
        to: Phase.Legacy,
        plan: [
          'move dual-write → legacy (instant); writers stop mirroring into v2',
          'mark v2 incomplete (v2_complete=0) and end the lineage: the forward checkpoint is discarded, so a later migration backfills everything and verifies again',
        ],
      };
    case Phase.ReadNew:
      if (!state.legacyComplete && !opts.phaseOnly && !(opts.force ?? []).includes('legacy-complete')) {
        return {
          action: RollbackAction.ResumeReverseBackfill,
          to: Phase.ReadNew,
          plan: [
            'legacy is incomplete, so reads cannot move back to legacy yet',
            'resume the reverse backfill (v2 → legacy) from its checkpoint; reads stay on v2',
            'mark legacy complete when it finishes; then run `orch-migrate rollback --execute` again for read-new → dual-write',
          ],
        };
      }
      return {
        action: RollbackAction.Transition,
        to: Phase.DualWrite,
        plan: ['move read-new → dual-write (instant): reads go back to legacy; writers keep mirroring into v2'],
      };
    case Phase.NewOnly:
      return {
        action: opts.phaseOnly ? RollbackAction.Transition : RollbackAction.TransitionAndReverseBackfill,
        to: Phase.ReadNew,
        plan: [
          'move new-only → read-new (legacy_complete=0): writers mirror every write into legacy again; reads stay on v2',
          ...(opts.phaseOnly
            ? ['skip the reverse backfill (--phase-only): a later `orch-migrate rollback --execute` runs it; legacy stays incomplete until then']
            : [
                `wait out the settle window (${state.settleMs} ms)`,
                'reverse-backfill legacy from v2 (checkpoint reverse-backfill); mark legacy complete when done',
              ]),
        ],
      };
    default:
      return { action: RollbackAction.Transition, to: back, plan: [] };
  }
}

/** The reverse backfill resumes its checkpoint only within the epoch it started in (backfill.ts). */
async function reverseBackfill(ctx: OpContext, opts: RollbackOptions): Promise<BackfillResult> {
  return backfill(ctx, {
    direction: 'reverse',
    ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
    ...(opts.batchSize === undefined ? {} : { batchSize: opts.batchSize }),
    ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
    rate: opts.rate ?? null,
    guards: opts.guards ?? null,
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
}

/** Runs (or previews) one step back. Throws GateError (exit 3) when refused. */
export async function rollback(ctx: OpContext, opts: RollbackOptions = {}): Promise<RollbackResult> {
  const execute = opts.execute === true;
  const state = await ctx.state.read();
  const now = await ctx.state.serverTime();
  const gates = gatesFor('rollback', { state, now, writers: await listWriters(ctx.client, ctx.keys, now) });
  const { action, to, plan } = planRollback(state, opts);
  // The phase precondition (not in legacy) always applies.
  enforceGates(
    gates.filter((g) => !g.forceable),
    {},
  );

  const base = {
    from: state.phase,
    to,
    action,
    plan,
    gates,
    settleMs: state.settleMs,
  };

  if (action === RollbackAction.ResumeReverseBackfill) {
    if (!execute) {
      return {
        ...base,
        epoch: state.epoch,
        dryRun: true,
        changedAt: null,
        forced: [],
        reverseBackfill: null,
        legacyComplete: false,
        next: 'orch-migrate rollback --execute',
      };
    }
    const rb = await reverseBackfill(ctx, opts);
    const after = await ctx.state.read();
    return {
      ...base,
      epoch: after.epoch,
      dryRun: false,
      changedAt: null,
      forced: [],
      reverseBackfill: rb,
      legacyComplete: after.legacyComplete,
      next: after.legacyComplete
        ? 'orch-migrate rollback --execute  # read-new → dual-write'
        : 'orch-migrate rollback --execute  # resume the reverse backfill',
    };
  }

  const tr = await runTransition(ctx, {
    command: 'rollback',
    to: () => to,
    ...(opts.reason === undefined ? {} : { reason: opts.reason }),
    force: opts.force ?? [],
    ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
    dryRun: !execute,
    state,
    extra: (): Record<string, string> => {
      if (state.phase === Phase.DualWrite) return { [StateField.V2Complete]: '0' };
      // In new-only legacy got no writes: it is stale whether or not cleanup ran.
      if (state.phase === Phase.NewOnly) return { [StateField.LegacyComplete]: '0' };
      return {};
    },
  });
  if (execute && to === Phase.Legacy) await clearCheckpoint(ctx.client, ctx.keys, backfillOpName('forward'));
  let reverse: BackfillResult | null = null;
  let legacyComplete = state.phase === Phase.NewOnly ? false : state.legacyComplete;
  if (execute && action === RollbackAction.TransitionAndReverseBackfill) {
    reverse = await reverseBackfill(ctx, opts);
    legacyComplete = (await ctx.state.read()).legacyComplete;
  }
  const next = !execute
    ? 'orch-migrate rollback --execute'
    : to === Phase.ReadNew && !legacyComplete
      ? 'orch-migrate rollback --execute  # resume the reverse backfill'
      : to === Phase.Legacy
        ? 'none (back at the start; `orch-migrate enable-dual-write` restarts the migration)'
        : to === Phase.ReadNew
          ? 'orch-migrate verify  # both layouts should agree again; rollback --execute once more moves reads to legacy'
          : 'orch-migrate status';
  return { ...base, epoch: tr.epoch, dryRun: tr.dryRun, changedAt: tr.changedAt, forced: tr.forced, reverseBackfill: reverse, legacyComplete, next };
}

/** Result of {@link rollbackWorkspaces}. */
export interface WorkspaceRollbackResult {
  workspaces: string[];
  /** Where the workspaces were, and where they end (the global phase once the override goes). */
  from: Phase;
  to: Phase;
  epoch: number;
  dryRun: boolean;
  action: RollbackAction;
  plan: string[];
  forced: string[];
  gates: Record<string, GateStatus[]>;
  /** One reverse backfill per workspace, when they ran. */
  reverseBackfills: BackfillResult[];
  /** Whether each workspace's legacy records are complete after the run. */
  legacyComplete: Record<string, boolean>;
  next: string;
}

/**
 * `rollback --workspace a,b`: one step back for those canaries only. From
 * new-only: back to read-new (writers mirror into legacy again for them), then
 * a reverse backfill of exactly their v2 records. From read-new: back to the
 * global phase (the override goes), once their legacy records are complete;
 * while they are not, it resumes their reverse backfill instead.
 */
export async function rollbackWorkspaces(ctx: OpContext, workspaces: string[], opts: RollbackOptions = {}): Promise<WorkspaceRollbackResult> {
  const execute = opts.execute === true;
  const c = await canaryContext(ctx, workspaces);
  const phases = new Set(workspaces.map((ws) => phaseOf(c.state, ws)));
  if (phases.size !== 1) {
    throw new ValidationError(`The workspaces are in different phases (${workspaces.map((ws) => `${ws}: ${phaseOf(c.state, ws)}`).join(', ')})`, {
      suggestion: 'Roll back workspaces that are in the same phase together, one --workspace list per phase.',
    });
  }
  const from = [...phases][0]!;
  const incomplete = workspaces.filter((ws) => !(c.states.get(ws)?.legacyComplete ?? true));
  const forcedLegacy = (opts.force ?? []).includes('legacy-complete');
  const resume = from === Phase.ReadNew && incomplete.length > 0 && !opts.phaseOnly && !forcedLegacy;
  const to = from === Phase.NewOnly ? Phase.ReadNew : resume ? Phase.ReadNew : c.state.phase;
  const action =
    from === Phase.NewOnly
      ? opts.phaseOnly
        ? RollbackAction.Transition
        : RollbackAction.TransitionAndReverseBackfill
      : resume
        ? RollbackAction.ResumeReverseBackfill
        : RollbackAction.Transition;
  const plan =
    from === Phase.NewOnly
      ? [
          `move workspace(s) ${workspaces.join(', ')} new-only → read-new: writers mirror their writes into legacy again; their reads stay on v2`,
          ...(opts.phaseOnly
            ? []
            : ['wait until every writer follows', `reverse-backfill exactly their v2 records into legacy; mark their legacy complete when done`]),
        ]
      : resume
        ? [`their legacy records are incomplete: resume the reverse backfill of ${incomplete.join(', ')}; reads stay on v2`]
        : [`move workspace(s) ${workspaces.join(', ')} read-new → ${c.state.phase} (the global phase): their reads go back to legacy`];
  const reverseBackfills: BackfillResult[] = [];
  const legacyComplete = (): Promise<Record<string, boolean>> =>
    readWorkspaceStates(ctx.client, ctx.keys, workspaces).then((m) => Object.fromEntries(workspaces.map((ws) => [ws, m.get(ws)!.legacyComplete])));
  const base = { workspaces, from, to, action, plan };
  if (!execute) {
    return {
      ...base,
      epoch: c.state.epoch,
      dryRun: true,
      forced: [],
      gates: {},
      reverseBackfills,
      legacyComplete: await legacyComplete(),
      next: `orch-migrate rollback --workspace ${workspaces.join(',')} --execute`,
    };
  }
  let epoch = c.state.epoch;
  let forced: string[] = [];
  let gates: Record<string, GateStatus[]> = {};
  if (!resume) {
    const move = await moveWorkspaces(
      ctx,
      workspaces,
      { command: 'rollback', from, to, already: () => false },
      (_ws, st, cc) => ({ ...st, changedAt: cc.now, epoch: cc.state.epoch + 1, legacyComplete: from === Phase.NewOnly ? false : st.legacyComplete }),
      {
        force: opts.force ?? [],
        ...(opts.reason === undefined ? {} : { reason: opts.reason }),
        ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
      },
    );
    epoch = move.epoch;
    forced = move.forced;
    gates = move.gates;
  }
  if (action === RollbackAction.TransitionAndReverseBackfill || action === RollbackAction.ResumeReverseBackfill) {
    for (const ws of action === RollbackAction.ResumeReverseBackfill ? incomplete : workspaces) {
      reverseBackfills.push(
        await backfill(ctx, {
          direction: 'reverse',
          workspace: ws,
          ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
          ...(opts.batchSize === undefined ? {} : { batchSize: opts.batchSize }),
          ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
          rate: opts.rate ?? null,
          guards: opts.guards ?? null,
          ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        }),
      );
    }
  }
  const complete = await legacyComplete();
  const allComplete = workspaces.every((ws) => complete[ws]);
  const next =
    to === Phase.ReadNew
      ? allComplete
        ? `orch-migrate verify --workspace ${workspaces.join(',')}  # then rollback --workspace … --execute once more moves their reads to legacy`
        : `orch-migrate rollback --workspace ${workspaces.join(',')} --execute  # resumes their reverse backfill`
      : 'orch-migrate status';
  return { ...base, epoch, dryRun: false, forced, gates, reverseBackfills, legacyComplete: complete, next };
}
