/**
 * The job model. A job is stored as a Redis hash whose values are strings;
 * `params` and `result` are JSON. Reading is tolerant (legacy data is old and
 * varied); writing is strict.
 */
import { z } from 'zod';
import { toOrchError } from './errors.js';
import { isJobId, isWorkspaceId, JobIdSchema, WorkspaceIdSchema } from './ids.js';
import { jsonTooDeep, MAX_STORED_JSON_DEPTH } from './json-depth.js';

/** Job statuses the queue core writes. */
export const JobStatus = {
  Queued: 'queued',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
  Cancelled: 'cancelled',
} as const;
export type JobStatus = (typeof JobStatus)[keyof typeof JobStatus];
export const JobStatusSchema = z.enum([JobStatus.Queued, JobStatus.Running, JobStatus.Succeeded, JobStatus.Failed, JobStatus.Cancelled]);

/** Field names of a job hash. */
export const JobField = {
  JobId: 'job_id',
  WorkspaceId: 'workspace_id',
  Action: 'action',
  Params: 'params',
  Status: 'status',
  Result: 'result',
  Error: 'error',
  CreatedAt: 'created_at',
  UpdatedAt: 'updated_at',
  Rev: 'rev',
} as const;

/** A job as the queue core returns it. */
export interface Job {
  jobId: string;
  workspaceId: string;
  action: string;
  params: Record<string, unknown>;
  status: string;
  result: unknown;
  error: string | null;
  /** ISO-8601. */
  createdAt: string;
  /** ISO-8601. */
  updatedAt: string;
  /** Revision: +1 on every write to the primary; 0 when the record has no `rev` field. */
  rev: number;
  /**
   * Stored text of `params`/`result` when it nests deeper than MAX_STORED_JSON_DEPTH
   * (src/core/json-depth.ts): such text is not parsed, so nothing downstream can
   * overflow the stack walking it. `params` is then `{}` and `result` null.
   */
  raw?: { params?: string; result?: string };
}

/** Input of `enqueue`. */
export const EnqueueInputSchema = z.object({
  workspaceId: WorkspaceIdSchema,
  jobId: JobIdSchema.optional(),
  action: z.string().min(1).max(128),
  params: z.record(z.string(), z.unknown()).default({}),
  /** Optional expiry of the record, in ms. */
  ttlMs: z.number().int().positive().optional(),
});
export type EnqueueInput = z.input<typeof EnqueueInputSchema>;
/** A validated {@link EnqueueInput}. */
export type EnqueueParsed = z.output<typeof EnqueueInputSchema>;

/**
 * `params` that {@link EnqueueInputSchema} would accept and copy key by key
 * into an object with the same JSON text: a literal-like object with no symbol
 * key and no own `__proto__` (zod refuses the first and drops the second).
 */
function isPlainParams(p: unknown): p is Record<string, unknown> {
  return (
    typeof p === 'object' &&
    p !== null &&
    Object.getPrototypeOf(p) === Object.prototype &&
    Object.getOwnPropertySymbols(p).length === 0 &&
    !Object.prototype.hasOwnProperty.call(p, '__proto__')
  );
}

/**
 * Validates enqueue input: the common shape is checked by hand (zod costs
 * microseconds on the write path, see docs/performance.md "Write path"), and
 * anything else goes through {@link EnqueueInputSchema}, which also words
 * every error. The fast path accepts a subset of what the schema accepts and
 * returns what it would (unknown keys dropped, `params` defaulting to `{}`).
 */
export function parseEnqueueInput(input: unknown): EnqueueParsed {
  if (typeof input === 'object' && input !== null) {
    const i = input as Record<string, unknown>;
    const { workspaceId, jobId, action, params, ttlMs } = i;
    if (
      isWorkspaceId(workspaceId) &&
      (jobId === undefined || isJobId(jobId)) &&
      typeof action === 'string' &&
      action.length >= 1 &&
      action.length <= 128 &&
      (params === undefined || isPlainParams(params)) &&
      (ttlMs === undefined || (typeof ttlMs === 'number' && Number.isSafeInteger(ttlMs) && ttlMs > 0))
    ) {
      const out: EnqueueParsed = { workspaceId, action, params: params ?? {} };
      if (jobId !== undefined) out.jobId = jobId;
      if (ttlMs !== undefined) out.ttlMs = ttlMs;
      return out;
    }
  }
  return parseInput(EnqueueInputSchema, input);
}

/** Input of `updateStatus`. */
export const StatusPatchSchema = z.object({
  status: JobStatusSchema,
  result: z.unknown().optional(),
  error: z.string().max(4096).optional(),
});
export type StatusPatch = z.input<typeof StatusPatchSchema>;

function parseJson(raw: string | undefined): unknown {
  if (raw === undefined || raw === '') return null;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    // Old records may hold plain text; return it as it is rather than failing the read.
    return raw;
  }
}

/** Parses a stored rev; a record without `rev` is rev 0. Returns null when malformed. */
export function parseRev(raw: string | Buffer | undefined | null): number | null {
  if (raw === undefined || raw === null) return 0;
  const s = raw.toString();
  if (!/^(0|[1-9][0-9]{0,15})$/.test(s)) return null;
  return Number(s);
}

/** Builds a {@link Job} from a hash read as strings. */
export function jobFromHash(hash: Record<string, string>): Job {
  const rawParams = hash[JobField.Params];
  const rawResult = hash[JobField.Result];
  const deepParams = rawParams !== undefined && jsonTooDeep(rawParams, MAX_STORED_JSON_DEPTH);
  const deepResult = rawResult !== undefined && jsonTooDeep(rawResult, MAX_STORED_JSON_DEPTH);
  const params = deepParams ? null : parseJson(rawParams);
  const raw = deepParams || deepResult ? { ...(deepParams ? { params: rawParams } : {}), ...(deepResult ? { result: rawResult } : {}) } : undefined;
  return {
    jobId: hash[JobField.JobId] ?? '',
    workspaceId: hash[JobField.WorkspaceId] ?? '',
    action: hash[JobField.Action] ?? '',
    params: params !== null && typeof params === 'object' && !Array.isArray(params) ? (params as Record<string, unknown>) : {},
    status: hash[JobField.Status] ?? '',
    result: deepResult ? null : parseJson(rawResult),
    error: hash[JobField.Error] ? (hash[JobField.Error] ?? null) : null,
    createdAt: hash[JobField.CreatedAt] ?? '',
    updatedAt: hash[JobField.UpdatedAt] ?? '',
    rev: parseRev(hash[JobField.Rev]) ?? 0,
    ...(raw ? { raw } : {}),
  };
}

/**
 * The index score of a record: created_at in ms. Accepts ISO-8601 and epoch
 * seconds or milliseconds; 0 when absent or unparseable (ordering only, never identity).
 */
export function createdAtScore(raw: string | Buffer | undefined | null): number {
  if (raw === undefined || raw === null) return 0;
  const s = raw.toString();
  if (/^[0-9]{1,16}(\.[0-9]+)?$/.test(s)) {
    const n = Number(s);
    return n < 1e11 ? Math.round(n * 1000) : Math.round(n);
  }
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : 0;
}

/** Field/value pairs of a new job record (rev is set by the write script). */
export function newJobFields(input: {
  jobId: string;
  workspaceId: string;
  action: string;
  params: Record<string, unknown>;
  now: Date;
}): Record<string, string> {
  const iso = input.now.toISOString();
  return {
    [JobField.JobId]: input.jobId,
    [JobField.WorkspaceId]: input.workspaceId,
    [JobField.Action]: input.action,
    [JobField.Params]: JSON.stringify(input.params),
    [JobField.Status]: JobStatus.Queued,
    [JobField.Result]: '',
    [JobField.Error]: '',
    [JobField.CreatedAt]: iso,
    [JobField.UpdatedAt]: iso,
  };
}

/** Field/value pairs of a status update. */
export function statusPatchFields(patch: z.output<typeof StatusPatchSchema>, now: Date): Record<string, string> {
  const fields: Record<string, string> = {
    [JobField.Status]: patch.status,
    [JobField.UpdatedAt]: now.toISOString(),
  };
  if (patch.result !== undefined) fields[JobField.Result] = JSON.stringify(patch.result);
  if (patch.error !== undefined) fields[JobField.Error] = patch.error;
  return fields;
}

/** Parses boundary input; a failure becomes a ValidationError (exit 2) that says what is allowed. */
export function parseInput<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw toOrchError(r.error);
  return r.data;
}
