/**
 * Helpers for integration tests running against the shared servers that
 * test/helpers/global-setup.ts starts once per run.
 *
 * Isolation rule: tests share the servers and isolate themselves by key prefix
 * (uniquePrefix()). Never FLUSHALL/FLUSHDB — use deleteKeysWithPrefix().
 */
import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { inject } from 'vitest';
import { redisBinaryAvailable, type HostPort } from './redis-server.js';

export type AnyRedis = Redis | Cluster;

/** URL of the shared standalone server (spawned for this run, or $REDIS_URL). */
export function sharedStandaloneUrl(): string {
  return inject('redisStandaloneUrl');
}

/** True when the shared cluster is running. */
export function sharedClusterAvailable(): boolean {
  return inject('redisClusterNodes') !== null;
}

/** Startup nodes of the shared 3-master cluster; throws with the reason if it is unavailable. */
export function sharedClusterNodes(): HostPort[] {
  const nodes = inject('redisClusterNodes');
  if (!nodes) throw new Error(`The shared Redis Cluster is unavailable: ${inject('redisClusterUnavailable') ?? 'unknown reason'}`);
  return nodes.map((n) => ({ ...n }));
}

/**
 * Why tests that need to spawn their own redis-server (kill/restart/pause, private
 * clusters) cannot run here, or undefined when they can. Use with ctx.skip():
 *   `const why = processControlUnavailable(); if (why) ctx.skip(why);`
 */
export function processControlUnavailable(): string | undefined {
  return redisBinaryAvailable()
    ? undefined
    : 'needs the redis-server binary to spawn/kill/restart servers (apt-get install -y redis-server redis-tools); skipped';
}

/**
 * A fresh key prefix: `t` + the letters/digits of `name` (at most 16) + 10 random
 * base-36 characters, e.g. uniquePrefix('backfill') → `tbackfill3k9x0q1z7a`.
 * Letters and digits only, so it is safe inside keys and SCAN MATCH patterns.
 */
export function uniquePrefix(name = ''): string {
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '')
    .slice(0, 16);
  const bytes = randomBytes(10);
  let rand = '';
  for (const b of bytes) rand += (b % 36).toString(36);
  return `t${slug}${rand}`;
}

/** A standalone ioredis client; close it with closeClient(). */
export function connectStandalone(url: string = sharedStandaloneUrl(), options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false, ...options });
}

/** An ioredis Cluster client; close it with closeClient(). */
export function connectCluster(nodes: HostPort[] = sharedClusterNodes(), options: ClusterOptions = {}): Cluster {
  return new Cluster(nodes, {
    ...options,
    redisOptions: { maxRetriesPerRequest: 1, ...options.redisOptions },
  });
}

/** QUIT, falling back to disconnect() if the server does not answer (e.g. paused or killed). */
export async function closeClient(client: AnyRedis): Promise<void> {
  if (client.status === 'end') return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.quit(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('quit timed out')), 1000);
      }),
    ]);
  } catch {
    client.disconnect();
  } finally {
    clearTimeout(timer);
  }
}

async function unlinkMatching(node: Redis, pattern: string, perKey: boolean): Promise<number> {
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length === 0) continue;
    if (perKey) {
      // Cluster node: keys of one node span many slots, so one UNLINK per key.
      const pipeline = node.pipeline();
      for (const key of keys) pipeline.unlink(key);
      const results = (await pipeline.exec()) ?? [];
      for (const [err, n] of results) {
        if (err) throw err;
        deleted += Number(n);
      }
    } else {
      deleted += await node.unlink(...keys);
    }
  } while (cursor !== '0');
  return deleted;
}

/**
 * Deletes every key matching `<prefix>:*` (SCAN MATCH + UNLINK; on every master
 * for a cluster). Returns the number of keys deleted. The client must not use
 * ioredis' `keyPrefix` option.
 */
export async function deleteKeysWithPrefix(client: AnyRedis, prefix: string): Promise<number> {
  if (!/^[A-Za-z0-9_-]+$/.test(prefix)) throw new Error(`deleteKeysWithPrefix: refusing unsafe prefix ${JSON.stringify(prefix)}`);
  const pattern = `${prefix}:*`;
  if (client instanceof Cluster) {
    if (client.options.redisOptions?.keyPrefix) throw new Error('deleteKeysWithPrefix: use a client without keyPrefix');
    await client.ping(); // waits until the slot map (and so the node list) is loaded
    const counts = await Promise.all(client.nodes('master').map((node) => unlinkMatching(node, pattern, true)));
    return counts.reduce((a, b) => a + b, 0);
  }
  if (client.options.keyPrefix) throw new Error('deleteKeysWithPrefix: use a client without keyPrefix');
  return unlinkMatching(client, pattern, false);
}
