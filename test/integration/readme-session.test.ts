/**
 * README.md's example session runs as written: the fenced blocks between
 * `<!-- readme-session:start -->` and `<!-- readme-session:end -->` execute in
 * order with bash against a Redis of their own (the session uses the default
 * prefix `ai`), with the conventions of test/helpers/markdown-blocks.ts. Each
 * ```sh block must exit as it says, and every line of the ```text block after
 * it must appear in what it printed: numbers, times and rates vary from run
 * to run and are compared as placeholders, the words are compared exactly.
 * Result lines must be on stdout; warnings, errors, fixes and settle waits on
 * stderr (README.md "Output: stdout and stderr").
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractBlocks, runBlock, shimDir, type Block } from '../helpers/markdown-blocks.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const START = '<!-- readme-session:start -->';
const END = '<!-- readme-session:end -->';

/** The session's blocks, with their line numbers in README.md. */
function sessionBlocks(): Block[] {
  const text = readFileSync(README, 'utf8');
  const from = text.indexOf(START);
  const to = text.indexOf(END);
  if (from < 0 || to < from) throw new Error(`README.md: no ${START} … ${END} section`);
  const offset = text.slice(0, from).split('\n').length - 1;
  return extractBlocks('README.md', text.slice(from, to)).map((b) => ({ ...b, line: b.line + offset }));
}

/** A line with its volatile parts as placeholders: durations first (`1m 5s`, `0.4s`, `2000 ms`), then any number. */
export function normalize(line: string): string {
  return line
    .replace(/(?:\d[\d,.]*\s?(?:ms|s|m|h|d)\b\s*)+/g, '<t> ')
    .replace(/\d[\d,.]*/g, '#')
    .replace(/\s+/g, ' ')
    .trim();
}

/** Lines the README says go to stderr: warnings, errors and the fix under an error, settle waits. (A fix inside a result, as preflight's, is on stdout.) */
function isStderrLine(line: string, previousOnStderr: boolean): boolean {
  return /^(warning|error):|: waiting .* for the settle window/.test(line) || (previousOnStderr && /^\s+fix:/.test(line));
}

describe('README.md example session', () => {
  let server: RedisServerHandle;
  let bin: string;
  let cwd: string;

  beforeAll(async () => {
    server = await startRedisServer();
    bin = shimDir();
    cwd = mkdtempSync(path.join(os.tmpdir(), 'orch-readme-'));
  });
  afterAll(async () => {
    rmSync(bin, { recursive: true, force: true });
    rmSync(cwd, { recursive: true, force: true });
    await server?.stop();
  });

  it('normalize keeps the words and drops what varies', () => {
    expect(normalize('backfill complete: 2,000 scanned in 0.4s (6,803 keys/s)')).toBe(normalize('backfill complete: 12 scanned in 1m 5s (9 keys/s)'));
    expect(normalize('changed   10s ago by ana')).toBe('changed <t> ago by ana');
    expect(normalize('clean: both layouts agree')).not.toBe(normalize('clean: both layouts differ'));
  });

  it('every block exits as shown and prints every line shown', async () => {
    const blocks = sessionBlocks();
    const runnable = blocks.filter((b) => b.run);
    expect(runnable.length).toBeGreaterThan(10);
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, REDIS_URL: server.url, ORCH_ACTOR: 'ana@laptop', NO_COLOR: '1' };
    for (const k of ['ORCH_PREFIX', 'ORCH_LOCK_TTL_MS', 'ORCH_ACK_TIMEOUT']) delete env[k];
    let checkedLines = 0;
    for (let i = 0; i < blocks.length; i++) {
      const block = blocks[i]!;
      if (!block.run) continue;
      const r = await runBlock(block, env, cwd);
      const where = `README.md:${block.line}\n$ ${block.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
      expect(r.code, where).toBe(block.expectExit);
      const shown = blocks[i + 1]?.info === 'text' ? blocks[i + 1]!.code.split('\n').filter((l) => l.trim() !== '') : [];
      const out = new Set(r.stdout.split('\n').map(normalize));
      const err = new Set(r.stderr.split('\n').map(normalize));
      let onStderr = false;
      for (const line of shown) {
        const n = normalize(line);
        onStderr = isStderrLine(line, onStderr);
        const [stream, name] = onStderr ? [err, 'stderr'] : [out, 'stdout'];
        expect(stream.has(n), `README.md:${blocks[i + 1]!.line}: not on ${name}: ${line}\n${where}`).toBe(true);
        checkedLines++;
      }
    }
    expect(checkedLines).toBeGreaterThan(50);
  }, 300_000);
});
