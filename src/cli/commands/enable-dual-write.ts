/** `orch-migrate enable-dual-write`. */
import type { Command } from 'commander';
import { enableDualWrite } from '../../ops/enable-dual-write.js';
import { intOption, FORCE_HELP } from '../options.js';
import { runCommand } from '../runner.js';
import { renderTransition, transitionJson } from './transitions.js';

/** Registers `enable-dual-write`. */
export function registerEnableDualWrite(program: Command, setExit: (code: number) => void): void {
  program
    .command('enable-dual-write')
    .description('legacy → dual-write: writers start mirroring every write into the v2 layout')
    .option('--reason <text>', 'why (recorded in the state record and the history)')
    .option('--settle-ms <ms>', 'settle window recorded on the first transition: how long a writer may act on a cached phase', intOption(100, 600_000))
    .option('--dry-run', 'check the gates and show what would change; change nothing')
    .option('--force [gates]', FORCE_HELP)
    .addHelpText(
      'after',
      `
After this, wait for every writer to run a build that uses the queue core, then:
  $ orch-migrate backfill

Examples:
  $ orch-migrate enable-dual-write --reason "CHG-1234 start job store migration"`,
    )
    .action(async (_o, cmd: Command) => {
      setExit(
        await runCommand(cmd, {
          name: 'enable-dual-write',
          // A dry run only reads: it must not block (or be blocked by) a running operator.
          mutating: (cmd.opts() as { dryRun?: boolean }).dryRun !== true,
          execute: ({ ctx, opts, force, globals }) =>
            enableDualWrite(ctx, {
              ...(typeof opts.reason === 'string' ? { reason: opts.reason } : {}),
              ...(typeof opts.settleMs === 'number' ? { settleMs: opts.settleMs } : {}),
              dryRun: opts.dryRun === true,
              force,
              ackTimeoutMs: globals.ackTimeout,
            }),
          render: renderTransition,
          toJson: transitionJson,
          historySummary: (r) => ({ from: r.from, to: r.to, epoch: r.epoch, dryRun: r.dryRun }),
        }),
      );
    });
}
