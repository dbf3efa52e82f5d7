/**
 * The `JobQueue` interface (seed Pattern 2). Endpoint and worker code depend on
 * this, never on the key layout or the phase.
 */
import type { EnqueueInput, Job, StatusPatch } from './job.js';
import type { Layout } from './phase.js';

/** Options of {@link JobQueue.listJobs}. */
export interface ListJobsOptions {
  /** Page size, 1–200. */
  limit: number;
  /** Opaque cursor from a previous page, or null/undefined for the first page. */
  cursor?: string | null;
  /**
   * Byte budget of the page (stored field names and values). A page stops
   * before the job that would exceed it, but always holds at least one job;
   * the cursor continues right after the last job returned. Implementations
   * without a budget ignore it. Default DEFAULT_PAGE_MAX_BYTES (src/core/listing.ts).
   */
  maxBytes?: number;
  /**
   * Runs the part of the read that holds the page's records, from the first record fetched until the
   * page is returned, so a caller can bound how many pages are in memory at once (the API's
   * ORCH_API_LIST_CONCURRENCY). A v2 page reads its index entries (at most limit + 1) before it; a
   * legacy page runs wholly inside it. Default: the read runs as is.
   */
  recordSlot?: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** One page of a workspace's jobs. */
export interface ListJobsResult {
  jobs: Job[];
  /** Cursor of the next page, or null when this was the last page. */
  nextCursor: string | null;
  /** The layout this page was read from. Cursors are bound to it. */
  readPath: Layout;
}

/** A job store whose layout is chosen by the migration phase. */
export interface JobQueue {
  /** Creates a job (status `queued`) and appends its reference to the pending list. */
  enqueue(input: EnqueueInput): Promise<Job>;
  /** Pops the oldest pending reference and returns its job, or null when the list is empty. */
  dequeue(): Promise<Job | null>;
  /** One job of a workspace, or null when it is not in that workspace. */
  getJob(workspaceId: string, jobId: string): Promise<Job | null>;
  /** Updates status/result/error through the write protocol; throws JobNotFoundError outside the workspace. */
  updateStatus(workspaceId: string, jobId: string, patch: StatusPatch): Promise<Job>;
  /** A page of a workspace's jobs, never skipping one. */
  listJobs(workspaceId: string, opts: ListJobsOptions): Promise<ListJobsResult>;
  /** Releases connections and timers. */
  close(): Promise<void>;
}

/** Largest page {@link JobQueue.listJobs} serves. */
export const MAX_PAGE_LIMIT = 200;
