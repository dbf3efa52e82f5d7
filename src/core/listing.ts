/**
 * The two read paths of `listJobs` (docs/design.md "Phases and routing"): the v2 workspace index,
 * and the legacy scan-and-filter that never skips a job (docs/design.md "Where the seed is wrong").
 * `RedisJobQueue` picks one by phase; this module only reads.
 *
 * Order of a listing (also in docs/api.md):
 *  - v2: by created_at (the index score, ms), then job_id (byte order) for equal times;
 *  - legacy: no meaningful order. Masters are read in address order, and on
 *    each master in SCAN order, sorted by key within one SCAN batch. Paging is
 *    still complete and without duplicates on a stable keyspace.
 *
 * Every page is bounded twice: by `limit` jobs and by `maxBytes` of stored
 * data. Records are fetched in chunks sized from the jobs seen so far (on this
 * page, or on the workspace's previous page), so a page of large records never
 * holds much more than its budget in memory, and a page of small records of a
 * workspace already seen is read in one round trip (one pipeline on a single
 * node; the commands sent together on a cluster, where the keys of a page
 * live on several masters).
 */
import type { Redis } from 'ioredis';
import { CursorError, isReplyError } from './errors.js';
import { JobField, jobFromHash, type Job } from './job.js';
import type { Keyspace } from './keys.js';
import { Layout } from './phase.js';
import { isCluster, masterNodes, nodeAddress, type RedisClient } from './redis.js';
import { decodeCursor, encodeCursor, type LegacyCursor } from './cursor.js';
import type { ListJobsOptions, ListJobsResult } from './queue.js';

/** Default byte budget of one page: 4 MiB of stored field names and values. */
export const DEFAULT_PAGE_MAX_BYTES = 4 * 1024 * 1024;
/** Records fetched in one round trip, at most (MAX_PAGE_LIMIT of src/core/queue.ts: a whole page when its records are small). */
const MAX_FETCH_CHUNK = 200;
/** First chunk of a page when nothing is known about the workspace's record sizes. */
const FIRST_FETCH_CHUNK = 8;
/**
 * A workspace's previous page sizes its next page's first chunk as if its records were this many
 * times the average seen: a page whose records are a little larger than the last one's still fits.
 */
const HINT_SAFETY = 2;
/** Workspaces whose record size is remembered (the map is cleared when full: a bound, not an LRU). */
const MAX_SIZE_HINTS = 10_000;

/** Size of a record as stored: field names and values, in bytes. */
function hashBytes(hash: Record<string, string>): number {
  let n = 0;
  // Object.keys rather than Object.entries: no array per field (this runs on every record of every page).
  for (const k of Object.keys(hash)) n += Buffer.byteLength(k) + Buffer.byteLength(hash[k]!);
  return n;
}

/** The jobs of one page so far, against its two bounds. */
class PageBudget {
  readonly jobs: Job[] = [];
  private bytes = 0;

  /**
   * @param hintBytes average record size of the workspace's previous page (null: unknown), used
   *   only until this page has records of its own to average
   */
  constructor(
    private readonly limit: number,
    private readonly maxBytes: number,
    private readonly hintBytes: number | null = null,
  ) {}

  /** Adds a record; false (and nothing added) when it would push a non-empty page past the byte budget. */
  add(hash: Record<string, string>): boolean {
    const size = hashBytes(hash);
    if (this.jobs.length > 0 && this.bytes + size > this.maxBytes) return false;
    this.jobs.push(jobFromHash(hash));
    this.bytes += size;
    return true;
  }

  get full(): boolean {
    return this.jobs.length >= this.limit;
  }

  /** How many records to fetch next: what the remaining budget holds at the average size seen, plus one. */
  nextChunk(available: number): number {
    const want = this.limit - this.jobs.length;
    let n = FIRST_FETCH_CHUNK;
    if (this.jobs.length > 0) {
      const avg = Math.max(1, this.bytes / this.jobs.length);
      n = Math.ceil(Math.max(0, this.maxBytes - this.bytes) / avg) + 1;
    } else if (this.hintBytes !== null) {
      n = Math.ceil(this.maxBytes / Math.max(1, this.hintBytes * HINT_SAFETY)) + 1;
    }
    return Math.max(1, Math.min(n, MAX_FETCH_CHUNK, want, available));
  }

  /** Average stored size of the records added (null when none). */
  get averageBytes(): number | null {
    return this.jobs.length === 0 ? null : this.bytes / this.jobs.length;
  }
}

/** HGETALL, where a key that is no longer a hash (it changed type since it was found) reads as absent. */
async function hgetallOrEmpty(client: RedisClient, key: string): Promise<Record<string, string>> {
  try {
    return await client.hgetall(key);
  } catch (err) {
    if (isReplyError(err) && err.message.startsWith('WRONGTYPE')) return {};
    throw err;
  }
}

/**
 * HGETALL of many keys in one round trip, with {@link hgetallOrEmpty}'s rule for WRONGTYPE.
 * A single node gets one pipeline (one write, no promise per key); a cluster client gets the
 * commands all at once (its pipelines need every key on one master).
 */
async function hgetallMany(client: RedisClient, keys: readonly string[]): Promise<Array<Record<string, string>>> {
  if (keys.length === 0) return [];
  if (isCluster(client)) return Promise.all(keys.map((k) => hgetallOrEmpty(client, k)));
  const p = client.pipeline();
  for (const k of keys) p.hgetall(k);
  const res = (await p.exec()) ?? [];
  return res.map(([err, v]) => {
    if (!err) return v as Record<string, string>;
    if (isReplyError(err) && err.message.startsWith('WRONGTYPE')) return {};
    throw err;
  });
}

/** Reads pages of one workspace's jobs on either layout. */
export class JobLister {
  /** Average record size of each workspace's last page (sizes the first fetch of its next page). */
  private readonly sizeHints = new Map<string, number>();

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keyspace,
    private readonly legacyScanCount: number,
  ) {}

  private budgetFor(workspaceId: string, opts: ListJobsOptions): PageBudget {
    return new PageBudget(opts.limit, opts.maxBytes ?? DEFAULT_PAGE_MAX_BYTES, this.sizeHints.get(workspaceId) ?? null);
  }

  private learn(workspaceId: string, page: PageBudget): void {
    const avg = page.averageBytes;
    if (avg === null) return;
    if (this.sizeHints.size >= MAX_SIZE_HINTS && !this.sizeHints.has(workspaceId)) this.sizeHints.clear();
    this.sizeHints.set(workspaceId, avg);
  }

  /**
   * v2 path: the workspace index ordered by (created_at, job_id). O(log n + limit)
   * whatever the size of the keyspace.
   */
  async listV2(workspaceId: string, opts: ListJobsOptions): Promise<ListJobsResult> {
    const indexKey = this.keys.index(workspaceId);
    const want = opts.limit + 1;
    let entries: Array<{ member: string; score: number }>;
    if (!opts.cursor) {
      entries = pairs(await this.client.zrange(indexKey, 0, want - 1, 'WITHSCORES'));
    } else {
      const c = decodeCursor(opts.cursor, Layout.V2);
      if (c.p !== Layout.V2) throw new Error('unreachable');
      const [rank, score] = await Promise.all([this.client.zrank(indexKey, c.m), this.client.zscore(indexKey, c.m)]);
      if (rank !== null && score !== null && Number(score) === c.s) {
        entries = pairs(await this.client.zrange(indexKey, rank + 1, rank + want, 'WITHSCORES'));
      } else {
        // The last member left the index: resume by position in (score, member) order.
        entries = [];
        let offset = 0;
        while (entries.length < want) {
          const batch = pairs(await this.client.zrange(indexKey, c.s, '+inf', 'BYSCORE', 'LIMIT', offset, want * 2, 'WITHSCORES'));
          if (batch.length === 0) break;
          offset += batch.length;
          for (const e of batch) if (e.score > c.s || e.member > c.m) entries.push(e);
        }
        entries = entries.slice(0, want);
      }
    }
    // The records are read in the caller's slot (ListJobsOptions.recordSlot); the index entries above are not.
    const readRecords = async (): Promise<ListJobsResult> => {
      const candidates = entries.slice(0, opts.limit);
      const page = this.budgetFor(workspaceId, opts);
      // The cursor continues after the last index entry consumed: a job returned, or a dangling entry skipped.
      let lastConsumed: { member: string; score: number } | null = null;
      let stoppedByBytes = false;
      let i = 0;
      while (i < candidates.length && !stoppedByBytes) {
        const chunk = candidates.slice(i, i + page.nextChunk(candidates.length - i));
        const hashes = await hgetallMany(
          this.client,
          chunk.map((e) => this.keys.v2Job(workspaceId, e.member)),
        );
        for (let j = 0; j < chunk.length; j++) {
          const h = hashes[j]!;
          // Dangling index entries (expired records) are skipped; verify --repair removes them.
          if (h[JobField.JobId] !== undefined && !page.add(h)) {
            stoppedByBytes = true;
            break;
          }
          lastConsumed = chunk[j]!;
        }
        i += chunk.length;
      }
      const hasMore = stoppedByBytes || entries.length > opts.limit;
      this.learn(workspaceId, page);
      return {
        jobs: page.jobs,
        nextCursor: hasMore && lastConsumed ? encodeCursor({ p: Layout.V2, s: lastConsumed.score, m: lastConsumed.member }) : null,
        readPath: Layout.V2,
      };
    };
    return opts.recordSlot ? opts.recordSlot(readRecords) : readRecords();
  }

  /**
   * Legacy path: SCAN every master in address order, filtering by workspace.
   * Unlike the seed (docs/design.md "Where the seed is wrong") it never drops the rest of a SCAN batch when a
   * page fills (by count or by bytes): the cursor remembers the batch's start
   * and the last key served, and the batch is re-read and resumed after that key.
   */
  async listLegacy(workspaceId: string, opts: ListJobsOptions): Promise<ListJobsResult> {
    const { recordSlot, ...rest } = opts;
    // Each SCAN batch brings records of its own: the whole legacy read runs in the caller's slot.
    if (recordSlot) return recordSlot(() => this.listLegacy(workspaceId, rest));
    const nodes = masterNodes(this.client)
      .map((n) => ({ node: n, addr: nodeAddress(n) }))
      .sort((a, b) => (a.addr < b.addr ? -1 : 1));
    const count = this.legacyScanCount;
    let pos: LegacyCursor;
    if (opts.cursor) {
      const c = decodeCursor(opts.cursor, Layout.Legacy);
      if (c.p !== Layout.Legacy) throw new Error('unreachable');
      pos = c;
    } else {
      pos = { p: Layout.Legacy, n: nodes[0]?.addr ?? '', c: '0', k: count, after: null };
    }
    let nodeIdx = nodes.findIndex((n) => n.addr === pos.n);
    if (nodeIdx < 0) {
      throw new CursorError('Cursor refers to a node that is no longer a master; restart paging without a cursor');
    }
    const page = new PageBudget(opts.limit, opts.maxBytes ?? DEFAULT_PAGE_MAX_BYTES);
    let scanCursor = pos.c;
    let after = pos.after;
    for (;;) {
      const { node, addr } = nodes[nodeIdx]!;
      const [next, found] = await node.scan(scanCursor, 'MATCH', this.keys.legacyPattern, 'COUNT', pos.k, 'TYPE', 'hash');
      // A resized table regroups keys into batches: skipping what sorts before `after` could skip a job never served.
      if (after !== null && pos.x !== undefined && pos.x !== next) after = null;
      // SCAN may repeat a key within a batch while the server resizes its table: dedupe.
      const keys = [...new Set(found)].filter((k) => after === null || k > after).sort();
      const owners = await pipelineHget(node, keys, JobField.WorkspaceId);
      const mine = keys.filter((_, i) => owners[i] === workspaceId);
      let i = 0;
      while (i < mine.length) {
        const chunk = mine.slice(i, i + page.nextChunk(mine.length - i));
        const hashes = await hgetallMany(node, chunk);
        for (let j = 0; j < chunk.length; j++) {
          const at = i + j;
          const h = hashes[j]!;
          if (h[JobField.WorkspaceId] !== workspaceId) continue;
          if (!page.add(h)) {
            // Full by bytes: the next page starts with this key, so resume right after the one before it.
            const resumeAfter = at > 0 ? mine[at - 1]! : after;
            const resume: LegacyCursor = {
              p: Layout.Legacy,
              n: addr,
              c: scanCursor,
              k: pos.k,
              after: resumeAfter,
              ...(resumeAfter === null ? {} : { x: next }),
            };
            return { jobs: page.jobs, nextCursor: encodeCursor(resume), readPath: Layout.Legacy };
          }
          if (page.full) {
            const nextPos: LegacyCursor | null =
              at < mine.length - 1 ? { p: Layout.Legacy, n: addr, c: scanCursor, k: pos.k, after: mine[at]!, x: next } : advance(nodes, nodeIdx, next, pos.k);
            return { jobs: page.jobs, nextCursor: nextPos ? encodeCursor(nextPos) : null, readPath: Layout.Legacy };
          }
        }
        i += chunk.length;
      }
      after = null;
      if (next !== '0') {
        scanCursor = next;
        continue;
      }
      if (nodeIdx + 1 >= nodes.length) return { jobs: page.jobs, nextCursor: null, readPath: Layout.Legacy };
      nodeIdx += 1;
      scanCursor = '0';
    }
  }
}

function advance(nodes: Array<{ addr: string }>, nodeIdx: number, next: string, k: number): LegacyCursor | null {
  if (next !== '0') return { p: Layout.Legacy, n: nodes[nodeIdx]!.addr, c: next, k, after: null };
  const following = nodes[nodeIdx + 1];
  return following ? { p: Layout.Legacy, n: following.addr, c: '0', k, after: null } : null;
}

function pairs(flat: string[]): Array<{ member: string; score: number }> {
  const out: Array<{ member: string; score: number }> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push({ member: flat[i]!, score: Number(flat[i + 1]) });
  return out;
}

/** HGET of one field on many keys in one round trip; a key that changed type reads as absent, other errors throw. */
async function pipelineHget(node: Redis, keys: string[], field: string): Promise<Array<string | null>> {
  if (keys.length === 0) return [];
  const p = node.pipeline();
  for (const k of keys) p.hget(k, field);
  const res = (await p.exec()) ?? [];
  return res.map(([err, v]) => {
    if (!err) return v as string | null;
    // A Redis error is never read as "not this workspace's job": only WRONGTYPE means that.
    if (isReplyError(err) && err.message.startsWith('WRONGTYPE')) return null;
    throw err;
  });
}
