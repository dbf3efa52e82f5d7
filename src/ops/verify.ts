/**
 * `verify`: proves that both layouts agree, field by field, in both directions.
 *
 *   verify(ctx, opts)
 *    ├─ plan       VerifyPlan.from(opts, state)    scope, rounds, sample, tolerance
 *    ├─ suspects   new SuspectSet(max, accepted)   add / count / unconfirmed
 *    ├─ round 1    Passes.run                      legacy → v2, v2 → legacy, the indexes
 *    ├─ rounds     Rechecker.rounds                only what persists counts
 *    ├─ repair     Repairer.run + Rechecker        compare-and-swap, then confirmed
 *    └─ report     MismatchReport                  redacted NDJSON, the first few listed
 *
 * The result is recorded in the state record (`last_verify`): a clean full
 * verify is what opens flip-read and proves v2 complete.
 */
import { ExitCode } from '../core/errors.js';
import { Phase } from '../core/phase.js';
import { isCluster } from '../core/redis.js';
import { StateField } from '../core/state.js';
import { readWorkspaceStates, writeWorkspaceStates } from '../core/workspaces.js';
import { loadAccepted } from './accept.js';
import { fenceOf, throttled, type OpContext, type ProgressFn } from './context.js';
import { countKeys } from './count.js';
import { enforceGates, phaseGate } from './gates.js';
import type { GuardController, ThrottleSummary } from './guards/controller.js';
import type { VerifySummary } from './summaries.js';
import { PairChecker } from './verify/pair-check.js';
import { Passes } from './verify/passes.js';
import { VerifyPlan } from './verify/plan.js';
import { Repairer } from './verify/repairer.js';
import { MismatchReport, type VerifyMismatch } from './verify/report.js';
import { Rechecker } from './verify/rounds.js';
import { SuspectSet } from './verify/suspects.js';

export { DEFAULT_MAX_SUSPECTS, DEFAULT_ROUND_DELAY_MS, DEFAULT_ROUNDS, DEFAULT_TTL_TOLERANCE_MS } from './verify/plan.js';
export type { VerifyMismatch } from './verify/report.js';

/** Options of {@link verify}. */
export interface VerifyOptions {
  rounds?: number;
  roundDelayMs?: number;
  ttlToleranceMs?: number;
  /** Only these workspaces (scope partial): the verify that opens a canary's flip and cleanup. */
  workspaces?: readonly string[] | null;
  /** Check only this fraction of the keys, 0 < f ≤ 1 (scope partial). */
  sample?: number | null;
  /** NDJSON report of every persistent mismatch (values redacted). */
  reportPath?: string | null;
  /** Fix persistent mismatches from the primary with compare-and-swap. */
  repair?: boolean;
  batchSize?: number;
  concurrency?: number;
  maxSuspects?: number;
  /** Mismatches listed in the result (all are counted and reported to the file). Default 50. */
  maxListed?: number;
  /** Paces round 1's scan on the guards and live control (src/ops/guards/controller.ts). */
  guards?: GuardController | null;
  onProgress?: ProgressFn;
}

/** Result of {@link verify} (`--json`). */
export interface VerifyResult {
  ok: boolean;
  /** Records examined (legacy and v2). */
  scanned: number;
  /** Index entries examined. */
  indexEntries: number;
  /** Persistent mismatches found (before any repair). */
  mismatches: number;
  byKind: Record<string, number>;
  rounds: number;
  durationMs: number;
  /** Suspects left after each round. */
  suspectsPerRound: number[];
  repaired: number;
  /** Persistent mismatches that remain (after repair when --repair). */
  remaining: number;
  /** Suspects beyond --max-suspects, counted without re-checks. */
  unconfirmed: number;
  /** Unmigratable keys accepted with `orch-migrate accept`: excluded from mismatches, reported here. */
  accepted: number;
  scope: 'full' | 'partial';
  /** The workspaces a `--workspace` verify (without --sample) covered: their canary gates read it; null otherwise. */
  workspaces: string[] | null;
  epoch: number;
  phase: Phase;
  /** The first persistent mismatches (see the report file for all). */
  listed: VerifyMismatch[];
  reportPath: string | null;
  startedAt: number;
  finishedAt: number;
  /** Time the guards held the run back (null without guards). */
  throttle: ThrottleSummary | null;
}

/** Runs a verify. Exit 1 (via {@link verifyExitCode}) when anything persistent remains. */
export async function verify(ctx: OpContext, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const startedAt = Date.now();
  const state = await ctx.state.read();
  const plan = VerifyPlan.from(opts, state);
  if (opts.repair) enforceGates([phaseGate(state, [Phase.DualWrite, Phase.ReadNew], 'verify --repair')], {});
  const suspects = new SuspectSet(plan.maxSuspects, await loadAccepted(ctx.client, ctx.keys));
  const checker = new PairChecker(ctx.client, ctx.keys, plan, suspects);
  const progress = throttled(opts.onProgress);

  // Round 1: everything; then rounds 2..N: the suspects only.
  const estimate = await countKeys(ctx.client, ctx.keys);
  const first = await new Passes(ctx, plan, suspects, checker, opts.guards ?? null).run(estimate, (stage, p, total) =>
    progress({ stage, done: p.scanned, total, totalIsEstimate: true }),
  );
  const rechecker = new Rechecker(ctx, plan, suspects, checker);
  const recheckProgress = (stage: string, done: number, total: number): void => progress({ stage, done, total, totalIsEstimate: false });
  const suspectsPerRound = await rechecker.rounds(recheckProgress);
  const found = suspects.count();
  const persistent = suspects.entries();

  // Repair, then confirm: whatever still differs remains.
  let repaired = 0;
  let remaining = found.total;
  if (opts.repair && found.total > 0) {
    const repairer = new Repairer(ctx, state, isCluster(ctx.client));
    const run = await repairer.run(suspects, plan.concurrency);
    repaired = run.repaired;
    await rechecker.recheck(run.ids, 'verify: confirming repairs', recheckProgress);
    remaining = suspects.count().total;
  }

  // The report lists what was found, repaired or not.
  const report = new MismatchReport(ctx.keys, { path: opts.reportPath ?? null, maxListed: opts.maxListed ?? 50, repair: opts.repair === true });
  for (const [id, s] of persistent) report.add(s, s.t !== 'key' && s.repaired === true && !suspects.has(id));
  await report.close();

  const finishedAt = Date.now();
  const ok = remaining === 0;
  const result: VerifyResult = {
    ok,
    scanned: first.scanned,
    indexEntries: first.indexEntries,
    mismatches: found.total,
    byKind: found.byKind,
    rounds: plan.rounds,
    durationMs: finishedAt - startedAt,
    suspectsPerRound,
    repaired,
    remaining,
    unconfirmed: suspects.unconfirmed,
    accepted: suspects.acceptedCount,
    scope: plan.scope,
    // A sampled check is no evidence for a gate, a canary's included.
    workspaces: plan.workspaces === null || plan.sample !== null ? null : [...plan.workspaces].sort(),
    epoch: state.epoch,
    phase: state.phase,
    listed: report.listed,
    reportPath: opts.reportPath ?? null,
    startedAt,
    finishedAt,
    throttle: opts.guards?.summary() ?? null,
  };
  await recordVerify(ctx, result);
  if (result.workspaces !== null) await recordWorkspaceVerifies(ctx, new Set(result.workspaces), suspects, result);
  return result;
}

/**
 * A verify of some workspaces is the evidence their canary gates read: one
 * verdict per workspace, from the mismatches that persisted for it.
 */
async function recordWorkspaceVerifies(ctx: OpContext, workspaces: ReadonlySet<string>, suspects: SuspectSet, r: VerifyResult): Promise<void> {
  const perWs = new Map<string, number>();
  for (const [, s] of suspects.entries()) if (s.t !== 'key') perWs.set(s.ws, (perWs.get(s.ws) ?? 0) + 1);
  const states = await readWorkspaceStates(ctx.client, ctx.keys, [...workspaces]);
  for (const ws of workspaces) {
    const mismatches = perWs.get(ws) ?? 0;
    const st = states.get(ws)!;
    states.set(ws, {
      ...st,
      lastVerify: { ok: mismatches === 0 && r.unconfirmed === 0, epoch: r.epoch, startedAt: r.startedAt, finishedAt: r.finishedAt, mismatches },
    });
  }
  if (ctx.lock) await ctx.lock.assertHeld();
  await writeWorkspaceStates(ctx.client, ctx.keys, states);
}

/** Stores the summary the gates read; a full verify also says whether v2 is complete. */
async function recordVerify(ctx: OpContext, r: VerifyResult): Promise<void> {
  const summary: VerifySummary = {
    ok: r.ok,
    epoch: r.epoch,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    scope: r.scope,
    scanned: r.scanned,
    mismatches: r.mismatches,
    byKind: r.byKind,
    rounds: r.rounds,
    durationMs: r.durationMs,
    repaired: r.repaired,
  };
  const fields: Record<string, string> = { [StateField.LastVerify]: JSON.stringify(summary) };
  if (r.ok && r.scope === 'full') fields[StateField.V2Complete] = '1';
  // While v2 is the mirror, a full verify that finds differences proves v2 is not (or no longer) complete.
  else if (!r.ok && r.scope === 'full' && r.phase === Phase.DualWrite) fields[StateField.V2Complete] = '0';
  await ctx.state.setFields(fenceOf(ctx), fields);
}

/** Exit code of a finished verify: 1 when anything persistent remains. */
export function verifyExitCode(r: VerifyResult): number {
  return r.ok ? ExitCode.Ok : ExitCode.Problems;
}
