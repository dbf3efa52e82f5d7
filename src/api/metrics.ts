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
import type { Keyspace } from '../core/keys.js';
import { PHASE_ORDER, type Layout, type Phase } from '../core/phase.js';
import type { RedisClient } from '../core/redis.js';
import { StateStore } from '../core/state.js';
import { loadCheckpoint, sumCounter } from '../ops/checkpoint.js';

/** Checkpointed operations (the same list `orch-migrate status` reads, src/ops/status.ts). */
export const CHECKPOINT_OPS: readonly string[] = ['backfill', 'reverse-backfill', 'cleanup'];

/** The migration's own progress, as read from the state record and the checkpoints. */
export interface MigrationSnapshot {
  checkpoints: Array<{ op: string; scannedKeys: number; nodesDone: number; nodes: number }>;
  /** The state record's `last_verify`, or null when no verify has run. */
  lastVerify: { ok: boolean; mismatches: number; finishedAtMs: number | null } | null;
}

/** Reads a {@link MigrationSnapshot}: one HGETALL of the state record and one per checkpoint. */
export function migrationSnapshotReader(client: RedisClient, keys: Keyspace): () => Promise<MigrationSnapshot> {
  const store = new StateStore(client, keys);
  return async () => {
    const [state, ...cps] = await Promise.all([store.read(), ...CHECKPOINT_OPS.map((op) => loadCheckpoint(client, keys, op))]);
    const v = state.lastVerify;
    const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);
    return {
      checkpoints: CHECKPOINT_OPS.map((op, i) => {
        const cp = cps[i]!;
        return { op, scannedKeys: sumCounter(cp, 'scanned'), nodesDone: cp.nodes.filter((n) => n.done).length, nodes: cp.nodes.length };
      }),
      lastVerify: v ? { ok: v.ok === true, mismatches: num(v.mismatches) ?? 0, finishedAtMs: num(v.finishedAt) } : null,
    };
  };
}

/** How long a migration snapshot is reused between scrapes (bounds the Redis cost of scraping). */
export const MIGRATION_SNAPSHOT_TTL_MS = 5000;

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
  /** Reads checkpoint progress and the last verify at scrape time (cached {@link MIGRATION_SNAPSHOT_TTL_MS}); throwing keeps the last values. */
  migrationSource?: () => Promise<MigrationSnapshot>;
  /** Clock of the snapshot cache (tests). */
  now?: () => number;
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
  private readonly checkpointScanned: Gauge<string>;
  private readonly checkpointNodesDone: Gauge<string>;
  private readonly checkpointNodes: Gauge<string>;
  private readonly lastVerifyOk: Gauge<string>;
  private readonly lastVerifyMismatches: Gauge<string>;
  private readonly lastVerifyFinished: Gauge<string>;
  private migrationRead: Promise<void> | null = null;
  private migrationReadAt = Number.NEGATIVE_INFINITY;

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
    const migration = (): Promise<void> => this.refreshMigration();
    this.checkpointScanned = new Gauge({
      name: 'orch_migration_checkpoint_scanned_keys',
      help: 'Keys scanned so far by the checkpointed operation (sum over its nodes), from <prefix>:migration:jobs:checkpoint:<op>',
      labelNames: ['op'],
      registers: r,
      collect: migration,
    });
    this.checkpointNodesDone = new Gauge({
      name: 'orch_migration_checkpoint_nodes_done',
      help: 'Nodes (Redis masters) the checkpointed operation has scanned to the end',
      labelNames: ['op'],
      registers: r,
      collect: migration,
    });
    this.checkpointNodes = new Gauge({
      name: 'orch_migration_checkpoint_nodes',
      help: 'Nodes the checkpoint holds a position for (0 when there is no checkpoint)',
      labelNames: ['op'],
      registers: r,
      collect: migration,
    });
    this.lastVerifyOk = new Gauge({
      name: 'orch_migration_last_verify_ok',
      help: '1 when the last verify found both layouts in agreement, 0 when it did not; absent before the first verify',
      registers: r,
      collect: migration,
    });
    this.lastVerifyMismatches = new Gauge({
      name: 'orch_migration_last_verify_mismatches',
      help: 'Persistent mismatches found by the last verify; absent before the first verify',
      registers: r,
      collect: migration,
    });
    this.lastVerifyFinished = new Gauge({
      name: 'orch_migration_last_verify_finished_timestamp_seconds',
      help: 'Unix time the last verify finished; absent before the first verify',
      registers: r,
      collect: migration,
    });
    // No sample until a verify is known (a 0 would read as "the last verify failed").
    for (const g of [this.lastVerifyOk, this.lastVerifyMismatches, this.lastVerifyFinished]) g.remove();
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

  /**
   * Reads the migration snapshot at most once per {@link MIGRATION_SNAPSHOT_TTL_MS}, shared by every
   * gauge of a scrape; a failed read keeps the last values (readiness reports the outage).
   */
  private refreshMigration(): Promise<void> {
    const source = this.opts.migrationSource;
    if (!source) return Promise.resolve();
    const now = this.opts.now ?? Date.now;
    if (this.migrationRead) return this.migrationRead;
    if (now() - this.migrationReadAt < MIGRATION_SNAPSHOT_TTL_MS) return Promise.resolve();
    this.migrationRead = source()
      .then((snap) => {
        this.migrationReadAt = now();
        this.setMigration(snap);
      })
      .catch(() => {
        // Unreadable now (Redis down, corrupt record): keep the last values, retry at the next scrape.
      })
      .finally(() => {
        this.migrationRead = null;
      });
    return this.migrationRead;
  }

  /** Records checkpoint progress and the last verify. */
  setMigration(snap: MigrationSnapshot): void {
    for (const c of snap.checkpoints) {
      this.checkpointScanned.set({ op: c.op }, c.scannedKeys);
      this.checkpointNodesDone.set({ op: c.op }, c.nodesDone);
      this.checkpointNodes.set({ op: c.op }, c.nodes);
    }
    const v = snap.lastVerify;
    if (v) {
      this.lastVerifyOk.set(v.ok ? 1 : 0);
      this.lastVerifyMismatches.set(v.mismatches);
    } else {
      this.lastVerifyOk.remove();
      this.lastVerifyMismatches.remove();
    }
    if (v && v.finishedAtMs !== null) this.lastVerifyFinished.set(v.finishedAtMs / 1000);
    else this.lastVerifyFinished.remove();
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
