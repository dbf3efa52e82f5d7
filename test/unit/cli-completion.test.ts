/**
 * `orch-migrate completion bash|zsh` (src/cli/commands/completion.ts): the
 * scripts are valid shell, are generated from the program (every subcommand
 * and every flag, nothing hand-listed), and complete the right words when bash
 * runs them.
 */
import { spawnSync } from 'node:child_process';
import { Command, Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { bashScript, zshScript } from '../../src/cli/commands/completion.js';
import { buildProgram } from '../../src/cli/main.js';
import { requireTool } from '../helpers/tools.js';

const program = buildProgram(() => undefined);
const subcommands = program.commands.map((c) => c.name());

function check(shell: 'bash' | 'zsh', script: string): void {
  const r = spawnSync(shell, ['-n'], { input: script, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}

/** Runs the bash script's function for a command line (the last word is being completed). */
function complete(script: string, ...line: string[]): string[] {
  const words = ['orch-migrate', ...line].map((w) => `'${w.replace(/'/g, "'\\''")}'`).join(' ');
  const driver = `${script}\nCOMP_WORDS=(${words}); COMP_CWORD=${line.length}; _orch_migrate; printf '%s\\n' "\${COMPREPLY[@]}"\n`;
  const r = spawnSync('bash', ['--norc', '--noprofile'], { input: driver, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').filter((w) => w !== '');
}

describe('completion bash', () => {
  const script = bashScript(program);

  it('is valid bash and registers itself for orch-migrate', (ctx) => {
    requireTool('bash', ctx);
    check('bash', script);
    expect(script).toMatch(/\ncomplete -F _orch_migrate orch-migrate\n$/);
  });

  it('offers every subcommand of the program, the new ones (demo, completion) included', (ctx) => {
    requireTool('bash', ctx);
    expect(subcommands).toEqual(
      expect.arrayContaining(['status', 'enable-dual-write', 'backfill', 'verify', 'flip-read', 'cleanup', 'rollback', 'demo', 'completion']),
    );
    expect(complete(script, '').sort()).toEqual([...subcommands, 'help'].sort());
    expect(complete(script, 'ro')).toEqual(['rollback']);
  });

  it('offers every flag of each subcommand, plus the global ones', (ctx) => {
    requireTool('bash', ctx);
    const globals = program.options.map((o) => o.long!);
    for (const cmd of program.commands) {
      const offered = complete(script, cmd.name(), '--');
      for (const o of cmd.options) expect(offered, `${cmd.name()} ${o.long}`).toContain(o.long);
      for (const g of globals) expect(offered, `${cmd.name()} ${g}`).toContain(g);
    }
    expect(complete(script, 'backfill', '--ra')).toEqual(['--rate']);
  });

  it('skips a flag value when finding the subcommand, and completes positional choices', (ctx) => {
    requireTool('bash', ctx);
    expect(complete(script, '--prefix', 'ai', 'ver')).toEqual(['verify']);
    expect(complete(script, '--prefix', 'ai', 'verify', '--rep')).toEqual(['--report', '--repair']);
    expect(complete(script, 'completion', '').sort()).toEqual(['bash', 'zsh']);
    expect(complete(script, 'help', 'flip')).toEqual(['flip-read']);
    // After a flag that takes a value, the value (here a file name), not another flag.
    expect(complete(script, 'verify', '--report', '/etc/host')).toContain('/etc/hosts');
  });

  it('follows the program: a flag added to a command is completed, with its choices', (ctx) => {
    requireTool('bash', ctx);
    const p = new Command('orch-migrate').option('--json');
    p.command('probe')
      .addOption(new Option('--mode <m>', 'how').choices(['fast', 'slow']))
      .option('--deep', 'deeper');
    const s = bashScript(p);
    check('bash', s);
    expect(complete(s, 'probe', '--')).toEqual(expect.arrayContaining(['--mode', '--deep', '--json']));
    expect(complete(s, 'probe', '--mode', '')).toEqual(['fast', 'slow']);
  });

  it('cannot be made to run code by a command or choice name', (ctx) => {
    requireTool('bash', ctx);
    const p = new Command('orch-migrate');
    p.command('ok').addOption(new Option('--mode <m>', "it's `uname`").choices(['safe', '$(touch /tmp/pwned)', "a'b"]));
    const s = bashScript(p);
    check('bash', s);
    expect(s).not.toContain('$(touch');
    expect(s).not.toContain("a'b");
    expect(complete(s, 'ok', '--mode', '')).toEqual(['safe']);
  });
});

describe('completion zsh', () => {
  const script = zshScript(program);

  it('is a #compdef function naming every subcommand and its flags', () => {
    expect(script.startsWith('#compdef orch-migrate\n')).toBe(true);
    for (const cmd of program.commands) {
      expect(script).toContain(`'${cmd.name()}:`);
      expect(script).toContain(`        ${cmd.name()})\n`);
      for (const o of cmd.options) expect(script, `${cmd.name()} ${o.long}`).toContain(`'${o.long}[`);
    }
    expect(script).toContain("'1:value:(bash zsh)'");
  });

  it('is valid zsh, with quotes and brackets in help texts escaped', (ctx) => {
    requireTool('zsh', ctx);
    check('zsh', script);
    const p = new Command('orch-migrate');
    p.command('odd').description("it's [odd]: `x`").option('--q', "a 'quoted' [flag]: yes");
    check('zsh', zshScript(p));
  });
});
