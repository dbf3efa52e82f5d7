/**
 * `npm run bench`: a small orchestrator. Each part lives in its own module and
 * returns figures; this file parses flags, calls them, and writes
 * bench/results/<date>.json plus a markdown table (stdout and
 * bench/results/latest.md).
 *
 *   node dist/bench/run.js [--jobs N] [--sizes 100000,1000000,5000000]
 *                          [--cluster-jobs N] [--skip-cluster] [--skip-api]
 *
 * --jobs          jobs of the main backfill/verify run (default 1,000,000)
 * --sizes         extra backfill-only runs for the peak RSS series
 * --cluster-jobs  jobs of the 3-master cluster run (default 200,000; 0 = skip)
 * --skip-api      skip the API and enqueue-latency parts
 * --api-sizes     keyspace sizes of the API runs (default 100000,1000000,2000000)
 * --api-duration  seconds of autocannon load per read path (default 10)
 * --guard-jobs    jobs of the guard-rail figures (bench/guards.ts; default 200,000)
 * --skip-guards   skip the guard-rail figures
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnRedisServer } from '../src/cli/demo/throwaway-redis.js';
import { runApiBench, type ApiBenchResult } from './api.js';
import { runBackfillBench, type BackfillBenchResult } from './backfill.js';
import { enqueueTable, runEnqueueBench } from './enqueue.js';
import { guardsTable, runGuardsBench } from './guards.js';

const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));

interface Flags {
  jobs: number;
  sizes: number[];
  clusterJobs: number;
  skipApi: boolean;
  apiSizes: number[];
  apiDuration: number;
  guardJobs: number;
}

function parseFlags(argv: string[]): Flags {
  const flags: Flags = { jobs: 1_000_000, sizes: [], clusterJobs: 200_000, skipApi: false, apiSizes: [100_000, 1_000_000, 2_000_000], apiDuration: 10, guardJobs: 200_000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const int = (v: string): number => {
      if (!/^[0-9]+$/.test(v)) throw new Error(`${a}: expected a non-negative integer, got ${v}`);
      return Number(v);
    };
    if (a === '--jobs') flags.jobs = int(next());
    else if (a === '--sizes') flags.sizes = next().split(',').filter(Boolean).map(int);
    else if (a === '--cluster-jobs') flags.clusterJobs = int(next());
    else if (a === '--skip-cluster') flags.clusterJobs = 0;
    else if (a === '--skip-api') flags.skipApi = true;
    else if (a === '--api-sizes') flags.apiSizes = next().split(',').filter(Boolean).map(int);
    else if (a === '--api-duration') flags.apiDuration = int(next());
    else if (a === '--guard-jobs') flags.guardJobs = int(next());
    else if (a === '--skip-guards') flags.guardJobs = 0;
    else throw new Error(`unknown flag ${a}`);
  }
  return flags;
}

const fmt = (n: number | null | undefined): string => (n === null || n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));

function backfillTable(main: BackfillBenchResult, series: BackfillBenchResult[], cluster: BackfillBenchResult | null): string {
  const lines: string[] = [];
  lines.push('### Backfill and verify (`orch-migrate` as a child process, Redis on loopback)', '');
  lines.push('| run | jobs | backfill wall s | backfill keys/s | backfill peak RSS MB | verify wall s | verify keys/s (records, both layouts) | verify peak RSS MB | verify clean |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---|');
  const row = (r: BackfillBenchResult): string => {
    const v = r.verify;
    return `| ${r.mode} | ${fmt(r.jobs)} | ${(r.backfill.wallMs / 1000).toFixed(1)} | ${fmt(r.backfill.keysPerSecond)} | ${fmt(r.backfill.peakRssMb)} | ${v ? (v.wallMs / 1000).toFixed(1) : '–'} | ${v ? fmt(v.keysPerSecond) : '–'} | ${v ? fmt(v.peakRssMb) : '–'} | ${v ? String(v.json?.ok === true && v.json.mismatches === 0) : '–'} |`;
  };
  lines.push(row(main));
  if (cluster) lines.push(row(cluster));
  if (main.seedLoop) {
    lines.push('', `Seed loop (SCAN, then HGETALL + HSET per key, one awaited call at a time) on ${fmt(main.seedLoop.keys)} keys: ${fmt(main.seedLoop.keysPerSecond)} keys/s. Backfill is **${main.ratioToSeedLoop ?? '–'}×** faster.`);
  }
  if (series.length > 0) {
    lines.push('', '| RSS series: jobs | backfill keys/s | backfill peak RSS MB |', '|---:|---:|---:|');
    for (const r of [...series, main].sort((a, b) => a.jobs - b.jobs)) lines.push(`| ${fmt(r.jobs)} | ${fmt(r.backfill.keysPerSecond)} | ${fmt(r.backfill.peakRssMb)} |`);
  }
  return lines.join('\n');
}

function apiTable(runs: ApiBenchResult[]): string {
  const lines = ['### API: `GET /ai/jobs?limit=50` (autocannon, 10 connections, 200 workspaces)', ''];
  lines.push('| jobs | read path | p50 ms | p99 ms | req/s | errors | one request at a time, ms |', '|---:|---|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    for (const p of [r.paths.legacy, r.paths.v2]) {
      lines.push(`| ${fmt(r.jobs)} | ${p.path} | ${p.p50Ms.toFixed(1)} | ${p.p99Ms.toFixed(1)} | ${fmt(p.requestsPerSec)} | ${p.errors + p.non2xx} | ${p.sequentialAvgMs.toFixed(1)} |`);
    }
  }
  lines.push('', 'Seed listing loops as the baseline (first page of 50, one request at a time):', '');
  lines.push('| jobs | loop | ms per page | SCAN calls per page |', '|---:|---|---:|---:|');
  for (const r of runs) {
    for (const l of [r.seed.v2ScanMatch, r.seed.legacyScanFilter]) lines.push(`| ${fmt(r.jobs)} | ${l.name} | ${l.avgMs.toFixed(1)} | ${fmt(l.avgScanCalls)} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const log = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  const results: Record<string, unknown> = { startedAt: new Date().toISOString(), node: process.version, flags };
  const sections: string[] = [];

  const main = await runBackfillBench({ jobs: flags.jobs, workspaces: 200, log });
  const series: BackfillBenchResult[] = [];
  for (const size of flags.sizes.filter((s) => s !== flags.jobs)) {
    series.push(await runBackfillBench({ jobs: size, workspaces: 200, skipVerify: true, seedLoopKeys: 0, log }));
  }
  const cluster = flags.clusterJobs > 0 ? await runBackfillBench({ jobs: flags.clusterJobs, workspaces: 200, cluster: true, log }) : null;
  results.backfill = { main, series, cluster };
  sections.push(backfillTable(main, series, cluster));

  if (!flags.skipApi) {
    const apiRuns: ApiBenchResult[] = [];
    for (const size of flags.apiSizes) {
      // A fresh server per size, so each keyspace is exactly `size` jobs (plus their v2 copies).
      const server = await spawnRedisServer();
      try {
        apiRuns.push(await runApiBench({ redisUrl: server.url, jobs: size, workspaces: 200, durationSec: flags.apiDuration, log }));
      } finally {
        await server.stop();
      }
    }
    results.api = apiRuns;
    sections.push(apiTable(apiRuns));
    const server = await spawnRedisServer();
    try {
      log('enqueue latency…');
      const enqueue = await runEnqueueBench({ redisUrl: server.url, ops: 5000 });
      results.enqueue = enqueue;
      sections.push(enqueueTable(enqueue));
    } finally {
      await server.stop();
    }
  }

  if (flags.guardJobs > 0) {
    const guards = await runGuardsBench({ jobs: flags.guardJobs, maxLatencyMs: 5, log });
    results.guards = guards;
    sections.push(guardsTable(guards));
  }

  const md = [`## Benchmarks ${results.startedAt as string} (node ${process.version})`, '', ...sections, ''].join('\n');
  mkdirSync(RESULTS, { recursive: true });
  const date = (results.startedAt as string).replace(/[:.]/g, '-');
  writeFileSync(path.join(RESULTS, `${date}.json`), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(path.join(RESULTS, 'latest.md'), md);
  process.stdout.write(md);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
