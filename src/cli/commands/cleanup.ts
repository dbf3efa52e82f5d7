/** `orch-migrate cleanup`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { ExitCode } from '../../core/errors.js';
import { cleanup, type CleanupResult } from '../../ops/cleanup.js';
import { DEFAULT_MAX_VERIFY_AGE_MS, DEFAULT_MIN_SOAK_MS } from '../../ops/gates.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY } from '../../ops/scan-engine.js';
import {
  dflt,
  durationFlag,
  fmtDuration,
  FORCE_HELP,
  forceFlag,
  intFlag,
  orNull,
  rateFlag,
  switchFlag,
  textFlag,
  withDefault,
  workspaceListFlag,
} from '../options.js';
import { fmtInt, safe, type Output } from '../output.js';
import { runCommand } from '../runner.js';
import { addGuardOptions, guardFlagFields, runGuarded } from '../guard-flags.js';
import { renderThrottle, throttleJson } from './throttle.js';

const SAMPLES_ON_TERMINAL = 10;

/** Options of `cleanup`. */
const CleanupFlagsSchema = z.object({
  execute: switchFlag,
  minSoak: orNull(durationFlag()),
  maxVerifyAge: withDefault(durationFlag(), DEFAULT_MAX_VERIFY_AGE_MS),
  rate: orNull(rateFlag()),
  batchSize: withDefault(intFlag(1, 100_000), DEFAULT_BATCH_SIZE),
  concurrency: withDefault(intFlag(1, 64), DEFAULT_CONCURRENCY),
  restart: switchFlag,
  report: orNull(z.string().min(1)),
  reason: orNull(textFlag()),
  force: forceFlag,
  workspace: orNull(workspaceListFlag()),
  ...guardFlagFields,
});

function render(r: CleanupResult, out: Output): void {
  const c = out.color;
  const which = r.workspaces ? `workspace(s) ${r.workspaces.map(safe).join(', ')} ` : '';
  if (r.workspaces) out.print(`canary cleanup of ${which.trimEnd()}: only their legacy keys are looked at; every other workspace is untouched`);
  if (r.transitioned)
    out.print(`${c.green('moved')} ${which}read-new → new-only, epoch ${r.epoch}; waited ${(r.settleWaitMs / 1000).toFixed(1)}s for the writers to follow`);
  const q = r.queue;
  if (q.bare > 0 || q.unresolved > 0) {
    out.print(
      `pending list: ${fmtInt(q.converted)} bare reference(s) ${r.dryRun ? 'would be ' : ''}converted to <workspace_id>:<job_id>` +
        `${q.unresolved > 0 ? c.yellow(`, ${fmtInt(q.unresolved)} unresolvable (left as they are: ${q.unresolvedSamples.map(safe).join(', ')})`) : ''}`,
    );
  }
  const reasons = Object.entries(r.keptByReason)
    .map(([k, n]) => `${k} ${fmtInt(n)}`)
    .join(', ');
  if (r.dryRun) {
    out.print(
      `${c.yellow('dry run:')} ${fmtInt(r.scanned)} legacy key(s) scanned: ${fmtInt(r.wouldDelete)} would be deleted, ${fmtInt(r.kept)} would be kept${reasons ? ` (${reasons})` : ''}. Nothing changed.`,
    );
  } else {
    const head = r.complete ? c.green('cleanup complete:') : c.yellow('cleanup incomplete:');
    out.print(
      `${head} ${fmtInt(r.scanned)} legacy key(s) scanned, ${fmtInt(r.deleted)} deleted, ${fmtInt(r.kept)} kept${reasons ? ` (${reasons})` : ''}${r.resumed ? ' (resumed; totals include earlier runs)' : ''} in ${(r.durationMs / 1000).toFixed(1)}s`,
    );
  }
  if (r.kept > 0) {
    out.print(
      c.yellow(
        `kept (never deleted${r.accepted > 0 ? `; ${fmtInt(r.accepted)} of them accepted as unmigratable` : ''}; see runbooks/incident-unmigratable.md, --report <file> lists them all):`,
      ),
    );
    for (const k of r.keptSamples.slice(0, SAMPLES_ON_TERMINAL)) out.print(`  ${safe(k.key)}  ${k.reason}${k.detail ? ` ${safe(k.detail)}` : ''}`);
  }
  if (r.forced.length > 0) out.print(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
  renderThrottle(r.throttle, out);
  if (r.dryRun) {
    if (r.blockedBy)
      out.print(`${c.red('--execute would be refused now:')} ${safe(r.blockedBy.reason)}${r.blockedBy.opensWith ? ` (${r.blockedBy.opensWith})` : ''}`);
    else
      out.print(
        `next: ${c.cyan('orch-migrate cleanup --execute')}  ${c.dim(`# moves ${r.phase === 'read-new' ? 'read-new → new-only, waits out the settle window, then ' : ''}deletes`)}`,
      );
  } else if (!r.complete) {
    out.print(`next: ${c.cyan('orch-migrate cleanup --execute')}  ${c.dim('# resumes from the checkpoint')}`);
  }
}

/** The `--json` object: the contract fields first. */
function toJson(r: CleanupResult): Record<string, unknown> {
  return {
    ok: r.ok,
    dryRun: r.dryRun,
    deleted: r.deleted,
    wouldDelete: r.wouldDelete,
    kept: r.kept,
    phase: r.phase,
    workspaces: r.workspaces,
    from: r.from,
    epoch: r.epoch,
    transitioned: r.transitioned,
    complete: r.complete,
    resumed: r.resumed,
    scanned: r.scanned,
    gone: r.gone,
    accepted: r.accepted,
    keptByReason: r.keptByReason,
    keptSamples: r.keptSamples,
    queue: r.queue,
    durationMs: r.durationMs,
    keysPerSecond: r.keysPerSecond,
    settleWaitMs: r.settleWaitMs,
    forced: r.forced,
    blockedBy: r.blockedBy,
    gates: r.gates.map((g) => ({ name: g.name, open: g.open, reason: g.reason })),
    throttle: throttleJson(r.throttle),
  };
}

/** Registers `cleanup`. */
export function registerCleanup(program: Command, setExit: (code: number) => void): void {
  const cmd = program
    .command('cleanup')
    .description('read-new → new-only, then delete the legacy keys that v2 holds at the same or a higher rev. A dry run unless --execute')
    .option('--execute', 'act: move to new-only (from read-new), convert the pending list, delete (takes the lock)')
    .option(
      '--min-soak <duration>',
      `minimum time in read-new before cleanup, e.g. 30m, 1h, 2d; shorter than the default needs --reason ${dflt(fmtDuration(DEFAULT_MIN_SOAK_MS))}`,
    )
    .option('--max-verify-age <duration>', `how old the clean verify may be ${dflt(fmtDuration(DEFAULT_MAX_VERIFY_AGE_MS))}`)
    .option('--rate <keys/s>', 'throttle the scan and its UNLINK batches to this many keys per second (default: no limit)')
    .option('--batch-size <n>', `SCAN COUNT: keys per batch ${dflt(DEFAULT_BATCH_SIZE)}`)
    .option('--concurrency <n>', `batches in flight at once ${dflt(DEFAULT_CONCURRENCY)}`)
    .option('--restart', 'ignore the cleanup checkpoint and scan from the start')
    .option('--report <file>', 'write every kept key as NDJSON {key, reason, detail}; after a resume it lists what earlier runs kept too')
    .option('--reason <text>', 'why (recorded in the state record and the history); required with --force')
    .option('--force [gates]', FORCE_HELP)
    .option(
      '--workspace <ids>',
      'canary: only these workspaces (comma-separated) in read-new ahead of the global phase: their own soak and verify gates; deletes exactly their legacy keys',
    );
  addGuardOptions(cmd, 'cleanup')
    .addHelpText(
      'after',
      `
Gates (read-new only): --min-soak in read-new and a clean verify in the current epoch.
Without --execute nothing is written and no lock is taken: the dry run scans and says
what would be deleted and kept, and which gate --execute would hit. In new-only,
cleanup --execute resumes deleting from its checkpoint without a transition.

A legacy key is deleted only if v2 holds the record at the same or a higher rev; keys
of other types, unmigratable records and records v2 lacks are kept and reported
(exit 1 when any is kept, unless every kept key was accepted with orch-migrate accept).
Only ${'`<prefix>:jobs:*`'} is ever scanned; v2 keys are never touched.

Examples:
  $ orch-migrate cleanup                                   # dry run
  $ orch-migrate cleanup --execute --rate 5000 --reason "CHG-1250 drop legacy keys"
  $ orch-migrate cleanup --execute --report kept.ndjson    # after an interruption: resumes`,
    )
    .action(async (_o, c: Command) => {
      const code = await runCommand(c, {
        name: 'cleanup',
        options: CleanupFlagsSchema,
        mutating: (o) => o.execute,
        execute: (io) => {
          const { opts, globals } = io;
          return runGuarded(io, { op: 'cleanup', command: 'cleanup', rate: opts.rate }, ({ ctx, guards, onProgress }) =>
            cleanup(ctx, {
              execute: opts.execute,
              ...(opts.reason === null ? {} : { reason: opts.reason }),
              force: opts.force,
              ackTimeoutMs: globals.ackTimeout,
              ...(opts.minSoak === null ? {} : { minSoakMs: opts.minSoak }),
              maxVerifyAgeMs: opts.maxVerifyAge,
              rate: opts.rate,
              guards,
              batchSize: opts.batchSize,
              concurrency: opts.concurrency,
              restart: opts.restart,
              reportPath: opts.report,
              workspaces: opts.workspace,
              onProgress,
            }),
          );
        },
        render,
        toJson,
        exitCode: (r) => (r.kept - r.accepted > 0 ? ExitCode.Problems : ExitCode.Ok),
        historySummary: (r) => ({
          dryRun: r.dryRun,
          phase: r.phase,
          complete: r.complete,
          scanned: r.scanned,
          deleted: r.deleted,
          wouldDelete: r.wouldDelete,
          kept: r.kept,
          accepted: r.accepted,
          keptByReason: r.keptByReason,
          queueConverted: r.queue.converted,
          queueUnresolved: r.queue.unresolved,
          forced: r.forced,
          throttle: throttleJson(r.throttle),
        }),
      });
      setExit(code);
    });
}
