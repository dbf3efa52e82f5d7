/**
 * The write protocol (DESIGN §4) as two primitives over the Lua scripts:
 * {@link writePrimary} (atomic update + rev increment, returns the snapshot)
 * and {@link applyIfNewer} (the one way data reaches a mirror: application
 * mirror writes, backfill and repair all use it).
 */
import { OrchError, ExitCode, JobExistsError, JobNotFoundError, isReplyError, replyMessage } from './errors.js';
import { isCluster, type RedisClient } from './redis.js';
import { callScript, ScriptName, type ScriptArg } from './scripts.js';

/** A full record as bytes, with its rev and absolute expiry. */
export interface Snapshot {
  /** Revision; 0 when the record has no rev field. */
  rev: number;
  /** Absolute expiry in unix ms, or -1 when persistent. */
  pexpireAt: number;
  /** Flat field, value, field, value… pairs, as raw bytes. */
  fields: Buffer[];
}

/** A v2 index entry to maintain alongside a v2 record. */
export interface IndexEntry {
  key: string;
  score: number;
  member: string;
}

/** Outcome of {@link applyIfNewer}. */
export const ApplyOutcome = {
  Applied: 'applied',
  Skipped: 'skipped',
  WrongType: 'wrong-type',
  BadRev: 'bad-rev',
  OwnerConflict: 'owner-conflict',
} as const;
export type ApplyOutcome = (typeof ApplyOutcome)[keyof typeof ApplyOutcome];

const APPLY_CODES: Record<number, ApplyOutcome> = {
  1: ApplyOutcome.Applied,
  0: ApplyOutcome.Skipped,
  [-1]: ApplyOutcome.WrongType,
  [-2]: ApplyOutcome.BadRev,
  [-3]: ApplyOutcome.OwnerConflict,
};

/** The value of one field of a snapshot. */
export function snapshotField(snap: Snapshot, name: string): Buffer | undefined {
  for (let i = 0; i + 1 < snap.fields.length; i += 2) {
    if (snap.fields[i]!.toString() === name) return snap.fields[i + 1];
  }
  return undefined;
}

/** A snapshot's fields decoded as UTF-8 strings (for building a Job). */
export function snapshotToHash(snap: Snapshot): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < snap.fields.length; i += 2) out[snap.fields[i]!.toString()] = snap.fields[i + 1]!.toString();
  return out;
}

/** ARGV for apply-if-newer / write-primary's index part. */
function indexArgs(index: IndexEntry | null | undefined, inline: boolean): { keys: string[]; args: ScriptArg[] } {
  if (index && inline) return { keys: [index.key], args: [index.score, index.member] };
  return { keys: [], args: [0, ''] };
}

/**
 * Replaces `key` with `snap` unless the target is newer (higher rev, or same rev
 * and a larger content digest). Touches one key (plus the index in the same
 * script on a single node; as a separate idempotent ZADD on a cluster).
 */
export async function applyIfNewer(client: RedisClient, key: string, snap: Snapshot, index?: IndexEntry | null): Promise<ApplyOutcome> {
  const inline = !isCluster(client);
  const ix = indexArgs(index, inline);
  const code = await callScript<number>(client, ix.keys.length > 0 ? ScriptName.ApplyIfNewerIndexed : ScriptName.ApplyIfNewer, [
    key,
    ...ix.keys,
    snap.rev,
    snap.pexpireAt > 0 ? snap.pexpireAt : 0,
    ...ix.args,
    ...snap.fields,
  ]);
  const outcome = APPLY_CODES[code];
  if (outcome === undefined) throw new Error(`apply-if-newer returned unexpected ${String(code)}`);
  if (index && !inline && (outcome === ApplyOutcome.Applied || outcome === ApplyOutcome.Skipped)) {
    await client.zadd(index.key, index.score, index.member);
  }
  return outcome;
}

/** Options of {@link writePrimary}. */
export interface WritePrimaryOptions {
  mode: 'create' | 'update';
  /** Field/value pairs to set (never `rev`). */
  fields: Record<string, string>;
  /** Relative expiry for a created record. */
  ttlMs?: number;
  /** Index entry when the primary is v2. */
  index?: IndexEntry | null;
  /** Job id, for error messages. */
  jobId: string;
}

/** Step 1 of the protocol: update the primary and bump rev atomically; returns the full new snapshot. */
export async function writePrimary(client: RedisClient, key: string, opts: WritePrimaryOptions): Promise<Snapshot> {
  const inline = !isCluster(client);
  const ix = indexArgs(opts.index, inline);
  const flat: string[] = [];
  for (const [f, v] of Object.entries(opts.fields)) flat.push(f, v);
  let reply: Buffer[] | [number, number, ...Buffer[]];
  try {
    reply = await callScript<[number, number, ...Buffer[]]>(
      client,
      ix.keys.length > 0 ? ScriptName.WritePrimaryIndexed : ScriptName.WritePrimary,
      [key, ...ix.keys, opts.mode, opts.ttlMs ?? 0, ...ix.args, ...flat],
      true,
    );
  } catch (err) {
    if (isReplyError(err)) {
      const msg = replyMessage(err);
      if (msg.startsWith('EXISTS')) throw new JobExistsError(opts.jobId);
      if (msg.startsWith('NOTFOUND')) throw new JobNotFoundError(opts.jobId);
      if (msg.startsWith('WRONGTYPE')) {
        throw new OrchError(`Key for job ${opts.jobId} is not a hash`, { code: 'ERR_WRONGTYPE', exitCode: ExitCode.Problems, cause: err });
      }
    }
    throw err;
  }
  const [rev, pexpireAt, ...fields] = reply as [number, number, ...Buffer[]];
  if (opts.index && !inline) await client.zadd(opts.index.key, opts.index.score, opts.index.member);
  return { rev: Number(rev), pexpireAt: Number(pexpireAt), fields };
}

/** Reads a whole record (fields as bytes, with its expiry) in one atomic step; null when absent or not a hash. */
export async function readSnapshot(client: RedisClient, key: string): Promise<Snapshot | null> {
  const reply = await callScript<Buffer[]>(client, ScriptName.ReadSnapshot, [key], true);
  if (reply.length < 2 || reply[0]!.toString() !== 'hash') return null;
  const fields = reply.slice(2);
  let rev = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i]!.toString() === 'rev') rev = Number(fields[i + 1]!.toString()) || 0;
  }
  return { rev, pexpireAt: Number(reply[1]), fields };
}
