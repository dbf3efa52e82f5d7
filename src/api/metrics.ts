/**
 * Prometheus metrics of the API, on a Registry of its own (seed Pattern 7:
 * safe-by-default telemetry).
 *
 * The workspace label is absent unless METRICS_WORKSPACE_LABEL=on. Even then
 * its cardinality is bounded by METRICS_WORKSPACE_ALLOWLIST: a workspace that
 * is not allowlisted (every workspace, when the list is empty) is `unscoped`.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isWorkspaceId } from '../core/ids.js';
import { PHASE_ORDER, type Layout, type Phase } from '../core/phase.js';

/** The label value of a workspace that has none of its own. */
export const UNSCOPED = 'unscoped';

/** Options of {@link ApiMetrics}. */
export interface ApiMetricsOptions {
  workspaceLabel: boolean;
  allowlist: readonly string[];
  /** Also collect Node process metrics (default false; the service turns it on). */
  defaultMetrics?: boolean;
  /** Reads the phase at scrape time (the gauge); null/throwing keeps the last value. */
  phaseSource?: () => Promise<{ phase: Phase; epoch: number }>;
}

/** Outcomes of a shadow read. */
export type ShadowOutcome = 'match' | 'mismatch' | 'missing' | 'stale' | 'index_missing' | 'error' | 'dropped';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The API's metrics. */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly allow: ReadonlySet<string>;
  private readonly listQueries: Counter<string>;
  private readonly listDuration: Histogram<string>;
  private readonly listResults: Counter<string>;
  private readonly requests: Counter<string>;
  private readonly requestDuration: Histogram<string>;
  private readonly mirrorFailures: Counter<string>;
  private readonly phaseGauge: Gauge<string>;
  private readonly epochGauge: Gauge<string>;
  private readonly shadowReads: Counter<string>;
  private readonly cursorRejects: Counter<string>;
  private phaseRead: Promise<void> | null = null;

  constructor(private readonly opts: ApiMetricsOptions) {
    this.allow = new Set(opts.allowlist);
    const wsLabels = opts.workspaceLabel ? ['workspace_id'] : [];
    const r = [this.registry];
    this.listQueries = new Counter({
      name: 'ai_job_list_queries_total',
      help: 'GET /ai/jobs queries served, by read path',
      labelNames: ['read_path', ...wsLabels],
      registers: r,
    });
    this.listDuration = new Histogram({
      name: 'ai_job_list_duration_seconds',
      help: 'Time to read one page of GET /ai/jobs from Redis, by read path',
      labelNames: ['read_path', ...wsLabels],
      buckets: LATENCY_BUCKETS,
      registers: r,
    });
    this.listResults = new Counter({
      name: 'ai_job_list_results_total',
      help: 'Jobs returned by GET /ai/jobs, by read path',
      labelNames: ['read_path', ...wsLabels],
      registers: r,
    });
    this.requests = new Counter({
      name: 'orch_api_requests_total',
      help: 'HTTP requests, by route, status and the read path the phase selected',
      labelNames: ['method', 'route', 'status_code', 'read_path'],
      registers: r,
    });
    this.requestDuration = new Histogram({
      name: 'orch_api_request_duration_seconds',
      help: 'HTTP request latency, by route and read path',
      labelNames: ['method', 'route', 'read_path'],
      buckets: LATENCY_BUCKETS,
      registers: r,
    });
    this.mirrorFailures = new Counter({
      name: 'orch_mirror_write_failures_total',
      help: 'Dual-write mirror writes that failed after the primary write succeeded (verify --repair fixes them)',
      labelNames: ['mirror'],
      registers: r,
    });
    this.cursorRejects = new Counter({
      name: 'orch_api_cursor_rejections_total',
      help: 'Cursors refused with 400, by reason (read_path_changed after a flip, invalid otherwise)',
      labelNames: ['reason'],
      registers: r,
    });
    this.phaseGauge = new Gauge({
      name: 'orch_migration_phase',
      help: 'Migration phase this process acts on (1 for the current phase, 0 for the others)',
      labelNames: ['phase'],
      registers: r,
      collect: () => this.refreshPhase(),
    });
    this.epochGauge = new Gauge({
      name: 'orch_migration_epoch',
      help: 'Epoch of the migration state record this process acts on',
      registers: r,
      collect: () => this.refreshPhase(),
    });
    this.shadowReads = new Counter({
      name: 'orch_api_shadow_reads_total',
      help: 'Shadow reads of v2 during dual-write, by outcome (mismatch/missing/stale/index_missing are disagreements)',
      labelNames: ['outcome'],
      registers: r,
    });
    for (const p of PHASE_ORDER) this.phaseGauge.set({ phase: p }, 0);
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'orch_api_' });
  }

  /** Reads the phase once per scrape (both gauges share the read); failures keep the last value. */
  private refreshPhase(): Promise<void> {
    const source = this.opts.phaseSource;
    if (!source) return Promise.resolve();
    if (!this.phaseRead) {
      this.phaseRead = source()
        .then((s) => this.setPhase(s.phase, s.epoch))
        .catch(() => {
          // Redis unreachable at scrape time: keep the last known phase; /healthz reports the outage.
        })
        .finally(() => {
          this.phaseRead = null;
        });
    }
    return this.phaseRead;
  }

  /** The workspace label value: the id when labelling is on and it is allowlisted, else `unscoped`. */
  workspaceLabel(workspaceId: string | null | undefined): string {
    if (!this.opts.workspaceLabel) return UNSCOPED;
    if (!workspaceId || !isWorkspaceId(workspaceId) || !this.allow.has(workspaceId)) return UNSCOPED;
    return workspaceId;
  }

  private listLabels(readPath: Layout, workspaceId: string): Record<string, string> {
    return this.opts.workspaceLabel ? { read_path: readPath, workspace_id: this.workspaceLabel(workspaceId) } : { read_path: readPath };
  }

  /** One GET /ai/jobs page served. */
  observeList(workspaceId: string, readPath: Layout, count: number, seconds: number): void {
    const labels = this.listLabels(readPath, workspaceId);
    this.listQueries.inc(labels);
    this.listDuration.observe(labels, seconds);
    this.listResults.inc(labels, count);
  }

  /** One HTTP request answered. */
  observeRequest(method: string, route: string, statusCode: number, readPath: Layout | 'unknown', seconds: number): void {
    this.requests.inc({ method, route, status_code: String(statusCode), read_path: readPath });
    this.requestDuration.observe({ method, route, read_path: readPath }, seconds);
  }

  /** A mirror write failed (hooked to RedisJobQueueOptions.onMirrorFailure). */
  mirrorFailure(mirror: Layout | 'unknown'): void {
    this.mirrorFailures.inc({ mirror });
  }

  /** A cursor was refused. */
  cursorRejected(reason: 'read_path_changed' | 'invalid'): void {
    this.cursorRejects.inc({ reason });
  }

  /** A shadow read finished (or was dropped). */
  shadow(outcome: ShadowOutcome, n = 1): void {
    this.shadowReads.inc({ outcome }, n);
  }

  /** Records the phase (1 for the current phase, 0 for the others). */
  setPhase(phase: Phase, epoch: number): void {
    for (const p of PHASE_ORDER) this.phaseGauge.set({ phase: p }, p === phase ? 1 : 0);
    this.epochGauge.set(epoch);
  }

  /** Prometheus text exposition. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
