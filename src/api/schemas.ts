/**
 * Request and response shapes (DESIGN §7). Every pattern is a full match.
 */
import { z } from 'zod';
import { isJobId } from '../core/ids.js';
import { JobStatusSchema, type Job } from '../core/job.js';
import { MAX_PAGE_LIMIT } from '../core/queue.js';
import type { Redactor } from '../core/redact.js';
import { CURSOR_PATTERN } from './cursor-envelope.js';

/** Default page size of GET /ai/jobs. */
export const DEFAULT_LIMIT = 50;

const JOB_ID_MESSAGE = 'a job id is 1-128 characters of A-Z, a-z, 0-9, "_", "." or "-", starting with a letter or digit';

/** A job id from the URL or a body (full match). */
export const JobIdParam = z.string().refine(isJobId, { message: JOB_ID_MESSAGE });

/** Query of GET /ai/jobs. Unknown parameters are refused (the workspace never comes from the request). */
export const ListQuerySchema = z
  .object({
    limit: z
      .string()
      .regex(/^[1-9][0-9]{0,2}$/, `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}`)
      .transform(Number)
      .refine((n) => n <= MAX_PAGE_LIMIT, `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}`)
      .optional(),
    cursor: z.string().regex(CURSOR_PATTERN, 'cursor is malformed').optional(),
  })
  .strict();

/** Params of /ai/jobs/:job_id. */
export const JobParamsSchema = z.object({ job_id: JobIdParam }).strict();

/** Action names: a letter or digit, then letters, digits, `_ . : / -`. */
export const ACTION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$/;

/** Body of POST /ai/jobs. */
export const CreateJobSchema = z
  .object({
    action: z.string().regex(ACTION_PATTERN, 'action is 1-128 characters of A-Z, a-z, 0-9, "_", ".", ":", "/" or "-"'),
    params: z.record(z.string(), z.unknown()),
    job_id: JobIdParam.optional(),
  })
  .strict();

/** Body of PATCH /ai/jobs/:job_id. */
export const PatchJobSchema = z
  .object({
    status: JobStatusSchema,
    result: z.record(z.string(), z.unknown()).optional(),
    error: z.string().max(4096).optional(),
  })
  .strict();

/** A job as the API returns it (snake_case; params redacted; result, status and timestamps as stored). */
export interface WireJob {
  job_id: string;
  workspace_id: string;
  status: string;
  action: string;
  params: Record<string, unknown>;
  result: unknown;
  created_at: string;
  updated_at: string;
}

/** The one place a job becomes a response body. */
export function toWireJob(job: Job, redactor: Redactor): WireJob {
  return {
    job_id: job.jobId,
    workspace_id: job.workspaceId,
    status: job.status,
    action: job.action,
    params: redactor(job.params),
    result: job.result,
    created_at: job.createdAt,
    updated_at: job.updatedAt,
  };
}

/** Body of GET /ai/jobs. */
export interface ListResponse {
  workspace_id: string;
  jobs: WireJob[];
  count: number;
  next_cursor: string | null;
}
