/** `orch-migrate verify`. */
import { InvalidArgumentError, type Command } from 'commander';
import { isWorkspaceId } from '../../core/ids.js';
import { verify, verifyExitCode, type VerifyResult } from '../../ops/verify.js';
import { durationOption, fractionOption, intOption } from '../options.js';
import { fmtInt, type Output } from '../output.js';
import { runCommand } from '../runner.js';

const LISTED_ON_TERMINAL = 20;

function workspaceOption(value: string): string {
  if (!isWorkspaceId(value)) throw new InvalidArgumentError(`expected a workspace id (a-z, 0-9, "_" or "-", at most 32), got ${JSON.stringify(String(value).slice(0, 40))}`);
  return value;
}

function render(r: VerifyResult, out: Output): void {
  const c = out.color;
  const scope = r.scope === 'full' ? 'full' : c.yellow('partial (--workspace/--sample: does not open gates)');
  out.line(`verify ${scope}: ${fmtInt(r.scanned)} records and ${fmtInt(r.indexEntries)} index entries checked in ${r.rounds} round(s), ${(r.durationMs / 1000).toFixed(1)}s`);
  out.line(`suspects after each round: ${r.suspectsPerRound.map(fmtInt).join(' → ')} (differences that resolve between rounds were live writes)`);
  if (r.accepted > 0) out.line(`${fmtInt(r.accepted)} accepted unmigratable key(s) not counted as mismatches (orch-migrate accept --list)`);
  if (r.mismatches === 0) {
    out.line(c.green('clean: both layouts agree field by field, expiries match, every v2 record is indexed.'));
    return;
  }
  out.line(c.red(`${fmtInt(r.mismatches)} persistent mismatch(es):`) + ' ' + Object.entries(r.byKind).map(([k, n]) => `${k} ${fmtInt(n)}`).join(', '));
  for (const m of r.listed.slice(0, LISTED_ON_TERMINAL)) {
    out.line(`  ${m.kind.padEnd(14)} ${m.key}${m.fields ? `  fields: ${m.fields.join(', ')}` : ''}${m.detail ? `  (${m.detail})` : ''}${m.repaired === true ? c.green('  repaired') : ''}`);
  }
  if (r.mismatches > LISTED_ON_TERMINAL) out.line(`  … see ${r.reportPath ?? '--report <file.ndjson>'} for all of them (values redacted)`);
  if (r.unconfirmed > 0) out.line(c.yellow(`${fmtInt(r.unconfirmed)} suspect(s) beyond --max-suspects were counted without re-checks`));
  if (r.repaired > 0 || r.remaining !== r.mismatches) out.line(`repaired ${fmtInt(r.repaired)} with compare-and-swap; ${r.remaining === 0 ? c.green('nothing remains') : c.red(`${fmtInt(r.remaining)} remain`)}`);
  else out.line(`fix: ${c.cyan('orch-migrate verify --repair')} copies the primary over the mirror where the mirror is still what verify saw`);
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
  };
}

/** Registers `verify`. */
export function registerVerify(program: Command, setExit: (code: number) => void): void {
  program
    .command('verify')
    .description('Diff both layouts field by field in both directions (records, expiries, index); only differences that persist across rounds count')
    .option('--rounds <n>', 'rounds: a full scan, then re-checks of the suspects', intOption(1, 20), 3)
    .option('--round-delay <duration>', 'pause between rounds (e.g. 500ms, 2s)', durationOption, 1000)
    .option('--ttl-tolerance <ms>', 'largest expiry difference that is not a mismatch', intOption(0, 86_400_000), 1000)
    .option('--workspace <id>', 'only this workspace (partial: does not open gates)', workspaceOption)
    .option('--sample <fraction>', 'check only this fraction of keys, 0 < f ≤ 1 (partial)', fractionOption)
    .option('--report <file.ndjson>', 'write one line per persistent mismatch (field names, values redacted)')
    .option('--repair', 'fix persistent mismatches from the primary with compare-and-swap (never overwrites a newer write)')
    .option('--batch-size <n>', 'SCAN COUNT: keys per batch', intOption(1, 100_000), 1000)
    .option('--concurrency <n>', 'batches in flight at once', intOption(1, 64), 4)
    .option('--max-suspects <n>', 'suspects re-checked individually; more are counted as unconfirmed', intOption(1, 10_000_000), 200_000)
    .addHelpText(
      'after',
      `
Exit 0 when clean, 1 when a persistent mismatch remains. A clean full verify is
recorded in the state record and opens flip-read.

Examples:
  $ orch-migrate verify
  $ orch-migrate verify --report /tmp/verify.ndjson --json | jq .byKind
  $ orch-migrate verify --workspace acme --rounds 5 --round-delay 2s
  $ orch-migrate verify --repair`,
    )
    .action(async (_o, cmd: Command) => {
      setExit(
        await runCommand(cmd, {
          name: 'verify',
          // It writes last_verify (and --repair writes data), so it holds the lock.
          mutating: true,
          execute: ({ ctx, opts, progress }) =>
            verify(ctx, {
              rounds: typeof opts.rounds === 'number' ? opts.rounds : 3,
              roundDelayMs: typeof opts.roundDelay === 'number' ? opts.roundDelay : 1000,
              ttlToleranceMs: typeof opts.ttlTolerance === 'number' ? opts.ttlTolerance : 1000,
              workspace: typeof opts.workspace === 'string' ? opts.workspace : null,
              sample: typeof opts.sample === 'number' ? opts.sample : null,
              reportPath: typeof opts.report === 'string' ? opts.report : null,
              repair: opts.repair === true,
              batchSize: typeof opts.batchSize === 'number' ? opts.batchSize : 1000,
              concurrency: typeof opts.concurrency === 'number' ? opts.concurrency : 4,
              maxSuspects: typeof opts.maxSuspects === 'number' ? opts.maxSuspects : 200_000,
              onProgress: progress.update,
            }),
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
          }),
        }),
      );
    });
}
