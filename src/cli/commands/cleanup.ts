/** `orch-migrate cleanup`. */
import type { Command } from 'commander';
import { ExitCode } from '../../core/errors.js';
import { cleanup, type CleanupResult } from '../../ops/cleanup.js';
import { durationOption, intOption, rateOption, FORCE_HELP } from '../options.js';
import { fmtInt, type Output } from '../output.js';
import { runCommand } from '../runner.js';

const SAMPLES_ON_TERMINAL = 10;

function render(r: CleanupResult, out: Output): void {
  const c = out.color;
  if (r.transitioned) out.line(`${c.green('moved')} read-new → new-only, epoch ${r.epoch}; waited ${(r.settleWaitMs / 1000).toFixed(1)}s for the settle window`);
  const q = r.queue;
  if (q.bare > 0 || q.unresolved > 0) {
    out.line(
      `pending list: ${fmtInt(q.converted)} bare reference(s) ${r.dryRun ? 'would be ' : ''}converted to <workspace_id>:<job_id>` +
        `${q.unresolved > 0 ? c.yellow(`, ${fmtInt(q.unresolved)} unresolvable (left as they are: ${q.unresolvedSamples.join(', ')})`) : ''}`,
    );
  }
  const reasons = Object.entries(r.keptByReason)
    .map(([k, n]) => `${k} ${fmtInt(n)}`)
    .join(', ');
  if (r.dryRun) {
    out.line(`${c.yellow('dry run:')} ${fmtInt(r.scanned)} legacy key(s) scanned: ${fmtInt(r.deleted)} would be deleted, ${fmtInt(r.kept)} would be kept${reasons ? ` (${reasons})` : ''}. Nothing changed.`);
  } else {
    const head = r.complete ? c.green('cleanup complete:') : c.yellow('cleanup incomplete:');
    out.line(`${head} ${fmtInt(r.scanned)} legacy key(s) scanned, ${fmtInt(r.deleted)} deleted, ${fmtInt(r.kept)} kept${reasons ? ` (${reasons})` : ''}${r.resumed ? ' (resumed; totals include earlier runs)' : ''} in ${(r.durationMs / 1000).toFixed(1)}s`);
  }
  if (r.kept > 0) {
    out.line(c.yellow('kept (never deleted; see runbooks/incident-unmigratable.md, --report <file> lists them all):'));
    for (const k of r.keptSamples.slice(0, SAMPLES_ON_TERMINAL)) out.line(`  ${k.key}  ${k.reason}${k.detail ? ` ${k.detail}` : ''}`);
  }
  if (r.forced.length > 0) out.line(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
  if (r.dryRun) {
    if (r.blockedBy) out.line(`${c.red('--execute would be refused now:')} ${r.blockedBy.reason}${r.blockedBy.opensWith ? ` (${r.blockedBy.opensWith})` : ''}`);
    else out.line(`next: ${c.cyan('orch-migrate cleanup --execute')}  ${c.dim(`# moves ${r.phase === 'read-new' ? 'read-new → new-only, waits out the settle window, then ' : ''}deletes`)}`);
  } else if (!r.complete) {
    out.line(`next: ${c.cyan('orch-migrate cleanup --execute')}  ${c.dim('# resumes from the checkpoint')}`);
  }
}

/** The `--json` object: the contract fields first. */
function toJson(r: CleanupResult): Record<string, unknown> {
  return {
    ok: r.ok,
    dryRun: r.dryRun,
    deleted: r.deleted,
    kept: r.kept,
    phase: r.phase,
    from: r.from,
    epoch: r.epoch,
    transitioned: r.transitioned,
    complete: r.complete,
    resumed: r.resumed,
    scanned: r.scanned,
    gone: r.gone,
    keptByReason: r.keptByReason,
    keptSamples: r.keptSamples,
    queue: r.queue,
    durationMs: r.durationMs,
    keysPerSecond: r.keysPerSecond,
    settleWaitMs: r.settleWaitMs,
    forced: r.forced,
    blockedBy: r.blockedBy,
    gates: r.gates.map((g) => ({ name: g.name, open: g.open, reason: g.reason })),
  };
}

/** Registers `cleanup`. */
export function registerCleanup(program: Command, setExit: (code: number) => void): void {
  program
    .command('cleanup')
    .description('read-new → new-only, then delete the legacy keys that v2 holds at the same or a higher rev. A dry run unless --execute')
    .option('--execute', 'act: move to new-only (from read-new), convert the pending list, delete (takes the lock)')
    .option('--min-soak <duration>', 'minimum time in read-new before cleanup, e.g. 30m, 1h, 2d', durationOption, 3_600_000)
    .option('--max-verify-age <duration>', 'how old the clean verify may be', durationOption, 3_600_000)
    .option('--rate <keys/s>', 'throttle the scan and its UNLINK batches to this many keys per second', rateOption)
    .option('--batch-size <n>', 'SCAN COUNT: keys per batch', intOption(1, 100_000), 1000)
    .option('--concurrency <n>', 'batches in flight at once', intOption(1, 64), 4)
    .option('--restart', 'ignore the cleanup checkpoint and scan from the start')
    .option('--report <file>', 'write every kept key as NDJSON {key, reason, detail}; after a resume it lists what earlier runs kept too')
    .option('--reason <text>', 'why (recorded in the state record and the history); required with --force')
    .option('--force [gates]', FORCE_HELP)
    .addHelpText(
      'after',
      `
Gates (read-new only): --min-soak in read-new and a clean verify in the current epoch.
Without --execute nothing is written and no lock is taken: the dry run scans and says
what would be deleted and kept, and which gate --execute would hit. In new-only,
cleanup --execute resumes deleting from its checkpoint without a transition.

A legacy key is deleted only if v2 holds the record at the same or a higher rev; keys
of other types, unmigratable records and records v2 lacks are kept and reported
(exit 1 when any is kept). Only ${'`<prefix>:jobs:*`'} is ever scanned; v2 keys are never touched.

Examples:
  $ orch-migrate cleanup                                   # dry run
  $ orch-migrate cleanup --execute --rate 5000 --reason "CHG-1250 drop legacy keys"
  $ orch-migrate cleanup --execute --report kept.ndjson    # after an interruption: resumes`,
    )
    .action(async (_o, cmd: Command) => {
      const o = cmd.opts();
      const code = await runCommand(cmd, {
        name: 'cleanup',
        mutating: o.execute === true,
        execute: ({ ctx, opts, progress, force, globals }) =>
          cleanup(ctx, {
            execute: opts.execute === true,
            ...(typeof opts.reason === 'string' ? { reason: opts.reason } : {}),
            force,
              ackTimeoutMs: globals.ackTimeout,
            ...(typeof opts.minSoak === 'number' ? { minSoakMs: opts.minSoak } : {}),
            ...(typeof opts.maxVerifyAge === 'number' ? { maxVerifyAgeMs: opts.maxVerifyAge } : {}),
            rate: typeof opts.rate === 'number' ? opts.rate : null,
            ...(typeof opts.batchSize === 'number' ? { batchSize: opts.batchSize } : {}),
            ...(typeof opts.concurrency === 'number' ? { concurrency: opts.concurrency } : {}),
            restart: opts.restart === true,
            reportPath: typeof opts.report === 'string' ? opts.report : null,
            onProgress: progress.update,
          }),
        render,
        toJson,
        exitCode: (r) => (r.kept - r.accepted > 0 ? ExitCode.Problems : ExitCode.Ok),
        historySummary: (r) => ({
          dryRun: r.dryRun,
          phase: r.phase,
          complete: r.complete,
          scanned: r.scanned,
          deleted: r.deleted,
          kept: r.kept,
          keptByReason: r.keptByReason,
          queueConverted: r.queue.converted,
          queueUnresolved: r.queue.unresolved,
          forced: r.forced,
        }),
      });
      setExit(code);
    });
}
