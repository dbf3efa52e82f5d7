/**
 * `accept`: records legacy keys that are known to be unmigratable (a record
 * without a workspace, a key of another type, …) in `<p>:migration:jobs:accepted`,
 * with who accepted them and why. Verify, backfill and cleanup then report
 * exactly those keys as `accepted` instead of as problems, so a known bad
 * record no longer keeps the gates closed, while a new bad key still does.
 * This replaces forcing a gate past junk (which would also force it past real
 * mismatches). Accepted keys are never deleted.
 *
 * Only keys that are unmigratable right now can be accepted: accepting a key
 * that migrates would hide a real record from verify.
 */
import { ValidationError } from '../core/errors.js';
import { describeInput } from '../core/ids.js';
import { JobField } from '../core/job.js';
import type { Keyspace } from '../core/keys.js';
import type { RedisClient } from '../core/redis.js';
import type { OpContext } from './context.js';
import { checkSource, isUnmigratable, parseSourceKey, UnmigratableReason } from './migratable.js';

/** The accepted keys (expected to be few). */
export async function loadAccepted(client: RedisClient, keys: Keyspace): Promise<Set<string>> {
  return new Set(await client.hkeys(keys.accepted));
}

/** One accepted key as listed. */
export interface AcceptedEntry {
  key: string;
  reason: string;
  by: string;
  at: number;
  /** Why the key is unmigratable, as seen when it was accepted. */
  problem: string;
}

/** Options of {@link accept}. */
export interface AcceptOptions {
  /** Legacy keys to accept (or to revoke). */
  keys: string[];
  reason: string;
  /** Remove the keys from the accepted set instead. */
  revoke?: boolean;
}

/** Result of {@link accept}. */
export interface AcceptResult {
  /** Keys accepted (or revoked) by this run. */
  changed: string[];
  /** Keys already in the wanted state. */
  unchanged: string[];
  /** Accepted keys in total afterwards. */
  total: number;
  revoke: boolean;
}

/** Why `key` cannot be migrated right now, or null when it migrates fine (or is absent). */
export async function unmigratableProblem(client: RedisClient, keys: Keyspace, key: string): Promise<string | null> {
  const parsed = parseSourceKey(keys, 'forward', key);
  if (isUnmigratable(parsed)) return parsed.reason;
  const type = await client.type(key);
  if (type === 'none') return null;
  if (type !== 'hash') return `${UnmigratableReason.WrongType} (${type})`;
  const [ws, createdAt, rev] = await client.hmget(key, JobField.WorkspaceId, JobField.CreatedAt, JobField.Rev);
  const checked = checkSource(keys, 'forward', parsed, ws, createdAt, rev);
  return isUnmigratable(checked) ? checked.reason : null;
}

/**
 * Accepts (or revokes) keys. All or nothing: a key outside the legacy layout,
 * or one that migrates fine, refuses the whole call (exit 2) and nothing is recorded.
 */
export async function accept(ctx: OpContext, opts: AcceptOptions): Promise<AcceptResult> {
  if (opts.keys.length === 0)
    throw new ValidationError('No keys given', { suggestion: 'Pass legacy keys as arguments or with --from-file <file> (one per line).' });
  if (opts.reason.trim() === '') throw new ValidationError('accept needs --reason "…" (it is recorded with each key)');
  const existing = await loadAccepted(ctx.client, ctx.keys);
  const revoke = opts.revoke === true;
  const changed: string[] = [];
  const unchanged: string[] = [];
  const problems = new Map<string, string>();
  for (const key of [...new Set(opts.keys)]) {
    if (ctx.keys.legacySuffix(key) === null) {
      throw new ValidationError(`${describeInput(key)} is not a legacy key (${ctx.keys.legacyPattern})`, {
        suggestion: 'Only legacy keys can be accepted; copy them from verify --report or backfill --json.',
      });
    }
    if (revoke) {
      (existing.has(key) ? changed : unchanged).push(key);
      continue;
    }
    const problem = await unmigratableProblem(ctx.client, ctx.keys, key);
    if (problem === null) {
      throw new ValidationError(`${describeInput(key)} migrates fine (or does not exist): accepting it would hide a real record from verify`, {
        suggestion: 'Accept only keys that verify or backfill report as unmigratable.',
      });
    }
    problems.set(key, problem);
    (existing.has(key) ? unchanged : changed).push(key);
  }
  if (revoke) {
    if (changed.length > 0) await ctx.client.hdel(ctx.keys.accepted, ...changed);
  } else if (changed.length > 0) {
    const at = await ctx.state.serverTime();
    const flat: string[] = [];
    for (const key of changed) flat.push(key, JSON.stringify({ reason: opts.reason, by: ctx.actor, at, problem: problems.get(key) }));
    await ctx.client.hset(ctx.keys.accepted, ...flat);
  }
  return { changed, unchanged, total: await ctx.client.hlen(ctx.keys.accepted), revoke };
}

/** Every accepted key with its record. */
export async function listAccepted(client: RedisClient, keys: Keyspace): Promise<AcceptedEntry[]> {
  const raw = await client.hgetall(keys.accepted);
  return Object.entries(raw)
    .map(([key, json]) => {
      let v: Record<string, unknown> = {};
      try {
        v = JSON.parse(json) as Record<string, unknown>;
      } catch {
        // A hand-edited entry still counts as accepted; its details are unknown.
      }
      return { key, reason: String(v.reason ?? ''), by: String(v.by ?? '?'), at: Number(v.at ?? 0), problem: String(v.problem ?? '?') };
    })
    .sort((a, b) => a.key.localeCompare(b.key));
}
