/**
 * One side of a verify pair as the server reduced it (src/core/lua/record-facts.lua):
 * its type, a digest, its expiry and a few fields; on a cluster with Redis 7+,
 * many keys and the other reads of verify at once per master
 * (src/core/lua/xslot-probe.lua, {@link probeAll}). Its reply tags are in
 * src/core/script-replies.ts with every other script's.
 */
import type { Cluster } from 'ioredis';
import { isReplyError, replyMessage } from '../../core/errors.js';
import type { RedisClient } from '../../core/redis.js';
import { decodeFieldsAt, RecordFactsReply, XslotReply } from '../../core/script-replies.js';
import { callScript, ScriptName } from '../../core/scripts.js';
import { perMasterScript } from '../cluster-batch.js';
import { mapLimit, PER_KEY_CONCURRENCY } from '../scan-engine.js';

/** What record-facts.lua digests: the DUMP payload (cheap, encoding-dependent) or the content (order-independent). */
export const DigestMode = {
  Dump: 'dump',
  Content: 'content',
} as const;
export type DigestMode = (typeof DigestMode)[keyof typeof DigestMode];

/** One key as record-facts.lua saw it. */
export interface RecordFacts {
  /** Redis TYPE: 'hash', 'none', or another type. */
  type: string;
  /** sha1 hex ('' unless a hash). */
  digest: string;
  /** PEXPIRETIME (-2 when absent). */
  pexpireAt: number;
  /** The requested fields (UTF-8), null when absent. */
  fields: Array<string | null>;
}

const COLON = 0x3a;
const DIGEST_HEX = 40;

/** Decodes one record-facts.lua reply string (see the script header). */
export function decodeFacts(buf: Buffer, nf: number): RecordFacts {
  const tag = buf[0];
  if (tag === RecordFactsReply.absent) return { type: 'none', digest: '', pexpireAt: -2, fields: new Array<null>(nf).fill(null) };
  if (tag === RecordFactsReply.foreign) return { type: buf.toString('utf8', 1), digest: '', pexpireAt: -2, fields: new Array<null>(nf).fill(null) };
  if (tag !== RecordFactsReply.hash) throw new Error(`record-facts: unexpected reply tag ${String(tag)}`);
  const digest = buf.toString('latin1', 1, 1 + DIGEST_HEX);
  const pos = 1 + DIGEST_HEX;
  const colon = buf.indexOf(COLON, pos);
  const pexpireAt = Number(buf.toString('latin1', pos, colon));
  const fields = decodeFieldsAt(buf, colon + 1, nf);
  return { type: 'hash', digest, pexpireAt, fields };
}

/**
 * Facts of one key through any client: on a cluster the client routes the
 * one-key script to the key's master and pipelines it with its neighbours.
 */
export async function factsOf(client: RedisClient, key: string, mode: DigestMode, fields: readonly string[] = []): Promise<RecordFacts> {
  const [reply] = await callScript<Buffer[]>(client, ScriptName.RecordFactsOneKey, [key, mode, ...fields], true);
  return decodeFacts(reply!, fields.length);
}

/** One read of xslot-probe.lua (see its header): op, key, argument. */
export interface Probe {
  op: 'f' | 'd' | 'z' | 'g' | 't' | 'e';
  key: string;
  arg: string;
}

/**
 * Probes of keys of many slots on a cluster: one xslot-probe.lua call per
 * master (cross-slot, Redis 7+), and each probe a master did not serve (its
 * slot moved, or is migrating and the key has left) through the per-key path
 * ({@link probeOne}: the cluster client follows MOVED/ASK). Replies are
 * xslot-probe.lua's strings, in order.
 */
export async function probeAll(cluster: Cluster, probes: readonly Probe[], mode: DigestMode, fields: readonly string[]): Promise<Buffer[]> {
  const { replies, rest } = await perMasterScript(
    cluster,
    probes,
    (p) => p.key,
    async (node, group) => {
      const args: string[] = [mode, String(fields.length), ...fields];
      for (const p of group) args.push(p.op, p.key, p.arg);
      const out = await callScript<Buffer[]>(node, ScriptName.XslotProbe, args, true);
      return out.map((b) => (b[0] === XslotReply.notHere ? null : b));
    },
  );
  const out = replies as Buffer[];
  await mapLimit(rest, PER_KEY_CONCURRENCY, async (i) => {
    out[i] = await probeOne(cluster, probes[i]!, mode, fields);
  });
  return out;
}

/** One probe through the cluster client (the per-key path), answered as xslot-probe.lua would. */
async function probeOne(client: RedisClient, p: Probe, mode: DigestMode, fields: readonly string[]): Promise<Buffer> {
  if (p.op === 'f' || p.op === 'd') {
    const [reply] = await callScript<Buffer[]>(client, ScriptName.RecordFactsOneKey, [p.key, mode, ...(p.op === 'f' ? fields : [])], true);
    return reply!;
  }
  try {
    if (p.op === 'z') return Buffer.from(tagged('s', await client.zscore(p.key, p.arg)));
    if (p.op === 'g') return Buffer.from(tagged('v', await client.hget(p.key, p.arg)));
    if (p.op === 't') return Buffer.from(await client.type(p.key));
    return Buffer.from((await client.exists(p.key)) === 1 ? 'e' : 'n');
  } catch (err) {
    if (isReplyError(err) && replyMessage(err).startsWith('WRONGTYPE')) return Buffer.from('w');
    throw err;
  }
}

function tagged(tag: string, v: string | null): string {
  return v === null ? 'n' : tag + v;
}

/** A 'z' probe's score: null when there is no entry or the index is not a sorted set (the index pass reports that). */
export function probeScore(b: Buffer): number | null {
  return b[0] === 0x73 /* s */ ? Number(b.toString('latin1', 1)) : null;
}

/** A 'g' probe's value: null when the field or key is absent, or the key is not a hash. */
export function probeValue(b: Buffer): string | null {
  return b[0] === 0x76 /* v */ ? b.toString('utf8', 1) : null;
}
