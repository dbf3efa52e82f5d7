/**
 * Backfill and verify as a user runs them, on a throwaway Redis:
 *
 * 1. spawns `redis-server --port <free> --save '' --appendonly no` (or a
 *    3-master cluster), killed at the end;
 * 2. loads N legacy jobs (10-field hashes of ~400 bytes, `workspaces`
 *    workspaces, ~10% with a TTL) with pipelining;
 * 3. runs `node bin/orch-migrate … enable-dual-write`, then `backfill --json`
 *    and `verify --json` as child processes, measuring wall time and the
 *    child's peak RSS (`/usr/bin/time -v` when present, else VmHWM polling);
 * 4. times the seed's per-key loop (SCAN, then HGETALL each key, then HSET the
 *    new key, one awaited call at a time) on a subset, for the ratio.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { freePort } from '../src/cli/demo/throwaway-redis.js';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, Redis } from 'ioredis';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'orch-migrate');
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
  keysPerSecond: number;
  peakRssMb: number | null;
  exitCode: number | null;
  json: Record<string, unknown> | null;
}

/** Result of {@link runBackfillBench}. */
export interface BackfillBenchResult {
  mode: 'standalone' | 'cluster';
  jobs: number;
  workspaces: number;
  loadMs: number;
  backfill: ChildRun;
  verify: ChildRun | null;
  seedLoop: { keys: number; ms: number; keysPerSecond: number } | null;
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

export interface Servers {
  url: string;
  ports: number[];
  stop(): void;
}

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
    const r = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
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

export function connect(s: Servers, cluster: boolean): Redis | Cluster {
  return cluster
    ? new Cluster([{ host: '127.0.0.1', port: s.ports[0]! }], { enableAutoPipelining: true })
    : new Redis({ host: '127.0.0.1', port: s.ports[0]! });
}

/** ~400 bytes in 10 fields, every value under 64 bytes (Redis' default listpack encoding). */
function jobFields(i: number, workspaces: number): string[] {
  const created = new Date(1_700_000_000_000 + i * 37_000).toISOString();
  return [
    'job_id', `job-${i}`,
    'workspace_id', `ws-${i % workspaces}`,
    'action', 'summarize_document',
    'params', `{"doc":"d-${i}","lang":"en","api_key":"sk-${(i * 7919) % 100000}"}`,
    'status', i % 4 === 0 ? 'succeeded' : 'queued',
    'result', i % 4 === 0 ? `{"summary":"s-${i}","tokens":${i % 900}}` : '',
    'error', '',
    'created_at', created,
    'updated_at', created,
    'rev', String(1 + (i % 5)),
  ];
}

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

const TIME_BIN = '/usr/bin/time';

/** Runs the CLI as a child, measuring wall time and peak RSS. */
function runCli(url: string, cluster: boolean, args: string[]): Promise<ChildRun & { stdout: string }> {
  const cliArgs = [BIN, '--redis-url', url, '--prefix', PREFIX, ...(cluster ? ['--cluster'] : []), ...args];
  const useTime = existsSync(TIME_BIN);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = useTime
      ? spawn(TIME_BIN, ['-v', process.execPath, ...cliArgs], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, cliArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hwmKb = 0;
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // Without /usr/bin/time: poll VmHWM (the kernel's own peak) until the child exits.
    const poll = useTime
      ? null
      : setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
            if (m) hwmKb = Math.max(hwmKb, Number(m[1]));
          } catch {
            // exited
          }
        }, 20);
    child.on('error', reject);
    child.on('close', (code) => {
      if (poll) clearInterval(poll);
      const wallMs = Date.now() - started;
      const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr);
      if (m) hwmKb = Number(m[1]);
      let json: Record<string, unknown> | null;
      try {
        json = JSON.parse(stdout.trim()) as Record<string, unknown>;
      } catch {
        json = null;
      }
      const scanned = typeof json?.scanned === 'number' ? json.scanned : 0;
      resolve({
        wallMs,
        keysPerSecond: Math.round((scanned / wallMs) * 1000),
        peakRssMb: hwmKb > 0 ? Math.round(hwmKb / 1024) : null,
        exitCode: code,
        json,
        stdout,
      });
    });
  });
}

/** The seed document's backfill: SCAN, then HGETALL each key and HSET the new key, one awaited call at a time. */
async function seedLoop(client: Redis, keys: number): Promise<{ keys: number; ms: number; keysPerSecond: number }> {
  const started = Date.now();
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
  const ms = Date.now() - started;
  return { keys: n, ms, keysPerSecond: Math.round((n / ms) * 1000) };
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
    const edw = await runCli(servers.url, cluster, ['--json', 'enable-dual-write', '--reason', 'bench', '--settle-ms', '100']);
    if (edw.exitCode !== 0) throw new Error(`enable-dual-write failed: ${edw.stdout}`);
    await new Promise((r) => setTimeout(r, 150));
    log('backfill…');
    const backfill = await runCli(servers.url, cluster, ['--json', 'backfill']);
    if (backfill.exitCode !== 0) throw new Error(`backfill exited ${String(backfill.exitCode)}: ${backfill.stdout.slice(0, 500)}`);
    let verify: ChildRun | null = null;
    if (!opts.skipVerify) {
      log('verify…');
      verify = await runCli(servers.url, cluster, ['--json', 'verify', '--rounds', '3', '--round-delay', '100ms']);
      // verify's `scanned` counts both layouts; keys/s is per record checked.
    }
    let seed: BackfillBenchResult['seedLoop'] = null;
    const seedKeys = opts.seedLoopKeys ?? Math.min(opts.jobs, 100_000);
    if (!cluster && seedKeys > 0) {
      log(`seed loop on ${seedKeys} keys…`);
      seed = await seedLoop(client as Redis, seedKeys);
    }
    return {
      mode: cluster ? 'cluster' : 'standalone',
      jobs: opts.jobs,
      workspaces: opts.workspaces,
      loadMs,
      backfill: strip(backfill),
      verify: verify ? strip(verify) : null,
      seedLoop: seed,
      ratioToSeedLoop: seed ? Math.round((backfill.keysPerSecond / seed.keysPerSecond) * 10) / 10 : null,
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
