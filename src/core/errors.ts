/**
 * One error model for the whole package (modelled on ioredis' error classes).
 *
 * Every error the CLI can surface is an {@link OrchError}: it carries a stable
 * `code`, the process `exitCode` from the contract (DESIGN §5), a `suggestion`
 * that names the fix, and the underlying `cause`. Only `src/cli` turns these
 * into process exits.
 */
import { ZodError } from 'zod';

/** Exit codes: a contract for CI and runbooks (DESIGN §5). */
export const ExitCode = {
  Ok: 0,
  Problems: 1,
  Usage: 2,
  Gate: 3,
  Locked: 4,
  Unavailable: 5,
  Interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Options shared by every {@link OrchError}. */
export interface OrchErrorOptions {
  code: string;
  exitCode: ExitCode;
  suggestion?: string;
  cause?: unknown;
}

/** Base class of every error this package raises on purpose. */
export class OrchError extends Error {
  readonly code: string;
  readonly exitCode: ExitCode;
  readonly suggestion: string | undefined;

  constructor(message: string, options: OrchErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
    this.exitCode = options.exitCode;
    this.suggestion = options.suggestion;
  }
}

/** Bad flags, bad URLs, bad config files, a state record edited into nonsense. Exit 2. */
export class ConfigError extends OrchError {
  constructor(message: string, opts: { code?: string; suggestion?: string; cause?: unknown } = {}) {
    super(message, { code: opts.code ?? 'ERR_CONFIG', exitCode: ExitCode.Usage, suggestion: opts.suggestion, cause: opts.cause });
  }
}

/** Input that fails a boundary rule (workspace id, job id, ...). Exit 2. */
export class ValidationError extends ConfigError {
  constructor(message: string, opts: { suggestion?: string; cause?: unknown } = {}) {
    super(message, { code: 'ERR_VALIDATION', ...opts });
  }
}

/** A gate refused: wrong phase, stale verify, soak not over. Exit 3. */
export class GateError extends OrchError {
  readonly gate: string;
  constructor(gate: string, message: string, opts: { suggestion?: string; cause?: unknown } = {}) {
    super(message, { code: 'ERR_GATE', exitCode: ExitCode.Gate, ...opts });
    this.gate = gate;
  }
}

/** Someone else moved the state record between our read and our compare-and-set. Exit 3. */
export class EpochConflictError extends OrchError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, {
      code: 'ERR_EPOCH_CONFLICT',
      exitCode: ExitCode.Gate,
      suggestion: 'Another operator changed the phase meanwhile; run `orch-migrate status` and retry.',
      ...opts,
    });
  }
}

/** Holder description stored in the lease lock. */
export interface LockHolder {
  user: string;
  host: string;
  pid: number;
  command: string;
  since: number;
}

/** The lease lock is held by another run. Exit 4. */
export class LockHeldError extends OrchError {
  readonly holder: LockHolder | null;
  constructor(message: string, holder: LockHolder | null, opts: { suggestion?: string } = {}) {
    super(message, { code: 'ERR_LOCKED', exitCode: ExitCode.Locked, ...opts });
    this.holder = holder;
  }
}

/** Our lease was lost or taken over; a stale holder must not write (fencing). Exit 4. */
export class FencedError extends OrchError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, {
      code: 'ERR_FENCED',
      exitCode: ExitCode.Locked,
      suggestion: 'Another run took over the migration lock; check `orch-migrate status` before retrying.',
      ...opts,
    });
  }
}

/** Redis unreachable or lost mid-run. Exit 5. */
export class RedisUnavailableError extends OrchError {
  readonly address: string;
  constructor(address: string, detail: string, opts: { cause?: unknown } = {}) {
    super(`Redis at ${address} is unreachable: ${detail}`, {
      code: 'ERR_REDIS_UNAVAILABLE',
      exitCode: ExitCode.Unavailable,
      suggestion: 'Check that Redis is running and reachable (--redis-url / REDIS_URL); progress is checkpointed, rerun to resume.',
      ...opts,
    });
    this.address = address;
  }
}

/** SIGINT/SIGTERM ended the run cleanly. Exit 130. */
export class InterruptedError extends OrchError {
  constructor(message = 'Interrupted; checkpoint saved, rerun to resume.') {
    super(message, { code: 'ERR_INTERRUPTED', exitCode: ExitCode.Interrupted });
  }
}

/** A job (or a record) that does not exist in the caller's workspace. */
export class JobNotFoundError extends OrchError {
  constructor(jobId: string) {
    super(`Job ${jobId} not found`, { code: 'ERR_NOT_FOUND', exitCode: ExitCode.Usage });
  }
}

/** A job with this id already exists. */
export class JobExistsError extends OrchError {
  constructor(jobId: string) {
    super(`Job ${jobId} already exists`, { code: 'ERR_EXISTS', exitCode: ExitCode.Usage });
  }
}

/** A paging cursor that is malformed, tampered with, or from another read path. */
export class CursorError extends OrchError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, { code: 'ERR_CURSOR', exitCode: ExitCode.Usage, suggestion: 'Restart paging without a cursor.', ...opts });
  }
}

const ZOD_ISSUE_LIMIT = 3;

/** Converts anything thrown into an {@link OrchError} (a ZodError becomes a config error). */
export function toOrchError(err: unknown): OrchError {
  if (err instanceof OrchError) return err;
  if (err instanceof ZodError) {
    const issues = err.issues
      .slice(0, ZOD_ISSUE_LIMIT)
      .map((i) => `${i.path.length > 0 ? i.path.join('.') + ': ' : ''}${i.message}`)
      .join('; ');
    return new ValidationError(`Invalid input: ${issues}`, { cause: err, suggestion: 'Fix the value named above; see --help for the allowed forms.' });
  }
  // The data scripts (backfill, cleanup, repair) refuse with 'FENCED lock' once this run lost its lease
  // (src/core/lua/includes/holds-lock.lua): a lost lock, exit 4, not an internal error.
  if (isReplyError(err) && replyMessage(err).startsWith('FENCED')) {
    return new FencedError('This run no longer holds the migration lock (its lease expired, was deleted or taken over): the refused batch changed nothing', { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new OrchError(message, { code: 'ERR_INTERNAL', exitCode: ExitCode.Problems, cause: err });
}

/** True for a Redis error reply (ioredis ReplyError), e.g. a script's error_reply. */
export function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ReplyError';
}

/** The message of a script's error reply without the "ERR " Redis may prepend, e.g. "EXISTS" or "EPOCH 3 dual-write". */
export function replyMessage(err: Error): string {
  return err.message.replace(/^ERR /, '');
}
