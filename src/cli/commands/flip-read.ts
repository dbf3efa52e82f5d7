/** `orch-migrate flip-read`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { DEFAULT_MAX_VERIFY_AGE_MS } from '../../ops/gates.js';
import { flipWorkspaces, resolveWorkspaces } from '../../ops/canary.js';
import { flipRead } from '../../ops/flip-read.js';
import { canaryJson, renderCanary } from './canary-render.js';
import { dflt, durationFlag, fmtDuration, FORCE_HELP, forceFlag, intFlag, orNull, switchFlag, textFlag, withDefault, workspaceListFlag } from '../options.js';
import { runCommand } from '../runner.js';
import { renderTransition, transitionHistory, transitionJson } from './transitions.js';

/** Options of `flip-read`. */
const FlipReadFlagsSchema = z.object({
  reason: orNull(textFlag()),
  maxVerifyAge: withDefault(durationFlag(), DEFAULT_MAX_VERIFY_AGE_MS),
  force: forceFlag,
  dryRun: switchFlag,
  workspace: orNull(workspaceListFlag()),
  canary: orNull(intFlag(1, 1000)),
});

/** Registers `flip-read`. */
export function registerFlipRead(program: Command, setExit: (code: number) => void): void {
  program
    .command('flip-read')
    .description('dual-write → read-new: reads move to v2 (writers keep mirroring into legacy). Gated on a clean, fresh verify')
    .option('--reason <text>', 'why (recorded in the state record and the history); required with --force')
    .option('--max-verify-age <duration>', `how old the clean verify may be, e.g. 30m, 1h ${dflt(fmtDuration(DEFAULT_MAX_VERIFY_AGE_MS))}`)
    .option('--force [gates]', FORCE_HELP)
    .option('--dry-run', 'check the gates and show what would change; change nothing (takes no lock)')
    .option('--workspace <ids>', 'canary: flip only these workspaces (comma-separated), each behind its own verify gate')
    .option('--canary <n>', 'canary: flip n workspaces chosen deterministically among those with jobs (printed)')
    .addHelpText(
      'after',
      `
Gate: a clean, full verify in the current epoch, started after the last backfill
finished, no older than --max-verify-age. A refusal exits 3 and names the command
that opens the gate (usually \`orch-migrate verify\`). Known-bad legacy records are
accepted with \`orch-migrate accept\`, never forced past.

Canary: --workspace a,b (or --canary 2) moves only those workspaces to read-new, gated on a
clean verify that covered them (\`orch-migrate verify --workspace a,b\`); every other workspace
stays where it is (runbooks/canary.md).

Examples:
  $ orch-migrate verify && orch-migrate flip-read --reason "CHG-1234 verify clean"
  $ orch-migrate verify --workspace acme,globex && orch-migrate flip-read --workspace acme,globex --reason "CHG-1300 canary"
  $ orch-migrate flip-read --dry-run
  $ orch-migrate flip-read --force verify --reason "verified on the replica at 09:12"   # recorded`,
    )
    .action(async (_o, cmd: Command) => {
      const raw = cmd.opts();
      if (raw.workspace !== undefined || raw.canary !== undefined) {
        setExit(
          await runCommand(cmd, {
            name: 'flip-read',
            options: FlipReadFlagsSchema,
            mutating: (o) => !o.dryRun,
            execute: async ({ ctx, opts }) => {
              const sel = await resolveWorkspaces(ctx, { workspaces: opts.workspace, canary: opts.canary });
              const r = await flipWorkspaces(ctx, sel.workspaces, {
                force: opts.force,
                ...(opts.reason === null ? {} : { reason: opts.reason }),
                maxVerifyAgeMs: opts.maxVerifyAge,
                dryRun: opts.dryRun,
              });
              return { ...r, chosen: sel.chosen };
            },
            render: renderCanary,
            toJson: canaryJson,
            historySummary: canaryJson,
          }),
        );
        return;
      }
      setExit(
        await runCommand(cmd, {
          name: 'flip-read',
          options: FlipReadFlagsSchema,
          mutating: (o) => !o.dryRun,
          execute: ({ ctx, opts, globals }) =>
            flipRead(ctx, {
              ...(opts.reason === null ? {} : { reason: opts.reason }),
              force: opts.force,
              dryRun: opts.dryRun,
              maxVerifyAgeMs: opts.maxVerifyAge,
              ackTimeoutMs: globals.ackTimeout,
            }),
          render: renderTransition,
          toJson: transitionJson,
          historySummary: transitionHistory,
        }),
      );
    });
}
