/**
 * `--metrics-file` (src/cli/metrics-file.ts): exactly the run metrics
 * deploy/metric-names.json lists for the CLI (names, types, labels), in the
 * Prometheus text format, counters that only move forward, written atomically.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MetricsFile, RunMetrics, RUN_METRICS, writeAtomic } from '../../src/cli/metrics-file.js';
import { parsePrometheus } from './api-prom-parser.js';

const names = (
  JSON.parse(readFileSync(fileURLToPath(new URL('../../deploy/metric-names.json', import.meta.url)), 'utf8')) as {
    metrics: Array<{ name: string; component: string; type: string; labels: string[]; planned?: string }>;
  }
).metrics.filter((m) => m.component === 'cli');

const dir = mkdtempSync(path.join(os.tmpdir(), 'orch-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const throttle = (pausedMs: number, pauses: number) => ({
  pausedMs,
  throttledMs: 500,
  pauses,
  byGuard: { 'replica-lag': { pausedMs, throttledMs: 500, pauses } },
});

describe('run metrics', () => {
  it('registers exactly the cli metrics of deploy/metric-names.json, with their types and labels, none planned any more', async () => {
    const m = new RunMetrics('backfill');
    const registered = m.registry.getMetricsAsArray() as unknown as Array<{ name: string; type: string; labelNames: string[] }>;
    expect(registered.map((r) => r.name).sort()).toEqual(names.map((n) => n.name).sort());
    for (const n of names) {
      const r = registered.find((x) => x.name === n.name)!;
      expect(r.type, n.name).toBe(n.type);
      expect([...r.labelNames].sort(), n.name).toEqual([...n.labels].sort());
      expect(n.planned, n.name).toBeUndefined();
    }
    expect(Object.values(RUN_METRICS).sort()).toEqual(names.map((n) => n.name).sort());
    expect(await m.render()).toContain('orch_migrate_run_keys_done_total{op="backfill"} 0');
  });

  it('renders the figures of a run; counters never go back', async () => {
    const m = new RunMetrics('backfill');
    m.update({ keysDone: 1500, keysPerSecond: 750, throttle: throttle(2000, 1) });
    m.update({ keysDone: 1400, keysPerSecond: 10, throttle: throttle(1000, 0) });
    const { samples: parsed, types } = parsePrometheus(await m.render());
    expect(Object.fromEntries(types)).toEqual(Object.fromEntries(names.map((n) => [n.name, n.type])));
    const value = (name: string, labels: Record<string, string>): number | undefined =>
      parsed.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    expect(value('orch_migrate_run_keys_done_total', { op: 'backfill' })).toBe(1500);
    expect(value('orch_migrate_run_keys_per_second', { op: 'backfill' })).toBe(10);
    expect(value('orch_migrate_run_throttle_seconds_total', { op: 'backfill', guard: 'replica-lag' })).toBe(2.5);
    expect(value('orch_migrate_run_pauses_total', { op: 'backfill' })).toBe(1);
  });

  it('writes the file atomically (no temporary file left) and keeps it up to date', async () => {
    const file = path.join(dir, 'orch-migrate.prom');
    writeAtomic(file, 'x 1\n');
    expect(readFileSync(file, 'utf8')).toBe('x 1\n');
    let keys = 10;
    const warnings: string[] = [];
    const f = new MetricsFile(
      file,
      new RunMetrics('verify'),
      () => ({ keysDone: keys, keysPerSecond: 5, throttle: throttle(0, 0) }),
      (w) => warnings.push(w),
    );
    f.start();
    keys = 42;
    await f.stop();
    expect(readFileSync(file, 'utf8')).toContain('orch_migrate_run_keys_done_total{op="verify"} 42');
    expect(readdirSync(dir)).toEqual(['orch-migrate.prom']);
    const bad = new MetricsFile(
      path.join(dir, 'gone', 'm.prom'),
      new RunMetrics('verify'),
      () => ({ keysDone: 1, keysPerSecond: 1, throttle: throttle(0, 0) }),
      (w) => warnings.push(w),
    );
    await bad.write();
    await bad.write();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot write --metrics-file .*gone.*\(the run goes on\)/);
  });
});
