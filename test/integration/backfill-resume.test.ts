// Resumability as an operator sees it: SIGINT mid-run (exit 130, checkpoint
// kept, the rerun resumes instead of rescanning) and a Redis restart mid-run
// (exit 5; the rerun notices the new run_id and rescans that node).
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { loadCheckpoint, sumCounter } from '../../src/ops/checkpoint.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, topologyUrl } from '../helpers/core-clients.js';
import { processControlUnavailable, sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { scanKeys, seedLegacy } from './backfill-helpers.js';

const servers: RedisServerHandle[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
});

/** Polls the backfill checkpoint until it shows at least `min` keys scanned. */
async function waitForProgress(client: RedisClient, keys: Keyspace, min: number, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cp = await loadCheckpoint(client, keys, 'backfill');
    const scanned = sumCounter(cp, 'scanned');
    if (scanned >= min) return scanned;
    if (Date.now() > deadline) throw new Error(`backfill made no progress (${scanned} scanned)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('backfill resume', () => {
  it.for(TOPOLOGIES)('SIGINT halfway through a throttled run on %s: exit 130, checkpoint kept; the rerun resumes and finishes clean', async (topology, ctx) => {
    if (topology === 'cluster' && !sharedClusterAvailable()) ctx.skip('no shared cluster');
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`bfsigint${topology}`);
    const keys = new Keyspace(prefix);
    const { url, cluster } = topologyUrl(topology);
    const masters = cluster ? 3 : 1;
    const N = 3000;
    try {
      await seedLegacy(client, keys, N);
      await movePhase(client, keys, Phase.DualWrite, 100);
      const first = await runCli([...target(url, prefix, cluster), '--json', 'backfill', '--rate', '1000', '--batch-size', '100'], {
        onSpawn: (child) => {
          void waitForProgress(client, keys, 800).then(() => child.kill('SIGINT'));
        },
      });
      expect(first.code, first.stderr).toBe(130);
      expect(first.json).toMatchObject({ ok: false, exitCode: 130, error: { code: 'ERR_INTERRUPTED' } });
      const cp = await loadCheckpoint(client, keys, 'backfill');
      expect(cp.nodes).toHaveLength(masters);
      expect(cp.nodes.some((n) => !n.done && n.cursor !== '0')).toBe(true);
      const before = sumCounter(cp, 'scanned');
      expect(before).toBeGreaterThanOrEqual(800);
      expect(before).toBeLessThan(N);
      expect(await client.exists(keys.lock)).toBe(0);

      const second = await runCli([...target(url, prefix, cluster), '--json', 'backfill']);
      expect(second.code, second.stderr).toBe(0);
      const j = second.json as { resumed: boolean; complete: boolean; scanned: number; copied: number; thisRun: { scanned: number; copied: number } };
      expect(j.resumed).toBe(true);
      expect(j.complete).toBe(true);
      // Not rescanned from 0: this run only did the rest.
      expect(j.thisRun.scanned).toBeLessThan(N - 700);
      expect(j.scanned).toBe(before + j.thisRun.scanned);
      expect(j.copied).toBe(N);
      expect(await scanKeys(client, keys.v2Pattern())).toHaveLength(N);

      const v = await runCli([...target(url, prefix, cluster), '--json', 'verify', '--round-delay', '50ms']);
      expect(v.code, v.stderr).toBe(0);
      expect(v.json).toMatchObject({ ok: true, mismatches: 0 });
    } finally {
      await cleanupClient(client, prefix);
    }
  });

  it('Redis restarts mid-backfill (AOF on): exit 5; the rerun sees the new run_id, rescans, finishes; verify clean', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const server = await startRedisServer({ appendonly: true });
    servers.push(server);
    const prefix = uniquePrefix('bfrestart');
    const keys = new Keyspace(prefix);
    const N = 3000;
    let client = await connectRedis({ url: server.url });
    try {
      await seedLegacy(client, keys, N);
      await movePhase(client, keys, Phase.DualWrite, 100);
      const first = await runCli([...target(server.url, prefix), '--json', '--lock-ttl', '2000', 'backfill', '--rate', '1000', '--batch-size', '100'], {
        onSpawn: () => {
          void waitForProgress(client, keys, 500).then(() => server.restart());
        },
      });
      expect(first.code, first.stderr).toBe(5);
      expect(first.json).toMatchObject({ exitCode: 5, error: { code: 'ERR_REDIS_UNAVAILABLE' } });

      await closeRedis(client);
      client = await connectRedis({ url: server.url });
      const cp = await loadCheckpoint(client, keys, 'backfill');
      expect(cp.nodes).toHaveLength(1);
      expect(sumCounter(cp, 'scanned')).toBeGreaterThan(0);
      // A lease left by the lost connection expires by itself.
      const deadline = Date.now() + 10_000;
      while ((await client.exists(keys.lock)) === 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));

      const second = await runCli([...target(server.url, prefix), '--json', 'backfill']);
      expect(second.code, second.stderr).toBe(0);
      const j = second.json as { resumed: boolean; complete: boolean; scanned: number; copied: number; skipped: number; nodes: Array<{ rescanned: boolean }> };
      expect(j.nodes[0]!.rescanned).toBe(true);
      expect(j.resumed).toBe(false);
      expect(j.complete).toBe(true);
      expect(j.scanned).toBeGreaterThanOrEqual(N);
      expect(j.copied + j.skipped).toBe(j.scanned);
      expect(await scanKeys(client, keys.v2Pattern())).toHaveLength(N);

      const v = await runCli([...target(server.url, prefix), '--json', 'verify', '--round-delay', '50ms']);
      expect(v.code, v.stderr).toBe(0);
      expect(v.json).toMatchObject({ ok: true, mismatches: 0 });
    } finally {
      await closeRedis(client);
    }
  });
});
