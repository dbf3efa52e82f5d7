/**
 * `RedisJobQueue`: the production {@link JobQueue}. The phase picks the
 * primary and the mirror, and every mutation follows the write protocol
 * (docs/design.md "The write path"):
 *  - single node: one script (write-job.lua) that reads the phase itself and
 *    writes the primary with rev + 1, the mirror, the index entry and the
 *    pending reference atomically: one round trip, and no stale writer;
 *  - Redis Cluster: the primary (write-primary.lua), then the mirror with
 *    apply-if-newer (or a create-if-absent claim of the global legacy id), the
 *    index entry and the pending reference sent together. The state record is
 *    in another slot, so staleness is ruled out by acknowledged epochs
 *    (src/core/writers.ts) instead.
 */
import { randomFillSync } from 'node:crypto';
import type { Redis } from 'ioredis';
import { isReplyError, JobExistsError, replyMessage, ValidationError } from './errors.js';
import { assertJobId, assertWorkspaceId, isJobId, isWorkspaceId } from './ids.js';
import {
  createdAtScore,
  JobField,
  jobFromHash,
  newJobFields,
  parseEnqueueInput,
  parseInput,
  StatusPatchSchema,
  statusPatchFields,
  type EnqueueInput,
  type Job,
  type StatusPatch,
} from './job.js';
import { Keyspace } from './keys.js';
import { JobLister } from './listing.js';
import { Layout, Phase, routeFor } from './phase.js';
import { PhaseWatcher, type PhaseWatcherOptions } from './phase-watcher.js';
import {
  applyIfNewer,
  ApplyOutcome,
  deleteIfUnchanged,
  MirrorOutcome,
  mirrorCreate,
  snapshotField,
  snapshotToHash,
  writeJob,
  writePrimary,
  type IndexEntry,
  type Snapshot,
  type WriteJobResult,
} from './protocol.js';
import { isCluster, type RedisClient } from './redis.js';
import { ensureScripts } from './scripts.js';
import { MAX_PAGE_LIMIT, type JobQueue, type ListJobsOptions, type ListJobsResult } from './queue.js';
import { phaseOf, type MigrationState } from './state.js';
import { WriterRegistration, type WriterRegistrationOptions } from './writers.js';

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
  /**
   * Register as a writer: a heartbeat naming the epoch this process acts on,
   * which transitions wait for (default on; pass false for read-only use).
   */
  register?: boolean | WriterRegistrationOptions;
}

/** How often a registered queue reads the phase while it does not write (a cache hit costs nothing). */
const IDLE_PHASE_CHECK_MS = 250;

/** Random bytes for job ids, drawn from the CSPRNG 512 ids at a time: one randomBytes(6) per id cost more than the rest of an enqueue's client side. */
const ID_POOL = Buffer.alloc(6 * 512);
let idPoolAt = ID_POOL.length;

/** Generates a job id: time-ordered, collision-resistant, valid under the job id rule. */
export function newJobId(): string {
  if (idPoolAt + 6 > ID_POOL.length) {
    randomFillSync(ID_POOL);
    idPoolAt = 0;
  }
  const rnd = ID_POOL.toString('hex', idPoolAt, idPoolAt + 6);
  idPoolAt += 6;
  return `job_${Date.now().toString(36)}_${rnd}`;
}

/** Reference stored on the pending list in a phase: bare in legacy, `<ws>:<job>` from dual-write on. */
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
  /** This process' writer entry, or null when not registered. */
  readonly registration: WriterRegistration | null;
  private readonly now: () => Date;
  private readonly lister: JobLister;
  private readonly cluster: boolean;
  /** Writes in flight, by the epoch they started under (an epoch is acknowledged once older ones drain). */
  private readonly inflight = new Map<number, number>();
  private latestEpoch = 0;
  /** Keeps an idle registered process' phase fresh (see create()). */
  private idleTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly client: RedisClient,
    private readonly opts: RedisJobQueueOptions,
  ) {
    this.keys = opts.keys ?? new Keyspace();
    this.cluster = isCluster(client);
    ensureScripts(client);
    this.watcher = new PhaseWatcher(client, this.keys, {
      ...opts.phase,
      onChange: (s) => {
        opts.phase?.onChange?.(s);
        this.sawEpoch(s.epoch);
      },
    });
    this.now = opts.now ?? (() => new Date());
    this.lister = new JobLister(client, this.keys, opts.legacyScanCount ?? 1000);
    const reg = opts.register ?? true;
    this.registration = reg === false ? null : new WriterRegistration(client, this.keys, reg === true ? {} : reg);
  }

  /** Creates a queue, loads the phase (subscribing to transition events) and registers as a writer. */
  static async create(client: RedisClient, opts: RedisJobQueueOptions = {}): Promise<RedisJobQueue> {
    const q = new RedisJobQueue(client, opts);
    const state = await q.watcher.start();
    await q.registration?.start(state.epoch);
    if (q.registration) {
      // Epochs are acknowledged when the phase is read, and an idle process (an API between
      // requests, a worker on an empty queue) reads it only when it writes: it would hold every
      // transition up until --ack-timeout. Reading it on a timer (from cache while fresh, so about
      // one HGETALL per cache period) acknowledges within that period instead.
      q.idleTimer = setInterval(() => {
        void q.watcher.current().catch(() => undefined);
      }, IDLE_PHASE_CHECK_MS);
      q.idleTimer.unref();
    }
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

  private sawEpoch(epoch: number): void {
    if (epoch <= this.latestEpoch) return;
    this.latestEpoch = epoch;
    this.maybeAck();
  }

  /** Acknowledges the newest epoch seen once no write started under an older one is in flight. */
  private maybeAck(): void {
    const reg = this.registration;
    if (!reg) return;
    const target = this.latestEpoch;
    if (target <= reg.acknowledged) return;
    for (const [epoch, n] of this.inflight) if (epoch < target && n > 0) return;
    void reg.ack(target).catch(() => undefined);
  }

  /**
   * The phase to start a write under, without a round trip in the steady state
   * (docs/performance.md "Write path"). A writer whose heartbeat is not fresh
   * may have been declared dead by a transition that did not wait for it: it
   * heartbeats and re-reads the phase before writing anything. On a single
   * node the cached phase is used even when due for a re-read (which then runs
   * in the background): write-job.lua routes by the phase it reads itself, and
   * the cached one only stands in for an unusable record. On a cluster the
   * cache routes the write, so a stale one is re-read first.
   */
  private begin(): MigrationState | Promise<MigrationState> {
    if (this.registration && !this.registration.fresh) return this.beatAndRefresh();
    if (!this.cluster) {
      const cached = this.watcher.peek();
      if (cached !== null) return cached;
    }
    return this.watcher.current();
  }

  private async beatAndRefresh(): Promise<MigrationState> {
    await this.registration?.beat();
    return this.watcher.refresh();
  }

  /** Counts a write in flight under `epoch` (see {@link maybeAck}). */
  private enter(epoch: number): void {
    this.inflight.set(epoch, (this.inflight.get(epoch) ?? 0) + 1);
  }

  private leave(epoch: number): void {
    const n = (this.inflight.get(epoch) ?? 1) - 1;
    if (n <= 0) this.inflight.delete(epoch);
    else this.inflight.set(epoch, n);
    this.maybeAck();
  }

  private recordKey(layout: Layout, workspaceId: string, jobId: string): string {
    return layout === Layout.Legacy ? this.keys.legacyJob(jobId) : this.keys.v2Job(workspaceId, jobId);
  }

  private indexEntry(workspaceId: string, jobId: string, createdAt: string | Buffer | undefined): IndexEntry {
    return { key: this.keys.index(workspaceId), score: createdAtScore(createdAt), member: jobId };
  }

  /** A refused or failed mirror write is reported, not thrown: the primary holds the acknowledged write. */
  private mirrorFailed(key: string, jobId: string, error: unknown): void {
    this.opts.onMirrorFailure?.({ key, jobId, error });
  }

  /**
   * Bookkeeping after a single-node write: a newer epoch than this process has
   * seen marks the cached phase for a re-read (in the background: the script
   * already acted on the new phase); refusals are reported. `created` holds the
   * fields of a create, whose record is exactly those plus rev 1.
   */
  private afterWrite(r: WriteJobResult, workspaceId: string, jobId: string, created: Record<string, string> | null): Job {
    if (r.epoch > this.latestEpoch) this.watcher.expire();
    if (r.mirror === MirrorOutcome.Conflict || r.mirror === MirrorOutcome.WrongType) {
      const key = r.phase === Phase.DualWrite ? this.keys.v2Job(workspaceId, jobId) : this.keys.legacyJob(jobId);
      this.mirrorFailed(key, jobId, new Error(`mirror write refused: ${r.mirror}`));
    }
    // Reported against the v2 record whose index entry could not be written.
    if (r.indexWrongType)
      this.mirrorFailed(this.keys.v2Job(workspaceId, jobId), jobId, new Error(`index write refused: ${this.keys.index(workspaceId)} is not a sorted set`));
    if (r.snapshot !== null) return jobFromHash(snapshotToHash(r.snapshot));
    // Set after building rather than spread into the fields: a spread copy cost several µs here.
    const job = jobFromHash(created ?? {});
    job.rev = r.rev;
    return job;
  }

  async enqueue(input: EnqueueInput): Promise<Job> {
    const parsed = parseEnqueueInput(input);
    const jobId = parsed.jobId ?? newJobId();
    const begun = this.begin();
    const state = begun instanceof Promise ? await begun : begun;
    const now = this.now();
    const fields = newJobFields({ jobId, workspaceId: parsed.workspaceId, action: parsed.action, params: parsed.params, now });
    // created_at is now's ISO text, which parses back to the same milliseconds.
    const score = now.getTime();
    this.enter(state.epoch);
    try {
      if (!this.cluster) {
        const r = await writeJob(this.client as Redis, this.keys, {
          mode: 'create',
          workspaceId: parsed.workspaceId,
          jobId,
          fields,
          ...(parsed.ttlMs === undefined ? {} : { ttlMs: parsed.ttlMs }),
          indexScore: score,
          push: true,
          fallback: { phase: phaseOf(state, parsed.workspaceId), epoch: state.epoch },
        });
        return this.afterWrite(r, parsed.workspaceId, jobId, fields);
      }
      const snap = await this.clusterCreate(phaseOf(state, parsed.workspaceId), parsed.workspaceId, jobId, fields, score, parsed.ttlMs);
      return jobFromHash(snapshotToHash(snap));
    } finally {
      this.leave(state.epoch);
    }
  }

  /**
   * A create on Redis Cluster. Job ids are global while the legacy layout
   * exists, so the legacy key decides: a legacy primary is created only if
   * absent, and in read-new the legacy mirror is claimed create-if-absent; the
   * loser of two workspaces racing for one id removes its primary again.
   */
  private async clusterCreate(
    phase: Phase,
    workspaceId: string,
    jobId: string,
    fields: Record<string, string>,
    score: number,
    ttlMs: number | undefined,
  ): Promise<Snapshot> {
    const route = routeFor(phase);
    const legacyKey = this.keys.legacyJob(jobId);
    // new-only: no claim is possible without a mirror; refuse ids legacy still holds (kept keys).
    if (route.primary === Layout.V2 && route.mirror === null && (await this.client.exists(legacyKey)) === 1) throw new JobExistsError(jobId);
    const primaryKey = this.recordKey(route.primary, workspaceId, jobId);
    const snap = await writePrimary(this.client, primaryKey, { mode: 'create', fields, ...(ttlMs === undefined ? {} : { ttlMs }), index: null, jobId });
    const push = (): Promise<number> => this.client.rpush(this.keys.queue, queueRef(phase, workspaceId, jobId));
    const index = this.indexEntry(workspaceId, jobId, fields[JobField.CreatedAt]);
    if (route.mirror === Layout.Legacy) {
      let claimed: boolean;
      try {
        claimed = await mirrorCreate(this.client, legacyKey, snap);
      } catch (err) {
        await deleteIfUnchanged(this.client, primaryKey, snap).catch(() => undefined);
        throw err;
      }
      if (!claimed) {
        await deleteIfUnchanged(this.client, primaryKey, snap);
        throw new JobExistsError(jobId);
      }
    }
    // The primary exists before its reference, so a worker never pops a dangling one;
    // the mirror, the index entry and the push are independent and go out together.
    await Promise.all([
      route.mirror === Layout.V2 ? this.clusterMirror(Layout.V2, workspaceId, jobId, snap) : Promise.resolve(),
      route.primary === Layout.V2 ? this.client.zadd(index.key, index.score, index.member) : Promise.resolve(0),
      push(),
    ]);
    return snap;
  }

  /** Cluster step 2 for an existing record: apply-if-newer on the mirror (and its index entry). */
  private async clusterMirror(layout: Layout | null, workspaceId: string, jobId: string, snap: Snapshot): Promise<void> {
    if (layout === null) return;
    const key = this.recordKey(layout, workspaceId, jobId);
    try {
      const index = layout === Layout.V2 ? this.indexEntry(workspaceId, jobId, snapshotField(snap, JobField.CreatedAt)) : null;
      const outcome = await applyIfNewer(this.client, key, snap, index);
      // Refused (foreign type, malformed rev, another workspace's record): verify reports it.
      if (outcome !== ApplyOutcome.Applied && outcome !== ApplyOutcome.Skipped) this.mirrorFailed(key, jobId, new Error(`mirror write refused: ${outcome}`));
    } catch (error) {
      this.mirrorFailed(key, jobId, error);
    }
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
    const { primary } = routeFor(phaseOf(state, workspaceId));
    const key = this.recordKey(primary, workspaceId, jobId);
    let hash: Record<string, string>;
    try {
      // One round trip: HGETALL answers {} for a missing key and WRONGTYPE for another type.
      hash = await this.client.hgetall(key);
    } catch (err) {
      if (isReplyError(err) && replyMessage(err).startsWith('WRONGTYPE')) return null;
      throw err;
    }
    // Legacy keys are not scoped: the record must name the caller's workspace.
    if (hash[JobField.WorkspaceId] !== workspaceId) return null;
    return jobFromHash(hash);
  }

  async updateStatus(workspaceId: string, jobId: string, patch: StatusPatch): Promise<Job> {
    assertWorkspaceId(workspaceId);
    assertJobId(jobId);
    const parsed = parseInput(StatusPatchSchema, patch);
    const begun = this.begin();
    const state = begun instanceof Promise ? await begun : begun;
    const fields = statusPatchFields(parsed, this.now());
    this.enter(state.epoch);
    try {
      if (!this.cluster) {
        const r = await writeJob(this.client as Redis, this.keys, {
          mode: 'update',
          workspaceId,
          jobId,
          fields,
          fallback: { phase: phaseOf(state, workspaceId), epoch: state.epoch },
        });
        if (r.indexMissing && r.snapshot) {
          // Only a v2 record that something other than this queue wrote lacks its entry: a second, rare round trip.
          const e = this.indexEntry(workspaceId, jobId, snapshotField(r.snapshot, JobField.CreatedAt));
          await this.client.zadd(e.key, e.score, e.member);
        }
        return this.afterWrite(r, workspaceId, jobId, null);
      }
      const route = routeFor(phaseOf(state, workspaceId));
      const key = this.recordKey(route.primary, workspaceId, jobId);
      // A legacy key is not scoped: write-primary checks its workspace_id in the same atomic step.
      const snap = await writePrimary(this.client, key, {
        mode: 'update',
        fields,
        index: null,
        jobId,
        ...(route.primary === Layout.Legacy ? { owner: workspaceId } : {}),
      });
      await this.clusterMirror(route.mirror, workspaceId, jobId, snap);
      return jobFromHash(snapshotToHash(snap));
    } finally {
      this.leave(state.epoch);
    }
  }

  async listJobs(workspaceId: string, opts: ListJobsOptions): Promise<ListJobsResult> {
    assertWorkspaceId(workspaceId);
    if (!Number.isInteger(opts.limit) || opts.limit < 1 || opts.limit > MAX_PAGE_LIMIT) {
      throw new ValidationError(`Invalid limit ${String(opts.limit)}: use an integer from 1 to ${MAX_PAGE_LIMIT}`);
    }
    const state = await this.watcher.current();
    const path = routeFor(phaseOf(state, workspaceId)).primary;
    return path === Layout.V2 ? this.lister.listV2(workspaceId, opts) : this.lister.listLegacy(workspaceId, opts);
  }

  async close(): Promise<void> {
    if (this.idleTimer) clearInterval(this.idleTimer);
    await this.registration?.stop();
    await this.watcher.close();
  }
}
