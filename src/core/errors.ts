/**
 * One error model for the whole package (modelled on ioredis' error classes).
 *
 * Every error the CLI can surface is an {@link OrchError}: it carries a stable
 * `code`, the process `exitCode` from the contract (docs/design.md "Exit codes and the --json contract"), a `suggestion`
 * that names the fix, and the underlying `cause`. Only `src/cli` turns these
 * into process exits.
 */
import { ZodError } from 'zod';

/** Exit codes: a contract for CI and runbooks (docs/design.md "Exit codes and the --json contract"). */
export const ExitCode = {
  Ok: 0,
  Problems: 1,
  Usage: 2,
  Gate: 3,
  Locked: 4,
  Unavailable: 5,
  /** Stopped by a guard: Redis out of memory, latency or replica lag past its critical level (checkpoint kept). */
  Guard: 6,
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
  /** Who is acting (`--actor`/ORCH_ACTOR; defaults to user@host), as the history records it. */
  actor: string;
  /** The lease the holder renews; a lock left far below it was not renewed (the holder may be dead). */
  ttlMs: number;
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
      // A Sentinel target is found through the sentinels, not the URL (src/core/sentinel.ts describeSentinelTarget).
      suggestion: / via sentinel /.test(address)
        ? 'Check that the sentinels (--sentinel / ORCH_SENTINELS) are reachable and monitor that master name (--sentinel-master); a failover in progress ends by itself; progress is checkpointed, rerun to resume.'
        : 'Check that Redis is running and reachable (--redis-url / REDIS_URL); progress is checkpointed, rerun to resume.',
      ...opts,
    });
    this.address = address;
  }
}

/**
 * Redis refused our credentials (WRONGPASS, NOAUTH). A configuration problem,
 * not an outage: retrying cannot help, so it is exit 2, never "unreachable".
 */
export class RedisAuthError extends ConfigError {
  readonly address: string;
  constructor(address: string, reply: string, opts: { cause?: unknown } = {}) {
    super(`Redis at ${address}: authentication failed (${reply})`, {
      code: 'ERR_REDIS_AUTH',
      suggestion:
        'Check the password (and the ACL user, if you use one) in --redis-url / REDIS_URL: redis://[user:]password@host:port. ' +
        'Percent-encode special characters in the password (e.g. %25 for %).',
      ...opts,
    });
    this.address = address;
  }
}

/**
 * Redis refused a write with OOM (used memory above `maxmemory` under a
 * noeviction policy). Exit 6: a guard stopped the run, the checkpoint is kept.
 */
export class RedisOutOfMemoryError extends OrchError {
  readonly address: string;
  constructor(address: string, opts: { cause?: unknown } = {}) {
    super(`Redis at ${address} is out of memory: it refuses writes because used memory is above maxmemory (noeviction policy)`, {
      code: 'ERR_REDIS_OOM',
      exitCode: ExitCode.Guard,
      suggestion:
        'Free memory or raise maxmemory (CONFIG SET maxmemory …) on the server, then rerun: the checkpoint is kept and the run resumes where it stopped.',
      ...opts,
    });
    this.address = address;
  }
}

/**
 * TLS failed for a reason only configuration can fix: the server's certificate
 * is not trusted, has expired or names another host, the server refused our
 * client certificate, or a TLS file is unusable. Exit 2, never "unreachable":
 * retrying cannot help, and the suggestion names the option to pass.
 */
export class TlsCertificateError extends ConfigError {
  readonly address: string;
  constructor(address: string, message: string, opts: { suggestion: string; cause?: unknown }) {
    super(message, { code: 'ERR_TLS', ...opts });
    this.address = address;
  }
}

/**
 * Redis refused a command, a key or a channel for the ACL user (NOPERM).
 * Exit 2: a missing permission is configuration, and `rule` is the exact
 * `ACL SETUSER` line that adds it.
 */
export class AclPermissionError extends ConfigError {
  readonly address: string;
  readonly user: string;
  /** `ACL SETUSER <user> <rules…>`: what to run (as an admin) to grant what was refused. */
  readonly rule: string;
  constructor(address: string, user: string, message: string, rule: string, opts: { cause?: unknown } = {}) {
    super(message, {
      code: 'ERR_NOPERM',
      suggestion: `Grant it with \`${rule}\` on every node (ACL rules do not replicate), or recreate the user from \`orch-migrate acl\` (docs/connectivity.md).`,
      ...opts,
    });
    this.address = address;
    this.user = user;
    this.rule = rule;
  }
}

/**
 * A guard stopped the run (src/ops/guards/): a signal reached its critical
 * level (memory, latency, replica lag), or a guard could not read its signal
 * when the run started (fail closed). The checkpoint is kept. Exit 6.
 */
export class GuardStopError extends OrchError {
  /** The guard that stopped the run (`memory`, `latency`, `replica-lag`). */
  readonly guard: string;
  /** What it read, in one line (the level and the node included). */
  readonly reading: string;
  /** Throttle accounting of the run until it stopped (set by whoever ran the guards). */
  throttle: Record<string, unknown> | null = null;

  constructor(guard: string, reading: string, opts: { unreadable?: boolean; suggestion: string }) {
    super(
      opts.unreadable
        ? `The ${guard} guard cannot read its signal (${reading}); a guard that cannot see fails closed, so the run did not start`
        : `Stopped by the ${guard} guard: ${reading}; checkpoint kept`,
      { code: opts.unreadable ? 'ERR_GUARD_UNREADABLE' : 'ERR_GUARD', exitCode: ExitCode.Guard, suggestion: opts.suggestion },
    );
    this.guard = guard;
    this.reading = reading;
  }

  /** What the history and the `--json` error record besides the code and message. */
  details(): Record<string, unknown> {
    return { guard: this.guard, reading: this.reading, ...(this.throttle ? { throttle: this.throttle } : {}) };
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
  const message = err instanceof Error ? err.message : String(err);
  return new OrchError(message, { code: 'ERR_INTERNAL', exitCode: ExitCode.Problems, cause: err });
}

/** True for a Redis error reply (ioredis ReplyError), e.g. a script's error_reply. */
export function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ReplyError';
}

/**
 * True for Redis' OOM reply ("OOM command not allowed when used memory >
 * 'maxmemory'"), also when a script's write hit it. Classified by the reply's
 * error code, which Redis keeps as the first word even inside a script error.
 */
export function isOutOfMemoryReply(err: unknown): boolean {
  if (err instanceof RedisOutOfMemoryError) return true;
  if (!isReplyError(err)) return false;
  return /^OOM\b/.test(err.message) || /^ERR .*?-OOM\b/.test(err.message);
}

/** True for a reply that refuses our credentials: WRONGPASS, NOAUTH, or the pre-ACL "ERR invalid password". */
export function isAuthReply(err: unknown): boolean {
  if (!isReplyError(err)) return false;
  return /^(WRONGPASS|NOAUTH)\b/.test(err.message) || /^ERR invalid (username-)?password/.test(err.message);
}

/** The message of a script's error reply without the "ERR " Redis may prepend, e.g. "EXISTS" or "EPOCH 3 dual-write". */
export function replyMessage(err: Error): string {
  return err.message.replace(/^ERR /, '');
}
