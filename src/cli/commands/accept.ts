/** `orch-migrate accept`. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';
import { ConfigError } from '../../core/errors.js';
import { accept, listAccepted, type AcceptedEntry, type AcceptResult } from '../../ops/accept.js';
import { orNull, switchFlag, textFlag } from '../options.js';
import { fmtInt, safe, type Output } from '../output.js';
import { runCommand } from '../runner.js';

const LISTED_ON_TERMINAL = 50;

/** Options of `accept`. */
const AcceptFlagsSchema = z.object({
  fromFile: orNull(z.string().min(1)),
  reason: orNull(textFlag()),
  revoke: switchFlag,
  list: switchFlag,
});

function render(r: AcceptResult, out: Output): void {
  const c = out.color;
  const verb = r.revoke ? 'revoked' : 'accepted';
  out.print(
    `${c.green(verb)} ${fmtInt(r.changed.length)} key(s)${r.unchanged.length > 0 ? `, ${fmtInt(r.unchanged.length)} already ${verb}` : ''}; ${fmtInt(r.total)} accepted in all`,
  );
  for (const k of r.changed.slice(0, LISTED_ON_TERMINAL)) out.print(`  ${safe(k)}`);
  if (!r.revoke && r.changed.length > 0)
    out.print(`next: ${c.cyan('orch-migrate verify')}  ${c.dim('# accepted keys are reported as accepted, not as mismatches')}`);
}

function renderList(entries: AcceptedEntry[], out: Output): void {
  if (entries.length === 0) {
    out.print('no accepted keys');
    return;
  }
  for (const e of entries) out.print(`${safe(e.key)}  ${e.problem}  by ${safe(e.by)} at ${new Date(e.at).toISOString()}: "${safe(e.reason)}"`);
}

/** Keys from the arguments and `--from-file` (one per line; blank lines and `#` comments ignored). */
function keysFrom(args: string[], file: string | null): string[] {
  const out = [...args];
  if (file !== null) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (cause) {
      throw new ConfigError(`Cannot read --from-file ${JSON.stringify(file.slice(0, 200))}`, {
        cause,
        suggestion: 'Pass a readable file with one legacy key per line.',
      });
    }
    for (const line of text.split('\n')) {
      const k = line.trim();
      if (k !== '' && !k.startsWith('#')) out.push(k);
    }
  }
  return out;
}

/** Registers `accept`. */
export function registerAccept(program: Command, setExit: (code: number) => void): void {
  program
    .command('accept')
    .description('Record legacy keys known to be unmigratable, so verify and the gates report them as accepted instead of as problems')
    .argument('[keys...]', 'legacy keys (as verify --report or backfill --json list them)')
    .option('--from-file <file>', 'read keys from a file, one per line')
    .option('--reason <text>', 'why these keys may stay unmigrated (required; recorded with each key)')
    .option('--revoke', 'remove the keys from the accepted set')
    .option('--list', 'list the accepted keys and change nothing')
    .addHelpText(
      'after',
      `
Only keys that are unmigratable right now can be accepted (a bad job id, workspace
or rev, a key of another type): accepting a key that migrates would hide a real
record from verify. Accepted keys are never deleted by cleanup. A new bad key still
closes the gates; \`--force\` is never needed for known junk.

Examples:
  $ orch-migrate accept ai:jobs:bad-1 ai:jobs:bad-2 --reason "INC-88 test data from 2023"
  $ orch-migrate verify --report m.ndjson && jq -r 'select(.kind=="unmigratable").key' m.ndjson > junk.txt
  $ orch-migrate accept --from-file junk.txt --reason "INC-88 reviewed by @ana"
  $ orch-migrate accept --list`,
    )
    .action(async (args: string[], _o, cmd: Command) => {
      if (cmd.opts().list === true) {
        setExit(
          await runCommand(cmd, {
            name: 'accept',
            options: AcceptFlagsSchema,
            mutating: false,
            execute: ({ ctx }) => listAccepted(ctx.client, ctx.keys),
            render: renderList,
            toJson: (entries) => ({ accepted: entries }),
          }),
        );
        return;
      }
      setExit(
        await runCommand(cmd, {
          name: 'accept',
          options: AcceptFlagsSchema,
          mutating: true,
          execute: ({ ctx, opts }) => accept(ctx, { keys: keysFrom(args, opts.fromFile), reason: opts.reason ?? '', revoke: opts.revoke }),
          render,
          historySummary: (r) => ({ revoke: r.revoke, changed: r.changed.length, keys: r.changed.slice(0, 100), total: r.total }),
        }),
      );
    });
}
