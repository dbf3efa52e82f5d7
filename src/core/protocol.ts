/**
 * The write protocol (docs/design.md "The write path") over the Lua scripts:
 *  - {@link writeJob}: single node, the whole protocol in one atomic script
 *    that routes by the phase it reads (one round trip, no stale writer);
 *  - on a cluster, two steps: {@link writePrimary} (atomic update + rev
 *    increment, returns the snapshot), then {@link applyIfNewer} on the mirror
 *    (or {@link mirrorCreate} for a create that must claim a global id).
 * Reply codes of each script are mapped here, once.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { OrchError, ExitCode, JobExistsError, JobNotFoundError } from './errors.js';
import type { Keyspace } from './keys.js';
import { isPhase, type Phase } from './phase.js';
import { isCluster, type RedisClient } from './redis.js';
import { ApplyIfNewerReply, MirrorCreateReply, RepairCasReply, ScriptError, scriptErrorReply } from './script-replies.js';
import { callScript, ScriptName, type ScriptArg } from './scripts.js';
import { StateCorruptError } from './state.js';

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
  [ApplyIfNewerReply.applied]: ApplyOutcome.Applied,
  [ApplyIfNewerReply.skipped]: ApplyOutcome.Skipped,
  [ApplyIfNewerReply.wrongType]: ApplyOutcome.WrongType,
  [ApplyIfNewerReply.badRev]: ApplyOutcome.BadRev,
  [ApplyIfNewerReply.ownerConflict]: ApplyOutcome.OwnerConflict,
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
  /** Update: refuse with "not found" unless the record names this workspace (a legacy primary). */
  owner?: string;
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
      [key, ...ix.keys, opts.mode, opts.ttlMs ?? 0, ...ix.args, opts.owner ?? '', ...flat],
      true,
    );
  } catch (err) {
    throw writeError(err, opts.jobId, '');
  }
  const [rev, pexpireAt, ...fields] = reply as [number, number, ...Buffer[]];
  if (opts.index && !inline) await client.zadd(opts.index.key, opts.index.score, opts.index.member);
  return { rev: Number(rev), pexpireAt: Number(pexpireAt), fields };
}

/** A record read atomically: type, expiry and fields from one script call. */
export interface RawRecord {
  /** Redis TYPE: 'hash', 'none', or another type. */
  type: string;
  /** PEXPIRETIME: absolute ms, -1 persistent, -2 absent (or not a hash). */
  pexpireAt: number;
  /** Flat field, value, ... bytes (empty unless a hash). */
  fields: Buffer[];
}

/**
 * Reads one key atomically with read-snapshot.lua, so the fields of one write
 * are never paired with the expiry of another. The one way this package reads
 * a whole record (backfill, verify, repair, tests).
 */
export async function readRecord(client: RedisClient, key: string): Promise<RawRecord> {
  const reply = await callScript<Buffer[]>(client, ScriptName.ReadSnapshot, [key], true);
  if (reply.length === 0) return { type: 'none', pexpireAt: -2, fields: [] };
  const type = reply[0]!.toString();
  if (type !== 'hash') return { type, pexpireAt: -2, fields: [] };
  return { type, pexpireAt: Number(reply[1]!.toString()), fields: reply.slice(2) };
}

/** The raw `rev` field of a flat record ('' when absent). */
export function rawRev(fields: Buffer[]): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString() === 'rev') return fields[i + 1]!.toString();
  return '';
}

/** A hash record as a {@link Snapshot} (rev 0 when absent or malformed: callers validate rev first); null when not a hash. */
export function snapshotOf(raw: RawRecord): Snapshot | null {
  if (raw.type !== 'hash') return null;
  const rev = Number(rawRev(raw.fields));
  return { rev: Number.isSafeInteger(rev) && rev >= 0 ? rev : 0, pexpireAt: raw.pexpireAt, fields: raw.fields };
}

/** What the single-node write did to the mirror. */
export const MirrorOutcome = {
  /** The phase has no mirror. */
  None: 'none',
  Applied: 'applied',
  /** The legacy mirror holds another workspace's job with this id: left alone, reported. */
  Conflict: 'conflict',
  /** The mirror key is not a hash: left alone, reported. */
  WrongType: 'wrongtype',
} as const;
export type MirrorOutcome = (typeof MirrorOutcome)[keyof typeof MirrorOutcome];

/** Options of {@link writeJob}. */
export interface WriteJobOptions {
  mode: 'create' | 'update';
  workspaceId: string;
  jobId: string;
  /** Field/value pairs to set (never `rev`). */
  fields: Record<string, string>;
  /** Relative expiry of a created record. */
  ttlMs?: number;
  /** Index score of a created record (created_at in ms). */
  indexScore?: number;
  /** Push a reference onto the pending list (enqueue). */
  push?: boolean;
  /** The caller's last valid phase for this workspace: used only when the state record is unusable. */
  fallback: { phase: Phase; epoch: number };
}

/** Result of {@link writeJob}. */
export interface WriteJobResult {
  /** The epoch and phase the script acted on (the state record's). */
  epoch: number;
  phase: Phase;
  /** The record's new rev (1 for a create). */
  rev: number;
  /** Absolute expiry in unix ms, or -1 when persistent. */
  pexpireAt: number;
  /**
   * The full record after an update, as bytes; null after a create, whose record
   * is exactly the fields given plus `rev` 1 (the script does not send them back).
   */
  snapshot: Snapshot | null;
  mirror: MirrorOutcome;
  /** v2 holds the record but the index lacks its entry (an update of a never-indexed record). */
  indexMissing: boolean;
  /** The index key is not a sorted set: the entry was not written (reported like a refused mirror). */
  indexWrongType: boolean;
}

/** Maps a write script's error reply to the error model. */
function writeError(err: unknown, jobId: string, stateKey: string): unknown {
  const reply = scriptErrorReply(err);
  if (reply === null) return err;
  const code = reply.code;
  if (code === ScriptError.Exists) return new JobExistsError(jobId);
  if (code === ScriptError.NotFound) return new JobNotFoundError(jobId);
  if (code === ScriptError.WrongType)
    return new OrchError(`Key for job ${jobId} is not a hash`, { code: 'ERR_WRONGTYPE', exitCode: ExitCode.Problems, cause: err });
  if (code === ScriptError.BadRev)
    return new OrchError(`Job ${jobId} has a rev field that is not an integer`, { code: 'ERR_BADREV', exitCode: ExitCode.Problems, cause: err });
  if (code === ScriptError.QueueWrongType)
    return new OrchError('The pending list is not a list: refused before anything was written', {
      code: 'ERR_QUEUE_WRONGTYPE',
      exitCode: ExitCode.Problems,
      cause: err,
    });
  if (code === ScriptError.State) return new StateCorruptError(stateKey, 'no valid phase, and this writer has none to fall back on', { cause: err });
  return err;
}

/** The whole write protocol on a single node: one script, one round trip (write-job.lua). */
export async function writeJob(client: Redis, keys: Keyspace, opts: WriteJobOptions): Promise<WriteJobResult> {
  // One array, built once: it is the whole EVALSHA argument list (ioredis flattens it).
  const args: ScriptArg[] = [
    keys.state,
    keys.history,
    keys.legacyJob(opts.jobId),
    keys.v2Job(opts.workspaceId, opts.jobId),
    keys.index(opts.workspaceId),
    keys.queue,
    keys.workspacePhases,
    opts.mode,
    opts.fallback.phase,
    opts.fallback.epoch,
    opts.ttlMs ?? 0,
    opts.workspaceId,
    opts.jobId,
    opts.indexScore ?? 0,
    opts.push ? '1' : '0',
  ];
  for (const f in opts.fields) args.push(f, opts.fields[f]!);
  // A create's reply is six short values: read as strings. An update's carries the
  // record, read as bytes so that values which are not UTF-8 are copied exactly.
  const create = opts.mode === 'create';
  let reply: Array<Buffer | string | number>;
  try {
    reply = await callScript<Array<Buffer | string | number>>(client, ScriptName.WriteJob, args, !create);
  } catch (err) {
    throw writeError(err, opts.jobId, keys.state);
  }
  const phase = String(reply[1]);
  if (!isPhase(phase)) throw new Error(`write-job returned an unknown phase ${phase}`);
  const rev = Number(reply[2]);
  const pexpireAt = Number(reply[3]);
  const index = String(reply[5]);
  return {
    epoch: Number(reply[0]),
    phase,
    rev,
    pexpireAt,
    snapshot: create ? null : { rev, pexpireAt, fields: reply.slice(6) as Buffer[] },
    mirror: String(reply[4]) as MirrorOutcome,
    indexMissing: index === '1',
    indexWrongType: index === 'wrongtype',
  };
}

/** Create-if-absent of a mirror record (cluster creates): true when created, false when the key exists. */
export async function mirrorCreate(client: RedisClient, key: string, snap: Snapshot): Promise<boolean> {
  const code = await callScript<number>(client, ScriptName.MirrorCreate, [key, snap.pexpireAt > 0 ? snap.pexpireAt : 0, ...snap.fields]);
  return code === MirrorCreateReply.created;
}

/**
 * Content digest of a flat field, value, … list: the one the Lua scripts
 * compute (src/core/lua/includes/digest.lua).
 */
export function digestOf(flat: Buffer[]): string {
  const parts: string[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const f = flat[i]!;
    parts.push(
      createHash('sha1')
        .update(`${f.length}:`)
        .update(f)
        .update(flat[i + 1]!)
        .digest('hex'),
    );
  }
  parts.sort();
  return createHash('sha1').update(parts.join('')).digest('hex');
}

/**
 * Deletes a record only while it is still exactly `snap` (rev and content):
 * how a cluster create that lost the race for a global id takes its primary back.
 * Returns whether it was deleted.
 */
export async function deleteIfUnchanged(client: RedisClient, key: string, snap: Snapshot): Promise<boolean> {
  const code = await callScript<number>(client, ScriptName.RepairCasOneKey, [
    key,
    '',
    '',
    'delete',
    'hash',
    rawRev(snap.fields),
    digestOf(snap.fields),
    0,
    0,
    '',
    '',
  ]);
  return code === RepairCasReply.done;
}

/** {@link readRecord} as a {@link Snapshot}: null when absent or not a hash. */
export async function readSnapshot(client: RedisClient, key: string): Promise<Snapshot | null> {
  return snapshotOf(await readRecord(client, key));
}
