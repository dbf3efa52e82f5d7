/** `orch-migrate backfill`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { backfill, backfillExitCode, type BackfillResult } from '../../ops/backfill.js';
import { addGuardOptions, guardFlagFields, guardSettings, runGuarded } from '../guard-flags.js';
import { preflightGate, type PreflightGateResult } from './preflight.js';
import { renderThrottle, throttleJson } from './throttle.js';
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
  ...guardFlagFields,
});

/** A backfill's result as the command reports it: the op's, the preflight gate's, the guards'. */
type BackfillRun = BackfillResult & { preflight: PreflightGateResult | null };

const LISTED_ON_TERMINAL = 20;

function render(r: BackfillRun, out: Output): void {
  const c = out.color;
  const head = r.dryRun ? c.yellow('dry run:') : r.complete ? c.green('backfill complete:') : c.yellow('backfill finished (partial):');
  out.print(
    `${head} ${fmtInt(r.scanned)} scanned, ${fmtInt(r.copied)} ${r.dryRun ? 'would be copied' : 'copied'}, ${fmtInt(r.skipped)} skipped, ` +
      `${r.unmigratable > 0 ? c.red(`${fmtInt(r.unmigratable)} unmigratable`) : '0 unmigratable'}${r.accepted > 0 ? `, ${fmtInt(r.accepted)} accepted` : ''} in ${(r.durationMs / 1000).toFixed(1)}s (${fmtInt(r.keysPerSecond)} keys/s)`,
  );
  if (r.resumed) out.print(`resumed from the checkpoint: this run scanned ${fmtInt(r.thisRun.scanned)} and copied ${fmtInt(r.thisRun.copied)}`);
  for (const n of r.nodes.filter((x) => x.rescanned))
    out.print(c.yellow(`node ${n.node} restarted or failed over since the checkpoint (new run_id): rescanned from 0`));
  if (r.shard) out.print(`shard ${r.shard}: ${r.nodes.length} master(s): ${r.nodes.map((n) => n.node).join(', ') || 'none'}`);
  if (r.unmigratable > 0) {
    out.print(c.red(`unmigratable records (never touched; fix them at the source, or accept known junk: runbooks/incident-unmigratable.md):`));
    for (const u of r.unmigratableRecords.slice(0, LISTED_ON_TERMINAL)) out.print(`  ${safe(u.key)}  ${u.reason}${u.detail ? ` ${safe(u.detail)}` : ''}`);
    const more = r.unmigratable - Math.min(LISTED_ON_TERMINAL, r.unmigratableRecords.length);
    if (more > 0) out.print(`  … and ${fmtInt(more)} more (--json lists up to 1000)`);
  }
  renderThrottle(r.throttle, out);
  if (r.preflight && r.preflight.forced.length > 0) out.print(c.yellow(`preflight gate(s) forced: ${r.preflight.forced.join(', ')} (recorded in the history)`));
  if (!r.dryRun && r.complete && r.unmigratable === 0) out.print(`next: ${c.cyan('orch-migrate verify')}`);
}

/** The run's summary: the contract's --json fields, and what the history records. */
function summary(r: BackfillRun): Record<string, unknown> {
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
    throttle: throttleJson(r.throttle),
  };
}

/** The `--json` object: the summary, then the details. */
function toJson(r: BackfillRun): Record<string, unknown> {
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
    preflight: r.preflight,
  };
}

/** Registers `backfill`. */
export function registerBackfill(program: Command, setExit: (code: number) => void): void {
  const cmd = program
    .command('backfill')
    .description('Copy every legacy job into the v2 layout (records and index), resumably, with apply-if-newer or the COPY fast path')
    .option('--batch-size <n>', `SCAN COUNT: keys per batch ${dflt(DEFAULT_BATCH_SIZE)}`)
    .option('--concurrency <n>', `batches in flight at once ${dflt(DEFAULT_CONCURRENCY)}`)
    .option('--rate <keys/s>', 'throttle to this many keys per second (all masters together; default: no limit)')
    .option('--restart', 'ignore the checkpoint and start over from cursor 0')
    .option('--dry-run', 'classify every record and count what would be copied; write nothing')
    .option('--shard <i/n>', 'only scan shard i of n of the masters (several processes split a cluster)')
    .option('--force [gates]', FORCE_HELP)
    .option('--reason <text>', 'why (recorded in the history)');
  addGuardOptions(cmd, 'backfill')
    .addHelpText(
      'after',
      `
Needs phase dual-write or read-new (exit 3 otherwise) and waits out the settle window first.
Resumes from its checkpoint by default (per master, with the node's run_id); SIGINT/SIGTERM
stops cleanly with the checkpoint saved (exit 130). Unmigratable records (bad job id,
workspace or rev; keys of another type) are listed and never touched (exit 1).

Runs \`orch-migrate preflight\` first (not on --dry-run): a refusing check is a gate
(version, eviction, memory, replicas, cluster), overridden one by one with --force.
Guards watch memory and replica lag (latency with --max-latency-ms) at least once a
second: over a level the run slows, then pauses, and resumes by itself; a critical
level stops it with its checkpoint (exit 6). \`orch-migrate control pause|resume|rate\`
steers it from any machine; \`orch-migrate status\` shows it in flight.

Examples:
  $ orch-migrate backfill
  $ orch-migrate backfill --rate 20000 --concurrency 2      # gentle on a busy primary
  $ orch-migrate --cluster --redis-url redis://10.0.0.5:7000 backfill --shard 0/2
  $ orch-migrate backfill --json | jq '{scanned, copied, unmigratable}'
  $ orch-migrate backfill --max-latency-ms 5 --metrics-file /var/lib/node_exporter/textfile/orch-migrate.prom`,
    )
    .action(async (_o, c: Command) => {
      setExit(
        await runCommand(c, {
          name: 'backfill',
          options: BackfillFlagsSchema,
          mutating: true,
          // A shard takes its own lease: --shard 0/2 and 1/2 run at once, on different machines too.
          lockShard: (o) => o.shard,
          execute: async (io) => {
            const { opts, globals } = io;
            const levels = guardSettings('backfill', opts, !opts.dryRun);
            const pre = opts.dryRun
              ? null
              : await preflightGate(io, {
                  command: 'backfill',
                  force: opts.force,
                  reason: opts.reason,
                  rate: opts.rate,
                  maxMemoryPct: levels.memory.throttlePct,
                  maxReplicaLag: levels.replicaLag.throttle,
                });
            const r = await runGuarded(io, { op: 'backfill', command: 'backfill', rate: opts.rate, addsMemory: !opts.dryRun }, ({ ctx, guards, onProgress }) =>
              backfill(ctx, {
                direction: 'forward',
                batchSize: opts.batchSize,
                concurrency: opts.concurrency,
                rate: opts.rate,
                guards,
                restart: opts.restart,
                dryRun: opts.dryRun,
                shard: opts.shard,
                force: opts.force,
                ...(opts.reason === null ? {} : { reason: opts.reason }),
                ackTimeoutMs: globals.ackTimeout,
                onProgress,
              }),
            );
            return { ...r, preflight: pre };
          },
          render,
          toJson,
          exitCode: backfillExitCode,
          historySummary: summary,
        }),
      );
    });
}
