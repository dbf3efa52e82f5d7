/**
 * `RedisJobQueue`: the production {@link JobQueue}. The phase (from the state
 * record, cached at most settle_ms) picks the primary and the mirror; every
 * mutation follows the write protocol of DESIGN §4:
 *   1. write-primary: update + rev increment in one script, returning the snapshot;
 *   2. apply-if-newer of that snapshot on the mirror (one key, cluster-safe);
 *   3. the v2 index entry, in the same script on one node, a ZADD on a cluster.
 */
import { randomBytes } from 'node:crypto';
import { JobExistsError, ValidationError, JobNotFoundError } from './errors.js';
import { assertJobId, assertWorkspaceId, isJobId, isWorkspaceId } from './ids.js';
import {
  createdAtScore,
  EnqueueInputSchema,
  JobField,
  jobFromHash,
  newJobFields,
  parseInput,
  StatusPatchSchema,
  statusPatchFields,
  type EnqueueInput,
  type Job,
  type StatusPatch,
} from './job.js';
import { Keyspace } from './keys.js';
import { Layout, Phase, routeFor } from './phase.js';
import { PhaseWatcher, type PhaseWatcherOptions } from './phase-watcher.js';
import { applyIfNewer, ApplyOutcome, snapshotField, snapshotToHash, writePrimary, type IndexEntry, type Snapshot } from './protocol.js';
import type { RedisClient } from './redis.js';
import { JobLister } from './listing.js';
import { MAX_PAGE_LIMIT, type JobQueue, type ListJobsOptions, type ListJobsResult } from './queue.js';
import type { MigrationState } from './state.js';

/** Information passed to {@link RedisJobQueueOptions.onMirrorFailure}. */
export interface MirrorFailure {
  key: string;
  jobId: string;
  error: unknown;
}

/** Options of {@link RedisJobQueue.create}. */
export interface RedisJobQueueOptions {
  /** Key prefix (default `ai`). */
  keys?: Keyspace;
  /** Phase cache settings. */
  phase?: PhaseWatcherOptions;
  /** Clock for created_at/updated_at (tests). */
  now?: () => Date;
  /**
   * Called when the mirror write fails after the primary succeeded. The write
   * is still acknowledged (the primary is the truth); verify finds and repairs
   * the mirror. Metrics hook here.
   */
  onMirrorFailure?: (failure: MirrorFailure) => void;
  /** SCAN COUNT of the legacy listing path (default 1000). */
  legacyScanCount?: number;
}

/** Generates a job id: time-ordered, collision-resistant, valid under the job id rule. */
export function newJobId(): string {
  return `job_${Date.now().toString(36)}_${randomBytes(6).toString('hex')}`;
}

/** Reference stored on the pending list in a phase (DESIGN §6). */
export function queueRef(phase: Phase, workspaceId: string, jobId: string): string {
  return phase === Phase.Legacy ? jobId : `${workspaceId}:${jobId}`;
}

/** Parses a pending-list reference: `<ws>:<job>` or a bare `<job>`; null when malformed. */
export function parseQueueRef(ref: string): { workspaceId: string | null; jobId: string } | null {
  const colon = ref.indexOf(':');
  if (colon < 0) return isJobId(ref) ? { workspaceId: null, jobId: ref } : null;
  const ws = ref.slice(0, colon);
  const id = ref.slice(colon + 1);
  return isWorkspaceId(ws) && isJobId(id) ? { workspaceId: ws, jobId: id } : null;
}

/** The Redis-backed {@link JobQueue}. */
export class RedisJobQueue implements JobQueue {
  readonly keys: Keyspace;
  readonly watcher: PhaseWatcher;
  private readonly now: () => Date;
  private readonly lister: JobLister;

  private constructor(
    readonly client: RedisClient,
    private readonly opts: RedisJobQueueOptions,
  ) {
    this.keys = opts.keys ?? new Keyspace();
    this.watcher = new PhaseWatcher(client, this.keys, opts.phase);
    this.now = opts.now ?? (() => new Date());
    this.lister = new JobLister(client, this.keys, opts.legacyScanCount ?? 1000);
  }

  /** Creates a queue and loads the phase (subscribing to transition events). */
  static async create(client: RedisClient, opts: RedisJobQueueOptions = {}): Promise<RedisJobQueue> {
    const q = new RedisJobQueue(client, opts);
    await q.watcher.start();
    return q;
  }

  /** The phase this process currently acts on (cached). */
  phase(): Promise<MigrationState> {
    return this.watcher.current();
  }

  /** Re-reads the phase now. */
  refreshPhase(): Promise<MigrationState> {
    return this.watcher.refresh();
  }

  private recordKey(layout: Layout, workspaceId: string, jobId: string): string {
    return layout === Layout.Legacy ? this.keys.legacyJob(jobId) : this.keys.v2Job(workspaceId, jobId);
  }

  private indexFor(layout: Layout, workspaceId: string, jobId: string, snap: Snapshot | { createdAt: string }): IndexEntry | null {
    if (layout !== Layout.V2) return null;
    const raw = 'fields' in snap ? snapshotField(snap, JobField.CreatedAt) : snap.createdAt;
    return { key: this.keys.index(workspaceId), score: createdAtScore(raw), member: jobId };
  }

  /** Step 2 + 3 of the protocol; a failure is reported, not thrown (the primary already holds the write). */
  private async mirror(layout: Layout | null, workspaceId: string, jobId: string, snap: Snapshot): Promise<void> {
    if (layout === null) return;
    const key = this.recordKey(layout, workspaceId, jobId);
    try {
      const outcome = await applyIfNewer(this.client, key, snap, this.indexFor(layout, workspaceId, jobId, snap));
      if (outcome !== ApplyOutcome.Applied && outcome !== ApplyOutcome.Skipped) {
        // Refused (foreign type, malformed rev, another workspace's record): verify reports it.
        this.opts.onMirrorFailure?.({ key, jobId, error: new Error(`mirror write refused: ${outcome}`) });
      }
    } catch (error) {
      this.opts.onMirrorFailure?.({ key, jobId, error });
    }
  }

  async enqueue(input: EnqueueInput): Promise<Job> {
    const parsed = parseInput(EnqueueInputSchema, input);
    const jobId = parsed.jobId ?? newJobId();
    const state = await this.watcher.current();
    const route = routeFor(state.phase);
    if (route.primary === Layout.V2 && route.mirror === Layout.Legacy && parsed.jobId !== undefined) {
      // Legacy keys are global: an id already taken there would collide on the mirror.
      // (apply-if-newer refuses such a write anyway; this check gives the caller a clear error first.)
      if ((await this.client.exists(this.keys.legacyJob(jobId))) === 1) throw new JobExistsError(jobId);
    }
    const fields = newJobFields({ jobId, workspaceId: parsed.workspaceId, action: parsed.action, params: parsed.params, now: this.now() });
    const snap = await writePrimary(this.client, this.recordKey(route.primary, parsed.workspaceId, jobId), {
      mode: 'create',
      fields,
      ...(parsed.ttlMs === undefined ? {} : { ttlMs: parsed.ttlMs }),
      index: this.indexFor(route.primary, parsed.workspaceId, jobId, { createdAt: fields[JobField.CreatedAt]! }),
      jobId,
    });
    // The primary exists before its reference, so a worker never pops a dangling reference;
    // the mirror write and the push are independent and share one round trip.
    await Promise.all([
      this.mirror(route.mirror, parsed.workspaceId, jobId, snap),
      this.client.rpush(this.keys.queue, queueRef(state.phase, parsed.workspaceId, jobId)),
    ]);
    return jobFromHash(snapshotToHash(snap));
  }

  async dequeue(): Promise<Job | null> {
    // Bounded: unresolvable references are dropped, but never more than this many per call.
    for (let attempt = 0; attempt < 100; attempt++) {
      const ref = await this.client.lpop(this.keys.queue);
      if (ref === null) return null;
      const parsed = parseQueueRef(ref);
      if (parsed === null) continue;
      let ws = parsed.workspaceId;
      if (ws === null) {
        // A bare legacy reference: the legacy record names its workspace.
        ws = await this.client.hget(this.keys.legacyJob(parsed.jobId), JobField.WorkspaceId);
        if (ws === null || !isWorkspaceId(ws)) continue;
      }
      const job = await this.getJob(ws, parsed.jobId);
      if (job) return job;
    }
    return null;
  }

  async getJob(workspaceId: string, jobId: string): Promise<Job | null> {
    assertWorkspaceId(workspaceId);
    assertJobId(jobId);
    const state = await this.watcher.current();
    const { primary } = routeFor(state.phase);
    const type = await this.client.type(this.recordKey(primary, workspaceId, jobId));
    if (type !== 'hash') return null;
    const hash = await this.client.hgetall(this.recordKey(primary, workspaceId, jobId));
    // Legacy keys are not scoped: the record must name the caller's workspace.
    if (hash[JobField.WorkspaceId] !== workspaceId) return null;
    return jobFromHash(hash);
  }

  async updateStatus(workspaceId: string, jobId: string, patch: StatusPatch): Promise<Job> {
    assertWorkspaceId(workspaceId);
    assertJobId(jobId);
    const parsed = parseInput(StatusPatchSchema, patch);
    const state = await this.watcher.current();
    const route = routeFor(state.phase);
    const key = this.recordKey(route.primary, workspaceId, jobId);
    if (route.primary === Layout.Legacy) {
      // workspace_id never changes, so checking it before the atomic write is race-free.
      const owner = await this.client.hget(key, JobField.WorkspaceId);
      if (owner !== workspaceId) throw new JobNotFoundError(jobId);
    }
    const snap = await writePrimary(this.client, key, {
      mode: 'update',
      fields: statusPatchFields(parsed, this.now()),
      index: null,
      jobId,
    });
    await this.mirror(route.mirror, workspaceId, jobId, snap);
    return jobFromHash(snapshotToHash(snap));
  }

  async listJobs(workspaceId: string, opts: ListJobsOptions): Promise<ListJobsResult> {
    assertWorkspaceId(workspaceId);
    if (!Number.isInteger(opts.limit) || opts.limit < 1 || opts.limit > MAX_PAGE_LIMIT) {
      throw new ValidationError(`Invalid limit ${String(opts.limit)}: use an integer from 1 to ${MAX_PAGE_LIMIT}`);
    }
    const state = await this.watcher.current();
    const path = routeFor(state.phase).primary;
    return path === Layout.V2 ? this.lister.listV2(workspaceId, opts) : this.lister.listLegacy(workspaceId, opts);
  }

  async close(): Promise<void> {
    await this.watcher.close();
  }
}
