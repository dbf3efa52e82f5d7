/**
 * Issue 9, items 2 and 3: one job id in two workspaces never costs a job.
 *
 *  - Item 2: legacy keys are global, v2 keys are not, so new-only lets two
 *    workspaces create the same id. Rolling back must report the collision
 *    (`id-conflict`, exit 1, legacy stays incomplete) instead of skipping one
 *    job, and `verify --repair` must neither delete nor overwrite either copy.
 *  - Item 3: in read-new two workspaces creating the same id at the same
 *    moment: exactly one create wins, the other gets "exists" (API 409), and
 *    no orphan is left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobExistsError } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { closeRedis, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue, type MirrorFailure } from '../../src/core/redis-queue.js';
import { target } from '../helpers/cli.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, topologyUrl, type Topology } from '../helpers/core-clients.js';
import { canonicalRecord } from '../helpers/fault-helpers.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { seedJobs } from '../helpers/lifecycle.js';
import { startRealApi, TOKENS, type RealApi } from './api-helpers.js';
import { scanKeys } from './backfill-helpers.js';
import { cli, cliToNewOnly, readState } from './safety-helpers.js';

describe.each(TOPOLOGIES)('one job id in two workspaces on %s (item 2)', (topology: Topology) => {
  it('created in new-only for ws-a and ws-b: rollback reports id-conflict and keeps legacy incomplete; both owners read their job; verify --repair touches neither copy, before and after a forced rollback to dual-write', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`idconf${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    const failures: MirrorFailure[] = [];
    let q: RedisJobQueue | null = null;
    try {
      await seedJobs(client, keys, 30);
      await cliToNewOnly(args);

      // new-only: v2 keys are scoped by workspace, so both creates succeed.
      q = await RedisJobQueue.create(client, { keys, register: false, phase: { subscribe: false, maxCacheMs: 0 }, onMirrorFailure: (f) => failures.push(f) });
      await q.enqueue({ workspaceId: 'ws-a', jobId: 'dup-1', action: 'a-job', params: { owner: 'a' } });
      await q.enqueue({ workspaceId: 'ws-b', jobId: 'dup-1', action: 'b-job', params: { owner: 'b' } });
      // ws-b's copy gets the higher rev: the one an unguarded reverse backfill "skips (already there)".
      await q.updateStatus('ws-b', 'dup-1', { status: 'running' });
      const aKey = keys.v2Job('ws-a', 'dup-1');
      const bKey = keys.v2Job('ws-b', 'dup-1');
      const aBefore = await canonicalRecord(client, aKey);
      const bBefore = await canonicalRecord(client, bKey);
      expect(aBefore).not.toBeNull();
      expect(bBefore).not.toBeNull();

      // Rollback from new-only: the reverse backfill copies one of them into the global
      // legacy key and must report the other as an id conflict, not as "already there".
      const rb = await cli([...args, '--json', 'rollback', '--execute', '--reason', 'id conflict test'], 1);
      expect(rb.json).toMatchObject({ from: 'new-only', to: 'read-new', legacyComplete: false, reverseBackfill: { complete: true, unmigratable: 1 } });
      expect(rb.stdout).toMatch(/id-conflict/);
      let st = await readState(client, keys);
      expect(st).toMatchObject({ phase: 'read-new', legacyComplete: false });
      const legacyOwner = await client.hget(keys.legacyJob('dup-1'), 'workspace_id');
      expect(['ws-a', 'ws-b']).toContain(legacyOwner);
      const [inLegacy, v2Only] = legacyOwner === 'ws-a' ? [aKey, bKey] : [bKey, aKey];
      const legacyCopy = await canonicalRecord(client, keys.legacyJob('dup-1'));
      expect(legacyCopy).toBe(await canonicalRecord(client, inLegacy));

      // Both owners still read their own job.
      await q.refreshPhase();
      expect(await q.getJob('ws-a', 'dup-1')).toMatchObject({ workspaceId: 'ws-a', action: 'a-job' });
      expect(await q.getJob('ws-b', 'dup-1')).toMatchObject({ workspaceId: 'ws-b', action: 'b-job' });

      // A write to the v2-only job in read-new mirrors into legacy: refused there (another tenant's job), reported, acknowledged.
      const v2OnlyWs = legacyOwner === 'ws-a' ? 'ws-b' : 'ws-a';
      const updated = await q.updateStatus(v2OnlyWs, 'dup-1', { status: 'succeeded' });
      expect(updated.status).toBe('succeeded');
      expect(failures.map((f) => f.key)).toContain(keys.legacyJob('dup-1'));
      expect(await canonicalRecord(client, keys.legacyJob('dup-1'))).toBe(legacyCopy);
      const v2OnlyNow = await canonicalRecord(client, v2Only);

      // Rerunning the rollback resumes the reverse backfill: still a conflict, still incomplete, still read-new.
      await cli([...args, 'rollback', '--execute', '--reason', 'id conflict test, again'], 1);
      expect(await readState(client, keys)).toMatchObject({ phase: 'read-new', legacyComplete: false });

      // verify --repair: reports the conflict, repairs nothing, records no clean verify.
      const v = await cli([...args, '--json', 'verify', '--repair', '--round-delay', '50ms'], 1);
      expect(v.json).toMatchObject({ ok: false, byKind: { 'id-conflict': 1 } });
      expect(await canonicalRecord(client, inLegacy)).toBe(legacyCopy);
      expect(await canonicalRecord(client, v2Only)).toBe(v2OnlyNow);
      expect(await canonicalRecord(client, keys.legacyJob('dup-1'))).toBe(legacyCopy);
      st = await readState(client, keys);
      expect(st.lastVerify).toMatchObject({ ok: false });

      // An operator forces the move back to dual-write anyway: legacy is the primary now,
      // and it holds the other tenant's job under this id. The v2-only copy is not an orphan.
      await cli([...args, 'rollback', '--execute', '--force', 'legacy-complete', '--reason', 'id conflict test: forced']);
      expect(await readState(client, keys)).toMatchObject({ phase: 'dual-write' });
      const v2 = await cli([...args, '--json', 'verify', '--repair', '--round-delay', '50ms'], 1);
      expect(v2.json).toMatchObject({ ok: false, byKind: { 'id-conflict': 1 } });
      expect(await canonicalRecord(client, v2Only)).toBe(v2OnlyNow);
      expect(await canonicalRecord(client, inLegacy)).toBe(legacyCopy);
      expect(await canonicalRecord(client, keys.legacyJob('dup-1'))).toBe(legacyCopy);
      st = await readState(client, keys);
      expect(st.lastVerify).toMatchObject({ ok: false });
      expect(st.v2Complete).toBe(false);
      // And the 30 seeded jobs are where they belong, in both layouts.
      expect((await scanKeys(client, keys.legacyPattern)).length).toBe(31);
    } finally {
      await q?.close();
      await cleanupClient(client, keys.prefix);
    }
  });
});

describe.each(TOPOLOGIES)('create race in read-new on %s (item 3)', (topology: Topology) => {
  const ROUNDS = 30;
  let admin: RedisClient;
  let c1: RedisClient;
  let c2: RedisClient;
  const keys = new Keyspace(uniquePrefix(`race${topology}`));

  beforeAll(async () => {
    admin = await coreClient(topology);
    c1 = await coreClient(topology);
    c2 = await coreClient(topology);
  });
  afterAll(async () => {
    await closeRedis(c1);
    await closeRedis(c2);
    await cleanupClient(admin, keys.prefix);
  });

  it(`two workspaces create the same job_id at the same moment, ${ROUNDS} rounds: exactly one wins each time, the other gets JobExistsError; verify is clean`, async () => {
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    // Jobs written in dual-write are whole in both layouts.
    await movePhase(admin, keys, Phase.DualWrite, 100);
    await seedJobs(admin, keys, 20);
    await movePhase(admin, keys, Phase.ReadNew, 100);
    // Two writer processes: separate connections, separate queues.
    const qa = await RedisJobQueue.create(c1, { keys, register: false, phase: { subscribe: false } });
    const qb = await RedisJobQueue.create(c2, { keys, register: false, phase: { subscribe: false } });
    try {
      const winners: string[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const jobId = `race-${i}`;
        // Alternate who is sent first, so neither side wins by construction.
        const [first, second] = i % 2 === 0 ? [qa, qb] : [qb, qa];
        const wsFirst = i % 2 === 0 ? 'ws-a' : 'ws-b';
        const wsSecond = i % 2 === 0 ? 'ws-b' : 'ws-a';
        const results = await Promise.allSettled([
          first.enqueue({ workspaceId: wsFirst, jobId, action: 'race', params: { ws: wsFirst } }),
          second.enqueue({ workspaceId: wsSecond, jobId, action: 'race', params: { ws: wsSecond } }),
        ]);
        const ok = results.filter((r) => r.status === 'fulfilled');
        const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(ok, `round ${i}`).toHaveLength(1);
        expect(refused[0]!.reason, `round ${i}`).toBeInstanceOf(JobExistsError);
        const winner = (ok[0] as PromiseFulfilledResult<{ workspaceId: string }>).value.workspaceId;
        winners.push(winner);
        // The winner's job is whole in both layouts; the loser left nothing behind.
        const loser = winner === 'ws-a' ? 'ws-b' : 'ws-a';
        expect(await admin.hget(keys.legacyJob(jobId), 'workspace_id')).toBe(winner);
        expect(await admin.exists(keys.v2Job(loser, jobId))).toBe(0);
        expect(await admin.zscore(keys.index(loser), jobId)).toBeNull();
      }
      // An id legacy already holds for a third workspace is refused to both.
      await admin.hset(keys.legacyJob('taken-1'), { job_id: 'taken-1', workspace_id: 'ws-c', action: 'old', status: 'queued', rev: '1' });
      const both = await Promise.allSettled([
        qa.enqueue({ workspaceId: 'ws-a', jobId: 'taken-1', action: 'race', params: {} }),
        qb.enqueue({ workspaceId: 'ws-b', jobId: 'taken-1', action: 'race', params: {} }),
      ]);
      for (const r of both) expect(r.status === 'rejected' && r.reason instanceof JobExistsError).toBe(true);
      await admin.del(keys.legacyJob('taken-1'));

      // Verify sees no orphan, no conflict, nothing: the losers' primaries are gone.
      const v = await cli([...args, '--json', 'verify', '--round-delay', '50ms']);
      expect(v.json).toMatchObject({ ok: true, mismatches: 0 });
      expect(await scanKeys(admin, keys.v2Pattern())).toHaveLength(20 + ROUNDS);
    } finally {
      await qa.close();
      await qb.close();
    }
  });
});

describe('create race through the API (item 3)', () => {
  let api1: RealApi;
  let api2: RealApi;

  beforeAll(async () => {
    api1 = await startRealApi({ name: 'racepost' });
    // A second API process on the same store: its own connection and queue.
    api2 = await startRealApi({ env: { ORCH_PREFIX: api1.prefix } });
  });
  afterAll(async () => {
    await api2.close();
    await api1.close();
  });

  it('two workspaces POST the same job_id at the same moment in read-new: one 201, one 409, every round', async () => {
    await api1.moveTo(Phase.ReadNew);
    for (let i = 0; i < 20; i++) {
      const jobId = `post-race-${i}`;
      const [ra, rb] = await Promise.all([
        api1.inject('POST', '/ai/jobs', TOKENS.a, { action: 'race', params: { i }, job_id: jobId }),
        api2.inject('POST', '/ai/jobs', TOKENS.b, { action: 'race', params: { i }, job_id: jobId }),
      ]);
      expect([ra.statusCode, rb.statusCode].sort(), `round ${i}: ${ra.body} / ${rb.body}`).toEqual([201, 409]);
      const winner = ra.statusCode === 201 ? 'ws-a' : 'ws-b';
      const loser = winner === 'ws-a' ? 'ws-b' : 'ws-a';
      expect(await api1.admin.hget(api1.keys.legacyJob(jobId), 'workspace_id')).toBe(winner);
      expect(await api1.admin.exists(api1.keys.v2Job(loser, jobId))).toBe(0);
      // The loser's owner cannot read it; the winner can.
      const [ga, gb] = await Promise.all([api1.inject('GET', `/ai/jobs/${jobId}`, TOKENS.a), api1.inject('GET', `/ai/jobs/${jobId}`, TOKENS.b)]);
      expect(winner === 'ws-a' ? [ga.statusCode, gb.statusCode] : [gb.statusCode, ga.statusCode]).toEqual([200, 404]);
    }
  });
});
