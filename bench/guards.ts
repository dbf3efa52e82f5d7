/**
 * Guard-rail figures for `npm run bench` (issue 11), each on throwaway servers:
 *
 * 1. The latency a production client sees during a backfill: a probe in this
 *    process (a PING on its own connection every 5 ms) gives p50/p99 while
 *    Redis is idle, during an unguarded backfill, and during one with
 *    `--max-latency-ms`, next to each backfill's keys/s.
 * 2. The memory projection against the truth: `preflight --json`'s projected
 *    growth next to the `used_memory` growth a real backfill caused (settled,
 *    so the main dict's rehash is over), on two data shapes unlike each other.
 * 3. How fast a run stops: `control pause` from a second process until the
 *    committed count stops moving, and a replica SIGSTOPped until the
 *    replica-lag guard has paused the run.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { jobFields } from './backfill.js';
import { startRedisProcess, type RedisProcess } from '../src/cli/demo/redis-process.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'orch-migrate');
const PREFIX = 'ai';

/** Options of {@link runGuardsBench}. */
export interface GuardsBenchOptions {
  /** Jobs of the latency runs and of the first projection shape. */
  jobs: number;
  /** The p99 limit of the guarded run (ms). */
  maxLatencyMs: number;
  log?: (line: string) => void;
}

/** Probe figures of one phase. */
export interface ProbeFigures {
  phase: string;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The backfill's keys/s (null for idle). */
  keysPerSecond: number | null;
}

/** One projection against its measurement. */
export interface ProjectionFigures {
  shape: string;
  jobs: number;
  projectedBytes: number;
  measuredBytes: number;
  /** (projected - measured) / measured, percent. */
  errorPct: number;
  perJobBytes: number;
  indexBytes: number;
}

/** Result of {@link runGuardsBench}. */
export interface GuardsBenchResult {
  probe: ProbeFigures[];
  projection: ProjectionFigures[];
  /** ms from `control pause` to the last committed key; and to the heartbeat saying paused. */
  controlPause: { toStoppedMs: number; toReportedMs: number; keysAfterPause: number };
  /** ms from SIGSTOP of the replica to the heartbeat saying paused; --max-replica-lag used. */
  replicaStall: { toPausedMs: number; level: string; keysAfterPause: number };
}

function cli(url: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; json: Record<string, unknown> | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, '--redis-url', url, '--prefix', PREFIX, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, unknown> | null;
      try {
        json = JSON.parse(stdout.trim()) as Record<string, unknown>;
      } catch {
        json = null;
      }
      resolve({ code, stdout, stderr, json });
    });
  });
}

/** The bench's own job shape (bench/backfill.ts): ~400 bytes in 10 fields, 200 workspaces, every 10th with a TTL. */
async function loadBenchShape(r: Redis, jobs: number): Promise<void> {
  for (let start = 0; start < jobs; start += 5000) {
    const p = r.pipeline();
    for (let i = start; i < Math.min(jobs, start + 5000); i++) {
      const key = `${PREFIX}:jobs:job-${i}`;
      p.hset(key, ...jobFields(i, 200));
      if (i % 10 === 0) p.pexpire(key, 86_400_000 + i);
    }
    await p.exec();
  }
}

/** A shape the projection has not seen: 5,000 small workspaces, 36-char ids, params over 64 bytes (hashtable hashes), a third with a TTL. */
async function loadOtherShape(r: Redis, jobs: number): Promise<void> {
  for (let start = 0; start < jobs; start += 5000) {
    const p = r.pipeline();
    for (let i = start; i < Math.min(jobs, start + 5000); i++) {
      const id = `${(i * 2654435761) % 4294967296}-${i.toString(36).padStart(8, '0')}-aaaa-bbbb-${String(i).padStart(12, '0')}`;
      const key = `${PREFIX}:jobs:${id}`;
      p.hset(
        key,
        'job_id',
        id,
        'workspace_id',
        `tenant-${i % 5000}`,
        'action',
        i % 2 ? 'embed' : 'transcribe_audio_file',
        'params',
        JSON.stringify({ url: `https://files.example.com/${id}/input.bin`, options: { lang: 'de', speakers: i % 7 } }),
        'status',
        'running',
        'created_at',
        new Date(1_750_000_000_000 + i * 1000).toISOString(),
        'rev',
        String(i % 9),
      );
      if (i % 3 === 0) p.pexpire(key, 7 * 86_400_000);
    }
    await p.exec();
  }
}

async function usedMemory(r: Redis): Promise<number> {
  return Number(/^used_memory:([0-9]+)/m.exec(await r.info('memory'))?.[1] ?? NaN);
}

/** used_memory once three readings 300 ms apart agree within 0.1% (rehashing over). */
async function settled(r: Redis): Promise<number> {
  let prev = await usedMemory(r);
  for (let stable = 0, i = 0; stable < 3 && i < 100; i++) {
    await new Promise((res) => setTimeout(res, 300));
    const now = await usedMemory(r);
    stable = Math.abs(now - prev) <= prev * 0.001 ? stable + 1 : 0;
    prev = now;
  }
  return prev;
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;

/** PINGs on its own connection every `everyMs` until stopped; the RTTs. */
function probe(port: number, everyMs = 5): { stop: () => Promise<number[]> } {
  const r = new Redis({ port, host: '127.0.0.1', connectionName: 'bench:probe' });
  const rtts: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      await r.ping();
      rtts.push(performance.now() - t0);
      await new Promise((res) => setTimeout(res, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      r.disconnect();
      return rtts;
    },
  };
}

function figures(phase: string, rtts: number[], keysPerSecond: number | null): ProbeFigures {
  const s = [...rtts].sort((a, b) => a - b);
  const round = (n: number): number => Math.round(n * 100) / 100;
  return { phase, samples: s.length, p50Ms: round(pct(s, 50)), p99Ms: round(pct(s, 99)), maxMs: round(s[s.length - 1] ?? NaN), keysPerSecond };
}

async function withServer<T>(extraArgs: string[], fn: (s: RedisProcess, r: Redis) => Promise<T>): Promise<T> {
  const s = await startRedisProcess({ extraArgs });
  const r = new Redis({ port: s.port, host: s.host });
  try {
    return await fn(s, r);
  } finally {
    r.disconnect();
    await s.stop();
  }
}

/** A backfill on fresh data under the probe. */
async function probedBackfill(jobs: number, phase: string, extra: string[], log: (l: string) => void): Promise<ProbeFigures> {
  return withServer([], async (s, r) => {
    await loadBenchShape(r, jobs);
    const edw = await cli(s.url, ['--json', 'enable-dual-write', '--reason', 'bench', '--settle-ms', '100']);
    if (edw.code !== 0) throw new Error(`enable-dual-write failed: ${edw.stderr}`);
    await new Promise((res) => setTimeout(res, 150));
    log(`guards: ${phase}…`);
    const p = probe(s.port);
    const bf = await cli(s.url, ['--json', 'backfill', ...extra]);
    const rtts = await p.stop();
    if (bf.code !== 0) throw new Error(`backfill (${phase}) exited ${String(bf.code)}: ${bf.stderr.slice(-500)}`);
    return figures(phase, rtts, Number(bf.json?.keysPerSecond ?? 0));
  });
}

async function projection(shape: string, jobs: number, load: (r: Redis, n: number) => Promise<void>, log: (l: string) => void): Promise<ProjectionFigures> {
  return withServer([], async (s, r) => {
    log(`guards: projection on ${shape}…`);
    await load(r, jobs);
    const pf = await cli(s.url, ['--json', 'preflight']);
    const proj = pf.json?.projection as { growthBytes: number; perJobBytes: number; indexBytes: number } | undefined;
    if (!proj) throw new Error(`preflight gave no projection: ${pf.stderr.slice(-500)}`);
    await cli(s.url, ['enable-dual-write', '--reason', 'bench', '--settle-ms', '100']);
    await new Promise((res) => setTimeout(res, 150));
    const before = await settled(r);
    const bf = await cli(s.url, ['--json', 'backfill']);
    if (bf.code !== 0) throw new Error(`backfill exited ${String(bf.code)}: ${bf.stderr.slice(-500)}`);
    const measured = (await settled(r)) - before;
    return {
      shape,
      jobs,
      projectedBytes: proj.growthBytes,
      measuredBytes: measured,
      errorPct: Math.round(((proj.growthBytes - measured) / measured) * 1000) / 10,
      perJobBytes: proj.perJobBytes,
      indexBytes: proj.indexBytes,
    };
  });
}

/** Polls the run's committed count (its heartbeat) every 20 ms. */
async function heartbeat(r: Redis): Promise<{ done: number; state: string } | null> {
  const all = await r.hgetall(`${PREFIX}:migration:jobs:run`);
  const v = Object.values(all)[0];
  return v ? (JSON.parse(v) as { done: number; state: string }) : null;
}

async function until(pred: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error('bench: timed out');
    await new Promise((res) => setTimeout(res, 20));
  }
}

/**
 * `control pause` during a backfill at 5,000 keys/s: when does the run's
 * count stop moving, and when does its heartbeat say "paused"? The count is
 * read from the heartbeat (the checkpoint is saved at most once a second).
 */
async function controlPause(log: (l: string) => void): Promise<GuardsBenchResult['controlPause']> {
  return withServer([], async (s, r) => {
    await loadBenchShape(r, 60_000);
    await cli(s.url, ['enable-dual-write', '--reason', 'bench', '--settle-ms', '100']);
    await new Promise((res) => setTimeout(res, 150));
    log('guards: control pause…');
    const run = cli(s.url, ['--json', 'backfill', '--rate', '5000']);
    await until(async () => ((await heartbeat(r))?.done ?? 0) >= 5000);
    // The engine's own count, polled: when does it stop moving?
    const t0 = performance.now();
    const pause = cli(s.url, ['control', 'pause']);
    let last = (await heartbeat(r))!.done;
    let lastChange = t0;
    let reported = 0;
    const doneAt0 = last;
    while (performance.now() - t0 < 5000) {
      const hb = (await heartbeat(r))!;
      if (hb.done !== last) {
        last = hb.done;
        lastChange = performance.now();
      }
      if (reported === 0 && hb.state === 'paused') reported = performance.now() - t0;
      await new Promise((res) => setTimeout(res, 20));
    }
    await pause;
    await cli(s.url, ['control', 'resume']);
    await run;
    return { toStoppedMs: Math.round(lastChange - t0), toReportedMs: Math.round(reported), keysAfterPause: last - doneAt0 };
  });
}

async function replicaStall(log: (l: string) => void): Promise<GuardsBenchResult['replicaStall']> {
  const master = await startRedisProcess({});
  const replica = await startRedisProcess({ extraArgs: ['--replicaof', master.host, String(master.port)] });
  const r = new Redis({ port: master.port, host: master.host });
  try {
    await loadBenchShape(r, 60_000);
    await until(async () => /slave0:.*state=online/.test(await r.info('replication')));
    await cli(master.url, ['enable-dual-write', '--reason', 'bench', '--settle-ms', '100']);
    await new Promise((res) => setTimeout(res, 150));
    log('guards: replica stall…');
    const level = '2s';
    const run = cli(master.url, ['--json', 'backfill', '--rate', '5000', '--max-replica-lag', level]);
    await until(async () => ((await heartbeat(r))?.done ?? 0) >= 5000);
    const t0 = performance.now();
    replica.pause();
    await until(async () => (await heartbeat(r))?.state === 'paused');
    const toPausedMs = Math.round(performance.now() - t0);
    const at = (await heartbeat(r))!.done;
    await new Promise((res) => setTimeout(res, 2000));
    const after = (await heartbeat(r))!.done;
    replica.resume();
    await run;
    return { toPausedMs, level, keysAfterPause: after - at };
  } finally {
    replica.resume();
    r.disconnect();
    await replica.stop();
    await master.stop();
  }
}

/** Runs every guard figure; see the module header. */
export async function runGuardsBench(opts: GuardsBenchOptions): Promise<GuardsBenchResult> {
  const log = opts.log ?? (() => undefined);
  const probeFigures: ProbeFigures[] = [];
  await withServer([], async (s, r) => {
    await loadBenchShape(r, Math.min(opts.jobs, 100_000));
    log('guards: idle probe…');
    const p = probe(s.port);
    await new Promise((res) => setTimeout(res, 5000));
    probeFigures.push(figures('idle (no backfill)', await p.stop(), null));
  });
  probeFigures.push(await probedBackfill(opts.jobs, 'backfill, unguarded (no --max-latency-ms)', [], log));
  probeFigures.push(await probedBackfill(opts.jobs, `backfill --max-latency-ms ${opts.maxLatencyMs}`, ['--max-latency-ms', String(opts.maxLatencyMs)], log));
  const proj = [
    await projection(`bench shape: 200 workspaces, ~400 B in 10 fields, 10% TTL`, opts.jobs, loadBenchShape, log),
    await projection('5,000 small workspaces, 36-char ids, hashtable hashes, 33% TTL', Math.round(opts.jobs / 2), loadOtherShape, log),
  ];
  return { probe: probeFigures, projection: proj, controlPause: await controlPause(log), replicaStall: await replicaStall(log) };
}

/** The markdown section of the report. */
export function guardsTable(g: GuardsBenchResult): string {
  const fmt = (n: number | null): string => (n === null ? '–' : Math.round(n).toLocaleString('en-US'));
  const mb = (n: number): string => (n / 1024 / 1024).toFixed(1);
  const lines = ['### Guard rails', '', 'Latency seen by a second client (PING every 5 ms on its own connection) during a backfill:', ''];
  lines.push('| phase | probe p50 ms | probe p99 ms | max ms | backfill keys/s |', '|---|---:|---:|---:|---:|');
  for (const p of g.probe) lines.push(`| ${p.phase} | ${p.p50Ms.toFixed(2)} | ${p.p99Ms.toFixed(2)} | ${p.maxMs.toFixed(1)} | ${fmt(p.keysPerSecond)} |`);
  lines.push('', 'Memory: `preflight` projection against the `used_memory` growth the backfill caused (settled):', '');
  lines.push('| data | jobs | projected MB | measured MB | error | per job B | index MB |', '|---|---:|---:|---:|---:|---:|---:|');
  for (const p of g.projection)
    lines.push(
      `| ${p.shape} | ${fmt(p.jobs)} | ${mb(p.projectedBytes)} | ${mb(p.measuredBytes)} | ${p.errorPct > 0 ? '+' : ''}${p.errorPct}% | ${fmt(p.perJobBytes)} | ${mb(p.indexBytes)} |`,
    );
  lines.push(
    '',
    `Stopping a run: \`control pause\` from a second process → the run's committed count stopped moving after ${fmt(g.controlPause.toStoppedMs)} ms (${fmt(g.controlPause.keysAfterPause)} keys in flight finished), its heartbeat said "paused" after ${fmt(g.controlPause.toReportedMs)} ms (process start of the control command included). ` +
      `A replica SIGSTOPped → the replica-lag guard (--max-replica-lag ${g.replicaStall.level}) had paused the run after ${fmt(g.replicaStall.toPausedMs)} ms; ${fmt(g.replicaStall.keysAfterPause)} keys moved in the 2 s after that.`,
  );
  return lines.join('\n');
}
