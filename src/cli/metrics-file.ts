/**
 * `--metrics-file <path>`: a run's metrics in the Prometheus text format, for
 * node_exporter's textfile collector (`--collector.textfile.directory`).
 * orch-migrate runs are short-lived, so nothing scrapes them directly; the
 * file is rewritten every {@link WRITE_EVERY_MS} and once more when the run
 * ends (whatever the outcome), atomically (a temporary file in the same
 * directory, then rename), so the collector never reads half a file.
 *
 * The names are the ones deploy/metric-names.json lists and the dashboard
 * (deploy/grafana/orch-migrate.json) queries; prom-client renders them.
 */
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ThrottleSummary } from '../ops/guards/controller.js';

/** How often the file is rewritten during a run. */
export const WRITE_EVERY_MS = 5000;

/** The metric names (a contract with deploy/metric-names.json). */
export const RUN_METRICS = {
  keysDone: 'orch_migrate_run_keys_done_total',
  keysPerSecond: 'orch_migrate_run_keys_per_second',
  throttleSeconds: 'orch_migrate_run_throttle_seconds_total',
  pauses: 'orch_migrate_run_pauses_total',
} as const;

/** One run's figures at a moment. */
export interface RunFigures {
  /** Keys this run has processed. */
  keysDone: number;
  keysPerSecond: number;
  throttle: ThrottleSummary;
}

/** The metrics of one run, rendered by prom-client. Counters only move forward. */
export class RunMetrics {
  readonly registry = new Registry();
  private readonly keysDone: Counter<'op'>;
  private readonly rate: Gauge<'op'>;
  private readonly throttle: Counter<'op' | 'guard'>;
  private readonly pauses: Counter<'op'>;
  private last = { keysDone: 0, pauses: 0, throttle: new Map<string, number>() };

  constructor(private readonly op: string) {
    const registers = [this.registry];
    this.keysDone = new Counter({ name: RUN_METRICS.keysDone, help: 'Keys this orch-migrate run has processed.', labelNames: ['op'], registers });
    this.rate = new Gauge({ name: RUN_METRICS.keysPerSecond, help: 'Keys per second of the run over the last seconds.', labelNames: ['op'], registers });
    this.throttle = new Counter({
      name: RUN_METRICS.throttleSeconds,
      help: 'Seconds the run was slowed or paused, by the guard that held it (memory, latency, replica-lag, control).',
      labelNames: ['op', 'guard'],
      registers,
    });
    this.pauses = new Counter({
      name: RUN_METRICS.pauses,
      help: 'Times the run paused (a guard, or orch-migrate control pause).',
      labelNames: ['op'],
      registers,
    });
    // Present from the first write, so a dashboard shows 0 rather than "No data".
    this.keysDone.inc({ op }, 0);
    this.rate.set({ op }, 0);
    this.pauses.inc({ op }, 0);
  }

  update(f: RunFigures): void {
    const op = this.op;
    if (f.keysDone > this.last.keysDone) this.keysDone.inc({ op }, f.keysDone - this.last.keysDone);
    this.last.keysDone = Math.max(this.last.keysDone, f.keysDone);
    this.rate.set({ op }, f.keysPerSecond);
    if (f.throttle.pauses > this.last.pauses) this.pauses.inc({ op }, f.throttle.pauses - this.last.pauses);
    this.last.pauses = Math.max(this.last.pauses, f.throttle.pauses);
    for (const [guard, s] of Object.entries(f.throttle.byGuard)) {
      const secs = (s.pausedMs + s.throttledMs) / 1000;
      const prev = this.last.throttle.get(guard) ?? 0;
      if (secs > prev) this.throttle.inc({ op, guard }, secs - prev);
      this.last.throttle.set(guard, Math.max(prev, secs));
    }
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Writes `text` to `file` atomically (same directory, then rename). */
export function writeAtomic(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** A metrics file kept up to date during a run. Write errors are reported once, never fail the run. */
export class MetricsFile {
  private timer: NodeJS.Timeout | null = null;
  private warned = false;

  constructor(
    private readonly file: string,
    private readonly metrics: RunMetrics,
    private readonly figures: () => RunFigures,
    private readonly warn: (msg: string) => void,
  ) {}

  start(): void {
    void this.write();
    this.timer = setInterval(() => void this.write(), WRITE_EVERY_MS);
    this.timer.unref();
  }

  async write(): Promise<void> {
    try {
      this.metrics.update(this.figures());
      writeAtomic(this.file, await this.metrics.render());
    } catch (err) {
      if (this.warned) return;
      this.warned = true;
      this.warn(`cannot write --metrics-file ${this.file}: ${err instanceof Error ? err.message : String(err)} (the run goes on)`);
    }
  }

  /** Final write. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.write();
  }
}
