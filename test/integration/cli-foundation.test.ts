/**
 * Issue 2 acceptance through the real binary: status and enable-dual-write,
 * the state record's exact fields, exit codes, and no password in any output.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import type { RedisClient } from '../../src/core/redis.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, TOPOLOGIES, topologyUrl } from '../helpers/core-clients.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer } from '../helpers/redis-server.js';

describe.each(TOPOLOGIES)('status and enable-dual-write on %s', (topology) => {
  let client: RedisClient;
  const prefix = uniquePrefix('cli');
  const keys = new Keyspace(prefix);
  let args: string[];
  beforeAll(async () => {
    client = await coreClient(topology);
    const t = topologyUrl(topology);
    args = target(t.url, prefix, t.cluster);
  });
  afterAll(async () => {
    await cleanupClient(client, prefix);
  });

  it('reports phase legacy and epoch 0 on an empty store, as exactly one JSON object', async () => {
    const r = await runCli([...args, '--json', 'status']);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({
      phase: 'legacy',
      epoch: 0,
      changedAt: null,
      counts: { legacy: 0, v2: 0 },
      lock: null,
      lastBackfill: null,
      lastVerify: null,
    });
    expect(r.json).toHaveProperty('gates');
    expect(r.json).toHaveProperty('changedBy');
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
  });

  it('enable-dual-write writes the state record, history and event; a second one is refused with exit 3', async () => {
    const before = Date.now();
    const r = await runCli([...args, '--json', '--actor', 'sre-oncall', 'enable-dual-write', '--reason', 'CHG-1 start']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ from: 'legacy', to: 'dual-write', epoch: 1, dryRun: false });
    const rec = await client.hgetall(keys.state);
    expect(rec.phase).toBe('dual-write');
    expect(rec.epoch).toBe('1');
    expect(rec.changed_by).toBe('sre-oncall');
    expect(rec.reason).toBe('CHG-1 start');
    expect(rec.settle_ms).toBe('2000');
    expect(Number(rec.changed_at)).toBeGreaterThanOrEqual(before - 5000);
    expect(Number(rec.changed_at)).toBeLessThanOrEqual(Date.now() + 5000);
    const history = await client.xrange(keys.history, '-', '+');
    expect(history.some(([, f]) => f.includes('transition') && f.join(' ').includes('"to":"dual-write"'))).toBe(true);

    // Running the step again is not an error: it says so and names the next command; nothing moves.
    const again = await runCli([...args, '--json', 'enable-dual-write', '--reason', 'again', '--settle-ms', '500']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.json).toMatchObject({ from: 'dual-write', to: 'dual-write', epoch: 1, already: true });
    const againText = await runCli([...args, 'enable-dual-write', '--settle-ms', '500']);
    expect(againText.code).toBe(0);
    expect(againText.stdout).toMatch(/already in dual-write \(epoch 1\); nothing changed\. next: orch-migrate backfill/);
    expect(againText.stdout).toMatch(/--settle-ms 500 was ignored: the state record keeps settle_ms 2000/);
    expect((await client.hgetall(keys.state)).epoch).toBe('1');

    const status = await runCli([...args, '--json', 'status']);
    expect(status.json).toMatchObject({ phase: 'dual-write', epoch: 1, changedBy: 'sre-oncall' });
    expect((status.json!.next as { command: string }).command).toMatch(/backfill/);
  });

  it('prints the human result on stdout (so it pipes into grep), nothing on stderr', async () => {
    const r = await runCli([...args, 'status']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/phase\s+legacy → \[dual-write\] → read-new → new-only/);
    expect(r.stdout).toMatch(/next\s+orch-migrate backfill/);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('gate')).length).toBeGreaterThanOrEqual(5);
  });
});

describe('failures at the boundary', () => {
  it('an unreachable Redis with a password in the URL: exit 5 within 15 s, address shown, password never', async () => {
    const r = await runCli(['--redis-url', 'redis://admin:hunter2-secret@127.0.0.1:1/0', '--json', 'status']);
    expect(r.code).toBe(5);
    expect(r.durationMs).toBeLessThan(15_000);
    expect(r.stderr).toMatch(/127\.0\.0\.1:1/);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('error:'))).toHaveLength(1);
    expect(r.stderr + r.stdout).not.toMatch(/hunter2/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.json).toMatchObject({ ok: false, exitCode: 5, error: { code: 'ERR_REDIS_UNAVAILABLE' } });
  });

  it('a frozen server (SIGSTOP) fails with exit 5 instead of hanging', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const server = await startRedisServer();
    try {
      server.pause();
      const r = await runCli(['--redis-url', server.url.replace('redis://', 'redis://:pw-should-not-leak@'), '--timeout', '1000', 'status']);
      expect(r.code).toBe(5);
      expect(r.durationMs).toBeLessThan(15_000);
      expect(r.stderr).toMatch(new RegExp(`127\\.0\\.0\\.1:${server.port}`));
      expect(r.stderr).not.toMatch(/pw-should-not-leak/);
    } finally {
      server.resume();
      await server.stop();
    }
  });

  it.each([
    [['bogus-command'], /unknown command/],
    [['status', '--no-such-flag'], /unknown option/],
    [['--timeout', 'abc', 'status'], /integer/],
    [['--redis-url', 'http://127.0.0.1:6379', 'status'], /Unsupported Redis URL scheme/],
    [['--redis-url', 'not a url at all', 'status'], /Invalid Redis URL/],
    [['--prefix', 'ai:*', 'status'], /Invalid key prefix/],
    [['enable-dual-write', '--settle-ms', '-5'], /integer/],
  ])('usage error %j exits 2 with a one-line message', async (argv, message) => {
    const r = await runCli(['--redis-url', 'redis://127.0.0.1:1', ...(argv as string[])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('--help teaches and exits 0', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/Exit codes: 0 ok/);
  });
});
