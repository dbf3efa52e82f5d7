/**
 * The shared shape of a phase transition: read the record, check the gates
 * (the registered writers among them), compare-and-set on the epoch (fenced by
 * the lock) together with the history entry, announce, then wait until every
 * live writer has acknowledged the new epoch.
 */
import { GateError } from '../core/errors.js';
import type { Phase } from '../core/phase.js';
import { StateField, type MigrationState } from '../core/state.js';
import { describeWriter, listWriters, waitForAcks, WritersLaggingError } from '../core/writers.js';
import { fenceOf, type OpContext } from './context.js';
import { enforceGates, gatesFor, type GateInputs, type GateStatus } from './gates.js';

/** Options of {@link runTransition}. */
export interface TransitionOpOptions {
  /** Command name: selects the gates and is shown in messages. */
  command: string;
  /** Target phase, given the current state. */
  to: (state: MigrationState) => Phase;
  reason?: string;
  /** Gates to override by name (`--force a,b`). */
  force?: readonly string[];
  /** Bound of the wait for writer acknowledgements after the move (default 10 s). */
  ackTimeoutMs?: number;
  /** Preview only: check the gates and report, change nothing. */
  dryRun?: boolean;
  /** Extra state fields set in the same atomic step; `forced` names the gates overridden with --force. */
  extra?: (state: MigrationState, forced: string[]) => Record<string, string>;
  /** Gate tuning. */
  gates?: Omit<GateInputs, 'state' | 'now' | 'writers'>;
  /** settle_ms recorded on the first transition. */
  settleMs?: number;
  /** A state read just before (saves a round trip; the CAS still guards it). */
  state?: MigrationState;
  /** Already in the target phase → exit 0 with a note, not a gate refusal (the forward transition commands). */
  idempotent?: boolean;
}

/** Result of a transition (`--json`: from, to, epoch, dryRun). */
export interface TransitionOpResult {
  from: Phase;
  to: Phase;
  /** The new epoch, or the current one on a dry run. */
  epoch: number;
  dryRun: boolean;
  /** Server time of the change, or null on a dry run. */
  changedAt: number | null;
  /** Gates overridden with --force. */
  forced: string[];
  gates: GateStatus[];
  settleMs: number;
  /** The phase already was the target: nothing changed (exit 0, idempotent). */
  already: boolean;
  /** Things the operator should know (an option that was ignored, …). */
  notes: string[];
  /** The command to run next, when there is an obvious one. */
  next: string | null;
}

/** The step after a phase is reached, for an idempotent rerun. */
const NEXT_AFTER: Partial<Record<Phase, string>> = {
  'dual-write': 'orch-migrate backfill',
  'read-new': 'orch-migrate verify, then orch-migrate cleanup (a dry run)',
};

/** Runs one transition. Throws GateError (exit 3) when a gate refuses. */
export async function runTransition(ctx: OpContext, opts: TransitionOpOptions): Promise<TransitionOpResult> {
  const state = opts.state ?? (await ctx.state.read());
  const notes: string[] = [];
  if (opts.settleMs !== undefined && state.raw[StateField.SettleMs] !== undefined && opts.settleMs !== state.settleMs) {
    notes.push(`--settle-ms ${opts.settleMs} was ignored: the state record keeps settle_ms ${state.settleMs} (the first transition sets it)`);
  }
  // Running a step again once it is done is not an error: say so, and what comes next.
  if (opts.idempotent && opts.to(state) === state.phase) {
    return {
      from: state.phase,
      to: state.phase,
      epoch: state.epoch,
      dryRun: opts.dryRun ?? false,
      changedAt: null,
      forced: [],
      gates: [],
      settleMs: state.settleMs,
      already: true,
      notes,
      next: NEXT_AFTER[state.phase] ?? null,
    };
  }
  const now = await ctx.state.serverTime();
  const writers = await listWriters(ctx.client, ctx.keys, now);
  const gates = gatesFor(opts.command, { state, now, writers, ...opts.gates });
  const forced = enforceGates(gates, { force: opts.force ?? [], reason: opts.reason ?? '' });
  const to = opts.to(state);
  if (opts.dryRun) {
    return {
      from: state.phase,
      to,
      epoch: state.epoch,
      dryRun: true,
      changedAt: null,
      forced,
      gates,
      settleMs: state.settleMs,
      already: false,
      notes,
      next: null,
    };
  }
  const res = await ctx.state.transition({
    from: state.phase,
    to,
    expectedEpoch: state.epoch,
    fence: fenceOf(ctx),
    actor: ctx.actor,
    reason: opts.reason ?? '',
    extra: opts.extra?.(state, forced) ?? {},
    forcedGates: forced,
    ...(opts.settleMs === undefined ? {} : { settleMs: opts.settleMs }),
  });
  if (forced.length > 0) {
    await ctx.state.appendHistory('force', ctx.actor, { command: opts.command, gates: forced, reason: opts.reason ?? '', epoch: res.epoch });
  }
  // The global phase caught up with any canary at or behind it: its override is moot now.
  await ctx.state.dropCaughtUpOverrides(to).catch(() => undefined);
  if (!forced.includes('writers')) await awaitAcks(ctx, state.phase, to, res.epoch, opts.ackTimeoutMs);
  // The first transition records opts.settleMs when the record had none.
  const settleMs = state.raw[StateField.SettleMs] === undefined && opts.settleMs !== undefined ? opts.settleMs : state.settleMs;
  return {
    from: state.phase,
    to,
    epoch: res.epoch,
    dryRun: false,
    changedAt: res.changedAt,
    forced,
    gates,
    settleMs,
    already: false,
    notes,
    next: NEXT_AFTER[to] ?? null,
  };
}

/**
 * After the move: every live writer acknowledges the new epoch, or the run
 * says which did not (exit 3). The phase has moved either way; the steps that
 * need every writer on it wait for the acknowledgements again themselves.
 */
export async function awaitAcks(ctx: OpContext, from: Phase, to: Phase, epoch: number, timeoutMs: number | undefined): Promise<void> {
  try {
    await waitForAcks(ctx.client, ctx.keys, epoch, {
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      signal: ctx.signal,
      serverTime: () => ctx.state.serverTime(),
    });
  } catch (err) {
    if (!(err instanceof WritersLaggingError)) throw err;
    const names = err.laggards.slice(0, 5).map(describeWriter).join('; ');
    await ctx.state.appendHistory('ack-timeout', ctx.actor, { from, to, epoch, laggards: err.laggards.map((w) => w.id) }).catch(() => undefined);
    throw new GateError(
      'writers',
      `Moved ${from} → ${to} (epoch ${epoch}), but ${err.laggards.length} live writer(s) did not acknowledge it in time: ${names}. Backfill, cleanup deletes and the reverse backfill stay refused until they do.`,
      {
        suggestion:
          'Check those writer processes; rerun the next step once `orch-migrate status` shows every writer at the new epoch (a dead writer stops counting when its lease runs out).',
      },
    );
  }
}
