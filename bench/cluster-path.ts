/**
 * CPU per key of the batch paths (backfill, cleanup --execute, reverse
 * backfill by rollback) on one node and on a 3-master cluster, in one run
 * (issue 13 item 4). Wall-clock scaling across masters cannot show on a
 * 2-core machine, so it reports:
 *  - client CPU µs per key: the CLI child's user+sys CPU (`/usr/bin/time`),
 *    minus the same command on an empty keyspace (process start, connect,
 *    gates, settle), divided by the keys;
 *  - Redis CPU µs per key: used_cpu_user + used_cpu_sys deltas of INFO cpu,
 *    summed over the masters, divided by the keys.
 *
 * The cluster runs once per path named by --paths: `cross-slot` (the default:
 * one cross-slot script per master per step on Redis 7+) and `per-key` (the
 * fallback, forced with ORCH_CLUSTER_PER_KEY=1; src/ops/cluster-batch.ts), each
 * on fresh servers.
 *
 *   node dist/bench/cluster-path.js [--jobs 100000] [--workspaces 50] [--only standalone|cluster] [--paths cross-slot,per-key]
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { PER_KEY_ENV } from '../src/ops/cluster-batch.js';
import { connect, load, startServers, type Servers } from './backfill.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'orch-migrate');
/** The loaded keyspace (bench/backfill.ts `load` writes under `ai`) and an empty one for the fixed cost. */
const LOADED = 'ai';
const EMPTY = 'ez';

interface CpuRun {
  code: number | null;
  cpuMs: number;
  wallMs: number;
  stdout: string;
}

/** Runs the CLI under /usr/bin/time, returning its user+sys CPU. */
function cli(url: string, cluster: boolean, prefix: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CpuRun> {
  const argv = ['-f', 'CPUTIMES %U %S', process.execPath, BIN, '--redis-url', url, '--prefix', prefix, ...(cluster ? ['--cluster'] : []), ...args];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const m = /CPUTIMES ([0-9.]+) ([0-9.]+)/.exec(stderr);
      if (!m) return reject(new Error(`no CPU times: ${stderr.slice(-500)}`));
      resolve({ code, cpuMs: (Number(m[1]) + Number(m[2])) * 1000, wallMs: Date.now() - started, stdout });
    });
  });
}

/** used_cpu_user + used_cpu_sys of every master, summed, in ms. */
async function redisCpuMs(ports: number[]): Promise<number> {
  let sum = 0;
  for (const port of ports) {
    const r = new Redis({ port, host: '127.0.0.1' });
    const info = await r.info('cpu');
    r.disconnect();
    const user = /used_cpu_user:([0-9.]+)/.exec(info);
    const sys = /used_cpu_sys:([0-9.]+)/.exec(info);
    sum += (Number(user?.[1] ?? 0) + Number(sys?.[1] ?? 0)) * 1000;
  }
  return sum;
}

/** Figures of one step. */
export interface StepFigures {
  step: string;
  keys: number;
  wallMs: number;
  keysPerSecond: number;
  clientCpuUsPerKey: number;
  /** Fixed CPU of the same command on an empty keyspace (subtracted above). */
  fixedClientCpuMs: number;
  redisCpuUsPerKey: number;
}

async function step(
  s: Servers,
  cluster: boolean,
  name: string,
  args: string[],
  keysOf: (json: Record<string, unknown>) => number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<StepFigures> {
  const empty = await cli(s.url, cluster, EMPTY, args, env);
  if (empty.code !== 0) throw new Error(`${name} on the empty keyspace exited ${String(empty.code)}: ${empty.stdout.slice(0, 400)}`);
  const before = await redisCpuMs(s.ports);
  const run = await cli(s.url, cluster, LOADED, args, env);
  const redisMs = (await redisCpuMs(s.ports)) - before;
  if (run.code !== 0) throw new Error(`${name} exited ${String(run.code)}: ${run.stdout.slice(0, 400)}`);
  const keys = keysOf(JSON.parse(run.stdout.trim()) as Record<string, unknown>);
  const per = (ms: number): number => Math.round(((ms * 1000) / Math.max(1, keys)) * 10) / 10;
  return {
    step: name,
    keys,
    wallMs: run.wallMs,
    keysPerSecond: Math.round((keys / run.wallMs) * 1000),
    clientCpuUsPerKey: per(run.cpuMs - empty.cpuMs),
    fixedClientCpuMs: Math.round(empty.cpuMs),
    redisCpuUsPerKey: per(redisMs),
  };
}

async function both(s: Servers, cluster: boolean, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  for (const prefix of [EMPTY, LOADED]) {
    const r = await cli(s.url, cluster, prefix, args, env);
    if (r.code !== 0) throw new Error(`${args.join(' ')} (${prefix}) exited ${String(r.code)}: ${r.stdout.slice(0, 400)}`);
  }
}

/** Runs the three batch paths on one topology. */
export async function runClusterPathBench(opts: {
  jobs: number;
  workspaces: number;
  cluster: boolean;
  /** Force the per-key path of the cluster (ORCH_CLUSTER_PER_KEY=1). */
  perKey?: boolean;
  log?: (l: string) => void;
}): Promise<StepFigures[]> {
  const log = opts.log ?? (() => undefined);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (opts.perKey) env[PER_KEY_ENV] = '1';
  else delete env[PER_KEY_ENV];
  const s = await startServers(opts.cluster);
  const client = connect(s, opts.cluster);
  try {
    log(`${opts.cluster ? 'cluster' : 'standalone'}: loading ${opts.jobs} jobs`);
    await load(client, opts.jobs, opts.workspaces);
    await both(s, opts.cluster, ['--json', 'enable-dual-write', '--reason', 'bench', '--settle-ms', '100'], env);
    await new Promise((r) => setTimeout(r, 150));
    const out: StepFigures[] = [];
    out.push(await step(s, opts.cluster, 'backfill', ['--json', 'backfill'], (j) => Number(j.scanned), env));
    log(JSON.stringify(out.at(-1)));
    // Per job (the report's unit): verify's own `scanned` counts both layouts.
    out.push(
      await step(
        s,
        opts.cluster,
        'verify',
        ['--json', 'verify', '--rounds', '3', '--round-delay', '100ms'],
        (j) => {
          if (j.ok !== true || j.mismatches !== 0) throw new Error(`verify was not clean: ${JSON.stringify(j).slice(0, 400)}`);
          return opts.jobs;
        },
        env,
      ),
    );
    log(JSON.stringify(out.at(-1)));
    await both(s, opts.cluster, ['--json', 'flip-read', '--reason', 'bench'], env);
    await both(s, opts.cluster, ['--json', 'verify', '--round-delay', '50ms'], env);
    out.push(
      await step(
        s,
        opts.cluster,
        'cleanup --execute',
        ['--json', 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'bench'],
        (j) => Number((j.counts as { scanned?: number } | undefined)?.scanned ?? j.scanned),
        env,
      ),
    );
    log(JSON.stringify(out.at(-1)));
    out.push(
      await step(
        s,
        opts.cluster,
        'reverse backfill (rollback)',
        ['--json', 'rollback', '--execute', '--reason', 'bench'],
        (j) => Number((j.reverseBackfill as { scanned?: number } | undefined)?.scanned ?? 0),
        env,
      ),
    );
    log(JSON.stringify(out.at(-1)));
    return out;
  } finally {
    client.disconnect();
    s.stop();
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flag = (name: string, dflt: string): string => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
  };
  const jobs = Number(flag('--jobs', '100000'));
  const workspaces = Number(flag('--workspaces', '50'));
  const only = flag('--only', '');
  const paths = flag('--paths', 'cross-slot').split(',');
  for (const p of paths) if (p !== 'cross-slot' && p !== 'per-key') throw new Error(`--paths: cross-slot and/or per-key, got ${p}`);
  const log = (l: string): void => void process.stderr.write(`${l}\n`);
  const rows: Array<StepFigures & { mode: string }> = [];
  if (only === '' || only === 'standalone')
    for (const f of await runClusterPathBench({ jobs, workspaces, cluster: false, log })) rows.push({ mode: 'one node', ...f });
  if (only === '' || only === 'cluster')
    for (const p of paths)
      for (const f of await runClusterPathBench({ jobs, workspaces, cluster: true, perKey: p === 'per-key', log }))
        rows.push({ mode: `cluster (3 masters, ${p})`, ...f });
  process.stdout.write(
    '| topology | step | keys | wall s | keys/s | client CPU µs/key | Redis CPU µs/key (all masters) | fixed client CPU ms |\n|---|---|---|---|---|---|---|---|\n',
  );
  for (const r of rows) {
    process.stdout.write(
      `| ${r.mode} | ${r.step} | ${r.keys} | ${(r.wallMs / 1000).toFixed(1)} | ${r.keysPerSecond} | ${r.clientCpuUsPerKey} | ${r.redisCpuUsPerKey} | ${r.fixedClientCpuMs} |\n`,
    );
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
