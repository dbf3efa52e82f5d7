/**
 * Pure helpers of the bench report (unit-tested in test/unit/bench-stats.test.ts):
 * percentiles, the parsers of what the bench reads from the kernel, Redis and
 * the child-usage wrapper (bench/child-usage.ts), and the evaluation of a target
 * as a ratio with PASS/FAIL.
 */

/** Latency percentiles in microseconds. */
export interface LatencyFiguresUs {
  n: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
}

/** Nearest-rank percentile of sorted samples (q in [0, 1]); 0 for no samples. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** p50/p99/mean of samples in µs, rounded to 0.1 µs. */
export function latencyFigures(samplesUs: readonly number[]): LatencyFiguresUs {
  const sorted = [...samplesUs].sort((a, b) => a - b);
  const r = (x: number): number => Math.round(x * 10) / 10;
  const mean = sorted.length === 0 ? 0 : sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { n: sorted.length, p50Us: r(percentile(sorted, 0.5)), p99Us: r(percentile(sorted, 0.99)), meanUs: r(mean) };
}

/** CPU time of a process in µs. */
export interface CpuTimes {
  userUs: number;
  systemUs: number;
}

/**
 * utime and stime of `/proc/<pid>/stat`, in µs. The command name (field 2) is
 * in parentheses and may itself hold spaces and parentheses, so fields are
 * counted from the last `)`. utime and stime are fields 14 and 15, in clock ticks
 * (`getconf CLK_TCK`, 100 on Linux): a resolution of 10 ms.
 */
export function parseProcStat(text: string, clockTicksPerSecond = 100): CpuTimes {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error('not a /proc/<pid>/stat line: no ")"');
  // After ")": field 3 (state) is index 0, so field k is index k - 3.
  const fields = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('not a /proc/<pid>/stat line: utime/stime missing');
  const us = 1e6 / clockTicksPerSecond;
  return { userUs: utime * us, systemUs: stime * us };
}

/** VmHWM (the kernel's peak resident set size) of `/proc/<pid>/status`, in kB; null when absent. */
export function parseVmHwmKb(text: string): number | null {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** used_cpu_sys + used_cpu_user of `INFO cpu` (seconds, whole server process), in µs. */
export function parseInfoCpuUs(info: string): number {
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:([0-9.]+)\\r?$`, 'm').exec(info);
    if (!m) throw new Error(`INFO cpu has no ${name}`);
    return Number(m[1]);
  };
  // Seconds with 6 decimals: round to whole µs so sums of deltas carry no float noise.
  return Math.round((field('used_cpu_sys') + field('used_cpu_user')) * 1e6);
}

/** What bench/child-usage.ts writes at the child's exit (process.resourceUsage()). */
export interface ChildUsage {
  userUs: number;
  systemUs: number;
  maxRssKb: number;
}

/** Parses the child-usage file; null when it is missing or malformed (the child died before its exit handler). */
export function parseChildUsage(text: string | null): ChildUsage | null {
  if (text === null) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;
  if (!ok(o.userUs) || !ok(o.systemUs) || !ok(o.maxRssKb)) return null;
  return { userUs: o.userUs, systemUs: o.systemUs, maxRssKb: o.maxRssKb };
}

/** µs per key, rounded to 0.01; null when either side is unknown or there are no keys. */
export function perKey(totalUs: number | null | undefined, keys: number): number | null {
  if (totalUs === null || totalUs === undefined || !Number.isFinite(totalUs) || keys <= 0) return null;
  return Math.round((totalUs / keys) * 100) / 100;
}

/** A target: `measured` compared with `limit` × `baseline`. */
export interface TargetSpec {
  /** What is compared, as the issue words it. */
  name: string;
  /** The measured figure (null: not measured in this run). */
  measured: number | null;
  /** What it is compared with (null: not measured). */
  baseline: number | null;
  /** The ratio measured ÷ baseline must be ≤ limit ('max') or ≥ limit ('min'). */
  bound: 'max' | 'min';
  limit: number;
  /** Units of measured/baseline, for the table. */
  unit: string;
  /** Why it is not available, when it is not. */
  unavailable?: string;
}

/** A target evaluated. */
export interface TargetResult extends TargetSpec {
  ratio: number | null;
  /** PASS, FAIL, or N/A when a side was not measured. */
  verdict: 'PASS' | 'FAIL' | 'N/A';
  /** Set for a yes/no target ({@link checkTarget}): what was observed, in words. */
  observed?: string;
}

/** A yes/no target (no ratio): `ok` null means not measured, with `unavailable` saying why. */
export function checkTarget(name: string, ok: boolean | null, observed: string, unavailable?: string): TargetResult {
  return {
    name,
    measured: null,
    baseline: null,
    bound: 'min',
    limit: 1,
    unit: '',
    ratio: null,
    observed,
    verdict: ok === null || unavailable !== undefined ? 'N/A' : ok ? 'PASS' : 'FAIL',
    ...(unavailable === undefined ? {} : { unavailable }),
  };
}

/** Evaluates a target (ratio rounded to 0.01 for display; the verdict uses the exact ratio). */
export function evaluateTarget(spec: TargetSpec): TargetResult {
  const { measured, baseline } = spec;
  if (measured === null || baseline === null || !Number.isFinite(measured) || !Number.isFinite(baseline) || baseline <= 0 || spec.unavailable !== undefined) {
    return { ...spec, ratio: null, verdict: 'N/A' };
  }
  const exact = measured / baseline;
  const pass = spec.bound === 'max' ? exact <= spec.limit : exact >= spec.limit;
  return { ...spec, ratio: Math.round(exact * 100) / 100, verdict: pass ? 'PASS' : 'FAIL' };
}

/** The markdown "Targets" table. */
export function targetsTable(results: readonly TargetResult[]): string {
  const fmt = (n: number | null): string => (n === null ? '–' : n >= 100 ? Math.round(n).toLocaleString('en-US') : String(Math.round(n * 100) / 100));
  const lines = ['| target | measured | baseline | ratio | bound | verdict |', '|---|---:|---:|---:|---|---|'];
  for (const r of results) {
    if (r.observed !== undefined) {
      const v = r.verdict === 'N/A' ? `N/A${r.unavailable ? ` (${r.unavailable})` : ''}` : `**${r.verdict}**`;
      lines.push(`| ${r.name} | ${r.observed} | – | – | yes/no | ${v} |`);
      continue;
    }
    const verdict = r.verdict === 'N/A' ? `N/A${r.unavailable ? ` (${r.unavailable})` : ''}` : `**${r.verdict}**`;
    lines.push(
      `| ${r.name} | ${fmt(r.measured)} ${r.unit} | ${fmt(r.baseline)} ${r.unit} | ${r.ratio === null ? '–' : `${r.ratio}×`} | ${r.bound === 'max' ? '≤' : '≥'} ${r.limit}× | ${verdict} |`,
    );
  }
  return lines.join('\n');
}

/** One latency row found in the enqueue bench's result, whatever its shape. */
export interface LatencyRow {
  label: string;
  p50Us: number;
  p99Us: number | null;
}

const LABEL_FIELDS = ['variant', 'name', 'label', 'phase', 'mode'];
const P50_FIELDS = ['p50Us', 'p50_us', 'p50'];
const P99_FIELDS = ['p99Us', 'p99_us', 'p99'];

/**
 * Every object in `x` (at any depth, arrays included) that has a text label and a
 * p50 in µs, in document order. bench/enqueue.ts belongs to another part of the
 * work and its shape may change: the report reads whatever it finds. A label is
 * prefixed with the labels of the objects it sits in, so a row under
 * `{topology: 'cluster', rows: [...]}` still says cluster.
 */
export function findLatencyRows(x: unknown, context = '', depth = 0): LatencyRow[] {
  if (depth > 6 || x === null || typeof x !== 'object') return [];
  if (Array.isArray(x)) return x.flatMap((v) => findLatencyRows(v, context, depth + 1));
  const o = x as Record<string, unknown>;
  const labelField = LABEL_FIELDS.find((f) => typeof o[f] === 'string');
  const ownLabel = labelField ? (o[labelField] as string) : '';
  const extra = ['topology', 'layout', 'target'].map((f) => o[f]).filter((v): v is string => typeof v === 'string');
  const label = [context, ...extra, ownLabel].filter(Boolean).join(' / ');
  const p50Field = P50_FIELDS.find((f) => typeof o[f] === 'number');
  const out: LatencyRow[] = [];
  if (p50Field && label) {
    const p99Field = P99_FIELDS.find((f) => typeof o[f] === 'number');
    out.push({ label, p50Us: o[p50Field] as number, p99Us: p99Field ? (o[p99Field] as number) : null });
  }
  for (const [k, v] of Object.entries(o)) {
    if (v !== null && typeof v === 'object') out.push(...findLatencyRows(v, label || (Array.isArray(v) ? '' : k), depth + 1));
  }
  return out;
}

/** The rows the enqueue targets compare: the seed's single write and the queue core per phase, single node first. */
export interface EnqueueTargets {
  seedSingle: LatencyRow | null;
  legacy: LatencyRow | null;
  dualWrite: LatencyRow | null;
  newOnly: LatencyRow | null;
}

/** Picks the target rows out of {@link findLatencyRows} (rows that name a cluster are used only when nothing else matches). */
export function enqueueTargetRows(rows: readonly LatencyRow[]): EnqueueTargets {
  const pick = (match: (l: string) => boolean): LatencyRow | null => {
    const all = rows.filter((r) => match(r.label.toLowerCase()));
    return all.find((r) => !/cluster/i.test(r.label)) ?? all[0] ?? null;
  };
  const core = (l: string): boolean => !l.includes('seed');
  return {
    seedSingle: pick((l) => l.includes('seed') && (l.includes('single') || l.includes('2 round trips'))),
    legacy: pick((l) => core(l) && /\blegacy\b/.test(l)),
    dualWrite: pick((l) => core(l) && l.includes('dual-write')),
    newOnly: pick((l) => core(l) && l.includes('new-only')),
  };
}

/** Is the machine idle enough to trust figures: 1-minute load average at most a quarter of the cores. */
export function machineIdle(loadAvg1: number, cores: number): boolean {
  return loadAvg1 <= Math.max(0.25, cores * 0.25);
}
