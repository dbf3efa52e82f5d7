/**
 * Request and response shapes of the API. Every pattern is a full match. The
 * same zod schemas parse requests in src/api/routes.ts and generate the
 * OpenAPI document (src/api/openapi.ts), so the two cannot drift.
 */
import { z } from 'zod';
import { JOB_ID_PATTERN } from '../core/ids.js';
import { createdAtScore, JobStatusSchema, type Job } from '../core/job.js';
import { MAX_PAGE_LIMIT } from '../core/queue.js';
import type { Redactor } from '../core/redact.js';
import { CURSOR_PATTERN } from './cursor-envelope.js';

/** Default page size of GET /ai/jobs. */
export const DEFAULT_LIMIT = 50;

const JOB_ID_MESSAGE = 'a job id is 1-128 characters of A-Z, a-z, 0-9, "_", "." or "-", starting with a letter or digit';

/** A job id from the URL or a body (full match: the pattern is anchored and has no alternation). */
export const JobIdParam = z
  .string()
  .regex(JOB_ID_PATTERN, JOB_ID_MESSAGE)
  .describe('Job id: 1-128 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit');

/** Query of GET /ai/jobs. Unknown parameters are refused (the workspace never comes from the request). */
export const ListQuerySchema = z
  .object({
    limit: z
      .string()
      .regex(/^[1-9][0-9]{0,2}$/, `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}`)
      .transform(Number)
      .refine((n) => n <= MAX_PAGE_LIMIT, `limit must be an integer from 1 to ${MAX_PAGE_LIMIT}`)
      .optional()
      .describe(`Most jobs in the page, 1-${MAX_PAGE_LIMIT} (default ${DEFAULT_LIMIT}); a page may hold fewer when it reaches its byte budget`),
    cursor: z
      .string()
      .regex(CURSOR_PATTERN, 'cursor is malformed')
      .optional()
      .describe('Opaque next_cursor of the previous page; bound to the workspace and the read path'),
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
    params: z.record(z.string(), z.unknown()).describe('Free-form JSON object; returned redacted'),
    job_id: JobIdParam.optional().describe('Optional id; generated when absent. Ids are unique across workspaces while the legacy layout exists'),
  })
  .strict();

/** Body of PATCH /ai/jobs/:job_id. */
export const PatchJobSchema = z
  .object({
    status: JobStatusSchema,
    result: z.record(z.string(), z.unknown()).optional().describe('Free-form JSON object; returned redacted'),
    error: z.string().max(4096).optional().describe('Error text; returned redacted'),
  })
  .strict();

/** A job as the API returns it. */
export const WireJobSchema = z.object({
  job_id: z.string(),
  workspace_id: z.string(),
  status: z.string(),
  action: z.string(),
  params: z.union([z.record(z.string(), z.unknown()), z.string()]).describe('Redacted. A string (the stored JSON text, redacted) when params_raw is true'),
  params_raw: z.literal(true).optional().describe('Present when the stored params nest too deep to parse; params is then their text'),
  result: z.unknown().describe('Redacted. The stored JSON text (redacted) when result_raw is true'),
  result_raw: z.literal(true).optional().describe('Present when the stored result nests too deep to parse; result is then its text'),
  error: z.string().nullable().describe('Redacted error text, or null'),
  created_at: z.iso.datetime().nullable().describe('ISO-8601 (UTC) whatever the stored form; null when the record has no readable time'),
  updated_at: z.iso.datetime().nullable().describe('ISO-8601 (UTC) whatever the stored form; null when the record has no readable time'),
});
export type WireJob = z.infer<typeof WireJobSchema>;

/** Body of GET /ai/jobs. */
export const ListResponseSchema = z.object({
  workspace_id: z.string(),
  jobs: z.array(WireJobSchema),
  count: z.number().int(),
  next_cursor: z.string().nullable().describe('Pass as ?cursor= for the next page; null on the last page'),
});
export type ListResponse = z.infer<typeof ListResponseSchema>;

/** Body of every error answer. */
export const ErrorBodySchema = z.object({
  error: z
    .string()
    .describe(
      'Stable code: invalid_request, unauthorized, invalid_token, forbidden, insufficient_scope, not_found, conflict, payload_too_large, unavailable, internal, ...',
    ),
  message: z.string(),
  request_id: z.string(),
});

/** Body of /healthz. */
export const HealthSchema = z.object({
  status: z.enum(['ok', 'unavailable']),
  checks: z.record(z.string(), z.enum(['ok', 'fail'])),
  phase: z.string().optional(),
  epoch: z.number().int().optional(),
  read_path: z.enum(['legacy', 'v2']).optional(),
});

/** Body of /livez. */
export const LiveSchema = z.object({ status: z.literal('ok') });

/**
 * A stored time as ISO-8601 UTC. Old records hold epoch seconds or
 * milliseconds as text (see createdAtScore in src/core/job.ts), newer ones
 * ISO-8601 with any offset; null when there is nothing readable.
 */
export function isoTimestamp(raw: string): string | null {
  if (raw === '') return null;
  // Records written by this tool already hold the canonical form: answer it as is instead of
  // parsing and printing it again (the slowest part of a page's wire form). Only a string that
  // Date would print back identically takes this path; anything else (Feb 30, 24:00, offsets) is parsed.
  if (isCanonicalIso(raw)) return raw;
  const ms = createdAtScore(raw);
  if (ms === 0 && !/^0+(\.0+)?$/.test(raw)) return null;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

const CANONICAL_ISO = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.[0-9]{3}Z$/;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** True when `raw` is exactly what Date#toISOString prints for some instant other than the epoch (which isoTimestamp reads as null). */
export function isCanonicalIso(raw: string): boolean {
  const m = CANONICAL_ISO.exec(raw);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day > days) return false;
  return raw !== '1970-01-01T00:00:00.000Z';
}

/** The one place a job becomes a response body: `params`, `result` and `error` go through the central redactor. */
export function toWireJob(job: Job, redactor: Redactor): WireJob {
  const rawParams = job.raw?.params;
  const rawResult = job.raw?.result;
  return {
    job_id: job.jobId,
    workspace_id: job.workspaceId,
    status: job.status,
    action: job.action,
    params: rawParams !== undefined ? redactor.text(rawParams) : redactor(job.params),
    ...(rawParams !== undefined ? { params_raw: true as const } : {}),
    result: rawResult !== undefined ? redactor.text(rawResult) : redactor(job.result),
    ...(rawResult !== undefined ? { result_raw: true as const } : {}),
    error: job.error === null ? null : redactor.text(job.error),
    created_at: isoTimestamp(job.createdAt),
    updated_at: isoTimestamp(job.updatedAt),
  };
}
