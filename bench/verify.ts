/**
 * Verify against backfill on the same data, side by side in one run: wall
 * time, Redis CPU per job (INFO cpu deltas, all masters summed), the CLI's
 * CPU per job (its own resource usage, bench/child-usage.ts), and where Redis spent it (INFO commandstats
 * usec deltas, after CONFIG RESETSTAT).
 *
 *   node dist/bench/verify.js [--jobs N] [--workspaces W] [--cluster]
 *
 * The machine may be shared: compare the ratios of one run, not absolute figures.
 */
import { Cluster, Redis } from 'ioredis';
import { connect, load, runCli, startServers, type ChildRun, type Servers } from './backfill.js';

/** One timed run with its Redis-side cost. */
export interface CostedRun {
  wallMs: number;
  /** Redis CPU (used_cpu_sys + used_cpu_user) in ms, all masters. */
  redisCpuMs: number;
  /** The CLI's CPU in ms (null without /usr/bin/time). */
  clientCpuMs: number | null;
  peakRssMb: number | null;
  /** usec per command (commandstats), all masters. */
  commands: Record<string, { calls: number; usec: number }>;
  exitCode: number | null;
  json: Record<string, unknown> | null;
}

/** Result of {@link runVerifyBench}. */
export interface VerifyBenchResult {
  mode: 'standalone' | 'cluster';
  jobs: number;
  backfill: CostedRun;
  verify: CostedRun;
}

function nodesOf(s: Servers): Redis[] {
  return s.ports.map((port) => new Redis({ host: '127.0.0.1', port }));
}

async function redisCpuMs(nodes: Redis[]): Promise<number> {
  let total = 0;
  for (const n of nodes) {
    const info = await n.info('cpu');
    const sys = /used_cpu_sys:([0-9.]+)/.exec(info);
    const user = /used_cpu_user:([0-9.]+)/.exec(info);
    total += (Number(sys?.[1] ?? 0) + Number(user?.[1] ?? 0)) * 1000;
  }
  return total;
}

async function commandStats(nodes: Redis[]): Promise<Record<string, { calls: number; usec: number }>> {
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const n of nodes) {
    const info = await n.info('commandstats');
    for (const m of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+),usec=(\d+)/gm)) {
      const row = (out[m[1]!] ??= { calls: 0, usec: 0 });
      row.calls += Number(m[2]);
      row.usec += Number(m[3]);
    }
  }
  return out;
}

async function costed(nodes: Redis[], run: () => Promise<ChildRun>): Promise<CostedRun> {
  await Promise.all(nodes.map((n) => n.config('RESETSTAT')));
  const cpu0 = await redisCpuMs(nodes);
  const r = await run();
  const cpu1 = await redisCpuMs(nodes);
  return {
    wallMs: r.wallMs,
    redisCpuMs: Math.round(cpu1 - cpu0),
    clientCpuMs: r.clientCpuUs === null ? null : r.clientCpuUs / 1000,
    peakRssMb: r.peakRssMb,
    commands: await commandStats(nodes),
    exitCode: r.exitCode,
    json: r.json,
  };
}

/** Loads `jobs`, then costs backfill and verify on the same data. */
export async function runVerifyBench(opts: { jobs: number; workspaces: number; cluster?: boolean; log?: (l: string) => void }): Promise<VerifyBenchResult> {
  const cluster = opts.cluster ?? false;
  const log = opts.log ?? (() => undefined);
  const servers = await startServers(cluster);
  const client: Redis | Cluster = connect(servers, cluster);
  const nodes = nodesOf(servers);
  try {
    log(`loading ${opts.jobs} jobs…`);
    await load(client, opts.jobs, opts.workspaces);
    const cli = (args: string[]) => runCli({ servers, cluster, args, jobs: opts.jobs, redisCpu: false });
    const edw = await cli(['--json', 'enable-dual-write', '--reason', 'bench', '--settle-ms', '100']);
    if (edw.exitCode !== 0) throw new Error(`enable-dual-write failed: ${edw.stdout}`);
    log('backfill…');
    const backfill = await costed(nodes, () => cli(['--json', 'backfill']));
    log('verify…');
    const verify = await costed(nodes, () => cli(['--json', 'verify', '--rounds', '3', '--round-delay', '100ms']));
    return { mode: cluster ? 'cluster' : 'standalone', jobs: opts.jobs, backfill, verify };
  } finally {
    client.disconnect();
    for (const n of nodes) n.disconnect();
    servers.stop();
  }
}

/** A markdown table of one result: per job, and the top commands by Redis time. */
export function verifyBenchTable(r: VerifyBenchResult): string {
  const per = (ms: number | null): string => (ms === null ? 'n/a' : ((ms * 1000) / r.jobs).toFixed(1));
  const row = (name: string, c: CostedRun): string =>
    `| ${name} | ${(c.wallMs / 1000).toFixed(1)} | ${Math.round(r.jobs / (c.wallMs / 1000)).toLocaleString('en-US')} | ${per(c.redisCpuMs)} | ${per(c.clientCpuMs)} | ${c.peakRssMb ?? 'n/a'} | ${c.exitCode} |`;
  const top = (c: CostedRun): string =>
    Object.entries(c.commands)
      .filter(([k]) => !['info', 'config|resetstat', 'config'].includes(k))
      .sort((a, b) => b[1].usec - a[1].usec)
      .slice(0, 8)
      .map(([k, v]) => `${k} ${((v.usec / r.jobs) * 1).toFixed(1)} µs/job (${v.calls} calls)`)
      .join('; ');
  return [
    `${r.mode}, ${r.jobs.toLocaleString('en-US')} jobs`,
    '',
    '| run | wall s | jobs/s | Redis CPU µs/job | client CPU µs/job | peak RSS MB | exit |',
    '|---|---:|---:|---:|---:|---:|---:|',
    row('backfill', r.backfill),
    row('verify', r.verify),
    '',
    `verify/backfill: wall ${(r.verify.wallMs / r.backfill.wallMs).toFixed(2)}×, Redis CPU ${(r.verify.redisCpuMs / r.backfill.redisCpuMs).toFixed(2)}×`,
    '',
    `backfill commandstats: ${top(r.backfill)}`,
    `verify commandstats: ${top(r.verify)}`,
  ].join('\n');
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const argv = process.argv.slice(2);
  const num = (flag: string, dflt: number): number => {
    const i = argv.indexOf(flag);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  const result = await runVerifyBench({
    jobs: num('--jobs', 200_000),
    workspaces: num('--workspaces', 200),
    cluster: argv.includes('--cluster'),
    log: (l) => console.error(l),
  });
  console.log(verifyBenchTable(result));
}
