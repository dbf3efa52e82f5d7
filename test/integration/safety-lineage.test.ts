/**
 * Issue 9, item 1: a forward checkpoint belongs to a lineage. A backfill
 * interrupted before a rollback to legacy must not be resumed afterwards
 * (legacy writers changed records it had already copied), and where both
 * layouts hold a record with the same rev and different content, a forward
 * backfill in dual-write makes v2 an exact copy of legacy (the primary wins).
 */
import { describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { readRecord } from '../../src/core/protocol.js';
import { StateStore } from '../../src/core/state.js';
import { loadCheckpoint, sumCounter } from '../../src/ops/checkpoint.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, topologyUrl } from '../helpers/core-clients.js';
import { canonicalRecord, canonicalRecords, waitForCheckpoint } from '../helpers/fault-helpers.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { scanKeys, seedLegacy } from './backfill-helpers.js';

describe.each(TOPOLOGIES)('checkpoint lineage on %s', (topology) => {
  const masters = topology === 'cluster' ? 3 : 1;

  it('interrupted backfill → rollback to legacy → legacy writers change every job → plain backfill rescans; verify clean', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`lineage${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    const N = 2000;
    try {
      const jobs = await seedLegacy(client, keys, N);
      const edw = await runCli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'lineage test']);
      expect(edw.code, edw.stderr).toBe(0);

      // A throttled backfill, interrupted once it has provably copied part of the keyspace.
      const first = await runCli([...args, '--json', 'backfill', '--rate', '1000', '--batch-size', '100'], {
        onSpawn: (child) => void waitForCheckpoint(client, keys, 'backfill', 500, masters).then(() => child.kill('SIGINT')),
      });
      expect(first.code, first.stderr).toBe(130);
      const before = await loadCheckpoint(client, keys, 'backfill');
      const scannedBefore = sumCounter(before, 'scanned');
      expect(scannedBefore).toBeGreaterThanOrEqual(500);
      expect(scannedBefore).toBeLessThan(N);
      const copiedBefore = new Set((await scanKeys(client, keys.v2Pattern())).map((k) => keys.parseV2(k)!.jobId));
      expect(copiedBefore.size).toBeGreaterThan(0);

      // Back to legacy: the lineage ends, and with it the forward checkpoint.
      const rb = await runCli([...args, '--json', 'rollback', '--execute', '--reason', 'lineage test']);
      expect(rb.code, rb.stderr).toBe(0);
      expect(rb.json).toMatchObject({ from: 'dual-write', to: 'legacy' });
      const st = await new StateStore(client, keys).read();
      expect(st).toMatchObject({ phase: 'legacy', lineage: 1, v2Complete: false });
      expect((await loadCheckpoint(client, keys, 'backfill')).nodes).toHaveLength(0);

      // Legacy writers change every job: most through the queue core (rev + 1), every fifth
      // with a raw HSET that leaves rev alone (a writer outside the queue core). Some of
      // those were copied before the rollback, so v2 holds them at the same rev, with the old content.
      const q = await RedisJobQueue.create(client, { keys, register: false, phase: { subscribe: false } });
      const rawIds: string[] = [];
      try {
        for (let i = 0; i < jobs.length; i += 200) {
          await Promise.all(
            jobs.slice(i, i + 200).map(async (j, k) => {
              if ((i + k) % 5 === 0) {
                rawIds.push(j.jobId);
                await client.hset(keys.legacyJob(j.jobId), 'status', 'failed', 'error', 'set by a foreign writer');
              } else {
                await q.updateStatus(j.workspaceId, j.jobId, { status: 'running', result: { step: i + k } });
              }
            }),
          );
        }
        for (let i = 0; i < 200; i++) await q.enqueue({ workspaceId: `ws-${i % 7}`, jobId: `late-${i}`, action: 'after-rollback', params: { i } });
      } finally {
        await q.close();
      }
      // The tie case really exists: a job copied before the rollback, changed since without a rev bump.
      const tie = rawIds.find((id) => copiedBefore.has(id));
      expect(tie, 'a raw-HSET job that the first run had copied').toBeDefined();
      const tieJob = jobs.find((j) => j.jobId === tie)!;
      expect(await client.hget(keys.v2Job(tieJob.workspaceId, tie!), 'rev')).toBe(await client.hget(keys.legacyJob(tie!), 'rev'));
      expect(await client.hget(keys.v2Job(tieJob.workspaceId, tie!), 'status')).not.toBe('failed');

      const edw2 = await runCli([...args, 'enable-dual-write', '--reason', 'lineage test, again']);
      expect(edw2.code, edw2.stderr).toBe(0);
      // Plain backfill, no --restart: the old checkpoint must not be resumed.
      const second = await runCli([...args, '--json', 'backfill']);
      expect(second.code, second.stderr).toBe(0);
      const j = second.json as { resumed: boolean; complete: boolean; scanned: number; thisRun: { scanned: number }; unmigratable: number };
      expect(j).toMatchObject({ resumed: false, complete: true, unmigratable: 0 });
      expect(j.thisRun.scanned).toBeGreaterThanOrEqual(N + 200);

      const v = await runCli([...args, '--json', 'verify', '--round-delay', '50ms']);
      expect(v.code, v.stdout + v.stderr).toBe(0);
      expect(v.json).toMatchObject({ ok: true, mismatches: 0 });

      // Byte for byte (expiry included): every v2 record is its legacy record.
      const all = [
        ...jobs.map((x) => ({ jobId: x.jobId, workspaceId: x.workspaceId })),
        ...Array.from({ length: 200 }, (_, i) => ({ jobId: `late-${i}`, workspaceId: `ws-${i % 7}` })),
      ];
      const legacy = await canonicalRecords(
        client,
        all.map((x) => keys.legacyJob(x.jobId)),
      );
      const v2 = await canonicalRecords(
        client,
        all.map((x) => keys.v2Job(x.workspaceId, x.jobId)),
      );
      const differing = all.filter(
        (x) => legacy.get(keys.legacyJob(x.jobId)) !== v2.get(keys.v2Job(x.workspaceId, x.jobId)) || v2.get(keys.v2Job(x.workspaceId, x.jobId)) === null,
      );
      expect(differing.map((x) => x.jobId).slice(0, 10)).toEqual([]);
      expect(await client.hget(keys.v2Job(tieJob.workspaceId, tie!), 'status')).toBe('failed');
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });

  it('forward backfill in dual-write: the primary wins ties (same rev, other content), higher-rev copies and expiry differences; in read-new v2 is never written', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`ties${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      const jobs = await seedLegacy(client, keys, 60, { ttlEvery: 1000 });
      await movePhase(client, keys, Phase.DualWrite, 100);
      const [same, higher, ttl, equal] = [jobs[1]!, jobs[2]!, jobs[4]!, jobs[5]!];
      const v2Of = (j: { jobId: string; workspaceId: string }): string => keys.v2Job(j.workspaceId, j.jobId);
      const legacyRev = async (j: { jobId: string }): Promise<string> => (await client.hget(keys.legacyJob(j.jobId), 'rev'))!;
      // A field-by-field copy: COPY cannot cross slots on a cluster.
      const plantCopy = async (j: { jobId: string; workspaceId: string }): Promise<void> => {
        const raw = await readRecord(client, keys.legacyJob(j.jobId));
        await client.hset(v2Of(j), ...(raw.fields as unknown as [string, string]));
        if (raw.pexpireAt > 0) await client.pexpireat(v2Of(j), raw.pexpireAt);
      };
      // Copies left from before a rollback, planted: the same rev with other content ...
      await plantCopy(same);
      await client.hset(v2Of(same), 'status', 'stale-copy');
      // ... a higher rev with other content (legacy is the primary: it is still the truth) ...
      await plantCopy(higher);
      await client.hset(v2Of(higher), 'status', 'stale-copy', 'rev', String(Number(await legacyRev(higher)) + 5));
      // ... the same content with an expiry legacy does not have ...
      await plantCopy(ttl);
      await client.pexpire(v2Of(ttl), 3_600_000);
      // ... and an exact copy, which stays as it is.
      await plantCopy(equal);
      expect(await client.hget(v2Of(same), 'rev')).toBe(await legacyRev(same));

      const bf = await runCli([...args, '--json', 'backfill']);
      expect(bf.code, bf.stderr).toBe(0);
      expect(bf.json).toMatchObject({ complete: true, applied: 3, copied: 60 - 1, skipped: 1 });
      for (const j of jobs) expect(await canonicalRecord(client, v2Of(j)), j.jobId).toBe(await canonicalRecord(client, keys.legacyJob(j.jobId)));
      const v = await runCli([...args, '--json', 'verify', '--round-delay', '50ms']);
      expect(v.code, v.stdout).toBe(0);

      // In read-new v2 is the primary: a forward backfill never overwrites an existing v2 record.
      await movePhase(client, keys, Phase.ReadNew, 100);
      await client.hset(keys.legacyJob(same.jobId), 'status', 'legacy-side-change');
      const v2Before = await canonicalRecord(client, v2Of(same));
      const bf2 = await runCli([...args, '--json', 'backfill', '--restart']);
      expect(bf2.code, bf2.stderr).toBe(0);
      expect(bf2.json).toMatchObject({ complete: true, applied: 0, copied: 0 });
      expect(await canonicalRecord(client, v2Of(same))).toBe(v2Before);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});
