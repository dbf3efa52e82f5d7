/**
 * The two read paths of `listJobs` (DESIGN §4 "Reads"): the v2 workspace index,
 * and the legacy scan-and-filter that never skips a job (DESIGN §9.1).
 * `RedisJobQueue` picks one by phase; this module only reads.
 */
import type { Redis } from 'ioredis';
import { CursorError } from './errors.js';
import { JobField, jobFromHash, type Job } from './job.js';
import type { Keyspace } from './keys.js';
import { Layout } from './phase.js';
import { masterNodes, nodeAddress, type RedisClient } from './redis.js';
import { decodeCursor, encodeCursor, type LegacyCursor } from './cursor.js';
import type { ListJobsOptions, ListJobsResult } from './queue.js';

/** Reads pages of one workspace's jobs on either layout. */
export class JobLister {
  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keyspace,
    private readonly legacyScanCount: number,
  ) {}

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
    const hasMore = entries.length > opts.limit;
    const page = entries.slice(0, opts.limit);
    const hashes = await Promise.all(page.map((e) => this.client.hgetall(this.keys.v2Job(workspaceId, e.member))));
    const jobs: Job[] = [];
    hashes.forEach((h) => {
      // Dangling index entries (expired records) are skipped; verify --repair removes them.
      if (h[JobField.JobId] !== undefined) jobs.push(jobFromHash(h));
    });
    const last = page[page.length - 1];
    return {
      jobs,
      nextCursor: hasMore && last ? encodeCursor({ p: Layout.V2, s: last.score, m: last.member }) : null,
      readPath: Layout.V2,
    };
  }

  /**
   * Legacy path: SCAN every master in address order, filtering by workspace.
   * Unlike the seed (DESIGN §9.1) it never drops the rest of a SCAN batch when a
   * page fills: the cursor remembers the batch's start and the last key served,
   * and the batch is re-read and resumed after that key.
   */
  async listLegacy(workspaceId: string, opts: ListJobsOptions): Promise<ListJobsResult> {
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
    const jobs: Job[] = [];
    let scanCursor = pos.c;
    let after = pos.after;
    for (;;) {
      const node = nodes[nodeIdx]!.node;
      const [next, found] = await node.scan(scanCursor, 'MATCH', this.keys.legacyPattern, 'COUNT', pos.k, 'TYPE', 'hash');
      // SCAN may repeat a key within a batch while the server resizes its table: dedupe.
      const keys = [...new Set(found)].filter((k) => after === null || k > after).sort();
      const owners = await pipelineHget(node, keys, JobField.WorkspaceId);
      const mine = keys.filter((_, i) => owners[i] === workspaceId);
      const hashes = await Promise.all(mine.map((k) => node.hgetall(k)));
      for (let i = 0; i < mine.length; i++) {
        const h = hashes[i]!;
        if (h[JobField.WorkspaceId] !== workspaceId) continue;
        jobs.push(jobFromHash(h));
        if (jobs.length === opts.limit) {
          const moreInBatch = i < mine.length - 1;
          let nextPos: LegacyCursor | null;
          if (moreInBatch) nextPos = { ...pos, n: nodes[nodeIdx]!.addr, c: scanCursor, after: mine[i]! };
          else nextPos = advance(nodes, nodeIdx, next, pos.k);
          return { jobs, nextCursor: nextPos ? encodeCursor(nextPos) : null, readPath: Layout.Legacy };
        }
      }
      after = null;
      if (next !== '0') {
        scanCursor = next;
        continue;
      }
      if (nodeIdx + 1 >= nodes.length) return { jobs, nextCursor: null, readPath: Layout.Legacy };
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

async function pipelineHget(node: Redis, keys: string[], field: string): Promise<Array<string | null>> {
  if (keys.length === 0) return [];
  const p = node.pipeline();
  for (const k of keys) p.hget(k, field);
  const res = (await p.exec()) ?? [];
  return res.map(([err, v]) => (err ? null : (v as string | null)));
}

