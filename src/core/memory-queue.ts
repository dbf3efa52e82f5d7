/**
 * In-memory {@link JobQueue} for unit tests of code that uses a queue (the API
 * routes, workers). It follows the same phase routing and observable contract
 * as {@link RedisJobQueue}: the shared conformance suite runs against both.
 * Never use it in integration tests.
 */
import { JobNotFoundError, JobExistsError, ValidationError } from './errors.js';
import { assertJobId, assertWorkspaceId } from './ids.js';
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
import { Layout, Phase, routeFor } from './phase.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { MAX_PAGE_LIMIT, type JobQueue, type ListJobsOptions, type ListJobsResult } from './queue.js';
import { newJobId, parseQueueRef, queueRef } from './redis-queue.js';

type Hash = Record<string, string>;

/** Options of {@link MemoryJobQueue}. */
export interface MemoryJobQueueOptions {
  phase?: Phase;
  now?: () => Date;
}

/** A process-local job store with the two layouts, the index and the pending list. */
export class MemoryJobQueue implements JobQueue {
  private phase: Phase;
  private readonly now: () => Date;
  /** legacy layout: job id → hash */
  readonly legacy = new Map<string, Hash>();
  /** v2 layout: `<ws>:<job>` → hash */
  readonly v2 = new Map<string, Hash>();
  /** v2 index: ws → (job id → score) */
  readonly index = new Map<string, Map<string, number>>();
  readonly pending: string[] = [];

  constructor(opts: MemoryJobQueueOptions = {}) {
    this.phase = opts.phase ?? Phase.Legacy;
    this.now = opts.now ?? (() => new Date());
  }

  /** Moves the phase (the Redis implementation reads it from the state record). */
  setPhase(phase: Phase): void {
    this.phase = phase;
  }

  private store(layout: Layout, ws: string, id: string): { get(): Hash | undefined; set(h: Hash): void } {
    const map = layout === Layout.Legacy ? this.legacy : this.v2;
    const key = layout === Layout.Legacy ? id : `${ws}:${id}`;
    return { get: () => map.get(key), set: (h) => map.set(key, h) };
  }

  private writeThrough(ws: string, id: string, primaryHash: Hash): Hash {
    const route = routeFor(this.phase);
    const rev = String(Number(primaryHash[JobField.Rev] ?? '0') + 1);
    const snap: Hash = { ...primaryHash, [JobField.Rev]: rev };
    for (const layout of [route.primary, route.mirror]) {
      if (layout === null) continue;
      const s = this.store(layout, ws, id);
      const cur = s.get();
      if (layout === route.mirror && cur && Number(cur[JobField.Rev] ?? '0') > Number(rev)) continue;
      s.set({ ...snap });
      if (layout === Layout.V2) {
        let ix = this.index.get(ws);
        if (!ix) this.index.set(ws, (ix = new Map()));
        ix.set(id, createdAtScore(snap[JobField.CreatedAt]));
      }
    }
    return snap;
  }

  async enqueue(input: EnqueueInput): Promise<Job> {
    const parsed = parseInput(EnqueueInputSchema, input);
    const jobId = parsed.jobId ?? newJobId();
    const { primary } = routeFor(this.phase);
    if (this.store(primary, parsed.workspaceId, jobId).get()) throw new JobExistsError(jobId);
    const fields = newJobFields({ jobId, workspaceId: parsed.workspaceId, action: parsed.action, params: parsed.params, now: this.now() });
    const snap = this.writeThrough(parsed.workspaceId, jobId, fields);
    this.pending.push(queueRef(this.phase, parsed.workspaceId, jobId));
    return jobFromHash(snap);
  }

  async dequeue(): Promise<Job | null> {
    while (this.pending.length > 0) {
      const ref = parseQueueRef(this.pending.shift()!);
      if (!ref) continue;
      const ws = ref.workspaceId ?? this.legacy.get(ref.jobId)?.[JobField.WorkspaceId];
      if (!ws) continue;
      const job = await this.getJob(ws, ref.jobId);
      if (job) return job;
    }
    return null;
  }

  async getJob(workspaceId: string, jobId: string): Promise<Job | null> {
    assertWorkspaceId(workspaceId);
    assertJobId(jobId);
    const h = this.store(routeFor(this.phase).primary, workspaceId, jobId).get();
    return h && h[JobField.WorkspaceId] === workspaceId ? jobFromHash(h) : null;
  }

  async updateStatus(workspaceId: string, jobId: string, patch: StatusPatch): Promise<Job> {
    assertWorkspaceId(workspaceId);
    assertJobId(jobId);
    const parsed = parseInput(StatusPatchSchema, patch);
    const cur = this.store(routeFor(this.phase).primary, workspaceId, jobId).get();
    if (!cur || cur[JobField.WorkspaceId] !== workspaceId) throw new JobNotFoundError(jobId);
    return jobFromHash(this.writeThrough(workspaceId, jobId, { ...cur, ...statusPatchFields(parsed, this.now()) }));
  }

  async listJobs(workspaceId: string, opts: ListJobsOptions): Promise<ListJobsResult> {
    assertWorkspaceId(workspaceId);
    if (!Number.isInteger(opts.limit) || opts.limit < 1 || opts.limit > MAX_PAGE_LIMIT) {
      throw new ValidationError(`Invalid limit ${String(opts.limit)}: use an integer from 1 to ${MAX_PAGE_LIMIT}`);
    }
    const { recordSlot, ...rest } = opts;
    // Everything here is in memory already: the whole listing runs in the slot.
    if (recordSlot) return recordSlot(() => this.listJobs(workspaceId, rest));
    const path = routeFor(this.phase).primary;
    let all: Array<{ s: number; m: string; h: Hash }>;
    if (path === Layout.V2) {
      all = [...(this.index.get(workspaceId) ?? new Map<string, number>())]
        .map(([m, s]) => ({ s, m, h: this.v2.get(`${workspaceId}:${m}`)! }))
        .filter((e) => e.h !== undefined);
    } else {
      all = [...this.legacy.values()]
        .filter((h) => h[JobField.WorkspaceId] === workspaceId)
        .map((h) => ({ s: createdAtScore(h[JobField.CreatedAt]), m: h[JobField.JobId] ?? '', h }));
    }
    all.sort((a, b) => a.s - b.s || (a.m < b.m ? -1 : a.m > b.m ? 1 : 0));
    let start = 0;
    if (opts.cursor) {
      // The memory store orders both paths by (score, member); the cursor still records its path.
      const c = decodeCursor(opts.cursor, path);
      const s = c.p === Layout.V2 ? c.s : Number(c.c);
      const m = c.p === Layout.V2 ? c.m : (c.after ?? '');
      start = all.findIndex((e) => e.s > s || (e.s === s && e.m > m));
      if (start < 0) start = all.length;
    }
    const page = all.slice(start, start + opts.limit);
    const last = page[page.length - 1];
    const hasMore = start + opts.limit < all.length;
    let nextCursor: string | null = null;
    if (hasMore && last) {
      nextCursor =
        path === Layout.V2
          ? encodeCursor({ p: Layout.V2, s: last.s, m: last.m })
          : encodeCursor({ p: Layout.Legacy, n: 'memory', c: String(last.s), k: 1, after: last.m });
    }
    return { jobs: page.map((e) => jobFromHash(e.h)), nextCursor, readPath: path };
  }

  async close(): Promise<void> {}
}
