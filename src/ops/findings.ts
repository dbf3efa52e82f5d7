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
 *
 * Shards (`backfill --shard i/n`) share the hash: each finding records the
 * master it was found on, and a store scoped to a shard clears, counts and
 * lists only its own masters' findings, so one shard starting a fresh pass
 * never erases what another shard found.
 */
import { createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import type { Keyspace } from '../core/keys.js';
import { masterNodes, nodeAddress, type RedisClient } from '../core/redis.js';
import { selectShard } from './scan-engine.js';

/** Keys recorded one by one; beyond this only a counter grows. */
export const MAX_FINDINGS = 100_000;
const OVERFLOW_FIELD = '_overflow';
/** Overflow counted for one master: `_overflow:<host:port>`. */
const OVERFLOW_PREFIX = `${OVERFLOW_FIELD}:`;

function isOverflow(field: string): boolean {
  return field === OVERFLOW_FIELD || field.startsWith(OVERFLOW_PREFIX);
}

/** One finding. */
export interface Finding {
  key: string;
  reason: string;
  detail?: string;
}

/** Options of a {@link FindingsStore}. */
export interface FindingsStoreOptions {
  /** Scope the store to the masters of this shard (n > 1); null or absent = every finding. */
  shard?: { index: number; count: number } | null;
}

/** The findings hash of one operation. */
export class FindingsStore {
  readonly key: string;
  private size: number | null = null;
  /** The masters of the shard this store is scoped to; null = unscoped. */
  private readonly scope: ReadonlySet<string> | null;

  constructor(
    private readonly client: RedisClient,
    keys: Keyspace,
    op: string,
    opts: FindingsStoreOptions = {},
  ) {
    this.key = keys.findings(op);
    const shard = opts.shard && opts.shard.count > 1 ? opts.shard : null;
    this.scope = shard
      ? new Set(
          selectShard(
            masterNodes(client).map((n) => ({ addr: nodeAddress(n), node: n })),
            shard,
          ).map((n) => n.addr),
        )
      : null;
  }

  /** Whether a hash entry belongs to this store's scope (always, unscoped). */
  private inScope(field: string, value: string): boolean {
    if (this.scope === null) return true;
    if (field === OVERFLOW_FIELD) return false;
    if (field.startsWith(OVERFLOW_PREFIX)) return this.scope.has(field.slice(OVERFLOW_PREFIX.length));
    const node = decode(field, value).node;
    return node !== undefined && this.scope.has(node);
  }

  /**
   * Starts a fresh pass: forgets what earlier passes found (a scoped store:
   * only its own masters' findings; another shard's stay).
   */
  async clear(): Promise<void> {
    if (this.scope === null) {
      await this.client.del(this.key);
      this.size = 0;
      return;
    }
    let cursor = '0';
    do {
      const [next, flat] = await this.client.hscan(this.key, cursor, 'COUNT', 1000);
      cursor = next;
      const drop: string[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) if (this.inScope(flat[i]!, flat[i + 1]!)) drop.push(flat[i]!);
      if (drop.length > 0) await this.client.hdel(this.key, ...drop);
    } while (cursor !== '0');
    this.size = null;
  }

  /** Records findings (idempotent per key), found on master `node` when given; returns how many of them were new. */
  async add(items: Finding[], node?: string): Promise<number> {
    if (items.length === 0) return 0;
    this.size ??= await this.client.hlen(this.key);
    if (this.size >= MAX_FINDINGS) {
      await this.client.hincrby(this.key, node === undefined ? OVERFLOW_FIELD : `${OVERFLOW_PREFIX}${node}`, items.length);
      return items.length;
    }
    const flat: string[] = [];
    for (const f of items)
      flat.push(f.key, JSON.stringify({ reason: f.reason, ...(f.detail ? { detail: f.detail } : {}), ...(node === undefined ? {} : { node }) }));
    const added = await this.client.hset(this.key, ...flat);
    this.size += added;
    return added;
  }

  /** Total findings (recorded plus overflow), in this store's scope. */
  async count(): Promise<{ total: number; listed: number; overflow: number }> {
    let listed = 0;
    let overflow = 0;
    let cursor = '0';
    do {
      const [next, flat] = await this.client.hscan(this.key, cursor, 'COUNT', 1000);
      cursor = next;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        if (!this.inScope(flat[i]!, flat[i + 1]!)) continue;
        if (isOverflow(flat[i]!)) overflow += Number(flat[i + 1]) || 0;
        else listed += 1;
      }
    } while (cursor !== '0');
    return { total: listed + overflow, listed, overflow };
  }

  /** Counts by reason (overflowed findings under `other`), in this store's scope; one HSCAN over at most {@link MAX_FINDINGS} entries. */
  async summary(): Promise<{ total: number; byReason: Record<string, number> }> {
    const byReason: Record<string, number> = {};
    let total = 0;
    let cursor = '0';
    do {
      const [next, flat] = await this.client.hscan(this.key, cursor, 'COUNT', 1000);
      cursor = next;
      for (let i = 0; i + 1 < flat.length; i += 2) {
        if (!this.inScope(flat[i]!, flat[i + 1]!)) continue;
        const over = isOverflow(flat[i]!);
        const n = over ? Number(flat[i + 1]) || 0 : 1;
        const reason = over ? 'other' : decode(flat[i]!, flat[i + 1]!).reason;
        byReason[reason] = (byReason[reason] ?? 0) + n;
        total += n;
      }
    } while (cursor !== '0');
    return { total, byReason };
  }

  /** Up to `limit` findings in this store's scope, in no particular order. */
  async list(limit: number): Promise<Finding[]> {
    const out: Finding[] = [];
    let cursor = '0';
    do {
      const [next, flat] = await this.client.hscan(this.key, cursor, 'COUNT', 500);
      cursor = next;
      for (let i = 0; i + 1 < flat.length && out.length < limit; i += 2) {
        if (isOverflow(flat[i]!) || !this.inScope(flat[i]!, flat[i + 1]!)) continue;
        out.push(strip(decode(flat[i]!, flat[i + 1]!)));
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
          if (isOverflow(flat[i]!) || !this.inScope(flat[i]!, flat[i + 1]!)) continue;
          if (!out.write(`${JSON.stringify(strip(decode(flat[i]!, flat[i + 1]!)))}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
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

function decode(key: string, json: string): Finding & { node?: string } {
  try {
    const v = JSON.parse(json) as { reason?: unknown; detail?: unknown; node?: unknown };
    return {
      key,
      reason: String(v.reason ?? '?'),
      ...(typeof v.detail === 'string' ? { detail: v.detail } : {}),
      ...(typeof v.node === 'string' ? { node: v.node } : {}),
    };
  } catch {
    return { key, reason: '?' };
  }
}

/** A finding as listed and reported: `{key, reason, detail}` (the master it was found on stays in the hash). */
function strip(f: Finding & { node?: string }): Finding {
  const { node: _node, ...rest } = f;
  return rest;
}
