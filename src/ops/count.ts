/**
 * Key counts per layout. The estimate samples RANDOMKEY on every master and
 * scales by DBSIZE: cheap on any keyspace, within a few percent at the default
 * sample size. `exact` walks the keyspace with SCAN MATCH.
 */
import type { Redis } from 'ioredis';
import type { Keyspace } from '../core/keys.js';
import { masterNodes, type RedisClient } from '../core/redis.js';

/** Key counts of both layouts. */
export interface KeyCounts {
  legacy: number;
  v2: number;
  /** True when sampled rather than counted. */
  estimated: boolean;
}

/** Options of {@link countKeys}. */
export interface CountKeysOptions {
  exact?: boolean;
  /** RANDOMKEY samples per master for the estimate (default 400). */
  samples?: number;
  /** Restrict the v2 count to one workspace (exact only). */
  signal?: AbortSignal;
}

async function scanCount(node: Redis, pattern: string, signal?: AbortSignal): Promise<number> {
  let cursor = '0';
  let n = 0;
  do {
    if (signal?.aborted) break;
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
    n += keys.length;
    cursor = next;
  } while (cursor !== '0');
  return n;
}

async function sampleNode(node: Redis, keys: Keyspace, samples: number): Promise<{ legacy: number; v2: number }> {
  const size = await node.dbsize();
  if (size === 0) return { legacy: 0, v2: 0 };
  const p = node.pipeline();
  for (let i = 0; i < samples; i++) p.randomkey();
  const res = (await p.exec()) ?? [];
  let legacy = 0;
  let v2 = 0;
  let seen = 0;
  const legacyHead = `${keys.prefix}:jobs:`;
  const v2Head = `${keys.prefix}:job:`;
  for (const [err, k] of res) {
    if (err || typeof k !== 'string') continue;
    seen++;
    if (k.startsWith(legacyHead)) legacy++;
    else if (k.startsWith(v2Head)) v2++;
  }
  if (seen === 0) return { legacy: 0, v2: 0 };
  // Small keyspaces: count exactly, a sample would be noisier than the scan is slow.
  if (size <= samples * 5) {
    return { legacy: await scanCount(node, keys.legacyPattern), v2: await scanCount(node, keys.v2Pattern()) };
  }
  return { legacy: Math.round((legacy / seen) * size), v2: Math.round((v2 / seen) * size) };
}

/** Counts (or estimates) the keys of both layouts across every master. */
export async function countKeys(client: RedisClient, keys: Keyspace, opts: CountKeysOptions = {}): Promise<KeyCounts> {
  const nodes = masterNodes(client);
  if (opts.exact) {
    const per = await Promise.all(
      nodes.map(async (n) => ({ legacy: await scanCount(n, keys.legacyPattern, opts.signal), v2: await scanCount(n, keys.v2Pattern(), opts.signal) })),
    );
    return { legacy: sum(per.map((p) => p.legacy)), v2: sum(per.map((p) => p.v2)), estimated: false };
  }
  const per = await Promise.all(nodes.map((n) => sampleNode(n, keys, opts.samples ?? 400)));
  return { legacy: sum(per.map((p) => p.legacy)), v2: sum(per.map((p) => p.v2)), estimated: true };
}

/** Estimated number of keys matching one layout (for progress totals). */
export async function estimateLayout(client: RedisClient, keys: Keyspace, layout: 'legacy' | 'v2'): Promise<number> {
  const c = await countKeys(client, keys);
  return layout === 'legacy' ? c.legacy : c.v2;
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
