/**
 * Command options. Each subcommand declares its flags with commander (names
 * and help only) and parses them with one zod schema that holds the types and
 * the defaults, stated once (the node-pg-migrate shape: options → config →
 * run). The flag parsers below validate strings with full-match patterns and
 * say what is allowed; a failure is a usage error (exit 2) naming the flag.
 */
import { z } from 'zod';
import { ValidationError } from '../core/errors.js';
import { isWorkspaceId } from '../core/ids.js';
import { DEFAULT_REDIS_URL } from '../core/redis.js';
import { DEFAULT_ACK_TIMEOUT_MS } from '../core/writers.js';
import { DEFAULT_LOCK_TTL_MS } from '../core/lock.js';
import { isMasterName, parseSentinelList } from '../core/sentinel.js';
import { isServername } from '../core/tls.js';
import { FORCEABLE_GATES, parseForce } from '../ops/gates.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration like `500ms`, `30s`, `15m`, `1h`, `2d`, or plain milliseconds; null when malformed. */
export function parseDuration(value: string): number | null {
  const m = /^([0-9]{1,12})(ms|s|m|h|d)?$/.exec(value);
  return m ? Number(m[1]) * (UNIT_MS[m[2] ?? 'ms'] ?? 1) : null;
}

/** A duration as an operator writes it: `1h`, `30s`, `500ms`. */
export function fmtDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** A flag that may be absent: undefined passes through, anything else goes through `inner`. */
function optionalFlag<T extends z.ZodType>(inner: T) {
  return inner.optional();
}

const str = (check: (v: string) => boolean, message: (v: string) => string) =>
  z.string().superRefine((v, ctx) => {
    if (!check(v)) ctx.addIssue({ code: 'custom', message: message(v) });
  });

const shown = (v: string): string => JSON.stringify(v.slice(0, 40));

/** Integer within [min, max]. */
export function intFlag(min: number, max: number) {
  return str(
    (v) => /^-?[0-9]{1,15}$/.test(v) && Number(v) >= min && Number(v) <= max,
    (v) => `expected an integer from ${min} to ${max}, got ${shown(v)}`,
  ).transform(Number);
}

/** A duration (`500ms`, `30s`, `15m`, `1h`, `2d`) in ms. */
export function durationFlag() {
  return str(
    (v) => parseDuration(v) !== null,
    (v) => `expected a duration such as 500ms, 30s, 15m, 1h or 2d, got ${shown(v)}`,
  ).transform((v) => parseDuration(v)!);
}

/** A positive rate in keys/s (omit the flag for no limit). */
export function rateFlag() {
  return str(
    (v) => /^[0-9]{1,9}(\.[0-9]+)?$/.test(v) && Number(v) > 0,
    (v) => `expected a positive number of keys per second, got ${shown(v)} (omit --rate for no limit)`,
  ).transform(Number);
}

/** A fraction in (0, 1]. */
export function fractionFlag() {
  return str(
    (v) => /^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$/.test(v) && Number(v) > 0 && Number(v) <= 1,
    (v) => `expected a fraction greater than 0 and at most 1, got ${shown(v)}`,
  ).transform(Number);
}

/** `i/n` with 0 ≤ i < n ≤ 1024. */
export function shardFlag() {
  return str(
    (v) => {
      const m = /^([0-9]{1,4})\/([0-9]{1,4})$/.exec(v);
      return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 1024 && Number(m[1]) < Number(m[2]);
    },
    (v) => `expected --shard i/n with 0 ≤ i < n ≤ 1024, such as 0/2, got ${shown(v)}`,
  ).transform((v) => {
    const [i, n] = v.split('/').map(Number);
    return { index: i!, count: n! };
  });
}

/** A workspace id (full match). */
export function workspaceFlag() {
  return str(isWorkspaceId, (v) => `expected a workspace id (a-z, 0-9, "_" or "-", at most 32), got ${shown(v)}`);
}

/** A comma-separated list of workspace ids (full match each), without duplicates. */
export function workspaceListFlag() {
  return str(
    (v) => v.split(',').every((w) => isWorkspaceId(w.trim())),
    (v) => `expected workspace ids separated by commas (each a-z, 0-9, "_" or "-", at most 32), got ${shown(v)}`,
  ).transform((v) => [...new Set(v.split(',').map((w) => w.trim()))]);
}

/** A file path: non-empty, no control characters (the file itself is read and checked where it is used). */
export function pathFlag() {
  return str(
    (v) => v.length > 0 && v.length <= 4096 && !/\p{Cc}/u.test(v),
    (v) => `expected a file path, got ${v.length === 0 ? 'an empty value' : shown(v)}`,
  );
}

/** `--tls-servername`: a DNS host name (full match), not an IP address. */
export function servernameFlag() {
  return str(isServername, (v) => `expected a host name the server certificate holds (not an IP address), got ${shown(v)}`);
}

/** `--sentinel host:port[,host:port…]` (every entry valid, no duplicates). */
export function sentinelListFlag() {
  return str(
    (v) => {
      try {
        parseSentinelList(v);
        return true;
      } catch {
        return false;
      }
    },
    (v) => `expected host:port[,host:port…] with ports 1-65535 and no entry twice (IPv6 as [addr]:port), got ${shown(v)}`,
  );
}

/** `--sentinel-master`: the name the sentinels monitor the master under. */
export function masterNameFlag() {
  return str(isMasterName, (v) => `expected a master name of 1-64 letters, digits, ".", "_" or "-", got ${shown(v)}`);
}

/** Free text (a reason): bounded, never empty. */
export function textFlag(max = 500) {
  return z.string().trim().min(1, 'must not be empty').max(max, `at most ${max} characters`);
}

/** A boolean switch (commander gives true or undefined). */
export const switchFlag = z
  .boolean()
  .optional()
  .transform((v) => v === true);

/**
 * `--force [gates]`: commander gives undefined, true (bare) or the list. Names
 * are validated here; a bare --force is a usage error that lists them.
 */
export const forceFlag = z
  .union([z.boolean(), z.string()])
  .optional()
  .transform((v, ctx) => {
    try {
      return parseForce(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
      return z.NEVER;
    }
  });

/** A flag with a default: absent → `dflt`, else parsed by `inner`. */
export function withDefault<T extends z.ZodType>(inner: T, dflt: z.output<T>) {
  return optionalFlag(inner).transform((v) => (v === undefined ? dflt : (v as z.output<T>)));
}

/** An optional flag: absent → null. */
export function orNull<T extends z.ZodType>(inner: T) {
  return optionalFlag(inner).transform((v) => (v === undefined ? null : (v as z.output<T>)));
}

/** `--batch-size` from `batchSize`. */
function flagName(key: PropertyKey): string {
  return `--${String(key).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * Parses a command's raw options with its schema; a failure is a usage error
 * (exit 2) that names the flag, e.g. `--batch-size: expected an integer …`.
 */
export function parseFlags<T extends z.ZodType>(schema: T, raw: Record<string, unknown>): z.output<T> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const where = issue.path.length > 0 ? `${flagName(issue.path[0]!)}: ` : '';
  throw new ValidationError(`${where}${issue.message}`, { cause: r.error, suggestion: 'See --help for the allowed forms.' });
}

/** "(default: …)" for help texts, from the same constant the schema uses. */
export function dflt(value: string | number): string {
  return `(default: ${value})`;
}

/** Help text of every `--force [gates]` option. */
export const FORCE_HELP = `override the named gate(s), comma-separated (${FORCEABLE_GATES.join(', ')}); needs --reason; recorded in the history`;

/** Global options shared by every subcommand (commander parses these into strings/booleans). */
export const GlobalOptionsSchema = z.object({
  redisUrl: withDefault(z.string().min(1), DEFAULT_REDIS_URL),
  cluster: switchFlag,
  json: switchFlag,
  prefix: withDefault(z.string(), 'ai'),
  timeout: withDefault(intFlag(100, 600_000), 15_000),
  lockTtl: withDefault(intFlag(1000, 3_600_000), DEFAULT_LOCK_TTL_MS),
  actor: orNull(textFlag(128)),
  ackTimeout: withDefault(durationFlag(), DEFAULT_ACK_TIMEOUT_MS),
  tlsCaFile: orNull(pathFlag()),
  tlsCertFile: orNull(pathFlag()),
  tlsKeyFile: orNull(pathFlag()),
  tlsServername: orNull(servernameFlag()),
  sentinel: orNull(sentinelListFlag()),
  sentinelMaster: orNull(masterNameFlag()),
});
export type GlobalOptions = z.output<typeof GlobalOptionsSchema>;
