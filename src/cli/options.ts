/**
 * Option parsers for commander. Each one validates with a full match and throws
 * InvalidArgumentError, which the CLI turns into a usage error (exit 2).
 */
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { DEFAULT_REDIS_URL } from '../core/redis.js';

/** Integer within [min, max]. */
export function intOption(min: number, max: number) {
  return (value: string): number => {
    if (!/^-?[0-9]{1,15}$/.test(value)) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got ${n}`);
    return n;
  };
}

/** A fraction in (0, 1]. */
export function fractionOption(value: string): number {
  if (!/^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$/.test(value)) throw new InvalidArgumentError(`expected a fraction between 0 and 1, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n <= 0 || n > 1) throw new InvalidArgumentError(`expected a fraction greater than 0 and at most 1, got ${value}`);
  return n;
}

/** A positive rate in keys/s (0 = unlimited is not accepted: omit the flag instead). */
export function rateOption(value: string): number {
  if (!/^[0-9]{1,9}(\.[0-9]+)?$/.test(value) || Number(value) <= 0) {
    throw new InvalidArgumentError(`expected a positive number of keys per second, got ${JSON.stringify(value)} (omit --rate for no limit)`);
  }
  return Number(value);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration like `500ms`, `30s`, `15m`, `1h`, `2d`, or plain milliseconds. */
export function durationOption(value: string): number {
  const m = /^([0-9]{1,12})(ms|s|m|h|d)?$/.exec(value);
  if (!m) throw new InvalidArgumentError(`expected a duration such as 500ms, 30s, 15m, 1h or 2d, got ${JSON.stringify(value)}`);
  return Number(m[1]) * (UNIT_MS[m[2] ?? 'ms'] ?? 1);
}

/** `i/n` with 0 ≤ i < n ≤ 1024. */
export function shardOption(value: string): { index: number; count: number } {
  const m = /^([0-9]{1,4})\/([0-9]{1,4})$/.exec(value);
  if (!m) throw new InvalidArgumentError(`expected --shard i/n such as 0/2, got ${JSON.stringify(value)}`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > 1024 || index >= count) throw new InvalidArgumentError(`expected 0 ≤ i < n ≤ 1024 in --shard i/n, got ${value}`);
  return { index, count };
}

/** Global options shared by every subcommand. */
export const GlobalOptionsSchema = z.object({
  redisUrl: z.string().min(1).default(DEFAULT_REDIS_URL),
  cluster: z.boolean().default(false),
  json: z.boolean().default(false),
  prefix: z.string().default('ai'),
  timeout: z.number().int().positive().default(15000),
  lockTtl: z.number().int().positive().default(30000),
  actor: z.string().max(128).optional(),
  ackTimeout: z.number().int().nonnegative().default(10_000),
});
export type GlobalOptions = z.infer<typeof GlobalOptionsSchema>;

/** Help text of every `--force [gates]` option. */
export const FORCE_HELP = 'override the named gate(s), comma-separated (verify, soak, legacy-complete, writers); needs --reason; recorded in the history';
