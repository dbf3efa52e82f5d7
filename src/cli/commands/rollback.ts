/** `orch-migrate rollback`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { ExitCode } from '../../core/errors.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY } from '../../ops/scan-engine.js';
import { parseWorkspaceList } from '../../ops/canary.js';
import {
  planRollback,
  rollback,
  RollbackAction,
  rollbackWorkspaces,
  type RollbackOptions,
  type RollbackResult,
  type WorkspaceRollbackResult,
} from '../../ops/rollback.js';
import { dflt, FORCE_HELP, forceFlag, intFlag, orNull, rateFlag, switchFlag, textFlag, withDefault, workspaceListFlag } from '../options.js';
import { fmtInt, safe, type Output } from '../output.js';
import { Phase } from '../../core/phase.js';
import { phaseOf } from '../../core/state.js';
import { readWorkspaceStates } from '../../core/workspaces.js';
import type { OpContext, ProgressFn } from '../../ops/context.js';
import type { GuardController } from '../../ops/guards/controller.js';
import { addGuardOptions, guardFlagFields, runGuarded } from '../guard-flags.js';
import { renderThrottle, throttleJson } from './throttle.js';
import { runCommand, type CommandIO } from '../runner.js';

/** Options of `rollback`. */
const RollbackFlagsSchema = z.object({
  execute: switchFlag,
  reason: orNull(textFlag()),
  force: forceFlag,
  phaseOnly: switchFlag,
  rate: orNull(rateFlag()),
  batchSize: withDefault(intFlag(1, 100_000), DEFAULT_BATCH_SIZE),
  concurrency: withDefault(intFlag(1, 64), DEFAULT_CONCURRENCY),
  workspace: orNull(workspaceListFlag()),
  ...guardFlagFields,
});

type RollbackFlags = z.infer<typeof RollbackFlagsSchema>;

/** A run with or without the guards (a preview or an instant move runs without them). */
interface GuardedRun {
  ctx: OpContext;
  guards: GuardController | null;
  onProgress: ProgressFn;
}

/** The operation's options from the flags, for a global and a canary rollback alike. */
function rollbackOptions(io: CommandIO<RollbackFlags>, g: GuardedRun): RollbackOptions {
  const { opts, globals } = io;
  return {
    execute: opts.execute,
    ...(opts.reason === null ? {} : { reason: opts.reason }),
    force: opts.force,
    ackTimeoutMs: globals.ackTimeout,
    phaseOnly: opts.phaseOnly,
    rate: opts.rate,
    guards: g.guards,
    batchSize: opts.batchSize,
    concurrency: opts.concurrency,
    onProgress: g.onProgress,
  };
}

/** Whether rolling these workspaces back copies records (one in new-only, or in read-new with its legacy incomplete). */
async function needsReverseCopy(ctx: OpContext, workspaces: string[]): Promise<boolean> {
  const state = await ctx.state.read();
  const records = await readWorkspaceStates(ctx.client, ctx.keys, workspaces);
  return workspaces.some((ws) => phaseOf(state, ws) === Phase.NewOnly || (phaseOf(state, ws) === Phase.ReadNew && !records.get(ws)!.legacyComplete));
}

/** Human lines of a canary rollback. */
function renderWorkspaces(r: WorkspaceRollbackResult, out: Output): void {
  const c = out.color;
  if (r.dryRun) {
    out.print(`${c.yellow('preview:')} rollback of workspace(s) ${r.workspaces.join(', ')} from ${r.from}; nothing changed. Add --execute to act.`);
    r.plan.forEach((step, i) => out.print(`  ${i + 1}. ${step}`));
    return;
  }
  if (r.action !== RollbackAction.ResumeReverseBackfill)
    out.print(`${c.green('moved')} workspace(s) ${r.workspaces.join(', ')} ${r.from} → ${r.to}, epoch ${r.epoch}; every other workspace is untouched`);
  for (const b of r.reverseBackfills) {
    out.print(
      `${b.complete ? c.green('reverse backfill complete') : c.yellow('reverse backfill incomplete')} for ${b.workspace ?? '?'}: ${fmtInt(b.scanned)} v2 record(s), ${fmtInt(b.copied)} copied to legacy, ${b.unmigratable > 0 ? c.red(`${fmtInt(b.unmigratable)} unmigratable`) : '0 unmigratable'}`,
    );
    for (const u of b.unmigratableRecords.slice(0, 10)) out.print(`  ${safe(u.key)}  ${u.reason}${u.detail ? ` ${safe(u.detail)}` : ''}`);
  }
  if (r.forced.length > 0) out.print(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
  out.print(`legacy complete: ${r.workspaces.map((ws) => `${ws} ${r.legacyComplete[ws] ? 'yes' : c.yellow('no')}`).join(', ')}; next: ${c.cyan(r.next)}`);
}

function workspacesJson(r: WorkspaceRollbackResult): Record<string, unknown> {
  return {
    workspaces: r.workspaces,
    from: r.from,
    to: r.to,
    epoch: r.epoch,
    dryRun: r.dryRun,
    action: r.action,
    plan: r.plan,
    forced: r.forced,
    legacyComplete: r.legacyComplete,
    next: r.next,
    reverseBackfills: r.reverseBackfills.map((b) => ({
      workspace: b.workspace,
      complete: b.complete,
      scanned: b.scanned,
      copied: b.copied,
      unmigratable: b.unmigratable,
      unmigratableRecords: b.unmigratableRecords,
    })),
  };
}

function render(r: RollbackResult, out: Output): void {
  const c = out.color;
  if (r.dryRun) {
    out.print(
      `${c.yellow('preview:')} rollback from ${r.from} would ${r.action === RollbackAction.ResumeReverseBackfill ? 'resume the reverse backfill (no phase move)' : `move ${r.from} → ${r.to}`}; nothing changed. Add --execute to act.`,
    );
    r.plan.forEach((step, i) => out.print(`  ${i + 1}. ${step}`));
    for (const g of r.gates.filter((x) => !x.open)) out.print(`  gate ${g.name}: ${c.yellow('closed')} — ${safe(g.reason)}`);
    return;
  }
  if (r.action !== RollbackAction.ResumeReverseBackfill)
    out.print(`${c.green('moved')} ${r.from} → ${r.to}, epoch ${r.epoch}. Writers follow within the ${r.settleMs} ms settle window.`);
  const b = r.reverseBackfill;
  if (b) {
    out.print(
      `${b.complete ? c.green('reverse backfill complete:') : c.yellow('reverse backfill incomplete:')} ${fmtInt(b.scanned)} v2 record(s) scanned, ` +
        `${fmtInt(b.copied)} copied to legacy, ${fmtInt(b.skipped)} already there, ${b.unmigratable > 0 ? c.red(`${fmtInt(b.unmigratable)} unmigratable`) : '0 unmigratable'}` +
        `${b.resumed ? ' (resumed)' : ''} in ${(b.durationMs / 1000).toFixed(1)}s`,
    );
    for (const u of b.unmigratableRecords.slice(0, 10)) out.print(`  ${safe(u.key)}  ${u.reason}${u.detail ? ` ${safe(u.detail)}` : ''}`);
    renderThrottle(b.throttle, out);
  }
  if (r.forced.length > 0) out.print(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
  out.print(`legacy layout ${r.legacyComplete ? 'complete' : c.yellow('incomplete')}; next: ${c.cyan(r.next)}`);
}

/** The `--json` object: the contract fields first. */
function toJson(r: RollbackResult): Record<string, unknown> {
  const b = r.reverseBackfill;
  return {
    from: r.from,
    to: r.to,
    epoch: r.epoch,
    dryRun: r.dryRun,
    action: r.action,
    plan: r.plan,
    changedAt: r.changedAt,
    forced: r.forced,
    legacyComplete: r.legacyComplete,
    next: r.next,
    gates: r.gates.map((g) => ({ name: g.name, open: g.open, reason: g.reason })),
    // Only the reverse backfill runs under the guards.
    throttle: throttleJson(b?.throttle),
    reverseBackfill: b
      ? {
          complete: b.complete,
          resumed: b.resumed,
          scanned: b.scanned,
          copied: b.copied,
          skipped: b.skipped,
          unmigratable: b.unmigratable,
          unmigratableRecords: b.unmigratableRecords,
          durationMs: b.durationMs,
          keysPerSecond: b.keysPerSecond,
          throttle: throttleJson(b.throttle),
        }
      : null,
  };
}

/** Registers `rollback`. */
export function registerRollback(program: Command, setExit: (code: number) => void): void {
  const cmd = program
    .command('rollback')
    .description('One step back (new-only → read-new → dual-write → legacy). A preview unless --execute')
    .option('--execute', 'act (takes the lock); without it, show the plan and change nothing')
    .option('--reason <text>', 'why (recorded in the state record and the history); required with --force')
    .option('--force [gates]', FORCE_HELP)
    .option(
      '--workspace <ids>',
      'canary: one step back for these workspaces only (comma-separated); after their cleanup it reverse-backfills exactly their records',
    )
    .option('--phase-only', 'from new-only: move the phase but skip the reverse backfill (a later rollback --execute runs it)')
    .option('--rate <keys/s>', 'throttle the reverse backfill (default: no limit)')
    .option('--batch-size <n>', `reverse backfill SCAN COUNT ${dflt(DEFAULT_BATCH_SIZE)}`)
    .option('--concurrency <n>', `reverse backfill batches in flight ${dflt(DEFAULT_CONCURRENCY)}`);
  addGuardOptions(cmd, 'reverse-backfill')
    .addHelpText(
      'after',
      `
Steps:
  dual-write → legacy     instant; v2 is marked incomplete (it stops receiving writes)
  read-new → dual-write   instant; refused while legacy is incomplete (gate legacy-complete, exit 3)
  new-only → read-new     moves the phase (writers mirror into legacy again), waits out the settle
                          window, then reverse-backfills legacy from v2 (works after cleanup)

Interrupted reverse backfill: in read-new with legacy incomplete, \`rollback --execute\`
resumes the reverse backfill from its checkpoint and stays in read-new; run
\`rollback --execute\` again afterwards to move reads back to legacy.

Examples:
  $ orch-migrate rollback                                  # preview
  $ orch-migrate rollback --execute --reason "INC-77 elevated error rate on v2 reads"`,
    )
    .action(async (_o, c: Command) => {
      if (c.opts().workspace !== undefined) {
        setExit(
          await runCommand(c, {
            name: 'rollback',
            options: RollbackFlagsSchema,
            mutating: (o) => o.execute,
            execute: async (io) => {
              const { opts } = io;
              const workspaces = parseWorkspaceList(opts.workspace ?? []);
              const run = (g: GuardedRun): Promise<WorkspaceRollbackResult> => rollbackWorkspaces(g.ctx, workspaces, rollbackOptions(io, g));
              // Only a reverse backfill is a long run: a preview or an instant move never waits for the guards
              // (a rollback must not be held back by a guard that cannot read its signal).
              if (!opts.execute || !(await needsReverseCopy(io.ctx, workspaces))) return run({ ctx: io.ctx, guards: null, onProgress: io.progress.update });
              return runGuarded(io, { op: 'reverse-backfill', command: 'rollback', rate: opts.rate }, run);
            },
            render: renderWorkspaces,
            toJson: workspacesJson,
            exitCode: (r) => (r.reverseBackfills.some((b) => b.unmigratable > 0) ? ExitCode.Problems : ExitCode.Ok),
            historySummary: workspacesJson,
          }),
        );
        return;
      }
      setExit(
        await runCommand(c, {
          name: 'rollback',
          options: RollbackFlagsSchema,
          mutating: (o) => o.execute,
          execute: async (io) => {
            const { opts } = io;
            const run = (g: GuardedRun): Promise<RollbackResult> => rollback(g.ctx, rollbackOptions(io, g));
            // Only a reverse backfill is a long run: a preview or an instant phase move never waits for the guards
            // (a rollback must not be held back by a guard that cannot read its signal).
            const { action } = planRollback(await io.ctx.state.read(), { phaseOnly: opts.phaseOnly, force: opts.force });
            if (!opts.execute || action === RollbackAction.Transition) return run({ ctx: io.ctx, guards: null, onProgress: io.progress.update });
            return runGuarded(io, { op: 'reverse-backfill', command: 'rollback', rate: opts.rate }, run);
          },
          render,
          toJson,
          exitCode: (r) => (r.reverseBackfill && r.reverseBackfill.unmigratable > 0 ? ExitCode.Problems : ExitCode.Ok),
          historySummary: (r) => ({
            from: r.from,
            to: r.to,
            epoch: r.epoch,
            dryRun: r.dryRun,
            action: r.action,
            forced: r.forced,
            legacyComplete: r.legacyComplete,
            ...(r.reverseBackfill ? { reverseCopied: r.reverseBackfill.copied, reverseComplete: r.reverseBackfill.complete } : {}),
          }),
        }),
      );
    });
}
