/**
 * How errors become HTTP answers. The client gets a status, a stable error
 * code and a generic message; the original error stays chained (`cause`) and
 * is logged server-side with the request id. No internals reach the client.
 */
import { ZodError } from 'zod';
import {
  ConfigError,
  CursorError,
  isReplyError,
  JobExistsError,
  JobNotFoundError,
  OrchError,
  RedisOutOfMemoryError,
  RedisUnavailableError,
  ValidationError,
} from '../core/errors.js';
import { classifyRedisError, isConnectionError } from '../core/redis.js';
import { CursorPathError } from './cursor-envelope.js';

/** An error raised on purpose by the API, with what the client may see. */
export class ApiError extends Error {
  readonly statusCode: number;
  readonly code: string;
  constructor(statusCode: number, code: string, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ApiError';
    this.statusCode = statusCode;
    this.code = code;
  }
}

/** What the client sees. */
export interface HttpErrorView {
  status: number;
  code: string;
  message: string;
}

const GENERIC_4XX: Record<number, string> = {
  400: 'Bad request',
  404: 'Not found',
  405: 'Method not allowed',
  406: 'Not acceptable',
  413: 'Request body too large',
  414: 'URI too long',
  415: 'Unsupported media type: send application/json',
  431: 'Request header fields too large',
};

/** Messages of zod issues, bounded (schemas here carry their own messages, never the input). */
export function zodSummary(err: ZodError, what: string): string {
  const first = err.issues[0];
  if (!first) return `Invalid ${what}`;
  const where = first.path.length > 0 ? `${first.path.join('.')}: ` : '';
  const msg = first.code === 'unrecognized_keys' ? `unknown field(s) ${first.keys.map((k) => JSON.stringify(k.slice(0, 32))).join(', ')}` : first.message;
  return `Invalid ${what}: ${where}${msg}`.slice(0, 300);
}

/** True when the failed cursor came from the other read path (a flip happened while paging). */
function isPathCursorError(err: CursorError): boolean {
  return err instanceof CursorPathError || /read path/.test(err.message);
}

/**
 * "This job id is taken", whatever the queue core calls it: one answer, so a
 * tenant cannot tell its own id from another workspace's (see routes.ts, POST).
 */
function isIdTaken(err: unknown): boolean {
  return err instanceof JobExistsError || (err instanceof OrchError && /^ERR_(EXISTS|ID_CONFLICT|ID_TAKEN)$/.test(err.code));
}

/** Redis replies that mean "not now" (cluster resharding or failover, a busy script), by their error code. */
function isTransientReply(err: unknown): boolean {
  return isReplyError(err) && /^(MOVED|ASK|TRYAGAIN|BUSY|MASTERDOWN|READONLY)\b/.test(err.message);
}

/** Maps anything thrown to the client's view. */
export function toHttpError(thrown: unknown): HttpErrorView {
  if (thrown instanceof ApiError) return { status: thrown.statusCode, code: thrown.code, message: thrown.message };
  // Redis replies with a meaning (OOM, refused credentials) get their class first; the address is not shown.
  const err = classifyRedisError(thrown, 'redis');
  if (err instanceof CursorError) {
    return isPathCursorError(err)
      ? {
          status: 400,
          code: 'cursor_read_path_changed',
          message: 'The read path changed (migration phase flip) since this cursor was issued; restart paging without a cursor',
        }
      : { status: 400, code: 'invalid_cursor', message: 'Invalid cursor; restart paging without a cursor' };
  }
  if (err instanceof JobNotFoundError) return { status: 404, code: 'not_found', message: 'Job not found' };
  if (isIdTaken(err)) return { status: 409, code: 'conflict', message: 'job_id is already in use' };
  if (err instanceof ZodError) return { status: 400, code: 'invalid_request', message: zodSummary(err, 'request') };
  if (err instanceof ValidationError) return { status: 400, code: 'invalid_request', message: 'Invalid request' };
  // Out of memory refuses writes only until memory is freed, and a slot moving or a failover in progress
  // ends by itself: temporarily unavailable, like an outage.
  if (err instanceof RedisUnavailableError || err instanceof RedisOutOfMemoryError || isConnectionError(err) || isTransientReply(err)) {
    return { status: 503, code: 'unavailable', message: 'Service temporarily unavailable' };
  }
  // A corrupt state record: the phase cannot be known, so neither can the read path.
  if (err instanceof ConfigError) return { status: 503, code: 'unavailable', message: 'Service temporarily unavailable' };
  if (!(err instanceof OrchError) && err instanceof Error) {
    // Fastify's own errors (bad JSON, wrong content type, body too large, ...) carry a 4xx statusCode.
    const status = (err as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return {
        status,
        code: status === 415 ? 'unsupported_media_type' : status === 413 ? 'payload_too_large' : 'invalid_request',
        message: GENERIC_4XX[status] ?? 'Bad request',
      };
    }
  }
  return { status: 500, code: 'internal', message: 'Internal error' };
}
