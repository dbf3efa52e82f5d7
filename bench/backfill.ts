/**
 * Backfill and verify as a user runs them, on a throwaway Redis:
 *
 * 1. spawns `redis-server --port <free> --save '' --appendonly no` (or a
 *    3-master cluster), killed at the end;
 * 2. loads N legacy jobs (10-field hashes of ~400 bytes, `workspaces`
 *    workspaces, ~10% with a TTL) with pipelining;
 * 3. runs `node bin/orch-migrate … enable-dual-write`, then `backfill --json`
 *    and `verify --json` as child processes, measuring for each:
 *    - wall time, and keys/s as jobs ÷ wall time;
 *    - Redis CPU: `INFO cpu` used_cpu_sys + used_cpu_user just before the
 *      child starts and just after it exits, the deltas summed over the masters;
 *    - client CPU and peak RSS of the child: the child runs with
 *      `node --import` of the compiled bench/child-usage.ts, which writes its own
 *      process.resourceUsage() (getrusage: user + system µs, every thread, and
 *      maxRSS) as it exits; if that file is missing (the child was killed), the
 *      last values polled from /proc/<pid>/stat and /proc/<pid>/status (10 ms
 *      CPU resolution) are used and the source says so;
 * 4. times the seed's per-key loop (SCAN, then HGETALL each key, then HSET the
 *    new key, one awaited call at a time) on a subset, with the same Redis CPU
 *    deltas and the bench process's own process.cpuUsage() as its client CPU.
 *
 * {@link runShardsBench} runs `backfill --shard 0/2` and `--shard 1/2` as two
 * processes at once on a fresh 3-master cluster, then verify.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { freePort } from '../src/cli/demo/throwaway-redis.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis } from 'ioredis';
import { parseChildUsage, parseInfoCpuUs, parseProcStat, parseVmHwmKb, perKey } from './stats.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'orch-migrate');
/** The compiled bench/child-usage.ts, next to this file in dist/bench. */
const CHILD_USAGE = new URL('./child-usage.js', import.meta.url).href;
/** Exit code of a refused lock (src/core/errors.ts ExitCode.Locked). */
export const EXIT_LOCKED = 4;
const PREFIX = 'ai';

/** Options of {@link runBackfillBench}. */
export interface BackfillBenchOptions {
  jobs: number;
  workspaces: number;
  cluster?: boolean;
  /** Keys the seed loop is timed on (default min(jobs, 100k); 0 = skip). */
  seedLoopKeys?: number;
  /** Skip verify (RSS series). */
  skipVerify?: boolean;
  log?: (line: string) => void;
}

/** One timed child run. */
export interface ChildRun {
  wallMs: number;
  /** Jobs of the data set ÷ wall time. */
  keysPerSecond: number;
  peakRssMb: number | null;
  /** The child's user + system CPU, µs. */
  clientCpuUs: number | null;
  /** Where clientCpuUs and peakRssMb come from. */
  usageSource: 'resource-usage' | 'proc-poll' | 'none';
  /** used_cpu_sys + used_cpu_user deltas over the masters while the child ran, µs (null when measured by the caller). */
  redisCpuUs: number | null;
  clientCpuUsPerKey: number | null;
  redisCpuUsPerKey: number | null;
  exitCode: number | null;
  json: Record<string, unknown> | null;
  /** The last lines of stderr when the child failed. */
  stderrTail?: string;
}

/** The seed loop, measured in the same run. */
export interface SeedLoopRun {
  keys: number;
  ms: number;
  keysPerSecond: number;
  clientCpuUsPerKey: number;
  redisCpuUsPerKey: number;
}

/** Result of {@link runBackfillBench}. */
export interface BackfillBenchResult {
  mode: 'standalone' | 'cluster';
  masters: number;
  jobs: number;
  workspaces: number;
  loadMs: number;
  backfill: ChildRun;
  verify: ChildRun | null;
  seedLoop: SeedLoopRun | null;
  /** backfill keys/s ÷ seed loop keys/s (both wall-clock). */
  ratioToSeedLoop: number | null;
}

async function waitPing(port: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      return;
    } catch {
      r.disconnect();
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }
}

/** Throwaway Redis servers (all masters). */
export interface Servers {
  url: string;
  ports: number[];
  stop(): void;
}

/** Starts one server, or three masters made into a cluster. */
export async function startServers(cluster: boolean): Promise<Servers> {
  const count = cluster ? 3 : 1;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'orch-bench-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  for (let i = 0; i < count; i++) {
    // Cluster bus ports are port + 10000: keep the base low enough.
    let port = await freePort();
    while (cluster && port + 10000 > 65535) port = await freePort();
    const nodeDir = path.join(dir, String(port));
    spawnSync('mkdir', ['-p', nodeDir]);
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', nodeDir];
    if (cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000');
    children.push(spawn('redis-server', args, { stdio: 'ignore' }));
    ports.push(port);
  }
  const stop = (): void => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stop);
  await Promise.all(ports.map(waitPing));
  if (cluster) {
    const r = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${r.stderr}`);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await Promise.all(
        ports.map(async (p) => {
          const c = new Redis({ port: p, host: '127.0.0.1' });
          const info = await c.cluster('INFO');
          c.disconnect();
          return /cluster_state:ok/.test(info);
        }),
      );
      if (ok.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error('cluster not healthy');
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  return { url: `redis://127.0.0.1:${ports[0]}`, ports, stop };
}

/** A client of the servers. */
export function connect(s: Servers, cluster: boolean): Redis | Cluster {
  return cluster
    ? new Cluster([{ host: '127.0.0.1', port: s.ports[0]! }], { enableAutoPipelining: true })
    : new Redis({ host: '127.0.0.1', port: s.ports[0]! });
}

/** ~400 bytes in 10 fields, every value under 64 bytes (Redis' default listpack encoding). */
export function jobFields(i: number, workspaces: number): string[] {
  const created = new Date(1_700_000_000_000 + i * 37_000).toISOString();
  return [
    'job_id',
    `job-${i}`,
    'workspace_id',
    `ws-${i % workspaces}`,
    'action',
    'summarize_document',
    'params',
    `{"doc":"d-${i}","lang":"en","api_key":"sk-${(i * 7919) % 100000}"}`,
    'status',
    i % 4 === 0 ? 'succeeded' : 'queued',
    'result',
    i % 4 === 0 ? `{"summary":"s-${i}","tokens":${i % 900}}` : '',
    'error',
    '',
    'created_at',
    created,
    'updated_at',
    created,
    'rev',
    String(1 + (i % 5)),
  ];
}

/** Loads `jobs` legacy jobs with pipelines. */
export async function load(client: Redis | Cluster, jobs: number, workspaces: number): Promise<void> {
  const CHUNK = 2000;
  for (let start = 0; start < jobs; start += CHUNK * 4) {
    const batches: Array<Promise<unknown>> = [];
    for (let b = start; b < Math.min(jobs, start + CHUNK * 4); b += CHUNK) {
      const end = Math.min(jobs, b + CHUNK);
      if (client instanceof Cluster) {
        const ops: Array<Promise<unknown>> = [];
        for (let i = b; i < end; i++) {
          ops.push(client.hset(`${PREFIX}:jobs:job-${i}`, ...(jobFields(i, workspaces) as [string, string])));
          if (i % 10 === 0) ops.push(client.pexpire(`${PREFIX}:jobs:job-${i}`, 86_400_000 + i));
        }
        batches.push(Promise.all(ops));
      } else {
        const p = client.pipeline();
        for (let i = b; i < end; i++) {
          p.hset(`${PREFIX}:jobs:job-${i}`, ...(jobFields(i, workspaces) as [string, string]));
          if (i % 10 === 0) p.pexpire(`${PREFIX}:jobs:job-${i}`, 86_400_000 + i);
        }
        batches.push(p.exec());
      }
    }
    await Promise.all(batches);
  }
}

/** used_cpu_sys + used_cpu_user summed over the servers, µs. */
export async function redisCpuUs(ports: readonly number[]): Promise<number> {
  let total = 0;
  for (const port of ports) {
    const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    try {
      total += parseInfoCpuUs(await c.info('cpu'));
    } finally {
      c.disconnect();
    }
  }
  return total;
}

/** Options of {@link runCli}. */
interface RunCliOptions {
  servers: Servers;
  cluster: boolean;
  args: string[];
  /** Jobs of the data set (keys/s and the per-key figures). */
  jobs: number;
  /** Measure the Redis CPU delta around this child (false when several children run at once). */
  redisCpu?: boolean;
}

/** Runs the CLI as a child; see the module comment for what is measured and how. */
export async function runCli(opts: RunCliOptions): Promise<ChildRun & { stdout: string }> {
  const { servers, cluster, args, jobs } = opts;
  const cliArgs = ['--import', CHILD_USAGE, BIN, '--redis-url', servers.url, '--prefix', PREFIX, ...(cluster ? ['--cluster'] : []), ...args];
  const usageDir = mkdtempSync(path.join(os.tmpdir(), 'orch-bench-usage-'));
  const usageFile = path.join(usageDir, 'usage.json');
  const cpuBefore = opts.redisCpu === false ? null : await redisCpuUs(servers.ports);
  const started = performance.now();
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string; polled: { cpuUs: number | null; hwmKb: number | null } }>(
    (resolve, reject) => {
      const child = spawn(process.execPath, cliArgs, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, BENCH_CHILD_USAGE_FILE: usageFile } });
      let stdout = '';
      let stderr = '';
      const polled = { cpuUs: null as number | null, hwmKb: null as number | null };
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      // The fallback when the child dies before its exit handler: the last values the kernel showed.
      const poll = setInterval(() => {
        try {
          const t = parseProcStat(readFileSync(`/proc/${child.pid}/stat`, 'utf8'));
          polled.cpuUs = t.userUs + t.systemUs;
          const hwm = parseVmHwmKb(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
          if (hwm !== null) polled.hwmKb = Math.max(polled.hwmKb ?? 0, hwm);
        } catch {
          // exited
        }
      }, 50);
      child.on('error', (err) => {
        clearInterval(poll);
        reject(err);
      });
      child.on('close', (code) => {
        clearInterval(poll);
        resolve({ code, stdout, stderr, polled });
      });
    },
  );
  const wallMs = performance.now() - started;
  const cpuAfter = cpuBefore === null ? null : await redisCpuUs(servers.ports);
  let usageText: string | null;
  try {
    usageText = readFileSync(usageFile, 'utf8');
  } catch {
    usageText = null;
  }
  rmSync(usageDir, { recursive: true, force: true });
  const usage = parseChildUsage(usageText);
  let json: Record<string, unknown> | null;
  try {
    json = JSON.parse(run.stdout.trim()) as Record<string, unknown>;
  } catch {
    json = null;
  }
  const clientCpuUs = usage ? usage.userUs + usage.systemUs : run.polled.cpuUs;
  const peakKb = usage ? usage.maxRssKb : run.polled.hwmKb;
  const redisCpu = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
  return {
    wallMs: Math.round(wallMs),
    keysPerSecond: Math.round((jobs / wallMs) * 1000),
    peakRssMb: peakKb === null ? null : Math.round(peakKb / 1024),
    clientCpuUs,
    usageSource: usage ? 'resource-usage' : run.polled.cpuUs !== null ? 'proc-poll' : 'none',
    redisCpuUs: redisCpu,
    clientCpuUsPerKey: perKey(clientCpuUs, jobs),
    redisCpuUsPerKey: perKey(redisCpu, jobs),
    exitCode: run.code,
    json,
    ...(run.code === 0 ? {} : { stderrTail: run.stderr.split('\n').slice(-8).join('\n').slice(-2000) }),
    stdout: run.stdout,
  };
}

/** The seed document's backfill: SCAN, then HGETALL each key and HSET the new key, one awaited call at a time. */
async function seedLoop(client: Redis, ports: readonly number[], keys: number): Promise<SeedLoopRun> {
  const cpu0 = await redisCpuUs(ports);
  const own0 = process.cpuUsage();
  const started = performance.now();
  let cursor = '0';
  let n = 0;
  outer: do {
    const [next, found] = await client.scan(cursor, 'MATCH', `${PREFIX}:jobs:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      const h = await client.hgetall(key);
      await client.hset(`seedloop:job:${h.workspace_id}:${h.job_id}`, h);
      if (++n >= keys) break outer;
    }
  } while (cursor !== '0');
  const ms = performance.now() - started;
  const own = process.cpuUsage(own0);
  const redis = (await redisCpuUs(ports)) - cpu0;
  return {
    keys: n,
    ms: Math.round(ms),
    keysPerSecond: Math.round((n / ms) * 1000),
    clientCpuUsPerKey: perKey(own.user + own.system, n) ?? 0,
    redisCpuUsPerKey: perKey(redis, n) ?? 0,
  };
}

/** Loads, backfills and verifies on a throwaway server; see the module header. */
export async function runBackfillBench(opts: BackfillBenchOptions): Promise<BackfillBenchResult> {
  const cluster = opts.cluster ?? false;
  const log = opts.log ?? (() => undefined);
  const servers = await startServers(cluster);
  const client = connect(servers, cluster);
  try {
    log(`${cluster ? 'cluster' : 'standalone'}: loading ${opts.jobs} jobs…`);
    const t0 = Date.now();
    await load(client, opts.jobs, opts.workspaces);
    const loadMs = Date.now() - t0;
    const edw = await runCli({ servers, cluster, jobs: opts.jobs, args: ['--json', 'enable-dual-write', '--reason', 'bench', '--settle-ms', '100'] });
    if (edw.exitCode !== 0) throw new Error(`enable-dual-write failed: ${edw.stdout}${edw.stderrTail ?? ''}`);
    await new Promise((r) => setTimeout(r, 150));
    log(`${cluster ? 'cluster' : 'standalone'}: backfill…`);
    const backfill = await runCli({ servers, cluster, jobs: opts.jobs, args: ['--json', 'backfill'] });
    if (backfill.exitCode !== 0) throw new Error(`backfill exited ${String(backfill.exitCode)}: ${backfill.stdout.slice(0, 500)}${backfill.stderrTail ?? ''}`);
    let verify: ChildRun | null = null;
    if (!opts.skipVerify) {
      log(`${cluster ? 'cluster' : 'standalone'}: verify…`);
      verify = strip(await runCli({ servers, cluster, jobs: opts.jobs, args: ['--json', 'verify', '--rounds', '3', '--round-delay', '100ms'] }));
    }
    let seed: SeedLoopRun | null = null;
    const seedKeys = opts.seedLoopKeys ?? Math.min(opts.jobs, 100_000);
    if (!cluster && seedKeys > 0) {
      log(`seed loop on ${seedKeys} keys…`);
      seed = await seedLoop(client as Redis, servers.ports, seedKeys);
    }
    return {
      mode: cluster ? 'cluster' : 'standalone',
      masters: servers.ports.length,
      jobs: opts.jobs,
      workspaces: opts.workspaces,
      loadMs,
      backfill: strip(backfill),
      verify,
      seedLoop: seed,
      ratioToSeedLoop: seed ? Math.round((backfill.keysPerSecond / seed.keysPerSecond) * 10) / 10 : null,
    };
  } finally {
    client.disconnect();
    servers.stop();
  }
}

/** Result of {@link runShardsBench}. */
export interface ShardsBenchResult {
  jobs: number;
  masters: number;
  /** False when the CLI refused the second shard (exit 4: shards cannot yet run at once). */
  available: boolean;
  /** Why not, when not available or failed. */
  note: string | null;
  shards: ChildRun[];
  /** From the start of both to the end of the last. */
  wallMs: number;
  /** Jobs ÷ wall time of the two together. */
  keysPerSecond: number;
  clientCpuUsPerKey: number | null;
  redisCpuUsPerKey: number | null;
  /** Sum of the shards' `scanned`. */
  scanned: number | null;
  verify: ChildRun | null;
  /** Both exited 0 and verify found nothing missing or different. */
  clean: boolean;
}

/** `backfill --shard 0/2` and `--shard 1/2` at once on a fresh 3-master cluster, then verify. */
export async function runShardsBench(opts: { jobs: number; workspaces: number; log?: (line: string) => void }): Promise<ShardsBenchResult> {
  const log = opts.log ?? (() => undefined);
  const servers = await startServers(true);
  const client = connect(servers, true);
  try {
    log(`shards: loading ${opts.jobs} jobs on a 3-master cluster…`);
    await load(client, opts.jobs, opts.workspaces);
    const edw = await runCli({ servers, cluster: true, jobs: opts.jobs, args: ['--json', 'enable-dual-write', '--reason', 'bench', '--settle-ms', '100'] });
    if (edw.exitCode !== 0) throw new Error(`enable-dual-write failed: ${edw.stdout}${edw.stderrTail ?? ''}`);
    await new Promise((r) => setTimeout(r, 150));
    log('shards: backfill --shard 0/2 and --shard 1/2 at once…');
    const cpu0 = await redisCpuUs(servers.ports);
    const started = performance.now();
    const shards = await Promise.all(
      ['0/2', '1/2'].map((s) => runCli({ servers, cluster: true, jobs: opts.jobs, redisCpu: false, args: ['--json', 'backfill', '--shard', s] })),
    );
    const wallMs = Math.round(performance.now() - started);
    const redisCpu = (await redisCpuUs(servers.ports)) - cpu0;
    const locked = shards.find((r) => r.exitCode === EXIT_LOCKED);
    const failed = shards.find((r) => r.exitCode !== 0);
    const message = (r: ChildRun): string => {
      const err = r.json?.error;
      const text =
        typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string'
          ? (err as { message: string }).message
          : ((r.stderrTail ?? '').trim().split('\n').pop() ?? '');
      return `exit ${String(r.exitCode)}${text ? `: ${text.slice(0, 200)}` : ''}`;
    };
    let verify: ChildRun | null = null;
    if (!failed) {
      log('shards: verify…');
      verify = strip(await runCli({ servers, cluster: true, jobs: opts.jobs, args: ['--json', 'verify', '--rounds', '3', '--round-delay', '100ms'] }));
    }
    const cpuSum = shards.every((r) => r.clientCpuUs !== null) ? shards.reduce((a, r) => a + r.clientCpuUs!, 0) : null;
    const scanned = shards.every((r) => typeof r.json?.scanned === 'number') ? shards.reduce((a, r) => a + (r.json!.scanned as number), 0) : null;
    return {
      jobs: opts.jobs,
      masters: servers.ports.length,
      available: locked === undefined,
      note: locked ? `the CLI refused one shard while the other ran (${message(locked)})` : failed ? `a shard failed (${message(failed)})` : null,
      shards: shards.map(strip),
      wallMs,
      keysPerSecond: Math.round((opts.jobs / wallMs) * 1000),
      clientCpuUsPerKey: perKey(cpuSum, opts.jobs),
      redisCpuUsPerKey: perKey(redisCpu, opts.jobs),
      scanned,
      verify,
      clean: !failed && verify !== null && verify.exitCode === 0 && verify.json?.ok === true && verify.json.mismatches === 0,
    };
  } finally {
    client.disconnect();
    servers.stop();
  }
}

function strip(r: ChildRun & { stdout?: string }): ChildRun {
  const { stdout: _s, ...rest } = r;
  return rest;
}
