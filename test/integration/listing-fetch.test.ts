import { describe, expect, it, vi } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { JobLister } from '../../src/core/listing.js';
import { isCluster, type RedisClient } from '../../src/core/redis.js';
import { cleanupClient, coreClient, TOPOLOGIES } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';

const WS = 'ws-fetch';
const JOBS = 60;

async function writeJobs(client: RedisClient, keys: Keyspace, padBytes: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < JOBS; i++) {
    const id = `job-${String(i).padStart(3, '0')}`;
    ids.push(id);
    const iso = new Date(Date.UTC(2025, 0, 1) + i).toISOString();
    await client.hset(keys.v2Job(WS, id), {
      job_id: id,
      workspace_id: WS,
      action: 'a',
      params: JSON.stringify({ pad: 'x'.repeat(padBytes) }),
      status: 'queued',
      created_at: iso,
      updated_at: iso,
      rev: '1',
    });
    await client.zadd(keys.index(WS), Date.UTC(2025, 0, 1) + i, id);
  }
  return ids;
}

async function pageAll(lister: JobLister, maxBytes: number): Promise<{ ids: string[]; sizes: number[] }> {
  const ids: string[] = [];
  const sizes: number[] = [];
  let cursor: string | null = null;
  do {
    const page = await lister.listV2(WS, { limit: 50, cursor, maxBytes });
    ids.push(...page.jobs.map((j) => j.jobId));
    sizes.push(page.jobs.length);
    cursor = page.nextCursor;
  } while (cursor !== null && sizes.length < 1000);
  return { ids, sizes };
}

describe.each(TOPOLOGIES)("v2 pages sized from the workspace's last page (%s)", (topology) => {
  it('pages every job exactly once, and stays within the byte budget when the records grow after a page of small ones', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix('fetch');
    const keys = new Keyspace(prefix);
    try {
      const ids = await writeJobs(client, keys, 10);
      const lister = new JobLister(client, keys, 100);
      const small = await pageAll(lister, 4 * 1024 * 1024);
      expect(small.ids).toEqual(ids);
      expect(small.sizes).toEqual([50, 10]);

      if (!isCluster(client)) {
        // A workspace already seen: the page of 50 small records is one pipeline (the first page took two: 8, then the rest).
        const pipeline = vi.spyOn(client, 'pipeline');
        const again = await lister.listV2(WS, { limit: 50, cursor: null, maxBytes: 4 * 1024 * 1024 });
        expect(again.jobs).toHaveLength(50);
        expect(pipeline).toHaveBeenCalledTimes(1);
        pipeline.mockRestore();
      }

      // The same workspace's records now hold ~20 kB each; the hint still says ~100 bytes.
      await writeJobs(client, keys, 20_000);
      const budget = 64 * 1024;
      const large = await pageAll(lister, budget);
      expect(large.ids).toEqual(ids);
      // 64 kB holds three 20 kB records: no page goes past its budget, whatever the hint said.
      expect(Math.max(...large.sizes)).toBeLessThanOrEqual(3);
    } finally {
      await cleanupClient(client, prefix);
    }
  });
});
