/** `orch-migrate verify`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { MismatchKind } from '../../ops/record-compare.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY } from '../../ops/scan-engine.js';
import {
  DEFAULT_MAX_SUSPECTS,
  DEFAULT_ROUND_DELAY_MS,
  DEFAULT_ROUNDS,
  DEFAULT_TTL_TOLERANCE_MS,
  verify,
  verifyExitCode,
  type VerifyResult,
} from '../../ops/verify.js';
import { dflt, durationFlag, fmtDuration, fractionFlag, intFlag, orNull, switchFlag, withDefault, workspaceListFlag } from '../options.js';
import { fmtInt, safe, type Output } from '../output.js';
import { runCommand } from '../runner.js';
import { addGuardOptions, guardFlagFields, runGuarded } from '../guard-flags.js';
import { renderThrottle, throttleJson } from './throttle.js';

const LISTED_ON_TERMINAL = 20;

/** Options of `verify`. */
const VerifyFlagsSchema = z
  .object({
    rounds: withDefault(intFlag(1, 20), DEFAULT_ROUNDS),
    roundDelay: withDefault(durationFlag(), DEFAULT_ROUND_DELAY_MS),
    ttlTolerance: withDefault(intFlag(0, 86_400_000), DEFAULT_TTL_TOLERANCE_MS),
    workspace: orNull(workspaceListFlag()),
    sample: orNull(fractionFlag()),
    report: orNull(z.string().min(1)),
    repair: switchFlag,
    batchSize: withDefault(intFlag(1, 100_000), DEFAULT_BATCH_SIZE),
    concurrency: withDefault(intFlag(1, 64), DEFAULT_CONCURRENCY),
    maxSuspects: withDefault(intFlag(1, 10_000_000), DEFAULT_MAX_SUSPECTS),
    readFromReplica: switchFlag,
    ...guardFlagFields,
  })
  .refine((o) => !(o.repair && o.readFromReplica), {
    // A repair's compare-and-swap runs on the master; what a lagging replica showed is not what it must compare.
    message: '--repair writes on the master and compares with what it read: drop --read-from-replica to repair',
    path: ['readFromReplica'],
  });

/** Kinds that are bad source records, not a divergence between the layouts: the fix is at the source, or `accept`. */
const SOURCE_KINDS = new Set<string>([MismatchKind.Unmigratable, MismatchKind.NonHash]);

function render(r: VerifyResult, out: Output): void {
  const c = out.color;
  const scope =
    r.scope === 'full'
      ? 'full'
      : r.workspaces
        ? c.yellow(`of workspace(s) ${r.workspaces.map(safe).join(', ')} (opens their canary gates, not the global ones)`)
        : c.yellow('partial (--sample: opens no gate)');
  out.print(
    `verify ${scope}: ${fmtInt(r.scanned)} records and ${fmtInt(r.indexEntries)} index entries checked in ${r.rounds} round(s), ${(r.durationMs / 1000).toFixed(1)}s`,
  );
  out.print(`suspects after each round: ${r.suspectsPerRound.map(fmtInt).join(' → ')} (differences that resolve between rounds were live writes)`);
  if (r.accepted > 0) out.print(`${fmtInt(r.accepted)} accepted unmigratable key(s) not counted as mismatches (orch-migrate accept --list)`);
  renderThrottle(r.throttle, out);
  if (r.mismatches === 0) {
    out.print(c.green('clean: both layouts agree field by field, expiries match, every v2 record is indexed.'));
    return;
  }
  out.print(
    c.red(`${fmtInt(r.mismatches)} persistent mismatch(es):`) +
      ' ' +
      Object.entries(r.byKind)
        .map(([k, n]) => `${k} ${fmtInt(n)}`)
        .join(', '),
  );
  for (const m of r.listed.slice(0, LISTED_ON_TERMINAL)) {
    out.print(
      `  ${m.kind.padEnd(14)} ${safe(m.key)}${m.fields ? `  fields: ${m.fields.map(safe).join(', ')}` : ''}${m.detail ? `  (${safe(m.detail)})` : ''}${m.repaired === true ? c.green('  repaired') : ''}`,
    );
  }
  if (r.mismatches > LISTED_ON_TERMINAL) out.print(`  … see ${r.reportPath ?? '--report <file.ndjson>'} for all of them (values redacted)`);
  if (r.unconfirmed > 0) out.print(c.yellow(`${fmtInt(r.unconfirmed)} suspect(s) beyond --max-suspects were counted without re-checks`));
  if (r.repaired > 0 || r.remaining !== r.mismatches)
    out.print(
      `repaired ${fmtInt(r.repaired)} with compare-and-swap; ${r.remaining === 0 ? c.green('nothing remains') : c.red(`${fmtInt(r.remaining)} remain`)}`,
    );
  for (const line of fixesFor(r)) out.print(line);
}

/**
 * What fixes what is left: bad source records are fixed at the source or
 * accepted (repair cannot touch them), id conflicts are a decision for the
 * owners, and only the rest is what `--repair` copies over.
 */
export function fixesFor(r: Pick<VerifyResult, 'byKind' | 'remaining' | 'repaired'>): string[] {
  if (r.remaining === 0) return [];
  const kinds = Object.keys(r.byKind).filter((k) => (r.byKind[k] ?? 0) > 0);
  const lines: string[] = [];
  if (kinds.some((k) => SOURCE_KINDS.has(k))) {
    lines.push(
      'fix: unmigratable or non-hash keys: fix them at the source, or `orch-migrate accept <key>… --reason "…"` the known junk (runbooks/incident-unmigratable.md)',
    );
  }
  if (kinds.includes(MismatchKind.IdConflict))
    lines.push('fix: id conflicts need a decision by the owners; nothing repairs them (runbooks/incident-id-conflict.md)');
  const repairable = kinds.filter((k) => !SOURCE_KINDS.has(k) && k !== MismatchKind.IdConflict);
  if (repairable.length > 0 && r.repaired === 0) {
    lines.push(
      'fix: `orch-migrate verify --repair` copies the primary over the mirror where the mirror is still what verify saw (runbooks/incident-verify-mismatches.md)',
    );
  }
  return lines;
}

function toJson(r: VerifyResult): Record<string, unknown> {
  return {
    ok: r.ok,
    scanned: r.scanned,
    mismatches: r.mismatches,
    byKind: r.byKind,
    rounds: r.rounds,
    durationMs: r.durationMs,
    indexEntries: r.indexEntries,
    suspectsPerRound: r.suspectsPerRound,
    repaired: r.repaired,
    remaining: r.remaining,
    unconfirmed: r.unconfirmed,
    accepted: r.accepted,
    scope: r.scope,
    epoch: r.epoch,
    phase: r.phase,
    reportPath: r.reportPath,
    listed: r.listed,
    throttle: throttleJson(r.throttle),
  };
}

/** Registers `verify`. */
export function registerVerify(program: Command, setExit: (code: number) => void): void {
  const cmd = program
    .command('verify')
    .description('Diff both layouts field by field in both directions (records, expiries, index); only differences that persist across rounds count')
    .option('--rounds <n>', `rounds: a full scan, then re-checks of the suspects ${dflt(DEFAULT_ROUNDS)}`)
    .option('--round-delay <duration>', `pause between rounds (e.g. 500ms, 2s) ${dflt(fmtDuration(DEFAULT_ROUND_DELAY_MS))}`)
    .option('--ttl-tolerance <ms>', `largest expiry difference in ms that is not a mismatch ${dflt(DEFAULT_TTL_TOLERANCE_MS)}`)
    .option('--workspace <ids>', 'only these workspaces, comma-separated (partial: opens their canary gates, not the global ones)')
    .option('--sample <fraction>', 'check only this fraction of keys, 0 < f ≤ 1 (partial)')
    .option('--report <file.ndjson>', 'write one line per persistent mismatch (field names, values redacted)')
    .option('--repair', 'fix persistent mismatches from the primary with compare-and-swap (never overwrites a newer write)')
    .option('--batch-size <n>', `SCAN COUNT: keys per batch ${dflt(DEFAULT_BATCH_SIZE)}`)
    .option('--concurrency <n>', `batches in flight at once ${dflt(DEFAULT_CONCURRENCY)}`)
    .option('--max-suspects <n>', `suspects re-checked individually; more are counted as unconfirmed ${dflt(DEFAULT_MAX_SUSPECTS)}`)
    .option(
      '--read-from-replica',
      "read the layouts from a replica (Sentinel's, or one the master lists), sparing the master; the lag is stated in the result",
    );
  addGuardOptions(cmd, 'verify')
    .addHelpText(
      'after',
      `
Exit 0 when clean, 1 when a persistent mismatch remains. A clean full verify is
recorded in the state record and opens flip-read.

Examples:
  $ orch-migrate verify
  $ orch-migrate verify --report /tmp/verify.ndjson --json | jq .byKind
  $ orch-migrate verify --workspace acme --rounds 5 --round-delay 2s
  $ orch-migrate verify --repair
  $ orch-migrate --sentinel 10.0.0.1:26379,10.0.0.2:26379 --sentinel-master jobs verify --read-from-replica`,
    )
    .action(async (_o, c: Command) => {
      setExit(
        await runCommand(c, {
          name: 'verify',
          options: VerifyFlagsSchema,
          // It writes last_verify (and --repair writes data), so it holds the lock.
          mutating: true,
          // Without --repair verify writes only the state record and the history, which stay on the master.
          readFrom: (o) => (o.readFromReplica ? 'replica' : 'master'),
          execute: (io) =>
            runGuarded(io, { op: 'verify', command: 'verify', rate: null, addsMemory: io.opts.repair }, ({ ctx, guards, onProgress }) =>
              verify(ctx, {
                rounds: io.opts.rounds,
                roundDelayMs: io.opts.roundDelay,
                ttlToleranceMs: io.opts.ttlTolerance,
                workspaces: io.opts.workspace,
                sample: io.opts.sample,
                reportPath: io.opts.report,
                repair: io.opts.repair,
                batchSize: io.opts.batchSize,
                concurrency: io.opts.concurrency,
                maxSuspects: io.opts.maxSuspects,
                guards,
                onProgress,
              }),
            ),
          render,
          toJson,
          exitCode: verifyExitCode,
          historySummary: (r) => ({
            ok: r.ok,
            scope: r.scope,
            scanned: r.scanned,
            mismatches: r.mismatches,
            byKind: r.byKind,
            rounds: r.rounds,
            repaired: r.repaired,
            remaining: r.remaining,
            durationMs: r.durationMs,
            throttle: throttleJson(r.throttle),
          }),
        }),
      );
    });
}
