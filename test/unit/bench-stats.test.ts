import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { benchConfig } from '../../bench/config.js';
import {
  checkTarget,
  enqueueTargetRows,
  evaluateTarget,
  findLatencyRows,
  latencyFigures,
  machineIdle,
  parseChildUsage,
  parseInfoCpuUs,
  parseProcStat,
  parseVmHwmKb,
  percentile,
  perKey,
  targetsTable,
} from '../../bench/stats.js';

describe('bench: parsers of what the kernel, Redis and the child wrapper report', () => {
  it('reads utime and stime from /proc/<pid>/stat, counting fields after the last ")" of the command name', () => {
    // A command name with spaces and parentheses must not shift the fields.
    const line = '4242 (node (bench) x) S 1 4242 4242 0 -1 4194560 12345 0 0 0 731 42 0 0 20 0 11 0 1234 1000000 5000 18446744073709551615';
    expect(parseProcStat(line)).toEqual({ userUs: 7_310_000, systemUs: 420_000 });
    expect(parseProcStat(line, 1000)).toEqual({ userUs: 731_000, systemUs: 42_000 });
    expect(() => parseProcStat('garbage')).toThrow(/no "\)"/);
    expect(() => parseProcStat('1 (x) S 1')).toThrow(/utime/);
  });

  it('reads the real /proc/self/stat of this process', () => {
    const t = parseProcStat(readFileSync('/proc/self/stat', 'utf8'));
    expect(t.userUs + t.systemUs).toBeGreaterThan(0);
  });

  it('reads VmHWM in kB, null when absent', () => {
    expect(parseVmHwmKb('Name:\tnode\nVmPeak:\t  999 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 100 kB\n')).toBe(123456);
    expect(parseVmHwmKb('Name:\tnode\n')).toBeNull();
  });

  it('sums used_cpu_sys and used_cpu_user of INFO cpu in whole µs (CRLF lines)', () => {
    const info =
      '# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:2.000001\r\nused_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\nused_cpu_sys_main_thread:1.000000\r\n';
    expect(parseInfoCpuUs(info)).toBe(3_250_001);
    expect(() => parseInfoCpuUs('# CPU\r\nused_cpu_sys:1.0\r\n')).toThrow(/used_cpu_user/);
  });

  it('accepts the child-usage file only when complete', () => {
    expect(parseChildUsage('{"userUs":10,"systemUs":5,"maxRssKb":2048}')).toEqual({ userUs: 10, systemUs: 5, maxRssKb: 2048 });
    expect(parseChildUsage(null)).toBeNull();
    expect(parseChildUsage('{"userUs":10,"systemUs":5}')).toBeNull();
    expect(parseChildUsage('{"userUs":-1,"systemUs":5,"maxRssKb":1}')).toBeNull();
    expect(parseChildUsage('{"userUs":1,')).toBeNull();
  });
});

describe('bench: figures', () => {
  it('takes nearest-rank percentiles', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 0.5)).toBe(50);
    expect(percentile(xs, 0.99)).toBe(99);
    expect(percentile(xs, 1)).toBe(100);
    expect(percentile([], 0.5)).toBe(0);
    expect(latencyFigures([3, 1, 2])).toEqual({ n: 3, p50Us: 2, p99Us: 3, meanUs: 2 });
  });

  it('divides per key, null when unknown or no keys', () => {
    expect(perKey(1_000_000, 3)).toBe(333333.33);
    expect(perKey(null, 3)).toBeNull();
    expect(perKey(5, 0)).toBeNull();
  });

  it('calls a machine idle only when the 1-minute load is at most a quarter of its cores', () => {
    expect(machineIdle(0.4, 2)).toBe(true);
    expect(machineIdle(0.6, 2)).toBe(false);
    expect(machineIdle(1.9, 8)).toBe(true);
  });
});

describe('bench: targets', () => {
  it('evaluates ≤ and ≥ bounds on the exact ratio', () => {
    const max = evaluateTarget({ name: 'p50 vs direct', measured: 200, baseline: 100, bound: 'max', limit: 2, unit: 'µs' });
    expect(max).toMatchObject({ ratio: 2, verdict: 'PASS' });
    expect(evaluateTarget({ name: 'x', measured: 200.5, baseline: 100, bound: 'max', limit: 2, unit: 'µs' }).verdict).toBe('FAIL');
    expect(evaluateTarget({ name: 'x', measured: 59, baseline: 100, bound: 'min', limit: 0.6, unit: 'req/s' })).toMatchObject({ ratio: 0.59, verdict: 'FAIL' });
    expect(evaluateTarget({ name: 'x', measured: 60, baseline: 100, bound: 'min', limit: 0.6, unit: 'req/s' }).verdict).toBe('PASS');
  });

  it('says N/A, never PASS, when a side is missing, zero or unavailable', () => {
    expect(evaluateTarget({ name: 'x', measured: null, baseline: 1, bound: 'max', limit: 1, unit: '' }).verdict).toBe('N/A');
    expect(evaluateTarget({ name: 'x', measured: 1, baseline: 0, bound: 'max', limit: 1, unit: '' }).verdict).toBe('N/A');
    expect(evaluateTarget({ name: 'x', measured: 1, baseline: 1, bound: 'max', limit: 1, unit: '', unavailable: 'api not run' }).verdict).toBe('N/A');
    expect(checkTarget('shards', null, 'refused', 'exit 4').verdict).toBe('N/A');
    expect(checkTarget('shards', true, 'clean').verdict).toBe('PASS');
    expect(checkTarget('shards', false, 'dirty').verdict).toBe('FAIL');
  });

  it('prints one table row per target with its ratio, bound and verdict', () => {
    const table = targetsTable([
      evaluateTarget({ name: 'api p50', measured: 300, baseline: 100, bound: 'max', limit: 2, unit: 'µs' }),
      checkTarget('two shards', null, 'refused', 'not available: exit 4'),
    ]);
    const rows = table.split('\n');
    expect(rows).toHaveLength(4);
    expect(rows[2]).toBe('| api p50 | 300 µs | 100 µs | 3× | ≤ 2× | **FAIL** |');
    expect(rows[3]).toContain('N/A (not available: exit 4)');
  });
});

describe('bench: enqueue rows of any shape', () => {
  it('finds the seed single write and the queue core phases in the current array shape', () => {
    const rows = findLatencyRows([
      { variant: 'queue core, legacy', ops: 5, p50Us: 229, p99Us: 976, meanUs: 266 },
      { variant: 'queue core, dual-write (primary + apply-if-newer mirror)', p50Us: 377, p99Us: 2581 },
      { variant: 'queue core, new-only', p50Us: 143, p99Us: 344 },
      { variant: 'seed Pattern 1 dual-write (3 round trips)', p50Us: 109, p99Us: 554 },
      { variant: 'seed single write (2 round trips)', p50Us: 66, p99Us: 109 },
    ]);
    const t = enqueueTargetRows(rows);
    expect(t.seedSingle?.p50Us).toBe(66);
    expect(t.legacy?.p50Us).toBe(229);
    expect(t.dualWrite?.p50Us).toBe(377);
    expect(t.newOnly?.p50Us).toBe(143);
  });

  it('reads a nested shape with other field names, preferring single-node rows over cluster ones', () => {
    const rows = findLatencyRows({
      standalone: {
        rows: [
          { name: 'seed single write', p50: 70, p99: 100 },
          { name: 'dual-write', p50: 80 },
        ],
      },
      cluster: [{ topology: 'cluster', name: 'dual-write', p50: 300 }],
      profile: { note: 'no figures here' },
    });
    const t = enqueueTargetRows(rows);
    expect(t.seedSingle).toMatchObject({ p50Us: 70, p99Us: 100 });
    expect(t.dualWrite?.p50Us).toBe(80);
    expect(t.legacy).toBeNull();
    expect(rows.some((r) => r.label.includes('cluster') && r.p50Us === 300)).toBe(true);
  });

  it('finds nothing in a shape without latency figures', () => {
    expect(findLatencyRows({ ok: true, note: 'x' })).toEqual([]);
    expect(findLatencyRows(null)).toEqual([]);
  });
});

describe('bench: sizes from the environment', () => {
  it('defaults to the issue sizes, and BENCH_QUICK to smoke sizes', () => {
    const full = benchConfig({});
    expect(full).toMatchObject({ quick: false, jobs: 1_000_000, clusterJobs: 1_000_000, shardJobs: 1_000_000, apiDurationSec: 10 });
    const quick = benchConfig({ BENCH_QUICK: '1' });
    expect(quick.quick).toBe(true);
    expect(quick.jobs).toBeLessThan(100_000);
    expect(quick.guardJobs).toBe(0);
  });

  it('reads overrides (underscores allowed) and refuses bad values', () => {
    const c = benchConfig({ BENCH_JOBS: '2_000_000', BENCH_CLUSTER_JOBS: '50000', BENCH_SKIP: 'guards, api-paths', BENCH_SIZES: '100000,5000000' });
    expect(c.jobs).toBe(2_000_000);
    expect(c.shardJobs).toBe(50_000);
    expect([...c.skip].sort()).toEqual(['api-paths', 'guards']);
    expect(c.sizes).toEqual([100_000, 5_000_000]);
    expect(() => benchConfig({ BENCH_JOBS: '1e6' })).toThrow(/BENCH_JOBS/);
    expect(() => benchConfig({ BENCH_SKIP: 'everything' })).toThrow(/unknown part/);
  });
});

describe('bench: the Targets rows of a run', () => {
  const run = (wallMs: number, redis: number, client: number) => ({
    wallMs,
    keysPerSecond: 1,
    peakRssMb: 100,
    clientCpuUs: 0,
    usageSource: 'resource-usage' as const,
    redisCpuUs: 0,
    clientCpuUsPerKey: client,
    redisCpuUsPerKey: redis,
    exitCode: 0,
    json: { ok: true, mismatches: 0 },
  });
  const result = (mode: 'standalone' | 'cluster', client: number) => ({
    mode,
    masters: mode === 'cluster' ? 3 : 1,
    jobs: 1000,
    workspaces: 200,
    loadMs: 1,
    backfill: run(1000, 20, client),
    verify: run(900, 15, client),
    seedLoop: null,
    ratioToSeedLoop: null,
  });

  it('evaluates what ran and says N/A (never PASS) for what did not, shards refused with exit 4 included', async () => {
    const { targets } = await import('../../bench/run.js');
    const t = targets({
      main: result('standalone', 50),
      cluster: result('cluster', 150),
      shards: {
        jobs: 1000,
        masters: 3,
        available: false,
        note: 'the CLI refused one shard while the other ran (exit 4: lock held)',
        shards: [],
        wallMs: 1,
        keysPerSecond: 1,
        clientCpuUsPerKey: null,
        redisCpuUsPerKey: null,
        scanned: null,
        verify: null,
        clean: false,
      },
      enqueue: undefined,
      api: null,
      cfg: benchConfig({}),
    });
    const by = (re: RegExp) => t.find((x) => re.test(x.name))!;
    expect(by(/verify wall/)).toMatchObject({ verdict: 'PASS', ratio: 0.9 });
    expect(by(/verify Redis CPU/)).toMatchObject({ verdict: 'PASS', ratio: 0.75 });
    expect(by(/client CPU per key, backfill/)).toMatchObject({ verdict: 'FAIL', ratio: 3 });
    expect(by(/dual-write/).verdict).toBe('N/A');
    expect(by(/API v2 page/)).toMatchObject({ verdict: 'N/A', unavailable: 'api not run' });
    expect(by(/two shard/)).toMatchObject({ verdict: 'N/A' });
    expect(by(/two shard/).unavailable).toMatch(/^not available: .*exit 4/);
    expect(t.some((x) => x.verdict === 'PASS' && (x.measured === null || x.baseline === null) && x.observed === undefined)).toBe(false);
  });
});
