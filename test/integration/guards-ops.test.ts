/**
 * Every long run goes through the guards, not only backfill: verify, cleanup
 * and rollback's reverse backfill are held by `control pause`, show in
 * `status` as the run in flight under their own name, resume with `control
 * resume`, and report `throttle` in `--json`. `status --watch` redraws in place
 * on a terminal and prints plain lines in a pipe. On both topologies.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { cleanupClient, coreClient, TOPOLOGIES, topologyUrl } from '../helpers/core-clients.js';
import { expectLedger, seedDualWrite } from '../helpers/fault-helpers.js';
import { sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';
import { requireTool } from '../helpers/tools.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from '../helpers/cli.js';
import { expectExit, startCli, waitFor, waitForRun } from './guards-helpers.js';
import type { RedisClient } from '../../src/core/redis.js';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Runs `argv` while `control pause` holds it; checks the heartbeat names `op`; resumes; returns the result. */
async function heldThenResumed(client: RedisClient, keys: Keyspace, args: string[], argv: string[], op: string): Promise<CliResult> {
  expectExit(await runCli([...args, 'control', 'pause', '--reason', `hold ${op}`]), 0);
  const run = await startCli([...args, '--json', ...argv]);
  await waitForRun(client, keys, `${op} to be held`, (r) => r.op === op && r.state === 'paused', 60_000);
  const st = await runCli([...args, '--json', 'status']);
  expect(st.json).toMatchObject({ runs: [{ op, state: 'paused', holding: ['control'] }], control: { paused: true } });
  expectExit(await runCli([...args, 'control', 'resume']), 0);
  const r = await run.done;
  expect(r.json, r.stderr).toMatchObject({ throttle: { byGuard: { control: { pauses: 1 } } } });
  return r;
}

describe('guards on every long run', () => {
  it.for(TOPOLOGIES)('%s: verify, cleanup --execute and the reverse backfill are held by control pause and resume', async (topology, ctx) => {
    if (topology === 'cluster' && !sharedClusterAvailable()) ctx.skip('no shared cluster');
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`gops${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      const ledger = await seedDualWrite(client, keys, 2000);
      expectExit(await runCli([...args, 'backfill']), 0);
      const v = await heldThenResumed(client, keys, args, ['verify', '--round-delay', '50ms'], 'verify');
      expectExit(v, 0);
      expect(v.json).toMatchObject({ ok: true });
      expectExit(await runCli([...args, 'flip-read', '--reason', 'guards test']), 0);
      expectExit(await runCli([...args, 'verify', '--round-delay', '50ms']), 0);
      const c = await heldThenResumed(client, keys, args, ['cleanup', '--execute', '--min-soak', '0s', '--reason', 'guards test: short soak'], 'cleanup');
      expectExit(c, 0);
      expect(c.json).toMatchObject({ deleted: 2000, phase: 'new-only' });
      const rb = await heldThenResumed(client, keys, args, ['rollback', '--execute', '--reason', 'guards test'], 'reverse-backfill');
      expectExit(rb, 0);
      // rollback's own --json carries the reverse backfill's throttle too.
      expect(rb.json).toMatchObject({
        from: 'new-only',
        to: 'read-new',
        legacyComplete: true,
        reverseBackfill: { copied: 2000, throttle: { byGuard: { control: { pauses: 1 } } } },
      });
      await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});

describe('status --watch', () => {
  it('in a pipe: one plain line per refresh until interrupted (exit 0); with --json: a usage error', async () => {
    const client = await coreClient('standalone');
    const keys = new Keyspace(uniquePrefix('gwatch'));
    const { url } = topologyUrl('standalone');
    const args = target(url, keys.prefix);
    try {
      await seedDualWrite(client, keys, 200);
      const child = spawn(process.execPath, [CLI, ...args, 'status', '--watch', '300ms'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NO_COLOR: '1' },
      });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor('three refreshes', () => out.split('\n').filter(Boolean).length >= 3, 30_000);
      child.kill('SIGINT');
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      expect(code).toBe(0);
      const lines = out.split('\n').filter(Boolean);
      for (const l of lines) expect(l).toMatch(/^[0-9T:.-]+Z phase dual-write epoch 1; lock free; no run in flight$/);
      expect(out).not.toContain('\u001b');
      const both = await runCli([...args, '--json', 'status', '--watch']);
      expectExit(both, 2);
      expect(both.stderr).toMatch(/--watch redraws the status for people and --json prints exactly one object/);
      expectExit(await runCli([...args, 'status', '--watch', '10ms']), 2);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });

  it('on a terminal: redraws in place (cursor up over the last frame, clear below), showing the run in flight', async (ctx) => {
    requireTool('script', ctx);
    const client = await coreClient('standalone');
    const keys = new Keyspace(uniquePrefix('gwatchtty'));
    const { url } = topologyUrl('standalone');
    const args = target(url, keys.prefix);
    try {
      await seedDualWrite(client, keys, 6000);
      const run = await startCli([...args, 'backfill', '--rate', '1000']);
      await waitForRun(client, keys, 'progress', (r) => r.done > 0);
      // util-linux script(1) gives the CLI a pseudo-terminal: stdout.isTTY is true.
      const cmd = [process.execPath, CLI, ...args, 'status', '--watch', '300ms'].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
      const child = spawn('script', ['-qfec', `stty cols 200 rows 60; exec ${cmd}`, '/dev/null'], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: { ...process.env, NO_COLOR: '1', TERM: 'xterm' },
      });
      children.push(child);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      // eslint-disable-next-line no-control-regex -- the escape sequences are what is checked
      const cursorUp = /\u001b\[[0-9]+A/g;
      await waitFor('three frames', () => (out.match(cursorUp) ?? []).length >= 2, 30_000);
      child.kill('SIGINT');
      await new Promise((resolve) => child.on('close', resolve));
      expect(out).toContain('\r\u001b[J');
      expect(out).toMatch(/run +backfill by .*keys\/s \(ceiling 1,000\)/);
      expect(out).toMatch(/throttle +running/);
      await run.done;
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});
