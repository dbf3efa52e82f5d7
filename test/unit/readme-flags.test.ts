/**
 * README.md's subcommand tables are the CLI's: every subcommand the CLI has
 * is in the summary table and has its own section, and every flag a
 * subcommand's --help lists is in that section's table, and nothing else is
 * (the global flags likewise, against the top-level --help). The help text is
 * the one `orch-migrate <command> --help` prints, built in-process from the
 * same program (src/cli/main.ts buildProgram).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';

const README = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');

/** Long flags of a --help text's option lines (two-space indent; wrapped description lines are indented deeper). */
export function helpFlags(help: string): string[] {
  const flags: string[] = [];
  let inOptions = false;
  for (const line of help.split('\n')) {
    if (/^\S/.test(line)) inOptions = /^(Global )?Options:/.test(line);
    if (!inOptions) continue;
    const m = /^ {2}(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)/.exec(line);
    if (m) flags.push(m[1]!);
  }
  return flags.sort();
}

/** The text of the README section that starts with `heading` (a whole line), up to the next heading of that level or higher. */
export function section(md: string, heading: string): string {
  const lines = md.split('\n');
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`README.md has no heading ${JSON.stringify(heading)}`);
  const level = /^#+/.exec(heading)![0].length;
  let end = start + 1;
  while (end < lines.length && !(/^#+ /.test(lines[end]!) && /^#+/.exec(lines[end]!)![0].length <= level)) end++;
  return lines.slice(start + 1, end).join('\n');
}

/** Long flags named in the first column of the section's tables (header and separator rows skipped). */
export function tableFlags(text: string): string[] {
  const flags: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('|') || /^\|[-\s|]+\|$/.test(line)) continue;
    const first = line.split(/(?<!\\)\|/)[1] ?? '';
    for (const m of first.matchAll(/`[^`]*`/g)) for (const f of m[0].matchAll(/--[a-z][a-z0-9-]*/g)) flags.push(f[0]);
  }
  return [...new Set(flags)].sort();
}

const program = buildProgram(() => undefined);
const subcommands = program.commands.filter((c: Command) => c.name() !== 'help');

describe('the flag extractors', () => {
  it('read option lines of a help text and the first column of a table, nothing else', () => {
    const help = [
      'Usage: x [options]',
      '',
      'Options:',
      '  --rate <keys/s>   throttle (see',
      '                    --not-a-flag here)',
      '  -V, --version     output the version',
      '  -h, --help        display help',
      '',
      'Examples:',
      '  --also-not-a-flag',
    ].join('\n');
    expect(helpFlags(help)).toEqual(['--help', '--rate', '--version']);
    const table = ['| flag | default | meaning |', '|---|---|---|', '| `--a <n>`, `--b` | `--not` | see `--not-either` |', '| `-V`, `--version` | | |'].join(
      '\n',
    );
    expect(tableFlags(table)).toEqual(['--a', '--b', '--version']);
  });
});

describe('README.md "Subcommands" matches the CLI', () => {
  const summary = section(README, '## Subcommands');

  it('the summary table names every subcommand, and only those', () => {
    const named = [...summary.split('### ')[0]!.matchAll(/^\| \[?`([a-z-]+)`/gm)].map((m) => m[1]!);
    expect(named.filter((n) => n !== 'help').sort()).toEqual(subcommands.map((c) => c.name()).sort());
  });

  it('the global flags table lists exactly the flags of orch-migrate --help', () => {
    expect(tableFlags(section(README, '### Global flags'))).toEqual(helpFlags(program.helpInformation()));
  });

  for (const cmd of subcommands) {
    it(`${cmd.name()}: its table lists exactly the flags of \`orch-migrate ${cmd.name()} --help\` (besides --help)`, () => {
      const help = helpFlags(cmd.helpInformation());
      expect(help).toContain('--help');
      expect(tableFlags(section(README, `### \`${cmd.name()}\``))).toEqual(help.filter((f) => f !== '--help'));
    });
  }
});
