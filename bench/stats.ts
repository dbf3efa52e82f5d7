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
  const fields = text.slice(close + 1).trim().split(/\s+/);
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
    const verdict = r.verdict === 'N/A' ? `N/A${r.unavailable ? ` (${r.unavailable})` : ''}` : `**${r.verdict}**`;
    lines.push(`| ${r.name} | ${fmt(r.measured)} ${r.unit} | ${fmt(r.baseline)} ${r.unit} | ${r.ratio === null ? '–' : `${r.ratio}×`} | ${r.bound === 'max' ? '≤' : '≥'} ${r.limit}× | ${verdict} |`);
  }
  return lines.join('\n');
}
