/**
 * Enqueue latency per phase, through the queue core, against the seed's
 * dual-write (three unordered round trips: HSET old, RPUSH, HSET new).
 * The seed promised "< 5% added latency"; this measures what the protocol costs.
 */
import { Redis } from 'ioredis';
import { unlinkScratchPrefix } from '../src/cli/demo/throwaway-redis.js';
import { Keyspace } from '../src/core/keys.js';
import { Phase } from '../src/core/phase.js';
import { closeRedis, connectRedis } from '../src/core/redis.js';
import { RedisJobQueue } from '../src/core/redis-queue.js';
import { StateStore } from '../src/core/state.js';

/** Latency figures of one variant, in microseconds. */
export interface LatencyFigures {
  variant: string;
  ops: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
}

/** Options of {@link runEnqueueBench}. */
export interface EnqueueBenchOptions {
  redisUrl: string;
  /** Sequential operations per variant (default 5000). */
  ops?: number;
}

function figures(variant: string, samples: number[]): LatencyFigures {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { variant, ops: samples.length, p50Us: Math.round(at(0.5)), p99Us: Math.round(at(0.99)), meanUs: Math.round(mean) };
}

async function time(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  // Warm up connections, script caches and the JIT before measuring.
  for (let i = 0; i < Math.min(200, n); i++) await fn(-1 - i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    out.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return out;
}

/** Measures enqueue latency in legacy, dual-write, read-new and new-only, and the seed's dual-write. */
export async function runEnqueueBench(opts: EnqueueBenchOptions): Promise<LatencyFigures[]> {
  const n = opts.ops ?? 5000;
  const client = await connectRedis({ url: opts.redisUrl });
  const results: LatencyFigures[] = [];
  const prefix = `benq${Date.now().toString(36)}`;
  const keys = new Keyspace(prefix);
  const store = new StateStore(client, keys);
  const queue = await RedisJobQueue.create(client, { keys });
  const params = { prompt: 'summarise the quarterly report', max_tokens: 512, api_key: 'sk_bench' };
  try {
    let epoch = 0;
    let from: Phase = Phase.Legacy;
    for (const phase of [Phase.Legacy, Phase.DualWrite, Phase.ReadNew, Phase.NewOnly]) {
      if (phase !== from) {
        await store.transition({ from, to: phase, expectedEpoch: epoch, fence: null, settleMs: 100 });
        epoch += 1;
        from = phase;
        await queue.refreshPhase();
      }
      const samples = await time(n, (i) => queue.enqueue({ workspaceId: `ws-${Math.abs(i) % 200}`, action: 'plan', params }));
      results.push(figures(`queue core, ${phase}${phase === Phase.DualWrite || phase === Phase.ReadNew ? ' (primary + apply-if-newer mirror)' : ''}`, samples));
    }
    // The seed's dual-write (Pattern 1): three awaited round trips, no atomicity, no rev.
    const raw = new Redis(opts.redisUrl);
    const now = new Date().toISOString();
    const seed = await time(n, async (i) => {
      const id = `seed_${i}_${Math.random().toString(36).slice(2)}`;
      const ws = `ws-${Math.abs(i) % 200}`;
      const data = { job_id: id, workspace_id: ws, action: 'plan', params: JSON.stringify(params), status: 'queued', created_at: now, updated_at: now };
      await raw.hset(`${prefix}:jobs:${id}`, data);
      await raw.rpush(`${prefix}:queue`, id);
      await raw.hset(`${prefix}:job:${ws}:${id}`, data);
    });
    results.push(figures('seed Pattern 1 dual-write (3 round trips)', seed));
    const seedSingle = await time(n, async (i) => {
      const id = `seed1_${i}_${Math.random().toString(36).slice(2)}`;
      await raw.hset(`${prefix}:jobs:${id}`, { job_id: id, workspace_id: 'ws', action: 'plan', params: JSON.stringify(params), status: 'queued', created_at: now, updated_at: now });
      await raw.rpush(`${prefix}:queue`, id);
    });
    results.push(figures('seed single write (2 round trips)', seedSingle));
    raw.disconnect();
  } finally {
    await queue.close();
    // The bench server is throwaway, but a REDIS_URL run must not leave keys behind.
    await unlinkScratchPrefix(client as Redis, prefix);
    await closeRedis(client);
  }
  return results;
}
