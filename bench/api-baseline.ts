/**
 * The API's v2 page against its own baseline, in one run (issue 13, item 5):
 *
 * - direct: the same Redis reads done straight with ioredis, one page at a time:
 *   ZRANGE on the workspace index (51 members with scores, as the API reads it), then
 *   the 50 HGETALLs in one pipeline;
 * - bare: a bare fastify route doing exactly those reads and answering the hashes
 *   with fastify's default serialiser (no auth, no cursor, no redaction, no schema,
 *   no metrics, no logging);
 * - api: `GET /ai/jobs?limit=50` of the real service (createApiService) in phase read-new.
 *
 * "One request at a time" is p50 over `sequential` requests cycling over the
 * workspaces, on a keep-alive node:http agent (the same client for bare and api);
 * "under load" is autocannon with `connections` connections in a worker thread.
 * The three are measured in alternating rounds (direct, bare, api, direct, …),
 * not one after the other: the machine is shared, and a load that comes and goes
 * would otherwise favour whichever target ran in the quiet minute.
 * The breakdown times each per-request part of the API in-process on a real
 * page (µs per request, median of many repetitions), to show where the gap to
 * the bare route goes.
 */
import { randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { hashToken, Scope, TokenTable } from '../src/api/auth.js';
import { loadApiConfig, type LogLevel } from '../src/api/config.js';
import { CursorSealer } from '../src/api/cursor-envelope.js';
import { createLogger } from '../src/api/logger.js';
import { ApiMetrics } from '../src/api/metrics.js';
import { listQueryFast, ListQuerySchema, toWireJob, type ListResponse } from '../src/api/schemas.js';
import { createApiService } from '../src/api/server.js';
import { unlinkScratchPrefix } from '../src/cli/demo/throwaway-redis.js';
import { jobFromHash } from '../src/core/job.js';
import { Keyspace } from '../src/core/keys.js';
import { Layout, Phase } from '../src/core/phase.js';
import { createRedactor } from '../src/core/redact.js';
import { StateStore } from '../src/core/state.js';
import { load, wsName } from './api.js';
import { latencyFigures, type LatencyFiguresUs } from './stats.js';

/** Options of {@link runApiBaselineBench}. */
export interface ApiBaselineOptions {
  redisUrl: string;
  jobs: number;
  workspaces: number;
  /** autocannon seconds per target (default 10). */
  durationSec?: number;
  /** autocannon connections (default 10). */
  connections?: number;
  /** Requests of the one-at-a-time measurements (default 2000). */
  sequential?: number;
  /** Alternating rounds the measurements are split into (default 4). */
  rounds?: number;
  /** Log level of the API service (default info, the service's default). */
  logLevel?: LogLevel;
  log?: (line: string) => void;
}

/** Throughput under autocannon, summed over the rounds. */
export interface LoadFigures {
  /** Requests answered ÷ seconds of load, over all rounds. */
  requestsPerSec: number;
  /** Request-weighted mean of the rounds' p50. */
  p50Ms: number;
  /** Worst round's p99. */
  p99Ms: number;
  errors: number;
  non2xx: number;
  /** CPU of this process (server, and autocannon's worker thread) per request answered, µs. */
  cpuUsPerRequest: number;
}

/** One part of the API's per-request work, timed in-process. */
export interface BreakdownRow {
  part: string;
  usPerRequest: number;
}

/** Result of {@link runApiBaselineBench}. */
export interface ApiBaselineResult {
  jobs: number;
  workspaces: number;
  pageSize: number;
  logLevel: LogLevel;
  connections: number;
  durationSec: number;
  rounds: number;
  direct: LatencyFiguresUs;
  bare: { sequential: LatencyFiguresUs; load: LoadFigures };
  api: { sequential: LatencyFiguresUs; load: LoadFigures };
  /** api sequential p50 ÷ direct p50 (target ≤ 2). */
  sequentialRatio: number;
  /** api req/s ÷ bare req/s (target ≥ 0.6). */
  loadRatio: number;
  breakdown: BreakdownRow[];
}

interface AutocannonResult {
  latency: { p50: number; p99: number };
  requests: { average: number; total: number };
  /** Seconds the run lasted. */
  duration: number;
  errors: number;
  non2xx: number;
}
type Autocannon = (opts: {
  url: string;
  connections: number;
  duration: number;
  requests: Array<{ method: string; path: string; headers?: Record<string, string> }>;
  workers?: number;
}) => Promise<AutocannonResult>;
// autocannon ships no types; loaded through require with the narrow interface above.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const PAGE = 50;

function httpGet(agent: Agent, port: number, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends `n` requests one at a time on `agent` (cycling over `reqs` from `offset`) and returns the latency of each, µs. */
async function sequentialHttp(
  agent: Agent,
  port: number,
  n: number,
  reqs: Array<{ path: string; headers: Record<string, string> }>,
  offset: number,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = reqs[(offset + i) % reqs.length]!;
    const t0 = process.hrtime.bigint();
    const status = await httpGet(agent, port, r.path, r.headers);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
    if (status !== 200) throw new Error(`GET ${r.path} answered ${status}`);
  }
  return samples;
}

/** One autocannon round against `port`, with the CPU this process spent meanwhile. */
async function loadRound(
  port: number,
  connections: number,
  durationSec: number,
  reqs: Array<{ path: string; headers: Record<string, string> }>,
): Promise<{ r: AutocannonResult; cpuUs: number }> {
  const c0 = process.cpuUsage();
  const r = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: durationSec,
    requests: reqs.map((x) => ({ method: 'GET', path: x.path, headers: x.headers })),
    workers: 1,
  });
  const c = process.cpuUsage(c0);
  return { r, cpuUs: c.user + c.system };
}

/** The figures of several rounds against one target. */
function loadFigures(rounds: Array<{ r: AutocannonResult; cpuUs: number }>): LoadFigures {
  const total = rounds.reduce((a, x) => a + x.r.requests.total, 0);
  const seconds = rounds.reduce((a, x) => a + x.r.duration, 0);
  const cpu = rounds.reduce((a, x) => a + x.cpuUs, 0);
  const p50 = total === 0 ? 0 : rounds.reduce((a, x) => a + x.r.latency.p50 * x.r.requests.total, 0) / total;
  return {
    requestsPerSec: seconds > 0 ? Math.round(total / seconds) : 0,
    p50Ms: Math.round(p50 * 10) / 10,
    p99Ms: Math.max(...rounds.map((x) => x.r.latency.p99)),
    errors: rounds.reduce((a, x) => a + x.r.errors, 0),
    non2xx: rounds.reduce((a, x) => a + x.r.non2xx, 0),
    cpuUsPerRequest: total > 0 ? Math.round(cpu / total) : 0,
  };
}

/**
 * The reads of one v2 page, straight with ioredis: the same two round trips as the API's first page
 * (src/core/listing.ts listV2): ZRANGE of one entry more than the page, with scores (the API needs the
 * extra entry to know whether a next page exists, and the scores for its cursor), then one pipeline of
 * the page's HGETALLs.
 */
async function directPage(redis: Redis, keys: Keyspace, ws: string): Promise<Array<Record<string, string>>> {
  const flat = await redis.zrange(keys.index(ws), 0, PAGE, 'WITHSCORES');
  const p = redis.pipeline();
  for (let i = 0; i < Math.min(flat.length, 2 * PAGE); i += 2) p.hgetall(keys.v2Job(ws, flat[i]!));
  const res = (await p.exec()) ?? [];
  return res.map(([err, v]) => {
    if (err) throw err;
    return v as Record<string, string>;
  });
}

/** Median µs of `fn` over `reps` runs (after a warm-up), as a per-request cost. */
async function timeUs(reps: number, fn: () => unknown): Promise<number> {
  for (let i = 0; i < Math.min(reps, 200); i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  return Math.round(samples[Math.floor(samples.length / 2)]! * 10) / 10;
}

/** Runs the comparison; see the module comment. */
export async function runApiBaselineBench(opts: ApiBaselineOptions): Promise<ApiBaselineResult> {
  const log = opts.log ?? (() => undefined);
  const durationSec = opts.durationSec ?? 10;
  const connections = opts.connections ?? 10;
  const sequential = opts.sequential ?? 2000;
  const rounds = Math.max(1, opts.rounds ?? 4);
  const logLevel = opts.logLevel ?? 'info';
  const prefix = `benchb${randomBytes(4).toString('hex')}`;
  const keys = new Keyspace(prefix);
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 1 });
  const tokens = Array.from({ length: opts.workspaces }, (_, i) => ({ ws: wsName(i), token: `bench-token-${i}-${randomBytes(8).toString('hex')}` }));
  try {
    log(`api baseline: loading ${opts.jobs} jobs over ${opts.workspaces} workspaces`);
    await load(redis, keys, opts.jobs, opts.workspaces);
    const state = new StateStore(redis, keys);
    const s0 = await state.read();
    const t1 = await state.transition({ from: s0.phase, to: Phase.DualWrite, expectedEpoch: s0.epoch, fence: null, reason: 'api baseline bench' });
    await state.transition({ from: Phase.DualWrite, to: Phase.ReadNew, expectedEpoch: t1.epoch, fence: null, reason: 'api baseline bench' });

    // Shuffled once; every measurement cycles over the same order.
    const order = tokens
      .map((t) => ({ t, k: Math.random() }))
      .sort((a, b) => a.k - b.k)
      .map(({ t }) => t);

    const bareRedis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 1 });
    const bare = Fastify({ logger: false });
    bare.get<{ Querystring: { ws: string } }>('/bare', async (request) => ({ jobs: await directPage(bareRedis, keys, request.query.ws) }));
    const config = loadApiConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL: opts.redisUrl,
      ORCH_PREFIX: prefix,
      ORCH_API_TOKENS: JSON.stringify(tokens.map((t) => ({ sha256: hashToken(t.token), workspace_id: t.ws, scopes: ['actions:preview'] }))),
      LOG_LEVEL: logLevel,
      ORCH_API_CURSOR_SECRET: randomBytes(32).toString('hex'),
    });
    // Lines are formatted (redaction included) and then dropped: the I/O of writing them is not counted.
    const service = await createApiService(config, { logStream: { write: () => undefined } });
    const portOf = (server: { address(): unknown }): number => {
      const addr = server.address();
      return typeof addr === 'object' && addr !== null ? (addr as { port: number }).port : 0;
    };
    const bareAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    const apiAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    let bareFigures: ApiBaselineResult['bare'];
    let apiFigures: ApiBaselineResult['api'];
    let direct: LatencyFiguresUs;
    let phaseUs = 0;
    try {
      await bare.listen({ host: '127.0.0.1', port: 0 });
      await service.app.listen({ host: '127.0.0.1', port: 0 });
      const barePort = portOf(bare.server);
      const apiPort = portOf(service.app.server);
      const bareReqs = order.map((t) => ({ path: `/bare?ws=${t.ws}`, headers: {} }));
      const apiReqs = order.map((t) => ({ path: `/ai/jobs?limit=${PAGE}`, headers: { authorization: `Bearer ${t.token}` } }));

      log(`api baseline: one request at a time, ${rounds} alternating rounds of direct, bare and the API (log level ${logLevel})…`);
      const warm = Math.min(200, sequential);
      for (let i = 0; i < warm; i++) await directPage(redis, keys, order[i % order.length]!.ws);
      await sequentialHttp(bareAgent, barePort, warm, bareReqs, 0);
      await sequentialHttp(apiAgent, apiPort, warm, apiReqs, 0);
      const directSamples: number[] = [];
      const bareSamples: number[] = [];
      const apiSamples: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const from = Math.floor((round * sequential) / rounds);
        const n = Math.floor(((round + 1) * sequential) / rounds) - from;
        for (let i = from; i < from + n; i++) {
          const t0 = process.hrtime.bigint();
          const page = await directPage(redis, keys, order[i % order.length]!.ws);
          directSamples.push(Number(process.hrtime.bigint() - t0) / 1000);
          if (page.length === 0) throw new Error('direct read returned an empty page');
        }
        bareSamples.push(...(await sequentialHttp(bareAgent, barePort, n, bareReqs, from)));
        apiSamples.push(...(await sequentialHttp(apiAgent, apiPort, n, apiReqs, from)));
      }
      direct = latencyFigures(directSamples);

      log(`api baseline: under load, ${rounds} alternating rounds of the bare route and the API…`);
      const bareRounds: Array<{ r: AutocannonResult; cpuUs: number }> = [];
      const apiRounds: Array<{ r: AutocannonResult; cpuUs: number }> = [];
      // The duration is split over the rounds (autocannon takes fractional seconds), at least 1 s a round.
      const roundSec = Math.max(1, durationSec / rounds);
      for (let round = 0; round < rounds; round++) {
        bareRounds.push(await loadRound(barePort, connections, roundSec, bareReqs));
        apiRounds.push(await loadRound(apiPort, connections, roundSec, apiReqs));
      }
      bareFigures = { sequential: latencyFigures(bareSamples), load: loadFigures(bareRounds) };
      apiFigures = { sequential: latencyFigures(apiSamples), load: loadFigures(apiRounds) };
      phaseUs = await timeUs(5000, () => service.queue.phase());
    } finally {
      bareAgent.destroy();
      apiAgent.destroy();
      await bare.close();
      bareRedis.disconnect();
      await service.close();
    }

    log('api baseline: breakdown…');
    const breakdown = await breakdownOf(redis, keys, tokens, config.tokens, logLevel);
    breakdown.push({ part: 'phase lookup (cached phase of the queue core)', usPerRequest: phaseUs });

    return {
      jobs: opts.jobs,
      workspaces: opts.workspaces,
      pageSize: PAGE,
      logLevel,
      connections,
      durationSec,
      rounds,
      direct,
      bare: bareFigures,
      api: apiFigures,
      sequentialRatio: Math.round((apiFigures.sequential.p50Us / direct.p50Us) * 100) / 100,
      loadRatio: Math.round((apiFigures.load.requestsPerSec / bareFigures.load.requestsPerSec) * 100) / 100,
      breakdown,
    };
  } finally {
    await unlinkScratchPrefix(redis, prefix);
    redis.disconnect();
  }
}

/** Each per-request part of the API, timed alone on a real page of the loaded data. */
async function breakdownOf(
  redis: Redis,
  keys: Keyspace,
  tokens: Array<{ ws: string; token: string }>,
  entries: ConstructorParameters<typeof TokenTable>[0],
  logLevel: LogLevel,
): Promise<BreakdownRow[]> {
  const ws = tokens[0]!.ws;
  const hashes = await directPage(redis, keys, ws);
  if (hashes.length < PAGE) throw new Error(`the breakdown needs a full page: ${ws} holds ${hashes.length} jobs (load at least ${PAGE} per workspace)`);
  const table = new TokenTable(entries);
  const header = `Bearer ${tokens[tokens.length - 1]!.token}`;
  const redactor = createRedactor();
  const sealer = new CursorSealer([randomBytes(32)]);
  const raw = Buffer.from(JSON.stringify({ p: 'v2', s: 1735689600000, m: 'job-00000050' })).toString('base64url');
  const sealed = sealer.seal(raw, ws, Layout.V2);
  const jobs = hashes.map(jobFromHash);
  const body: ListResponse = { workspace_id: ws, jobs: jobs.map((j) => toWireJob(j, redactor)), count: jobs.length, next_cursor: sealed };
  const metrics = new ApiMetrics({ workspaceLabel: false, allowlist: [] });
  const logger = createLogger(logLevel, redactor, { write: () => undefined });
  const fakeReq = { method: 'GET', url: '/ai/jobs?limit=50', host: '127.0.0.1:3000', ip: '127.0.0.1' };
  const reps = 3000;
  const rows: BreakdownRow[] = [];
  const add = async (part: string, fn: () => unknown): Promise<void> => void rows.push({ part, usPerRequest: await timeUs(reps, fn) });
  await add(`auth: bearer token lookup (${entries.length} entries)`, () => table.authenticate(header, Scope.Preview));
  // As fastify hands it over (a parsed query whose prototype chain lacks Object.prototype), through the route's own check.
  const query = Object.assign(Object.create(Object.create(null) as object) as Record<string, string>, { limit: '50' });
  await add('query validation (hand check, zod for what it defers)', () => listQueryFast(query) ?? ListQuerySchema.safeParse(query));
  await add('cursor: seal next_cursor', () => sealer.seal(raw, ws, Layout.V2));
  await add('cursor: open a presented cursor (pages after the first)', () => sealer.open(sealed, ws, Layout.V2));
  await add(`parse ${hashes.length} records (jobFromHash)`, () => hashes.map(jobFromHash));
  await add(`redaction of ${jobs.length} jobs (toWireJob)`, () => jobs.map((j) => toWireJob(j, redactor)));
  await add('serialisation: JSON.stringify of the page', () => JSON.stringify(body));
  await add('metrics: observeRequest + observeList', () => {
    metrics.observeRequest('GET', '/ai/jobs', 200, Layout.V2, 0.001);
    metrics.observeList(ws, Layout.V2, 50, 0.001);
  });
  await add(`logging: fastify's two request lines at ${logLevel} (child logger, req/res serializers, redaction)`, () => {
    const child = logger.child({ request_id: 'bench-req-1' });
    child.info({ req: fakeReq }, 'incoming request');
    child.info({ res: { statusCode: 200 }, responseTime: 1.234 }, 'request completed');
  });
  return rows;
}
