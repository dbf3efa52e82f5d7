/**
 * Enqueue latency per phase, through the queue core, side by side with the
 * seed's writes (issue 13, item 2; docs/performance.md "Write path").
 *
 * Every variant runs in one process against one server over one connection,
 * interleaved: each round times one operation of every variant, in an order
 * that rotates from round to round, so a burst of load from elsewhere on the
 * machine lands on all of them alike. Each phase has its own key prefix (and so
 * its own state record), which is what lets four phases run at once. Warm-up
 * rounds (connections, script cache, JIT) come first and are not counted.
 *
 *   node dist/bench/enqueue.js [--ops 5000] [--warmup 500] [--redis-url URL]
 *
 * Without --redis-url it starts a throwaway redis-server.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { spawnRedisServer, unlinkScratchPrefix } from '../src/cli/demo/throwaway-redis.js';
import { Keyspace } from '../src/core/keys.js';
import { Phase, PHASE_ORDER } from '../src/core/phase.js';
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
  /** p50 of this variant / p50 of the seed single write, from the same run. */
  p50VsSeedSingle: number;
}

/** One target of issue 13 item 2, checked against this run's figures. */
export interface EnqueueTarget {
  variant: string;
  /** Highest allowed p50 ratio to the seed single write. */
  maxRatio: number;
  ratio: number;
  met: boolean;
}

/** What {@link runEnqueueBench} returns (embedded as is in bench/results/<date>.json). */
export interface EnqueueBenchResult {
  opsPerVariant: number;
  warmupPerVariant: number;
  /** Every variant ran in one process on one connection, one operation each per round, the order rotating. */
  interleaved: true;
  rows: LatencyFigures[];
  targets: EnqueueTarget[];
}

/** Options of {@link runEnqueueBench}. */
export interface EnqueueBenchOptions {
  redisUrl: string;
  /** Timed operations per variant (default 5000). */
  ops?: number;
  /** Untimed warm-up operations per variant (default 500). */
  warmup?: number;
}

export const SEED_SINGLE = 'seed single write (HSET + RPUSH, 2 round trips)';
export const SEED_DUAL = 'seed Pattern 1 dual-write (HSET, RPUSH, HSET: 3 round trips)';
const coreVariant = (phase: Phase): string => `queue core, ${phase}`;

/** p50 ceilings relative to the seed single write (issue 13 item 2). */
const TARGETS: ReadonlyArray<{ phase: Phase; maxRatio: number }> = [
  { phase: Phase.Legacy, maxRatio: 1.1 },
  { phase: Phase.DualWrite, maxRatio: 1.25 },
  { phase: Phase.NewOnly, maxRatio: 1.1 },
];

function figures(variant: string, samples: number[]): Omit<LatencyFigures, 'p50VsSeedSingle'> {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { variant, ops: samples.length, p50Us: Math.round(at(0.5)), p99Us: Math.round(at(0.99)), meanUs: Math.round(mean) };
}

interface Variant {
  name: string;
  run: (i: number) => Promise<unknown>;
  samples: number[];
}

/** Measures queue-core enqueue in each phase and the seed's two writes, interleaved. */
export async function runEnqueueBench(opts: EnqueueBenchOptions): Promise<EnqueueBenchResult> {
  const n = opts.ops ?? 5000;
  const warmup = opts.warmup ?? 500;
  const client = await connectRedis({ url: opts.redisUrl });
  const base = `benq${Date.now().toString(36)}`;
  const prefixes: string[] = [];
  const queues: RedisJobQueue[] = [];
  const params = { prompt: 'summarise the quarterly report', max_tokens: 512, api_key: 'sk_bench' };
  const variants: Variant[] = [];
  try {
    for (const phase of PHASE_ORDER) {
      const prefix = `${base}-${phase}`;
      prefixes.push(prefix);
      const keys = new Keyspace(prefix);
      const store = new StateStore(client, keys);
      // The default settle window (2 s), so the phase cache lives as long as in production.
      for (let i = 1; i <= PHASE_ORDER.indexOf(phase); i++) {
        await store.transition({ from: PHASE_ORDER[i - 1]!, to: PHASE_ORDER[i]!, expectedEpoch: i - 1, fence: null });
      }
      const queue = await RedisJobQueue.create(client, { keys, register: { name: 'bench-enqueue' } });
      queues.push(queue);
      variants.push({ name: coreVariant(phase), samples: [], run: (i) => queue.enqueue({ workspaceId: `ws-${i % 200}`, action: 'plan', params }) });
    }
    const raw = client as Redis;
    const seedPrefix = `${base}-seed`;
    prefixes.push(seedPrefix);
    // The seed's records as the seed writes them: no rev, one HSET per layout, the id on the list.
    const seedRecord = (id: string, ws: string): Record<string, string> => {
      const now = new Date().toISOString();
      return { job_id: id, workspace_id: ws, action: 'plan', params: JSON.stringify(params), status: 'queued', created_at: now, updated_at: now };
    };
    let seq = 0;
    variants.push({
      name: SEED_SINGLE,
      samples: [],
      run: async (i) => {
        const id = `s1_${(seq++).toString(36)}`;
        await raw.hset(`${seedPrefix}:jobs:${id}`, seedRecord(id, `ws-${i % 200}`));
        await raw.rpush(`${seedPrefix}:queue`, id);
      },
    });
    variants.push({
      name: SEED_DUAL,
      samples: [],
      run: async (i) => {
        const id = `s2_${(seq++).toString(36)}`;
        const ws = `ws-${i % 200}`;
        const data = seedRecord(id, ws);
        await raw.hset(`${seedPrefix}:jobs:${id}`, data);
        await raw.rpush(`${seedPrefix}:queue`, id);
        await raw.hset(`${seedPrefix}:job:${ws}:${id}`, data);
      },
    });

    for (let round = 0; round < warmup + n; round++) {
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(round + k) % variants.length]!;
        const t0 = process.hrtime.bigint();
        await v.run(round);
        const us = Number(process.hrtime.bigint() - t0) / 1000;
        if (round >= warmup) v.samples.push(us);
      }
    }
  } finally {
    for (const q of queues) await q.close().catch(() => undefined);
    // The bench server may be a REDIS_URL one: leave no keys behind.
    for (const p of prefixes) await unlinkScratchPrefix(client as Redis, p).catch(() => undefined);
    await closeRedis(client);
  }
  const base1 = figures(SEED_SINGLE, variants.find((v) => v.name === SEED_SINGLE)!.samples);
  const rows: LatencyFigures[] = variants.map((v) => {
    const f = figures(v.name, v.samples);
    return { ...f, p50VsSeedSingle: Math.round((f.p50Us / base1.p50Us) * 100) / 100 };
  });
  const targets = TARGETS.map(({ phase, maxRatio }) => {
    const ratio = rows.find((r) => r.variant === coreVariant(phase))!.p50VsSeedSingle;
    return { variant: coreVariant(phase), maxRatio, ratio, met: ratio <= maxRatio };
  });
  return { opsPerVariant: n, warmupPerVariant: warmup, interleaved: true, rows, targets };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** The markdown section of the report. */
export function enqueueTable(r: EnqueueBenchResult): string {
  const lines = [
    `### Enqueue latency per phase (sequential, µs; ${fmt(r.opsPerVariant)} ops per variant after ${fmt(r.warmupPerVariant)} warm-up, all variants interleaved in one run)`,
    '',
    '| variant | p50 µs | p99 µs | mean µs | p50 vs seed single write |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const row of r.rows) lines.push(`| ${row.variant} | ${fmt(row.p50Us)} | ${fmt(row.p99Us)} | ${fmt(row.meanUs)} | ${row.p50VsSeedSingle.toFixed(2)}× |`);
  lines.push('', '| target (issue 13) | p50 ratio | ceiling | met |', '|---|---:|---:|---|');
  for (const t of r.targets) lines.push(`| ${t.variant} | ${t.ratio.toFixed(2)}× | ${t.maxRatio.toFixed(2)}× | ${t.met ? 'yes' : 'no'} |`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<void> {
  let ops = 5000;
  let warmup = 500;
  let url: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--ops') ops = Number(v);
    else if (a === '--warmup') warmup = Number(v);
    else if (a === '--redis-url') url = v;
    else throw new Error(`unknown flag ${a}`);
  }
  if (!Number.isInteger(ops) || ops < 1 || !Number.isInteger(warmup) || warmup < 0)
    throw new Error('--ops and --warmup take non-negative integers (--ops at least 1)');
  const server = url === null ? await spawnRedisServer() : null;
  try {
    const r = await runEnqueueBench({ redisUrl: url ?? server!.url, ops, warmup });
    process.stdout.write(`${enqueueTable(r)}\n\n${JSON.stringify(r)}\n`);
  } finally {
    await server?.stop();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`bench enqueue failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
