/**
 * `npm run bench`: the performance report (shared contract §13, issue 13 item 6).
 * Each part lives in its own module and returns figures; this file reads the
 * sizes from the environment (bench/config.ts), runs the parts, evaluates every
 * target as a ratio with PASS/FAIL, and writes
 * bench/reports/<date>-node-svc.{md,json} (…-node-svc-quick.* with BENCH_QUICK=1)
 * and the markdown on stdout. docs/performance.md "How to read the report"
 * explains every column.
 *
 *   npm run bench                          # full sizes (1M jobs on one node, 200k on 3 masters)
 *   BENCH_QUICK=1 npm run bench            # smoke sizes, a few minutes
 *   BENCH_JOBS=… BENCH_CLUSTER_JOBS=… BENCH_SKIP=guards,api-paths npm run bench
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnRedisServer } from '../src/cli/demo/throwaway-redis.js';
import { runApiBench, type ApiBenchResult } from './api.js';
import { runApiBaselineBench, type ApiBaselineResult } from './api-baseline.js';
import { runBackfillBench, runShardsBench, type BackfillBenchResult, type ChildRun, type ShardsBenchResult } from './backfill.js';
import { benchConfig, type BenchConfig } from './config.js';
import { runEnqueueBench } from './enqueue.js';
import { guardsTable, runGuardsBench } from './guards.js';
import { checkTarget, enqueueTargetRows, evaluateTarget, findLatencyRows, machineIdle, targetsTable, type TargetResult } from './stats.js';

const REPORTS = fileURLToPath(new URL('../../bench/reports/', import.meta.url));
const WORKSPACES = 200;

/** What the report says about the machine. */
interface Machine {
  cores: number;
  cpuModel: string;
  memoryGb: number;
  redisVersion: string;
  node: string;
  platform: string;
  loadAvgStart: number[];
  loadAvgEnd?: number[];
  idleAtStart: boolean;
}

function machine(): Machine {
  let redisVersion = 'unknown';
  try {
    redisVersion = /v=([0-9.]+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    // reported as unknown
  }
  const load = os.loadavg().map((x) => Math.round(x * 100) / 100);
  return {
    cores: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    redisVersion,
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAvgStart: load,
    idleAtStart: machineIdle(load[0] ?? 0, os.availableParallelism()),
  };
}

const fmt = (n: number | null | undefined): string => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
const fx = (n: number | null | undefined, d = 1): string => (n === null || n === undefined ? '–' : n.toFixed(d));
const sec = (ms: number): string => (ms / 1000).toFixed(1);

function opRow(run: string, masters: number, jobs: number, op: string, r: ChildRun | null): string {
  if (!r) return `| ${run} | ${masters} | ${fmt(jobs)} | ${op} | – | – | – | – | – | – |`;
  const clean = op === 'verify' ? String(r.exitCode === 0 && r.json?.ok === true && r.json.mismatches === 0) : String(r.exitCode === 0);
  return `| ${run} | ${masters} | ${fmt(jobs)} | ${op} | ${sec(r.wallMs)} | ${fmt(r.keysPerSecond)} | ${fx(r.redisCpuUsPerKey)} | ${fx(r.clientCpuUsPerKey)} | ${fmt(r.peakRssMb)} | ${clean} |`;
}

function backfillSection(main: BackfillBenchResult | null, cluster: BackfillBenchResult | null, series: BackfillBenchResult[]): string {
  const lines = [
    '## Backfill and verify',
    '',
    '`orch-migrate` as a child process against throwaway Redis servers on loopback. keys/s = jobs ÷ wall time; CPU per key = CPU ÷ jobs.',
    '',
  ];
  lines.push('| run | masters | jobs | operation | wall s | keys/s | Redis CPU µs/key | client CPU µs/key | peak RSS MB | ok |');
  lines.push('|---|---:|---:|---|---:|---:|---:|---:|---:|---|');
  for (const r of [main, cluster]) {
    if (!r) continue;
    lines.push(opRow(r.mode, r.masters, r.jobs, 'backfill', r.backfill), opRow(r.mode, r.masters, r.jobs, 'verify', r.verify));
  }
  const seed = main?.seedLoop;
  if (seed) {
    lines.push(
      `| seed loop | 1 | ${fmt(seed.keys)} | SCAN, then HGETALL + HSET per key, one awaited call at a time | ${sec(seed.ms)} | ${fmt(seed.keysPerSecond)} | ${fx(seed.redisCpuUsPerKey)} | ${fx(seed.clientCpuUsPerKey)} | – | – |`,
    );
    lines.push(
      '',
      `Backfill is **${main?.ratioToSeedLoop ?? '–'}×** the seed loop's keys/s (the seed loop ran on the same server, after verify; its client CPU is the bench process's own).`,
    );
  }
  const src = [main?.backfill, main?.verify, cluster?.backfill, cluster?.verify].filter((r): r is ChildRun => !!r).map((r) => r.usageSource);
  if (src.some((s) => s !== 'resource-usage'))
    lines.push('', `Client CPU source of some runs: ${[...new Set(src)].join(', ')} (see "How to read the report").`);
  if (series.length > 0) {
    lines.push('', '| RSS series: jobs | backfill keys/s | backfill peak RSS MB |', '|---:|---:|---:|');
    for (const r of [...series, ...(main ? [main] : [])].sort((a, b) => a.jobs - b.jobs))
      lines.push(`| ${fmt(r.jobs)} | ${fmt(r.backfill.keysPerSecond)} | ${fmt(r.backfill.peakRssMb)} |`);
  }
  return lines.join('\n');
}

function shardsSection(s: ShardsBenchResult, one: BackfillBenchResult | null): string {
  const lines = ['## Two concurrent shards', ''];
  lines.push(`\`backfill --shard 0/2\` and \`--shard 1/2\` started together on a fresh ${s.masters}-master cluster of ${fmt(s.jobs)} jobs, then \`verify\`.`);
  if (!s.available || s.note) lines.push('', `**${s.available ? 'Failed' : 'Not available'}**: ${s.note ?? ''}`);
  lines.push(
    '',
    '| run | wall s | keys/s | Redis CPU µs/key | client CPU µs/key (sum of processes) | peak RSS MB (largest) | verify clean |',
    '|---|---:|---:|---:|---:|---:|---|',
  );
  const peak = s.shards.reduce<number | null>((m, r) => (r.peakRssMb === null ? m : Math.max(m ?? 0, r.peakRssMb)), null);
  lines.push(
    `| two shard processes at once | ${sec(s.wallMs)} | ${fmt(s.keysPerSecond)} | ${fx(s.redisCpuUsPerKey)} | ${fx(s.clientCpuUsPerKey)} | ${fmt(peak)} | ${s.verify ? String(s.clean) : '–'} |`,
  );
  if (one)
    lines.push(
      `| one process (the cluster run above, ${fmt(one.jobs)} jobs) | ${sec(one.backfill.wallMs)} | ${fmt(one.backfill.keysPerSecond)} | ${fx(one.backfill.redisCpuUsPerKey)} | ${fx(one.backfill.clientCpuUsPerKey)} | ${fmt(one.backfill.peakRssMb)} | ${one.verify ? String(one.verify.json?.ok === true && one.verify.json.mismatches === 0) : '–'} |`,
    );
  for (const [i, r] of s.shards.entries())
    lines.push(
      '',
      `Shard ${i}/2: exit ${String(r.exitCode)}, ${sec(r.wallMs)} s, scanned ${fmt(typeof r.json?.scanned === 'number' ? r.json.scanned : null)}.`,
    );
  lines.push(
    '',
    "All the servers and both processes share this machine's cores: the wall-clock figure shows that shards can run at once, not how they scale on separate machines (use the CPU per key for that).",
  );
  return lines.join('\n');
}

function enqueueSection(raw: unknown): string {
  const rows = findLatencyRows(raw);
  const t = enqueueTargetRows(rows);
  const lines = [
    '## Enqueue latency per phase',
    '',
    "Sequential enqueues, one at a time (bench/enqueue.ts), next to the seed's writes measured in the same run.",
    '',
  ];
  if (rows.length === 0) return [...lines, 'No latency rows were found in what bench/enqueue.ts returned (its raw result is in the JSON report).'].join('\n');
  lines.push('| variant | p50 µs | p99 µs | p50 vs seed single write |', '|---|---:|---:|---:|');
  for (const r of rows)
    lines.push(`| ${r.label} | ${fmt(r.p50Us)} | ${fmt(r.p99Us)} | ${t.seedSingle ? `${(r.p50Us / t.seedSingle.p50Us).toFixed(2)}×` : '–'} |`);
  return lines.join('\n');
}

function apiSection(a: ApiBaselineResult): string {
  const lines = ['## API against its baseline', ''];
  lines.push(
    `\`GET /ai/jobs?limit=${a.pageSize}\` on the v2 read path (phase read-new), ${fmt(a.jobs)} jobs over ${a.workspaces} workspaces, log level ${a.logLevel} (lines formatted, then dropped). ` +
      `One request at a time: ${fmt(a.direct.n)} requests cycling over the workspaces on one keep-alive connection. Under load: autocannon, ${a.connections} connections, ${a.durationSec} s per target in a worker thread. ` +
      `The three are measured in ${a.rounds} alternating rounds (direct, bare, API, then again), so a change in the machine's load falls on all three alike.`,
    '',
  );
  lines.push('| what | one at a time p50 µs | p99 µs | under load req/s | load p50 ms | load p99 ms | errors |', '|---|---:|---:|---:|---:|---:|---:|');
  lines.push(
    `| direct ioredis: ZRANGE (${a.pageSize + 1} entries with scores) + ${a.pageSize} HGETALL in one pipeline | ${fx(a.direct.p50Us, 0)} | ${fx(a.direct.p99Us, 0)} | – | – | – | – |`,
  );
  lines.push(
    `| bare fastify route doing the same reads | ${fx(a.bare.sequential.p50Us, 0)} | ${fx(a.bare.sequential.p99Us, 0)} | ${fmt(a.bare.load.requestsPerSec)} | ${a.bare.load.p50Ms} | ${a.bare.load.p99Ms} | ${a.bare.load.errors + a.bare.load.non2xx} |`,
  );
  lines.push(
    `| the API | ${fx(a.api.sequential.p50Us, 0)} | ${fx(a.api.sequential.p99Us, 0)} | ${fmt(a.api.load.requestsPerSec)} | ${a.api.load.p50Ms} | ${a.api.load.p99Ms} | ${a.api.load.errors + a.api.load.non2xx} |`,
  );
  lines.push('', "Where the API's time goes: each per-request part timed alone in-process on a real page (median µs per request):", '');
  lines.push('| part | µs per request |', '|---|---:|');
  for (const b of a.breakdown) lines.push(`| ${b.part} | ${fx(b.usPerRequest)} |`);
  const sum = a.breakdown.filter((b) => !b.part.startsWith('cursor: open')).reduce((x, b) => x + b.usPerRequest, 0);
  lines.push(`| sum (first page: no cursor to open) | ${fx(sum)} |`);
  lines.push('', `Gap between the API and the bare route, one at a time: ${fx(a.api.sequential.p50Us - a.bare.sequential.p50Us, 0)} µs at p50.`);
  return lines.join('\n');
}

function apiPathsSection(runs: ApiBenchResult[]): string {
  const lines = [
    "## API read paths and the seed's listing loops",
    '',
    '`GET /ai/jobs?limit=50` (autocannon, 10 connections, 200 workspaces), legacy path (phase legacy) and v2 (read-new):',
    '',
  ];
  lines.push('| jobs | read path | p50 ms | p99 ms | req/s | errors | one request at a time, ms |', '|---:|---|---:|---:|---:|---:|---:|');
  for (const r of runs)
    for (const p of [r.paths.legacy, r.paths.v2])
      lines.push(
        `| ${fmt(r.jobs)} | ${p.path} | ${p.p50Ms.toFixed(1)} | ${p.p99Ms.toFixed(1)} | ${fmt(p.requestsPerSec)} | ${p.errors + p.non2xx} | ${p.sequentialAvgMs.toFixed(1)} |`,
      );
  lines.push('', '| jobs | seed loop | ms per page | SCAN calls per page |', '|---:|---|---:|---:|');
  for (const r of runs)
    for (const l of [r.seed.v2ScanMatch, r.seed.legacyScanFilter])
      lines.push(`| ${fmt(r.jobs)} | ${l.name} | ${l.avgMs.toFixed(1)} | ${fmt(l.avgScanCalls)} |`);
  return lines.join('\n');
}

/** Every target of issue 13, from this run's figures. */
export function targets(r: {
  main: BackfillBenchResult | null;
  cluster: BackfillBenchResult | null;
  shards: ShardsBenchResult | null;
  enqueue: unknown;
  api: ApiBaselineResult | null;
  cfg: BenchConfig;
}): TargetResult[] {
  const out: TargetResult[] = [];
  const skipped = (part: string): string => `${part} not run`;
  const e = r.enqueue === undefined ? null : enqueueTargetRows(findLatencyRows(r.enqueue));
  const seed = e?.seedSingle?.p50Us ?? null;
  const enq = (name: string, row: { p50Us: number } | null | undefined, limit: number): TargetResult =>
    evaluateTarget({
      name,
      measured: row?.p50Us ?? null,
      baseline: seed,
      bound: 'max',
      limit,
      unit: 'µs',
      ...(e === null ? { unavailable: skipped('enqueue') } : row && seed !== null ? {} : { unavailable: 'row not found in bench/enqueue.ts output' }),
    });
  out.push(enq('enqueue p50, dual-write ÷ seed single write (HSET + RPUSH)', e?.dualWrite, 1.25));
  out.push(enq('enqueue p50, legacy ÷ seed single write', e?.legacy, 1.1));
  out.push(enq('enqueue p50, new-only ÷ seed single write', e?.newOnly, 1.1));
  const m = r.main;
  const mainNote = m ? (m.verify ? undefined : 'verify not run') : skipped('standalone');
  out.push(
    evaluateTarget({
      name: `verify wall ÷ backfill wall, one node, ${fmt(m?.jobs ?? r.cfg.jobs)} jobs`,
      measured: m?.verify?.wallMs ?? null,
      baseline: m?.backfill.wallMs ?? null,
      bound: 'max',
      limit: 1,
      unit: 'ms',
      ...(mainNote ? { unavailable: mainNote } : {}),
    }),
  );
  out.push(
    evaluateTarget({
      name: 'verify Redis CPU per job ÷ backfill Redis CPU per job, one node',
      measured: m?.verify?.redisCpuUsPerKey ?? null,
      baseline: m?.backfill.redisCpuUsPerKey ?? null,
      bound: 'max',
      limit: 1,
      unit: 'µs',
      ...(mainNote ? { unavailable: mainNote } : {}),
    }),
  );
  const c = r.cluster;
  const clusterNote = !c ? skipped('cluster') : !m ? skipped('standalone') : undefined;
  out.push(
    evaluateTarget({
      name: 'client CPU per key, backfill: 3-master cluster ÷ one node',
      measured: c?.backfill.clientCpuUsPerKey ?? null,
      baseline: m?.backfill.clientCpuUsPerKey ?? null,
      bound: 'max',
      limit: 2,
      unit: 'µs',
      ...(clusterNote ? { unavailable: clusterNote } : {}),
    }),
  );
  out.push(
    evaluateTarget({
      name: 'client CPU per key, verify: 3-master cluster ÷ one node',
      measured: c?.verify?.clientCpuUsPerKey ?? null,
      baseline: m?.verify?.clientCpuUsPerKey ?? null,
      bound: 'max',
      limit: 2,
      unit: 'µs',
      ...(clusterNote ? { unavailable: clusterNote } : {}),
    }),
  );
  const a = r.api;
  const apiNote = a ? undefined : skipped('api');
  out.push(
    evaluateTarget({
      name: 'API v2 page of 50, one at a time: p50 ÷ direct ioredis reads p50',
      measured: a?.api.sequential.p50Us ?? null,
      baseline: a?.direct.p50Us ?? null,
      bound: 'max',
      limit: 2,
      unit: 'µs',
      ...(apiNote ? { unavailable: apiNote } : {}),
    }),
  );
  out.push(
    evaluateTarget({
      name: 'API under autocannon (10 connections): req/s ÷ bare fastify route req/s',
      measured: a?.api.load.requestsPerSec ?? null,
      baseline: a?.bare.load.requestsPerSec ?? null,
      bound: 'min',
      limit: 0.6,
      unit: 'req/s',
      ...(apiNote ? { unavailable: apiNote } : {}),
    }),
  );
  const s = r.shards;
  if (!s) out.push(checkTarget('two shard processes at once on 3 masters: both finish, verify clean', null, '–', skipped('shards')));
  else if (!s.available)
    out.push(checkTarget('two shard processes at once on 3 masters: both finish, verify clean', null, 'refused', `not available: ${s.note ?? 'exit 4'}`));
  else
    out.push(
      checkTarget(
        'two shard processes at once on 3 masters: both finish, verify clean',
        s.clean,
        s.clean ? 'both exited 0, verify clean' : (s.note ?? 'verify not clean'),
      ),
    );
  return out;
}

async function main(): Promise<void> {
  // The sizes moved from flags to BENCH_* variables: an old flag must not silently run the defaults.
  if (process.argv.length > 2)
    throw new Error(
      `bench/run.ts takes no arguments (got ${process.argv.slice(2).join(' ')}): set BENCH_JOBS, BENCH_CLUSTER_JOBS, BENCH_SKIP, … instead (docs/performance.md "How to read the report")`,
    );
  const cfg = benchConfig();
  const log = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  const startedAt = new Date().toISOString();
  const host = machine();
  log(
    `machine: ${host.cores} cores, ${host.memoryGb} GB, redis ${host.redisVersion}, node ${host.node}; load average ${host.loadAvgStart.join(' ')}${host.idleAtStart ? '' : ' (NOT idle)'}`,
  );
  const results: Record<string, unknown> = { startedAt, machine: host, config: { ...cfg, skip: [...cfg.skip] } };
  const sections: string[] = [];
  const on = (part: Parameters<typeof cfg.skip.has>[0]): boolean => !cfg.skip.has(part);

  const main = on('standalone')
    ? await runBackfillBench({ jobs: cfg.jobs, workspaces: WORKSPACES, seedLoopKeys: Math.min(cfg.seedKeys, cfg.jobs), log })
    : null;
  const series: BackfillBenchResult[] = [];
  for (const size of cfg.sizes.filter((s) => s !== cfg.jobs))
    series.push(await runBackfillBench({ jobs: size, workspaces: WORKSPACES, skipVerify: true, seedLoopKeys: 0, log }));
  const cluster = on('cluster') && cfg.clusterJobs > 0 ? await runBackfillBench({ jobs: cfg.clusterJobs, workspaces: WORKSPACES, cluster: true, log }) : null;
  results.backfill = { main, series, cluster };
  if (main || cluster) sections.push(backfillSection(main, cluster, series));

  const shards = on('shards') && cfg.shardJobs > 0 ? await runShardsBench({ jobs: cfg.shardJobs, workspaces: WORKSPACES, log }) : null;
  results.shards = shards;
  if (shards) sections.push(shardsSection(shards, cluster));

  let enqueue: unknown = undefined;
  if (on('enqueue')) {
    const server = await spawnRedisServer();
    try {
      log('enqueue latency…');
      enqueue = await runEnqueueBench({ redisUrl: server.url, ops: cfg.enqueueOps });
      results.enqueue = enqueue;
      sections.push(enqueueSection(enqueue));
    } finally {
      await server.stop();
    }
  }

  let api: ApiBaselineResult | null = null;
  if (on('api')) {
    const server = await spawnRedisServer();
    try {
      api = await runApiBaselineBench({
        redisUrl: server.url,
        jobs: cfg.apiJobs,
        workspaces: WORKSPACES,
        durationSec: cfg.apiDurationSec,
        sequential: cfg.apiSequential,
        log,
      });
      results.api = api;
      sections.push(apiSection(api));
    } finally {
      await server.stop();
    }
  }

  if (on('api-paths') && cfg.apiPathSizes.length > 0) {
    const runs: ApiBenchResult[] = [];
    for (const size of cfg.apiPathSizes) {
      // A fresh server per size, so each keyspace is exactly `size` jobs (plus their v2 copies).
      const server = await spawnRedisServer();
      try {
        runs.push(await runApiBench({ redisUrl: server.url, jobs: size, workspaces: WORKSPACES, durationSec: cfg.apiDurationSec, log }));
      } finally {
        await server.stop();
      }
    }
    results.apiPaths = runs;
    sections.push(apiPathsSection(runs));
  }

  if (on('guards') && cfg.guardJobs > 0) {
    const guards = await runGuardsBench({ jobs: cfg.guardJobs, maxLatencyMs: 5, log });
    results.guards = guards;
    sections.push(guardsTable(guards).replace(/^### /, '## '));
  }

  const t = targets({ main, cluster, shards, enqueue, api, cfg });
  results.targets = t;
  host.loadAvgEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const passed = t.filter((x) => x.verdict === 'PASS').length;
  const head = [
    `# Performance report ${startedAt}${cfg.quick ? ' (BENCH_QUICK smoke sizes: not for publication)' : ''}`,
    '',
    `Machine: ${host.cores} cores (${host.cpuModel}), ${host.memoryGb} GB, ${host.platform}; redis-server ${host.redisVersion}; node ${host.node}.`,
    `Load average at start ${host.loadAvgStart.join(' / ')} (1/5/15 min) — ${host.idleAtStart ? 'idle' : '**not idle: figures are indicative only**'}; at the end ${host.loadAvgEnd.join(' / ')}.`,
    `Sizes: ${fmt(cfg.jobs)} jobs on one node, ${fmt(cfg.clusterJobs)} on a 3-master cluster, ${fmt(cfg.shardJobs)} for the two shards, seed loop on ${fmt(Math.min(cfg.seedKeys, cfg.jobs))} keys, API on ${fmt(cfg.apiJobs)} jobs${cfg.skip.size > 0 ? `; skipped: ${[...cfg.skip].join(', ')}` : ''}.`,
    '',
    `## Targets (${passed} of ${t.length} pass)`,
    '',
    targetsTable(t),
  ];
  const md = [...head, '', ...sections.flatMap((s) => [s, '']), ''].join('\n');
  mkdirSync(REPORTS, { recursive: true });
  const base = `${startedAt.slice(0, 10)}-node-svc${cfg.quick ? '-quick' : ''}`;
  writeFileSync(path.join(REPORTS, `${base}.json`), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(path.join(REPORTS, `${base}.md`), md);
  process.stdout.write(md);
  log(`wrote bench/reports/${base}.md and .json`);
}

// Imported by tests for `targets`; run only as the entry point.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
