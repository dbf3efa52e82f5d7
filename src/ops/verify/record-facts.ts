/**
 * One side of a verify pair as the server reduced it (src/core/lua/record-facts.lua):
 * its type, a digest, its expiry and a few fields. Its reply tags are in
 * src/core/script-replies.ts with every other script's.
 */
import type { RedisClient } from '../../core/redis.js';
import { RecordFactsReply } from '../../core/script-replies.js';
import { callScript, ScriptName } from '../../core/scripts.js';

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
const DASH = 0x2d;
const DIGEST_HEX = 40;

/** Decodes one record-facts.lua reply string (see the script header). */
export function decodeFacts(buf: Buffer, nf: number): RecordFacts {
  const tag = buf[0];
  if (tag === RecordFactsReply.absent) return { type: 'none', digest: '', pexpireAt: -2, fields: new Array<null>(nf).fill(null) };
  if (tag === RecordFactsReply.foreign) return { type: buf.toString('utf8', 1), digest: '', pexpireAt: -2, fields: new Array<null>(nf).fill(null) };
  if (tag !== RecordFactsReply.hash) throw new Error(`record-facts: unexpected reply tag ${String(tag)}`);
  const digest = buf.toString('latin1', 1, 1 + DIGEST_HEX);
  let pos = 1 + DIGEST_HEX;
  const colon = buf.indexOf(COLON, pos);
  const pexpireAt = Number(buf.toString('latin1', pos, colon));
  pos = colon + 1;
  const fields: Array<string | null> = [];
  for (let j = 0; j < nf; j++) {
    if (buf[pos] === DASH) {
      fields.push(null);
      pos += 1;
      continue;
    }
    let len = 0;
    while (pos < buf.length && buf[pos] !== COLON) len = len * 10 + (buf[pos++]! - 0x30);
    pos += 1;
    fields.push(buf.toString('utf8', pos, pos + len));
    pos += len;
  }
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
