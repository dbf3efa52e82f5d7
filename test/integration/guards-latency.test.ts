/**
 * The latency guard (a PING probe timed by the run, p99 over a sliding
 * window): while a second client keeps Redis busy with 150 ms scripts, a
 * backfill with --max-latency-ms pauses, saying what it measured; when the
 * load stops it resumes and completes. With --critical-latency-ms it stops
 * (exit 6, checkpoint kept). How close the p99 stays to the limit is a bench
 * figure (bench/guards.ts), not a timed test.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { loadCheckpoint, sumCounter } from '../../src/ops/checkpoint.js';
import { target } from '../helpers/cli.js';
import { expectLedger, seedDualWrite } from '../helpers/fault-helpers.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { expectExit, startCli, waitForRun } from './guards-helpers.js';

const skip = processControlUnavailable();
const servers: RedisServerHandle[] = [];
const clients: RedisClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => closeRedis(c)));
  await Promise.all(servers.map((s) => s.stop()));
});

/** A script that keeps Redis busy for `ms` (it reads the server clock until it moved on). */
const BUSY = `local t0 = redis.call('TIME') local us = 0 repeat local t = redis.call('TIME') us = (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) until us >= tonumber(ARGV[1]) * 1000 return us`;

/** Keeps Redis busy from a second connection until `stop()`. */
function busyLoad(url: string, ms: number): { stop: () => Promise<void> } {
  let running = true;
  const loop = (async () => {
    const c = await connectRedis({ url, connectionName: 'test:busy-load' });
    try {
      while (running) await c.eval(BUSY, 0, String(ms));
    } finally {
      await closeRedis(c);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

describe.skipIf(skip !== undefined)('latency guard', () => {
  it('under a busy second client the backfill pauses (probe p99 over --max-latency-ms); without the load it resumes and completes', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const client = await connectRedis({ url: server.url });
    clients.push(client);
    const keys = new Keyspace(uniquePrefix('glat'));
    const N = 8000;
    const ledger = await seedDualWrite(client, keys, N);
    const run = await startCli([...target(server.url, keys.prefix), '--json', 'backfill', '--rate', '1000', '--max-latency-ms', '50']);
    await waitForRun(client, keys, 'progress', (r) => r.done >= 500);
    const load = busyLoad(server.url, 150);
    try {
      const paused = await waitForRun(client, keys, 'the latency guard to pause the run', (r) => r.state === 'paused', 60_000);
      expect(paused.holding).toContain('latency');
      expect(paused.reason).toMatch(new RegExp(`probe p99 [0-9.]+ ms on 127\\.0\\.0\\.1:${server.port} \\([0-9]+ PINGs in 3s\\) > 50 ms`));
    } finally {
      await load.stop();
    }
    const r = await run.done;
    expectExit(r, 0);
    const j = r.json as { copied: number; throttle: { byGuard: Record<string, { pausedMs: number; pauses: number }> } };
    expect(j.copied).toBe(N);
    expect(j.throttle.byGuard.latency!.pauses).toBeGreaterThanOrEqual(1);
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
  });

  it('--critical-latency-ms: the run stops with exit 6 and keeps its checkpoint', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const client = await connectRedis({ url: server.url });
    clients.push(client);
    const keys = new Keyspace(uniquePrefix('glatc'));
    await seedDualWrite(client, keys, 6000);
    const run = await startCli([
      ...target(server.url, keys.prefix),
      '--json',
      'backfill',
      '--rate',
      '1000',
      '--max-latency-ms',
      '50',
      '--critical-latency-ms',
      '120',
    ]);
    await waitForRun(client, keys, 'progress', (x) => x.done >= 500);
    const load = busyLoad(server.url, 300);
    const r = await run.done.finally(() => load.stop());
    expectExit(r, 6);
    expect(r.json).toMatchObject({ exitCode: 6, error: { code: 'ERR_GUARD', guard: 'latency' } });
    expect((r.json as { error: { message: string } }).error.message).toMatch(
      /^Stopped by the latency guard: probe p99 [0-9.]+ ms .* ≥ critical 120 ms; checkpoint kept$/,
    );
    const scanned = sumCounter(await loadCheckpoint(client, keys, 'backfill'), 'scanned');
    expect(scanned).toBeGreaterThan(0);
    expect(scanned).toBeLessThan(6000);
  });
});
