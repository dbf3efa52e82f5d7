/** `orch-migrate enable-dual-write`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { Phase } from '../../core/phase.js';
import { enableDualWrite } from '../../ops/enable-dual-write.js';
import type { TransitionOpResult } from '../../ops/transition.js';
import { preflightGate, type PreflightGateResult } from './preflight.js';
import { FORCE_HELP, forceFlag, intFlag, orNull, switchFlag, textFlag } from '../options.js';
import { runCommand } from '../runner.js';
import { renderTransition, transitionHistory, transitionJson } from './transitions.js';

/** Options of `enable-dual-write`. */
const EnableDualWriteFlagsSchema = z.object({
  reason: orNull(textFlag()),
  settleMs: orNull(intFlag(100, 600_000)),
  dryRun: switchFlag,
  force: forceFlag,
});

/** The transition and the preflight gate run before it. */
type EdwRun = TransitionOpResult & { preflight: PreflightGateResult | null };

/** Registers `enable-dual-write`. */
export function registerEnableDualWrite(program: Command, setExit: (code: number) => void): void {
  program
    .command('enable-dual-write')
    .description('legacy → dual-write: writers start mirroring every write into the v2 layout')
    .option('--reason <text>', 'why (recorded in the state record and the history)')
    .option('--settle-ms <ms>', 'settle window recorded on the first transition: how long a writer may act on a cached phase (default: 2000)')
    .option('--dry-run', 'check the gates and show what would change; change nothing')
    .option('--force [gates]', FORCE_HELP)
    .addHelpText(
      'after',
      `
Runs \`orch-migrate preflight\` first: a refusing check (version, eviction, memory,
replicas, cluster) refuses the move (exit 3) unless overridden by name with --force.

After this, wait for every writer to run a build that uses the queue core, then:
  $ orch-migrate backfill

Examples:
  $ orch-migrate enable-dual-write --reason "CHG-1234 start job store migration"`,
    )
    .action(async (_o, cmd: Command) => {
      setExit(
        await runCommand(cmd, {
          name: 'enable-dual-write',
          options: EnableDualWriteFlagsSchema,
          // A dry run only reads: it must not block (or be blocked by) a running operator.
          mutating: (o) => !o.dryRun,
          execute: async (io): Promise<EdwRun> => {
            const { ctx, opts, globals } = io;
            // From legacy the migration starts: dual writes begin doubling the job store, so preflight first.
            const pre =
              (await ctx.state.read()).phase === Phase.Legacy
                ? await preflightGate(io, { command: 'enable-dual-write', force: opts.force, reason: opts.reason })
                : null;
            const r = await enableDualWrite(ctx, {
              ...(opts.reason === null ? {} : { reason: opts.reason }),
              ...(opts.settleMs === null ? {} : { settleMs: opts.settleMs }),
              dryRun: opts.dryRun,
              force: opts.force,
              ackTimeoutMs: globals.ackTimeout,
            });
            return { ...r, preflight: pre };
          },
          render: (r: EdwRun, out) => renderTransition(r, out),
          toJson: (r: EdwRun) => ({ ...transitionJson(r), preflight: r.preflight }),
          historySummary: transitionHistory,
        }),
      );
    });
}
