/**
 * Executable markdown: the fenced blocks of the runbooks and of the README's
 * example session run with bash against a real Redis, so neither can drift
 * from the CLI (test/integration/runbooks.test.ts, test/integration/readme-session.test.ts).
 *
 * Conventions (also in runbooks/README.md):
 *  - ```sh         executed; must exit 0, or N when it has a line `# expect-exit: N`;
 *  - ```sh norun   a reference command (back-out, manual step elsewhere); not executed;
 *  - ```text       expected output; never executed.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI } from './cli.js';

export interface Block {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  info: string;
  code: string;
  run: boolean;
  expectExit: number;
}

/** Fenced blocks of a markdown file. */
export function extractBlocks(file: string, text: string): Block[] {
  const out: Block[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const info = open[1]!.trim();
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !/^```\s*$/.test(lines[j]!)) body.push(lines[j++]!);
    if (j >= lines.length) throw new Error(`${file}:${i + 1}: unterminated code fence`);
    const code = body.join('\n');
    const [lang, ...flags] = info.split(/\s+/);
    const m = /^# expect-exit: (\d+)\s*$/m.exec(code);
    out.push({ file, line: i + 1, info, code, run: lang === 'sh' && !flags.includes('norun'), expectExit: m ? Number(m[1]) : 0 });
    i = j;
  }
  return out;
}

export interface BlockRun {
  block: Block;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs one block's code (after `rewrite`) with `bash -e`; SIGKILL after 90 s. */
export function runBlock(block: Block, env: NodeJS.ProcessEnv, cwd: string, rewrite: (code: string) => string = (c) => c): Promise<BlockRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-e', '-c', rewrite(block.code)], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ block, code, stdout, stderr });
    });
  });
}

/** A bin dir with an `orch-migrate` that runs the built CLI (put it first on PATH). */
export function shimDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'orch-runbook-bin-'));
  const shim = path.join(dir, 'orch-migrate');
  writeFileSync(shim, `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  chmodSync(shim, 0o755);
  return dir;
}
