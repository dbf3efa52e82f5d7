/** `orch-migrate backfill`. */
import type { Command } from 'commander';
import { backfill, backfillExitCode, type BackfillResult } from '../../ops/backfill.js';
import { intOption, rateOption, shardOption, FORCE_HELP } from '../options.js';
import { fmtInt, type Output } from '../output.js';
import { runCommand } from '../runner.js';

const LISTED_ON_TERMINAL = 20;

function render(r: BackfillResult, out: Output): void {
  const c = out.color;
  const head = r.dryRun ? c.yellow('dry run:') : r.complete ? c.green('backfill complete:') : c.yellow('backfill finished (partial):');
  out.line(
    `${head} ${fmtInt(r.scanned)} scanned, ${fmtInt(r.copied)} ${r.dryRun ? 'would be copied' : 'copied'}, ${fmtInt(r.skipped)} skipped, ` +
      `${r.unmigratable > 0 ? c.red(`${fmtInt(r.unmigratable)} unmigratable`) : '0 unmigratable'} in ${(r.durationMs / 1000).toFixed(1)}s (${fmtInt(r.keysPerSecond)} keys/s)`,
  );
  if (r.resumed) out.line(`resumed from the checkpoint: this run scanned ${fmtInt(r.thisRun.scanned)} and copied ${fmtInt(r.thisRun.copied)}`);
  for (const n of r.nodes.filter((x) => x.rescanned)) out.line(c.yellow(`node ${n.node} restarted or failed over since the checkpoint (new run_id): rescanned from 0`));
  if (r.shard) out.line(`shard ${r.shard}: ${r.nodes.length} master(s): ${r.nodes.map((n) => n.node).join(', ') || 'none'}`);
  if (r.unmigratable > 0) {
    out.line(c.red(`unmigratable records (never touched; fix them at the source, then rerun):`));
    for (const u of r.unmigratableRecords.slice(0, LISTED_ON_TERMINAL)) out.line(`  ${u.key}  ${u.reason}${u.detail ? ` ${u.detail}` : ''}`);
    const more = r.unmigratable - Math.min(LISTED_ON_TERMINAL, r.unmigratableRecords.length);
    if (more > 0) out.line(`  … and ${fmtInt(more)} more (--json lists up to 1000)`);
  }
  if (!r.dryRun && r.complete && r.unmigratable === 0) out.line(`next: ${c.cyan('orch-migrate verify')}`);
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
    .option('--batch-size <n>', 'SCAN COUNT: keys per batch', intOption(1, 100_000), 1000)
    .option('--concurrency <n>', 'batches in flight at once', intOption(1, 64), 4)
    .option('--rate <keys/s>', 'throttle to this many keys per second (all masters together)', rateOption)
    .option('--restart', 'ignore the checkpoint and start over from cursor 0')
    .option('--dry-run', 'classify every record and count what would be copied; write nothing')
    .option('--shard <i/n>', 'only scan shard i of n of the masters (several processes split a cluster)', shardOption)
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
          mutating: true,
          execute: ({ ctx, opts, progress, force, globals }) =>
            backfill(ctx, {
              direction: 'forward',
              batchSize: typeof opts.batchSize === 'number' ? opts.batchSize : 1000,
              concurrency: typeof opts.concurrency === 'number' ? opts.concurrency : 4,
              rate: typeof opts.rate === 'number' ? opts.rate : null,
              restart: opts.restart === true,
              dryRun: opts.dryRun === true,
              shard: (opts.shard as { index: number; count: number } | undefined) ?? null,
              force,
              ackTimeoutMs: globals.ackTimeout,
              ...(typeof opts.reason === 'string' ? { reason: opts.reason } : {}),
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
