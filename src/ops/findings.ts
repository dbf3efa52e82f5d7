/**
 * Findings of a resumable operation, kept in Redis next to its checkpoint
 * (`<p>:migration:jobs:checkpoint:<op>:findings`, hash key → JSON): backfill's
 * unmigratable records, cleanup's kept keys. The count and the listing both
 * come from this one hash, so they agree however often the run was resumed,
 * and a key seen twice (SCAN may return one twice, a resumed run rescans the
 * batch after its last checkpoint) is counted once.
 *
 * Junk is expected to be rare; past {@link MAX_FINDINGS} keys the rest are
 * counted in an overflow field and the listing says it is incomplete.
 */
import { createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import type { Keyspace } from '../core/keys.js';
import type { RedisClient } from '../core/redis.js';

/** Keys recorded one by one; beyond this only a counter grows. */
export const MAX_FINDINGS = 100_000;
const OVERFLOW_FIELD = '_overflow';

/** One finding. */
export interface Finding {
  key: string;
  reason: string;
  detail?: string;
}

/** The findings hash of one operation. */
export class FindingsStore {
  readonly key: string;
  private size: number | null = null;

  constructor(
    private readonly client: RedisClient,
    keys: Keyspace,
    op: string,
  ) {
    this.key = keys.findings(op);
  }

  /** Starts a fresh pass: forgets what earlier passes found. */
  async clear(): Promise<void> {
    await this.client.del(this.key);
    this.size = 0;
  }

  /** Records findings (idempotent per key); returns how many of them were new. */
  async add(items: Finding[]): Promise<number> {
    if (items.length === 0) return 0;
    this.size ??= await this.client.hlen(this.key);
    if (this.size >= MAX_FINDINGS) {
      await this.client.hincrby(this.key, OVERFLOW_FIELD, items.length);
      return items.length;
    }
    const flat: string[] = [];
    for (const f of items) flat.push(f.key, JSON.stringify({ reason: f.reason, ...(f.detail ? { detail: f.detail } : {}) }));
    const added = await this.client.hset(this.key, ...flat);
    this.size += added;
    return added;
  }

  /** Total findings (recorded plus overflow). */
  async count(): Promise<{ total: number; listed: number; overflow: number }> {
    const [listedAll, overflowRaw] = await Promise.all([this.client.hlen(this.key), this.client.hget(this.key, OVERFLOW_FIELD)]);
    const overflow = Number(overflowRaw ?? 0);
    const listed = listedAll - (overflowRaw === null ? 0 : 1);
    return { total: listed + overflow, listed, overflow };
  }

  /** Counts by reason (overflowed findings under `other`); one HSCAN over at most {@link MAX_FINDINGS} entries. */
  async summary(): Promise<{ total: number; byReason: Record<string, number> }> {
    const byReason: Record<string, number> = {};
    let total = 0;
    let cursor = '0';
    do {
      const [next, flat] = await this.client.hscan(this.key, cursor, 'COUNT', 1000);
      cursor = next;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const n = flat[i] === OVERFLOW_FIELD ? Number(flat[i + 1]) || 0 : 1;
        const reason = flat[i] === OVERFLOW_FIELD ? 'other' : decode(flat[i]!, flat[i + 1]!).reason;
        byReason[reason] = (byReason[reason] ?? 0) + n;
        total += n;
      }
    } while (cursor !== '0');
    return { total, byReason };
  }

  /** Up to `limit` findings, in no particular order. */
  async list(limit: number): Promise<Finding[]> {
    const out: Finding[] = [];
    let cursor = '0';
    do {
      const [next, flat] = await this.client.hscan(this.key, cursor, 'COUNT', 500);
      cursor = next;
      for (let i = 0; i + 1 < flat.length && out.length < limit; i += 2) {
        if (flat[i] === OVERFLOW_FIELD) continue;
        out.push(decode(flat[i]!, flat[i + 1]!));
      }
    } while (cursor !== '0' && out.length < limit);
    return out;
  }

  /**
   * Writes every finding as NDJSON `{key, reason, detail}` to `path`
   * (through a temporary file and a rename, so a reader never sees half a
   * report). The file is the complete, cumulative list: a resumed run's
   * report includes what earlier runs found. Returns the lines written.
   */
  async writeReport(path: string): Promise<number> {
    const tmp = `${path}.tmp-${process.pid}`;
    const out = createWriteStream(tmp, { flags: 'w' });
    let n = 0;
    let cursor = '0';
    try {
      do {
        const [next, flat] = await this.client.hscan(this.key, cursor, 'COUNT', 1000);
        cursor = next;
        for (let i = 0; i + 1 < flat.length; i += 2) {
          if (flat[i] === OVERFLOW_FIELD) continue;
          if (!out.write(`${JSON.stringify(decode(flat[i]!, flat[i + 1]!))}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
          n++;
        }
      } while (cursor !== '0');
    } finally {
      await new Promise<void>((resolve, reject) => {
        out.once('error', reject);
        out.end(() => resolve());
      });
    }
    await rename(tmp, path);
    return n;
  }
}

function decode(key: string, json: string): Finding {
  try {
    const v = JSON.parse(json) as { reason?: unknown; detail?: unknown };
    return { key, reason: String(v.reason ?? '?'), ...(typeof v.detail === 'string' ? { detail: v.detail } : {}) };
  } catch {
    return { key, reason: '?' };
  }
}
