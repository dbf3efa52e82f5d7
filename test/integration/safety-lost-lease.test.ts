/**
 * Issue 9, item 4: a run that lost its lease changes nothing more.
 *
 *  - A `cleanup --execute` paused (SIGSTOP) past its lease while another
 *    operator rolls back (reverse backfill complete, legacy whole again): once
 *    resumed it exits 4 and deletes nothing; legacy keeps every job and
 *    `legacy_complete=1` stays true.
 *  - The lock key deleted under a running cleanup: it exits 4 within one
 *    batch (on a single node the delete script checks the lock atomically, so
 *    exactly nothing is deleted after the DEL); the rollbacks that follow reach
 *    legacy and every job is readable by its owner.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { cleanupClient, coreClient, TOPOLOGIES, topologyUrl, type Topology } from '../helpers/core-clients.js';
import { waitForCheckpoint, waitForLockFree } from '../helpers/fault-helpers.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { scanKeys, seedLegacy, type SeededJob } from './backfill-helpers.js';
import { cli, cliToReadNew, readState } from './safety-helpers.js';

const N = 2000;
/** Slow enough that the run is provably mid-way when the fault comes, in batches of 50, one at a time. */
const SLOW_CLEANUP = ['--rate', '500', '--batch-size', '50', '--concurrency', '1'];

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
});

/** Every job answers its owner through the queue core in the current phase. */
async function unreadable(client: Awaited<ReturnType<typeof coreClient>>, keys: Keyspace, jobs: SeededJob[]): Promise<string[]> {
  const q = await RedisJobQueue.create(client, { keys, register: false, phase: { subscribe: false } });
  try {
    const missing: string[] = [];
    for (let i = 0; i < jobs.length; i += 200) {
      const got = await Promise.all(jobs.slice(i, i + 200).map((j) => q.getJob(j.workspaceId, j.jobId)));
      got.forEach((g, k) => {
        if (g === null) missing.push(jobs[i + k]!.jobId);
      });
    }
    return missing;
  } finally {
    await q.close();
  }
}

describe.each(TOPOLOGIES)('lost lease on %s', (topology: Topology) => {
  const masters = topology === 'cluster' ? 3 : 1;

  it('cleanup --execute SIGSTOPped past its lease; another operator rolls back to completion; SIGCONT: exit 4, nothing more deleted, legacy complete', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`leasestop${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      const jobs = await seedLegacy(client, keys, N);
      await cliToReadNew(args);

      let child: ChildProcess | undefined;
      const run = runCli(
        [...args, '--json', '--lock-ttl', '3000', 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'lost lease test', ...SLOW_CLEANUP],
        {
          timeoutMs: 120_000,
          onSpawn: (c) => {
            child = c;
            children.push(c);
          },
        },
      );
      await waitForCheckpoint(client, keys, 'cleanup', 300, masters);
      child!.kill('SIGSTOP');
      // Deleting really was under way.
      const left = (await scanKeys(client, keys.legacyPattern)).length;
      expect(left).toBeLessThan(N);
      expect(left).toBeGreaterThan(0);

      // Its lease runs out; another operator takes the lock and rolls back (new-only → read-new + reverse backfill).
      await waitForLockFree(client, keys, 30_000);
      const rb = await cli([...args, '--json', 'rollback', '--execute', '--reason', 'lost lease test: roll back under a paused cleanup']);
      expect(rb.json).toMatchObject({ from: 'new-only', to: 'read-new', legacyComplete: true, reverseBackfill: { complete: true, unmigratable: 0 } });
      expect((await scanKeys(client, keys.legacyPattern)).length).toBe(N);

      child!.kill('SIGCONT');
      const stale: CliResult = await run;
      expect(stale.code, stale.stderr).toBe(4);
      expect(stale.json).toMatchObject({ ok: false, exitCode: 4 });
      // Nothing deleted after the newer holder took over: legacy still holds every job, and says so.
      expect((await scanKeys(client, keys.legacyPattern)).length).toBe(N);
      expect(await readState(client, keys)).toMatchObject({ phase: 'read-new', legacyComplete: true });

      // One more step back puts reads on legacy: every job answers its owner there.
      await cli([...args, 'rollback', '--execute', '--reason', 'lost lease test: reads back to legacy']);
      expect(await unreadable(client, keys, jobs)).toEqual([]);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });

  it('the lock key deleted under a running cleanup: exit 4 within one batch; the rollbacks that follow reach legacy and every job is readable by its owner', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`leasedel${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      const jobs = await seedLegacy(client, keys, N);
      await cliToReadNew(args);

      let fault: Promise<number> | undefined;
      const stale = await runCli([...args, '--json', 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'lost lease test', ...SLOW_CLEANUP], {
        timeoutMs: 120_000,
        onSpawn: (c) => {
          children.push(c);
          fault = waitForCheckpoint(client, keys, 'cleanup', 300, masters).then(async () => {
            await client.del(keys.lock);
            return (await scanKeys(client, keys.legacyPattern)).length;
          });
        },
      });
      const atDelete = await fault!;
      expect(stale.code, stale.stderr).toBe(4);
      expect(atDelete).toBeGreaterThan(0);
      expect(atDelete).toBeLessThan(N);
      const after = (await scanKeys(client, keys.legacyPattern)).length;
      if (topology === 'standalone') {
        // The delete script checks the lock in the same atomic step: not one key after the DEL.
        expect(after).toBe(atDelete);
      } else {
        // On a cluster the lock is checked before every batch: at most the batch in flight (50 keys).
        expect(atDelete - after).toBeLessThanOrEqual(50);
      }
      expect(await readState(client, keys)).toMatchObject({ phase: 'new-only', legacyComplete: false });

      // Two more operators roll all the way back: new-only → read-new (reverse backfill) → dual-write → legacy.
      await waitForLockFree(client, keys);
      const r1 = await cli([...args, '--json', 'rollback', '--execute', '--reason', 'after a lost lease']);
      expect(r1.json).toMatchObject({ to: 'read-new', legacyComplete: true, reverseBackfill: { unmigratable: 0 } });
      await cli([...args, 'rollback', '--execute', '--reason', 'after a lost lease']);
      await cli([...args, 'rollback', '--execute', '--reason', 'after a lost lease']);
      expect(await readState(client, keys)).toMatchObject({ phase: 'legacy', legacyComplete: true });
      expect((await scanKeys(client, keys.legacyPattern)).length).toBe(N);
      expect(await unreadable(client, keys, jobs)).toEqual([]);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});
