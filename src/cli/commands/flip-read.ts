/** `orch-migrate flip-read`. */
import type { Command } from 'commander';
import { flipRead } from '../../ops/flip-read.js';
import { durationOption, FORCE_HELP } from '../options.js';
import { runCommand } from '../runner.js';
import { renderTransition, transitionJson } from './transitions.js';

/** Registers `flip-read`. */
export function registerFlipRead(program: Command, setExit: (code: number) => void): void {
  program
    .command('flip-read')
    .description('dual-write → read-new: reads move to v2 (writers keep mirroring into legacy). Gated on a clean, fresh verify')
    .option('--reason <text>', 'why (recorded in the state record and the history); required with --force')
    .option('--max-verify-age <duration>', 'how old the clean verify may be, e.g. 30m, 1h', durationOption, 3_600_000)
    .option('--force [gates]', FORCE_HELP)
    .option('--dry-run', 'check the gates and show what would change; change nothing (takes no lock)')
    .addHelpText(
      'after',
      `
Gate: a clean, full verify in the current epoch, started after the last backfill
finished, no older than --max-verify-age. A refusal exits 3 and names the command
that opens the gate (usually \`orch-migrate verify\`).

Examples:
  $ orch-migrate verify && orch-migrate flip-read --reason "CHG-1234 verify clean"
  $ orch-migrate flip-read --dry-run
  $ orch-migrate flip-read --force --reason "verified on the replica at 09:12"   # recorded`,
    )
    .action(async (_o, cmd: Command) => {
      const o = cmd.opts();
      setExit(
        await runCommand(cmd, {
          name: 'flip-read',
          mutating: o.dryRun !== true,
          execute: ({ ctx, opts, force, globals }) =>
            flipRead(ctx, {
              ...(typeof opts.reason === 'string' ? { reason: opts.reason } : {}),
              force,
              ackTimeoutMs: globals.ackTimeout,
              dryRun: opts.dryRun === true,
              ...(typeof opts.maxVerifyAge === 'number' ? { maxVerifyAgeMs: opts.maxVerifyAge } : {}),
            }),
          render: renderTransition,
          toJson: transitionJson,
          historySummary: (r) => ({ from: r.from, to: r.to, epoch: r.epoch, dryRun: r.dryRun, forced: r.forced }),
        }),
      );
    });
}
