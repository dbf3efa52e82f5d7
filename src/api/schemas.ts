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

export type ListQuery = z.output<typeof ListQuerySchema>;

const LIMIT_PATTERN = /^[1-9][0-9]{0,2}$/;

/**
 * The common GET /ai/jobs query checked by hand: `limit` and `cursor` only, each a string that
 * ListQuerySchema accepts. Returns what the schema would, or null for anything else (then the
 * schema parses it and words the error). Inside the running service zod took about 11 µs per
 * request for this two-field query (docs/performance.md, "The API's page"); this takes well under one.
 */
export function listQueryFast(query: unknown): ListQuery | null {
  // The schema's own notion of an object: anything but null and arrays.
  if (typeof query !== 'object' || query === null || Array.isArray(query)) return null;
  const out: ListQuery = {};
  // for…in, as zod walks a strict object: an inherited enumerable key counts too.
  for (const key in query) {
    const v = (query as Record<string, unknown>)[key];
    if (typeof v !== 'string') return null;
    if (key === 'limit' && LIMIT_PATTERN.test(v) && Number(v) <= MAX_PAGE_LIMIT) out.limit = Number(v);
    else if (key === 'cursor' && CURSOR_PATTERN.test(v)) out.cursor = v;
    else return null;
  }
  return out;
}

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

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** Offsets of the digits in `YYYY-MM-DDTHH:MM:SS.mmmZ`; the other positions hold the separators below. */
const ISO_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
const ISO_SEPARATORS: ReadonlyArray<[number, number]> = [
  [4, 0x2d /* - */],
  [7, 0x2d],
  [10, 0x54 /* T */],
  [13, 0x3a /* : */],
  [16, 0x3a],
  [19, 0x2e /* . */],
  [23, 0x5a /* Z */],
];

/** The number written by the digits at `from` .. `from + len - 1` (already checked to be digits). */
function digitsAt(raw: string, from: number, len: number): number {
  let n = 0;
  for (let i = from; i < from + len; i++) n = n * 10 + (raw.charCodeAt(i) - 0x30);
  return n;
}

/**
 * True when `raw` is exactly what Date#toISOString prints for some instant other than the epoch (which isoTimestamp reads as null).
 * Checked character by character: it runs twice per job of every page, and a regular expression with
 * capture groups cost several times more (docs/performance.md, "The API's page").
 */
export function isCanonicalIso(raw: string): boolean {
  if (raw.length !== 24) return false;
  for (const [at, code] of ISO_SEPARATORS) if (raw.charCodeAt(at) !== code) return false;
  for (const at of ISO_DIGITS) {
    const c = raw.charCodeAt(at);
    if (c < 0x30 || c > 0x39) return false;
  }
  const year = digitsAt(raw, 0, 4);
  const month = digitsAt(raw, 5, 2);
  const day = digitsAt(raw, 8, 2);
  if (month < 1 || month > 12 || day < 1 || digitsAt(raw, 11, 2) > 23 || digitsAt(raw, 14, 2) > 59 || digitsAt(raw, 17, 2) > 59) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day > days) return false;
  return raw !== '1970-01-01T00:00:00.000Z';
}

/** The one place a job becomes a response body: `params`, `result` and `error` go through the central redactor. */
export function toWireJob(job: Job, redactor: Redactor): WireJob {
  const rawParams = job.raw?.params;
  const rawResult = job.raw?.result;
  if (rawParams === undefined && rawResult === undefined) {
    // The common case, as one literal: the general form below allocates two empty objects per job to spread.
    return {
      job_id: job.jobId,
      workspace_id: job.workspaceId,
      status: job.status,
      action: job.action,
      params: redactor(job.params),
      result: redactor(job.result),
      error: job.error === null ? null : redactor.text(job.error),
      created_at: isoTimestamp(job.createdAt),
      updated_at: isoTimestamp(job.updatedAt),
    };
  }
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
