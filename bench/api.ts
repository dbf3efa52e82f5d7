/**
 * HTTP benchmark of GET /ai/jobs?limit=50 on both read paths, plus the seed's
 * listing loops as a baseline (docs/design.md "Where the seed is wrong").
 *
 * 1. Loads `jobs` jobs spread over `workspaces` workspaces: legacy records,
 *    v2 records and the v2 index, written with plain pipelines in batches of
 *    1000 (no Lua), under a fresh key prefix.
 * 2. Starts the API in-process on a free port and runs autocannon against the
 *    first page of a random workspace per request: once in phase `legacy`
 *    (SCAN + workspace filter), once in `read-new` (workspace index) after
 *    StateStore.transition (fence null).
 * 3. Times the seed's loops for a few pages, straight against Redis:
 *    - `SCAN MATCH <p>:job:<ws>:* COUNT 50` + HGETALL until 50 found (Pattern 5's "100% efficient" v2 scan);
 *    - `SCAN MATCH <p>:jobs:* COUNT 100` + HGETALL + workspace filter (the legacy loop).
 *
 * Use a dedicated Redis: the keyspace size is the point, and SCAN walks every key in the db.
 */
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { hashToken } from '../src/api/auth.js';
import { loadApiConfig } from '../src/api/config.js';
import { createApiService } from '../src/api/server.js';
import { unlinkScratchPrefix } from '../src/cli/demo/throwaway-redis.js';
import { Keyspace } from '../src/core/keys.js';
import { Phase } from '../src/core/phase.js';
import { StateStore } from '../src/core/state.js';

/** Options of {@link runApiBench}. */
export interface ApiBenchOptions {
  redisUrl: string;
  jobs: number;
  workspaces: number;
  durationSec: number;
  /** autocannon connections (default 10). */
  connections?: number;
  /**
   * autocannon worker threads (default 1): the load generator runs off the API's
   * event loop, so it does not steal the API's time; 0 runs it on the main thread.
   */
  workers?: number;
  /** Pages timed per seed loop (default 5: the first page of 5 workspaces). */
  baselinePages?: number;
  /** Keep the loaded keys (default false: they are deleted at the end). */
  keep?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** autocannon figures of one read path. */
export interface ApiPathResult {
  path: 'legacy' | 'v2';
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  avgMs: number;
  maxMs: number;
  requestsPerSec: number;
  requests: number;
  errors: number;
  non2xx: number;
  /** One request at a time: mean time of the first page of `baselinePages` workspaces (comparable with the seed loops). */
  sequentialAvgMs: number;
}

/** Timing of one seed listing loop. */
export interface SeedLoopResult {
  name: string;
  pages: number;
  avgMs: number;
  p50Ms: number;
  maxMs: number;
  /** SCAN calls per page (the shared design reports 332 for the seed's listing on 1M jobs). */
  avgScanCalls: number;
  avgJobsPerPage: number;
}

/** Result of {@link runApiBench}. */
export interface ApiBenchResult {
  jobs: number;
  workspaces: number;
  durationSec: number;
  connections: number;
  workers: number;
  /** Keys in the db after loading (legacy + v2 + indexes). */
  dbKeys: number;
  loadMs: number;
  loadJobsPerSec: number;
  paths: { legacy: ApiPathResult; v2: ApiPathResult };
  seed: { v2ScanMatch: SeedLoopResult; legacyScanFilter: SeedLoopResult };
}

interface AutocannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
}
interface AutocannonHist {
  average: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  total?: number;
}
interface AutocannonResult {
  latency: AutocannonHist;
  requests: AutocannonHist & { total: number };
  errors: number;
  non2xx: number;
}
type Autocannon = (opts: { url: string; connections: number; duration: number; requests: AutocannonRequest[]; workers?: number }) => Promise<AutocannonResult>;

// autocannon ships no types; load it through require with the narrow interface above.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const BATCH = 1000;
const PARALLEL_BATCHES = 4;

/** Workspace name of index i (shared with bench/api-baseline.ts). */
export function wsName(i: number): string {
  return `ws-${String(i).padStart(4, '0')}`;
}

/** Loads legacy records, v2 records and the v2 index with plain pipelines (shared with bench/api-baseline.ts). */
export async function load(redis: Redis, keys: Keyspace, jobs: number, workspaces: number): Promise<void> {
  const base = Date.UTC(2025, 0, 1);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const start = next;
      if (start >= jobs) return;
      next = Math.min(jobs, start + BATCH);
      const p = redis.pipeline();
      for (let i = start; i < next; i++) {
        const ws = wsName(i % workspaces);
        const jobId = `job-${String(i).padStart(8, '0')}`;
        const createdMs = base + i;
        const iso = new Date(createdMs).toISOString();
        const fields = {
          job_id: jobId,
          workspace_id: ws,
          action: 'send_email',
          params: JSON.stringify({ to: `user${i}@example.com`, api_key: 'sk_bench_not_a_secret', n: i }),
          status: i % 5 === 0 ? 'succeeded' : 'queued',
          result: '',
          error: '',
          created_at: iso,
          updated_at: iso,
          rev: '1',
        };
        p.hset(keys.legacyJob(jobId), fields);
        p.hset(keys.v2Job(ws, jobId), fields);
        p.zadd(keys.index(ws), createdMs, jobId);
      }
      const res = (await p.exec()) ?? [];
      const failed = res.find(([err]) => err);
      if (failed) throw failed[0];
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_BATCHES }, worker));
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function summarize(name: string, samples: Array<{ ms: number; scans: number; found: number }>): SeedLoopResult {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const avg = (xs: number[]): number => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
  return {
    name,
    pages: samples.length,
    avgMs: round(avg(ms)),
    p50Ms: round(percentile(ms, 0.5)),
    maxMs: round(ms[ms.length - 1] ?? 0),
    avgScanCalls: round(avg(samples.map((s) => s.scans))),
    avgJobsPerPage: round(avg(samples.map((s) => s.found))),
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

/** The seed's Pattern 5 "Phase 2" loop: SCAN MATCH on the workspace's v2 pattern, COUNT limit. */
async function seedV2Page(redis: Redis, keys: Keyspace, ws: string, limit: number): Promise<{ ms: number; scans: number; found: number }> {
  const t0 = performance.now();
  let cursor = '0';
  let scans = 0;
  const jobs: Array<Record<string, string>> = [];
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', keys.v2Pattern(ws), 'COUNT', limit);
    scans++;
    cursor = next;
    for (const k of batch) {
      if (jobs.length >= limit) break;
      const h = await redis.hgetall(k);
      if (h.job_id) jobs.push(h);
    }
  } while (jobs.length < limit && cursor !== '0');
  return { ms: performance.now() - t0, scans, found: jobs.length };
}

/** The seed's legacy loop: SCAN the whole legacy layout (COUNT limit*2), HGETALL, filter by workspace. */
async function seedLegacyPage(redis: Redis, keys: Keyspace, ws: string, limit: number): Promise<{ ms: number; scans: number; found: number }> {
  const t0 = performance.now();
  let cursor = '0';
  let scans = 0;
  const jobs: Array<Record<string, string>> = [];
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', keys.legacyPattern, 'COUNT', limit * 2);
    scans++;
    cursor = next;
    for (const k of batch) {
      if (jobs.length >= limit) break;
      const h = await redis.hgetall(k);
      if (h.workspace_id !== ws) continue;
      jobs.push(h);
    }
  } while (jobs.length < limit && cursor !== '0');
  return { ms: performance.now() - t0, scans, found: jobs.length };
}

/** Runs the benchmark; see the module comment. */
export async function runApiBench(opts: ApiBenchOptions): Promise<ApiBenchResult> {
  const log = opts.log ?? (() => undefined);
  const connections = opts.connections ?? 10;
  const workers = opts.workers ?? 1;
  const prefix = `bench${randomBytes(4).toString('hex')}`;
  const keys = new Keyspace(prefix);
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 1 });
  const tokens = Array.from({ length: opts.workspaces }, (_, i) => ({ ws: wsName(i), token: `bench-token-${i}-${randomBytes(8).toString('hex')}` }));
  try {
    log(`loading ${opts.jobs} jobs over ${opts.workspaces} workspaces under prefix ${prefix}`);
    const t0 = performance.now();
    await load(redis, keys, opts.jobs, opts.workspaces);
    const loadMs = performance.now() - t0;
    const dbKeys = await redis.dbsize();
    log(`loaded in ${(loadMs / 1000).toFixed(1)}s; db holds ${dbKeys} keys`);

    const pages = opts.baselinePages ?? 5;
    const wsSample = Array.from({ length: Math.min(pages, opts.workspaces) }, (_, i) => wsName(Math.floor((i * opts.workspaces) / pages)));
    const config = loadApiConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL: opts.redisUrl,
      ORCH_PREFIX: prefix,
      ORCH_API_TOKENS: JSON.stringify(tokens.map((t) => ({ sha256: hashToken(t.token), workspace_id: t.ws, scopes: ['actions:preview'] }))),
      LOG_LEVEL: 'warn',
      ORCH_API_CURSOR_SECRET: randomBytes(32).toString('hex'),
    });
    const service = await createApiService(config, { logStream: { write: () => undefined } });
    const paths: Partial<Record<'legacy' | 'v2', ApiPathResult>> = {};
    try {
      await service.app.listen({ host: '127.0.0.1', port: 0 });
      const addr = service.app.server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      const url = `http://127.0.0.1:${port}`;
      const state = new StateStore(service.client, keys);

      const probe = async (): Promise<{ path: string | null; count: number }> => {
        const res = await fetch(`${url}/ai/jobs?limit=50`, { headers: { authorization: `Bearer ${tokens[0]!.token}` } });
        const body = (await res.json()) as { count?: number };
        return { path: res.headers.get('x-read-path'), count: body.count ?? -1 };
      };
      const run = async (path: 'legacy' | 'v2'): Promise<ApiPathResult> => {
        const p = await probe();
        if (p.path !== path) throw new Error(`expected x-read-path ${path}, got ${String(p.path)}`);
        const expectCount = Math.min(50, Math.ceil(opts.jobs / opts.workspaces));
        if (p.count !== expectCount) throw new Error(`first page on ${path} returned ${p.count} jobs, expected ${expectCount}`);
        log(`autocannon: ${path} path, ${connections} connections, ${opts.durationSec}s`);
        // One request per workspace, in a shuffled order, cycled by every connection. Plain
        // objects (no setupRequest function) so the load can run in a worker thread.
        const requests = tokens
          .map((t) => ({ t, k: Math.random() }))
          .sort((a, b) => a.k - b.k)
          .map(({ t }) => ({ method: 'GET', path: '/ai/jobs?limit=50', headers: { authorization: `Bearer ${t.token}` } }));
        const r = await autocannon({
          url,
          connections,
          duration: opts.durationSec,
          requests,
          ...(workers > 0 ? { workers } : {}),
        });
        let seqTotal = 0;
        for (const ws of wsSample) {
          const t = tokens.find((x) => x.ws === ws)!;
          const ts = performance.now();
          const res = await fetch(`${url}/ai/jobs?limit=50`, { headers: { authorization: `Bearer ${t.token}` } });
          await res.arrayBuffer();
          seqTotal += performance.now() - ts;
        }
        return {
          path,
          sequentialAvgMs: round(seqTotal / wsSample.length),
          p50Ms: r.latency.p50,
          p90Ms: r.latency.p90,
          p99Ms: r.latency.p99,
          avgMs: round(r.latency.average),
          maxMs: r.latency.max,
          requestsPerSec: round(r.requests.average),
          requests: r.requests.total,
          errors: r.errors,
          non2xx: r.non2xx,
        };
      };

      paths.legacy = await run('legacy');
      const s0 = await state.read();
      const t1 = await state.transition({ from: s0.phase, to: Phase.DualWrite, expectedEpoch: s0.epoch, fence: null, reason: 'api bench' });
      await state.transition({ from: Phase.DualWrite, to: Phase.ReadNew, expectedEpoch: t1.epoch, fence: null, reason: 'api bench' });
      for (let i = 0; i < 100 && (await probe()).path !== 'v2'; i++) await new Promise((r) => setTimeout(r, 50));
      paths.v2 = await run('v2');
    } finally {
      await service.close();
    }

    log(`seed loops: first page of ${wsSample.length} workspaces each`);
    const v2Samples = [];
    const legacySamples = [];
    for (const ws of wsSample) v2Samples.push(await seedV2Page(redis, keys, ws, 50));
    for (const ws of wsSample) legacySamples.push(await seedLegacyPage(redis, keys, ws, 50));

    return {
      jobs: opts.jobs,
      workspaces: opts.workspaces,
      durationSec: opts.durationSec,
      connections,
      workers,
      dbKeys,
      loadMs: Math.round(loadMs),
      loadJobsPerSec: Math.round(opts.jobs / (loadMs / 1000)),
      paths: { legacy: paths.legacy!, v2: paths.v2! },
      seed: {
        v2ScanMatch: summarize('SCAN MATCH <p>:job:<ws>:* COUNT 50 + HGETALL (seed Pattern 5, phase 2)', v2Samples),
        legacyScanFilter: summarize('SCAN MATCH <p>:jobs:* COUNT 100 + HGETALL + filter (seed Pattern 5, phase 1)', legacySamples),
      },
    };
  } finally {
    if (!opts.keep) {
      log(`deleting ${prefix}:*`);
      await unlinkScratchPrefix(redis, prefix);
    }
    redis.disconnect();
  }
}

// `node dist/bench/api.js [jobs] [durationSec]` with REDIS_URL: one run, JSON on stdout.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const jobs = Number(process.argv[2] ?? 20000);
  const durationSec = Number(process.argv[3] ?? 10);
  runApiBench({
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    jobs,
    workspaces: 200,
    durationSec,
    log: (l) => process.stderr.write(`${l}\n`),
  })
    .then((r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`))
    .catch((err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    });
}
