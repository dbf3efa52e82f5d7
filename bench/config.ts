/**
 * Sizes of `npm run bench`, from the environment (docs/performance.md "How to read the report").
 * Pure, so test/unit/bench-stats.test.ts checks the defaults and the validation.
 */

/** Parts of the run that BENCH_SKIP may name. */
export const BENCH_PARTS = ['standalone', 'cluster', 'shards', 'enqueue', 'api', 'api-paths', 'guards'] as const;
export type BenchPart = (typeof BENCH_PARTS)[number];

/** The run's sizes. */
export interface BenchConfig {
  quick: boolean;
  /** Jobs of the single-node backfill/verify run (the 1M). */
  jobs: number;
  /** Extra backfill-only runs for the peak RSS series. */
  sizes: number[];
  /** Jobs of the 3-master cluster backfill/verify run. */
  clusterJobs: number;
  /** Jobs of the two-concurrent-shards run (on a fresh 3-master cluster). */
  shardJobs: number;
  /** Keys the seed loop is timed on (single node, same data as the main run). */
  seedKeys: number;
  /** Sequential enqueues per variant. */
  enqueueOps: number;
  /** Jobs loaded for the API-against-baseline run. */
  apiJobs: number;
  /** autocannon seconds per target. */
  apiDurationSec: number;
  /** Requests of each one-at-a-time API measurement. */
  apiSequential: number;
  /** Keyspace sizes of the legacy-vs-v2 read path runs with the seed's listing loops (bench/api.ts). */
  apiPathSizes: number[];
  /** Jobs of the guard-rail figures (bench/guards.ts). */
  guardJobs: number;
  skip: ReadonlySet<BenchPart>;
}

const FULL = {
  jobs: 1_000_000,
  // The same size as the single node: the per-key CPU ratio then divides the fixed start-up cost by the same job count.
  clusterJobs: 1_000_000,
  seedKeys: 100_000,
  enqueueOps: 5000,
  apiJobs: 100_000,
  apiDurationSec: 10,
  apiSequential: 2000,
  apiPathSizes: [100_000],
  guardJobs: 200_000,
};
const QUICK = {
  jobs: 20_000,
  clusterJobs: 6000,
  seedKeys: 5000,
  enqueueOps: 500,
  // 200 workspaces × 50 jobs at least, so every page is a full page of 50.
  apiJobs: 12_000,
  apiDurationSec: 2,
  apiSequential: 300,
  apiPathSizes: [] as number[],
  guardJobs: 0,
};

function int(env: NodeJS.ProcessEnv, name: string, dflt: number): number {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const s = v.replace(/_/g, '');
  if (!/^[0-9]+$/.test(s)) throw new Error(`${name}: expected a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(s);
}

function list(env: NodeJS.ProcessEnv, name: string, dflt: number[]): number[] {
  const v = env[name];
  if (v === undefined) return dflt;
  return v
    .split(',')
    .map((x) => x.trim().replace(/_/g, ''))
    .filter(Boolean)
    .map((x) => {
      if (!/^[0-9]+$/.test(x)) throw new Error(`${name}: expected comma-separated integers, got ${JSON.stringify(v)}`);
      return Number(x);
    });
}

/** Reads the BENCH_* variables (see the field comments; BENCH_QUICK=1 switches every default to a smoke size). */
export function benchConfig(env: NodeJS.ProcessEnv = process.env): BenchConfig {
  const quick = env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true';
  const d = quick ? QUICK : FULL;
  const skip = new Set<BenchPart>();
  for (const raw of (env.BENCH_SKIP ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (!(BENCH_PARTS as readonly string[]).includes(raw))
      throw new Error(`BENCH_SKIP: unknown part ${JSON.stringify(raw)} (parts: ${BENCH_PARTS.join(', ')})`);
    skip.add(raw as BenchPart);
  }
  const clusterJobs = int(env, 'BENCH_CLUSTER_JOBS', d.clusterJobs);
  return {
    quick,
    jobs: int(env, 'BENCH_JOBS', d.jobs),
    sizes: list(env, 'BENCH_SIZES', []),
    clusterJobs,
    shardJobs: int(env, 'BENCH_SHARD_JOBS', clusterJobs),
    seedKeys: int(env, 'BENCH_SEED_KEYS', d.seedKeys),
    enqueueOps: int(env, 'BENCH_ENQUEUE_OPS', d.enqueueOps),
    apiJobs: int(env, 'BENCH_API_JOBS', d.apiJobs),
    apiDurationSec: Math.max(1, int(env, 'BENCH_API_DURATION', d.apiDurationSec)),
    apiSequential: Math.max(10, int(env, 'BENCH_API_SEQUENTIAL', d.apiSequential)),
    apiPathSizes: list(env, 'BENCH_API_PATH_SIZES', d.apiPathSizes),
    guardJobs: int(env, 'BENCH_GUARD_JOBS', d.guardJobs),
    skip,
  };
}
