// Self-test of the real-Redis harness (test/helpers): shared servers from the
// globalSetup, and private servers with process control.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  closeClient,
  connectCluster,
  connectStandalone,
  deleteKeysWithPrefix,
  processControlUnavailable,
  sharedClusterAvailable,
  sharedClusterNodes,
  sharedStandaloneUrl,
  uniquePrefix,
  type AnyRedis,
} from '../helpers/fixtures.js';
import {
  findFreeClusterPort,
  findFreePort,
  parseInfo,
  startRedisCluster,
  startRedisServer,
  type RedisClusterHandle,
  type RedisServerHandle,
} from '../helpers/redis-server.js';

const clients: AnyRedis[] = [];
const servers: { stop(): Promise<void> }[] = [];
function track<T extends AnyRedis>(client: T): T {
  clients.push(client);
  return client;
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map(closeClient));
});
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function runId(client: Redis): Promise<string> {
  const id = parseInfo(await client.info('server')).run_id;
  if (!id) throw new Error('no run_id in INFO server');
  return id;
}

describe('helpers', () => {
  it('uniquePrefix gives fresh letters/digits-only prefixes', () => {
    const a = uniquePrefix('Backfill: resume');
    const b = uniquePrefix('Backfill: resume');
    expect(a).toMatch(/^tbackfillresume[a-z0-9]{10}$/);
    expect(a).not.toBe(b);
    expect(uniquePrefix()).toMatch(/^t[a-z0-9]{10}$/);
  });

  it('findFreePort / findFreeClusterPort give bindable loopback ports', async () => {
    const p = await findFreePort();
    expect(p).toBeGreaterThan(1024);
    expect(p).not.toBe(6379);
    const c = await findFreeClusterPort();
    expect(c + 10000).toBeLessThan(32768);
  });
});

describe('shared standalone server', () => {
  it('answers and is isolated by prefix', async () => {
    const prefix = uniquePrefix('standalone');
    const client = track(connectStandalone(sharedStandaloneUrl()));
    expect(await client.ping()).toBe('PONG');
    await client.set(`${prefix}:a`, '1');
    await client.hset(`${prefix}:h`, { f: 'v' });
    expect(await client.get(`${prefix}:a`)).toBe('1');
    expect(await deleteKeysWithPrefix(client, prefix)).toBe(2);
    expect(await client.exists(`${prefix}:a`, `${prefix}:h`)).toBe(0);
  });
});

describe.skipIf(!sharedClusterAvailable())('shared cluster', () => {
  it('has 3 masters covering all 16384 slots', async () => {
    const nodes = sharedClusterNodes();
    expect(nodes).toHaveLength(3);
    const first = nodes[0];
    if (!first) throw new Error('no nodes');
    const direct = track(new Redis({ host: first.host, port: first.port, maxRetriesPerRequest: 1 }));
    const slots = await direct.cluster('SLOTS');
    const covered = slots.reduce((sum, [start, end]) => sum + (end - start + 1), 0);
    expect(covered).toBe(16384);
    expect(new Set(slots.map(([, , master]) => master?.[2])).size).toBe(3);
    expect(parseInfo(await direct.cluster('INFO'))).toMatchObject({
      cluster_state: 'ok',
      cluster_slots_assigned: '16384',
      cluster_known_nodes: '3',
    });
  });

  it('round-trips keys through an ioredis Cluster client and cleans up on every master', async () => {
    const prefix = uniquePrefix('cluster');
    const cluster = track(connectCluster(sharedClusterNodes()));
    const keys = Array.from({ length: 50 }, (_, i) => `${prefix}:k${i}`);
    for (const key of keys) await cluster.set(key, key);
    for (const key of keys) expect(await cluster.get(key)).toBe(key);
    // 50 keys spread over all three masters.
    const perMaster = await Promise.all(cluster.nodes('master').map((n) => n.keys(`${prefix}:*`)));
    expect(perMaster).toHaveLength(3);
    expect(perMaster.every((k) => k.length > 0)).toBe(true);
    expect(await deleteKeysWithPrefix(cluster, prefix)).toBe(50);
    expect(await cluster.get(keys[0] ?? '')).toBeNull();
  });
});

describe('private standalone server (process control)', () => {
  let server: RedisServerHandle;

  it('restart() with appendonly keeps data, port and dir, and changes run_id', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    server = await startRedisServer({ appendonly: true });
    servers.push(server);
    expect(server.kind).toBe('process');
    const { port, dir } = server;
    const pidBefore = server.pid;

    const before = track(connectStandalone(server.url));
    await before.set('persist:me', 'yes');
    const runBefore = await runId(before);
    await closeClient(before);

    await server.restart();
    expect(server.port).toBe(port);
    expect(server.dir).toBe(dir);
    expect(server.pid).not.toBe(pidBefore);

    const after = track(connectStandalone(server.url));
    expect(await after.get('persist:me')).toBe('yes');
    expect(await runId(after)).not.toBe(runBefore);
  });

  it('pause() makes commands time out and resume() recovers', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const client = track(connectStandalone(server.url, { commandTimeout: 500 }));
    expect(await client.ping()).toBe('PONG');
    server.pause();
    try {
      await expect(client.ping()).rejects.toThrow(/timed out/i);
    } finally {
      server.resume();
    }
    expect(await client.ping()).toBe('PONG');
  });

  it('kill() ends the process; restart() brings it back; stop() is idempotent', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const pid = server.pid;
    expect(pid).toBeTypeOf('number');
    await server.kill();
    expect(server.pid).toBeUndefined();
    expect(() => process.kill(pid ?? 0, 0)).toThrow();
    await server.restart();
    const client = track(connectStandalone(server.url));
    expect(await client.ping()).toBe('PONG');
    await closeClient(client);
    await server.stop();
    await server.stop();
    expect(server.pid).toBeUndefined();
  });
});

describe('private cluster (process control)', () => {
  it('a restarted node rejoins with its data (nodes.conf + AOF in its dir)', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const cluster: RedisClusterHandle = await startRedisCluster({ masters: 3, appendonly: true });
    servers.push(cluster);
    expect(cluster.url).toBe(`redis://127.0.0.1:${cluster.nodes[0]?.port}`);

    const client = track(connectCluster(cluster.startupNodes));
    const keys = Array.from({ length: 30 }, (_, i) => `p:k${i}`);
    for (const key of keys) await client.set(key, key);

    const victim = cluster.nodes[1];
    if (!victim) throw new Error('no node 1');
    const victimKeys = await track(new Redis({ host: victim.host, port: victim.port })).keys('p:*');
    expect(victimKeys.length).toBeGreaterThan(0);

    await victim.restart();
    await cluster.waitForHealthy();
    for (const key of keys) expect(await client.get(key)).toBe(key);
  });
});
