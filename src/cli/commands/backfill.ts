/** `orch-migrate backfill`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { backfill, backfillExitCode, type BackfillResult } from '../../ops/backfill.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY } from '../../ops/scan-engine.js';
import { dflt, FORCE_HELP, forceFlag, intFlag, orNull, rateFlag, shardFlag, switchFlag, textFlag, withDefault } from '../options.js';
import { fmtInt, safe, type Output } from '../output.js';
import { runCommand } from '../runner.js';

/** Options of `backfill`. */
const BackfillFlagsSchema = z.object({
  batchSize: withDefault(intFlag(1, 100_000), DEFAULT_BATCH_SIZE),
  concurrency: withDefault(intFlag(1, 64), DEFAULT_CONCURRENCY),
  rate: orNull(rateFlag()),
  restart: switchFlag,
  dryRun: switchFlag,
  shard: orNull(shardFlag()),
  force: forceFlag,
  reason: orNull(textFlag()),
});

const LISTED_ON_TERMINAL = 20;

function render(r: BackfillResult, out: Output): void {
  const c = out.color;
  const head = r.dryRun ? c.yellow('dry run:') : r.complete ? c.green('backfill complete:') : c.yellow('backfill finished (partial):');
  out.print(
    `${head} ${fmtInt(r.scanned)} scanned, ${fmtInt(r.copied)} ${r.dryRun ? 'would be copied' : 'copied'}, ${fmtInt(r.skipped)} skipped, ` +
      `${r.unmigratable > 0 ? c.red(`${fmtInt(r.unmigratable)} unmigratable`) : '0 unmigratable'}${r.accepted > 0 ? `, ${fmtInt(r.accepted)} accepted` : ''} in ${(r.durationMs / 1000).toFixed(1)}s (${fmtInt(r.keysPerSecond)} keys/s)`,
  );
  if (r.resumed) out.print(`resumed from the checkpoint: this run scanned ${fmtInt(r.thisRun.scanned)} and copied ${fmtInt(r.thisRun.copied)}`);
  for (const n of r.nodes.filter((x) => x.rescanned)) out.print(c.yellow(`node ${n.node} restarted or failed over since the checkpoint (new run_id): rescanned from 0`));
  if (r.shard) out.print(`shard ${r.shard}: ${r.nodes.length} master(s): ${r.nodes.map((n) => n.node).join(', ') || 'none'}`);
  if (r.unmigratable > 0) {
    out.print(c.red(`unmigratable records (never touched; fix them at the source, or accept known junk: runbooks/incident-unmigratable.md):`));
    for (const u of r.unmigratableRecords.slice(0, LISTED_ON_TERMINAL)) out.print(`  ${safe(u.key)}  ${u.reason}${u.detail ? ` ${safe(u.detail)}` : ''}`);
    const more = r.unmigratable - Math.min(LISTED_ON_TERMINAL, r.unmigratableRecords.length);
    if (more > 0) out.print(`  … and ${fmtInt(more)} more (--json lists up to 1000)`);
  }
  if (!r.dryRun && r.complete && r.unmigratable === 0) out.print(`next: ${c.cyan('orch-migrate verify')}`);
}

/** The run's summary: the contract's --json fields, and what the history records. */
function summary(r: BackfillResult): Record<string, unknown> {
  return {
    scanned: r.scanned,
    copied: r.copied,
    skipped: r.skipped,
    unmigratable: r.unmigratable,
    durationMs: r.durationMs,
    keysPerSecond: r.keysPerSecond,
    resumed: r.resumed,
    complete: r.complete,
    dryRun: r.dryRun,
    direction: r.direction,
    shard: r.shard,
  };
}

/** The `--json` object: the summary, then the details. */
function toJson(r: BackfillResult): Record<string, unknown> {
  return {
    ok: r.unmigratable === 0,
    ...summary(r),
    thisRun: r.thisRun,
    vanished: r.vanished,
    applied: r.applied,
    accepted: r.accepted,
    mode: r.mode,
    epoch: r.epoch,
    settleWaitMs: r.settleWaitMs,
    nodes: r.nodes.map((n) => ({ node: n.node, done: n.done, resumedFrom: n.resumedFrom, rescanned: n.rescanned, scanned: n.counters.scanned ?? 0 })),
    unmigratableRecords: r.unmigratableRecords,
    unmigratableTruncated: r.unmigratableTruncated,
    forced: r.forced,
  };
}

/** Registers `backfill`. */
export function registerBackfill(program: Command, setExit: (code: number) => void): void {
  program
    .command('backfill')
    .description('Copy every legacy job into the v2 layout (records and index), resumably, with apply-if-newer or the COPY fast path')
    .option('--batch-size <n>', `SCAN COUNT: keys per batch ${dflt(DEFAULT_BATCH_SIZE)}`)
    .option('--concurrency <n>', `batches in flight at once ${dflt(DEFAULT_CONCURRENCY)}`)
    .option('--rate <keys/s>', 'throttle to this many keys per second (all masters together; default: no limit)')
    .option('--restart', 'ignore the checkpoint and start over from cursor 0')
    .option('--dry-run', 'classify every record and count what would be copied; write nothing')
    .option('--shard <i/n>', 'only scan shard i of n of the masters (several processes split a cluster)')
    .option('--force [gates]', FORCE_HELP)
    .option('--reason <text>', 'why (recorded in the history)')
    .addHelpText(
      'after',
      `
Needs phase dual-write or read-new (exit 3 otherwise) and waits out the settle window first.
Resumes from its checkpoint by default (per master, with the node's run_id); SIGINT/SIGTERM
stops cleanly with the checkpoint saved (exit 130). Unmigratable records (bad job id,
workspace or rev; keys of another type) are listed and never touched (exit 1).

Examples:
  $ orch-migrate backfill
  $ orch-migrate backfill --rate 20000 --concurrency 2      # gentle on a busy primary
  $ orch-migrate --cluster --redis-url redis://10.0.0.5:7000 backfill --shard 0/2
  $ orch-migrate backfill --json | jq '{scanned, copied, unmigratable}'`,
    )
    .action(async (_o, cmd: Command) => {
      setExit(
        await runCommand(cmd, {
          name: 'backfill',
          options: BackfillFlagsSchema,
          mutating: true,
          execute: ({ ctx, opts, progress, globals }) =>
            backfill(ctx, {
              direction: 'forward',
              batchSize: opts.batchSize,
              concurrency: opts.concurrency,
              rate: opts.rate,
              restart: opts.restart,
              dryRun: opts.dryRun,
              shard: opts.shard,
              force: opts.force,
              ...(opts.reason === null ? {} : { reason: opts.reason }),
              ackTimeoutMs: globals.ackTimeout,
              onProgress: progress.update,
            }),
          render,
          toJson,
          exitCode: backfillExitCode,
          historySummary: summary,
        }),
      );
    });
}
