/** `orch-migrate rollback`. */
import type { Command } from 'commander';
import { ExitCode } from '../../core/errors.js';
import { rollback, RollbackAction, type RollbackResult } from '../../ops/rollback.js';
import { intOption, rateOption, FORCE_HELP } from '../options.js';
import { fmtInt, type Output } from '../output.js';
import { runCommand } from '../runner.js';

function render(r: RollbackResult, out: Output): void {
  const c = out.color;
  if (r.dryRun) {
    out.line(`${c.yellow('preview:')} rollback from ${r.from} would ${r.action === RollbackAction.ResumeReverseBackfill ? 'resume the reverse backfill (no phase move)' : `move ${r.from} → ${r.to}`}; nothing changed. Add --execute to act.`);
    r.plan.forEach((step, i) => out.line(`  ${i + 1}. ${step}`));
    for (const g of r.gates.filter((x) => !x.open)) out.line(`  gate ${g.name}: ${c.yellow('closed')} — ${g.reason}`);
    return;
  }
  if (r.action !== RollbackAction.ResumeReverseBackfill) out.line(`${c.green('moved')} ${r.from} → ${r.to}, epoch ${r.epoch}. Writers follow within the ${r.settleMs} ms settle window.`);
  const b = r.reverseBackfill;
  if (b) {
    out.line(
      `${b.complete ? c.green('reverse backfill complete:') : c.yellow('reverse backfill incomplete:')} ${fmtInt(b.scanned)} v2 record(s) scanned, ` +
        `${fmtInt(b.copied)} copied to legacy, ${fmtInt(b.skipped)} already there, ${b.unmigratable > 0 ? c.red(`${fmtInt(b.unmigratable)} unmigratable`) : '0 unmigratable'}` +
        `${b.resumed ? ' (resumed)' : ''} in ${(b.durationMs / 1000).toFixed(1)}s`,
    );
    for (const u of b.unmigratableRecords.slice(0, 10)) out.line(`  ${u.key}  ${u.reason}${u.detail ? ` ${u.detail}` : ''}`);
  }
  if (r.forced.length > 0) out.line(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
  out.line(`legacy layout ${r.legacyComplete ? 'complete' : c.yellow('incomplete')}; next: ${c.cyan(r.next)}`);
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
    reverseBackfill: b
      ? { complete: b.complete, resumed: b.resumed, scanned: b.scanned, copied: b.copied, skipped: b.skipped, unmigratable: b.unmigratable, durationMs: b.durationMs, keysPerSecond: b.keysPerSecond }
      : null,
  };
}

/** Registers `rollback`. */
export function registerRollback(program: Command, setExit: (code: number) => void): void {
  program
    .command('rollback')
    .description('One step back (new-only → read-new → dual-write → legacy). A preview unless --execute')
    .option('--execute', 'act (takes the lock); without it, show the plan and change nothing')
    .option('--reason <text>', 'why (recorded in the state record and the history); required with --force')
    .option('--force [gates]', FORCE_HELP)
    .option('--phase-only', 'from new-only: move the phase but skip the reverse backfill (a later rollback --execute runs it)')
    .option('--rate <keys/s>', 'throttle the reverse backfill', rateOption)
    .option('--batch-size <n>', 'reverse backfill SCAN COUNT', intOption(1, 100_000), 1000)
    .option('--concurrency <n>', 'reverse backfill batches in flight', intOption(1, 64), 4)
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
    .action(async (_o, cmd: Command) => {
      const o = cmd.opts();
      setExit(
        await runCommand(cmd, {
          name: 'rollback',
          mutating: o.execute === true,
          execute: ({ ctx, opts, progress, force, globals }) =>
            rollback(ctx, {
              execute: opts.execute === true,
              ...(typeof opts.reason === 'string' ? { reason: opts.reason } : {}),
              force,
              ackTimeoutMs: globals.ackTimeout,
              phaseOnly: opts.phaseOnly === true,
              rate: typeof opts.rate === 'number' ? opts.rate : null,
              ...(typeof opts.batchSize === 'number' ? { batchSize: opts.batchSize } : {}),
              ...(typeof opts.concurrency === 'number' ? { concurrency: opts.concurrency } : {}),
              onProgress: progress.update,
            }),
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
