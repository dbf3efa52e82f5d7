// Backfill and verify on real Redis, on one node and on the 3-master cluster:
// exactness (bytes, expiries, index), detection + classification + repair,
// unmigratable data left untouched, live writers, reverse direction, shards.
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createdAtScore } from '../../src/core/job.js';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { callScript, ScriptName } from '../../src/core/scripts.js';
import { StateStore } from '../../src/core/state.js';
import { backfill } from '../../src/ops/backfill.js';
import { recordDigest } from '../../src/ops/record-compare.js';
import { verify } from '../../src/ops/verify.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, topologyUrl, type Topology } from '../helpers/core-clients.js';
import { sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';
import { dump, opContext, recordBytes, scanKeys, seedLegacy, type SeededJob } from './backfill-helpers.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'orch-bf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const available = (t: Topology): boolean => t === 'standalone' || sharedClusterAvailable();

/** Byte-for-byte: every legacy record equals its v2 copy, with the same expiry, and is indexed. */
async function expectExactCopies(client: Awaited<ReturnType<typeof coreClient>>, keys: Keyspace, jobs: SeededJob[]): Promise<void> {
  for (let i = 0; i < jobs.length; i += 500) {
    const chunk = jobs.slice(i, i + 500);
    const rows = await Promise.all(
      chunk.map(async (j) => {
        const [legacy, v2, score] = await Promise.all([
          recordBytes(client, keys.legacyJob(j.jobId)),
          recordBytes(client, keys.v2Job(j.workspaceId, j.jobId)),
          client.zscore(keys.index(j.workspaceId), j.jobId),
        ]);
        return { j, legacy, v2, score };
      }),
    );
    for (const { j, legacy, v2, score } of rows) {
      expect(v2.type, j.jobId).toBe('hash');
      expect(v2.pexpireAt, j.jobId).toBe(legacy.pexpireAt);
      if (j.ttl) expect(v2.pexpireAt, j.jobId).toBeGreaterThan(0);
      expect(v2.fields.size, j.jobId).toBe(legacy.fields.size);
      for (const [f, v] of legacy.fields) expect(v2.fields.get(f)?.equals(v), `${j.jobId}.${f}`).toBe(true);
      expect(Number(score), j.jobId).toBe(createdAtScore(legacy.fields.get('created_at')));
    }
  }
}

describe.each(TOPOLOGIES)('backfill + verify on %s', (topology) => {
  const N = topology === 'standalone' ? 20_000 : 4_000;

  it.skipIf(!available(topology))(`exactness: ${N} jobs (binary, unicode, 3,000 fields, TTLs) copy byte-identical; verify finds nothing`, async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`bfexact${topology}`);
    const keys = new Keyspace(prefix);
    try {
      const jobs = await seedLegacy(client, keys, N, { specials: true });
      await movePhase(client, keys, Phase.DualWrite, 100);
      const bf = await backfill(opContext(client, keys), {});
      expect(bf).toMatchObject({ scanned: jobs.length, copied: jobs.length, skipped: 0, unmigratable: 0, complete: true, resumed: false });
      await expectExactCopies(client, keys, jobs);

      const v = await verify(opContext(client, keys), { roundDelayMs: 50 });
      expect(v).toMatchObject({ ok: true, mismatches: 0, byKind: {}, scanned: 2 * jobs.length, indexEntries: jobs.length, scope: 'full' });

      const state = await new StateStore(client, keys).read();
      expect(state.lastBackfill).toMatchObject({ direction: 'forward', complete: true, copied: jobs.length, epoch: state.epoch });
      expect(state.lastVerify).toMatchObject({ ok: true, scope: 'full', mismatches: 0, epoch: state.epoch });
      expect(state.v2Complete).toBe(true);

      // A second run copies nothing: everything is already there (idempotent).
      const again = await backfill(opContext(client, keys), {});
      expect(again).toMatchObject({ scanned: jobs.length, copied: 0, skipped: jobs.length, resumed: false });
    } finally {
      await cleanupClient(client, prefix);
    }
  });

  it.skipIf(!available(topology))('detection and repair: seven planted problems are found, classified, reported without secrets, repaired', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`bfdetect${topology}`);
    const keys = new Keyspace(prefix);
    const { url, cluster } = topologyUrl(topology);
    const cli = (...args: string[]): ReturnType<typeof runCli> => runCli([...target(url, prefix, cluster), '--json', ...args]);
    try {
      await seedLegacy(client, keys, 300);
      await movePhase(client, keys, Phase.DualWrite, 100);
      const bf = await cli('backfill');
      expect(bf.code, bf.stderr).toBe(0);

      // 1 changed field (params, holding a secret), 2 missing field, 3 extra field, 4 missing record,
      // 5 orphan, 6 expiry where legacy has none, 7 missing index entry.
      await client.hset(keys.v2Job('ws-1', 'job-1'), 'params', JSON.stringify({ api_key: 'sk-live-OTHER', n: 1 }));
      await client.hdel(keys.v2Job('ws-2', 'job-2'), 'action');
      await client.hset(keys.v2Job('ws-3', 'job-3'), 'extra', 'surplus');
      await client.del(keys.v2Job('ws-4', 'job-4'));
      await client.hset(
        keys.v2Job('ws-5', 'ghost-1'),
        'job_id',
        'ghost-1',
        'workspace_id',
        'ws-5',
        'params',
        JSON.stringify({ api_key: 'sk-live-GHOST' }),
        'rev',
        '1',
      );
      await client.pexpire(keys.v2Job('ws-6', 'job-6'), 600_000);
      await client.zrem(keys.index('ws-7'), 'job-7');

      const report = path.join(tmp, `${prefix}.ndjson`);
      const v = await cli('verify', '--round-delay', '100ms', '--report', report);
      expect(v.code, v.stderr).toBe(1);
      expect(v.json).toMatchObject({
        ok: false,
        rounds: 3,
        byKind: { 'field-diff': 1, 'missing-field': 1, 'extra-field': 1, missing: 1, orphan: 1, ttl: 1, 'index-missing': 1, 'index-dangling': 1 },
      });
      // The deleted record also leaves a dangling index entry: eight findings for seven plants.
      expect(v.json!.mismatches).toBe(8);
      const lines = readFileSync(report, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toHaveLength(8);
      const byKind = Object.fromEntries(lines.map((l) => [l.kind as string, l]));
      expect(byKind['field-diff']).toMatchObject({ key: keys.v2Job('ws-1', 'job-1'), fields: ['params'] });
      expect(byKind['missing-field']).toMatchObject({ key: keys.v2Job('ws-2', 'job-2'), fields: ['action'] });
      expect(byKind['extra-field']).toMatchObject({ key: keys.v2Job('ws-3', 'job-3'), fields: ['extra'] });
      expect(byKind.missing).toMatchObject({ key: keys.legacyJob('job-4') });
      expect(byKind.orphan).toMatchObject({ key: keys.v2Job('ws-5', 'ghost-1') });
      expect(byKind.ttl).toMatchObject({ key: keys.v2Job('ws-6', 'job-6'), legacyExpireAt: -1 });
      expect(byKind['index-missing']).toMatchObject({ key: keys.index('ws-7'), jobId: 'job-7' });
      const text = readFileSync(report, 'utf8') + v.stdout + v.stderr;
      expect(text).not.toContain('sk-live');
      expect(text).toContain('***REDACTED***');
      expect(await client.hget(keys.state, 'v2_complete')).toBe('0');

      const repair = await cli('verify', '--round-delay', '50ms', '--repair');
      expect(repair.code, repair.stderr).toBe(0);
      expect(repair.json).toMatchObject({ ok: true, mismatches: 8, remaining: 0 });

      const clean = await cli('verify', '--round-delay', '50ms');
      expect(clean.code, clean.stderr).toBe(0);
      expect(clean.json).toMatchObject({ ok: true, mismatches: 0 });
      expect(await client.hget(keys.state, 'v2_complete')).toBe('1');
      expect(await client.exists(keys.v2Job('ws-5', 'ghost-1'))).toBe(0);
      expect(await client.pexpiretime(keys.v2Job('ws-6', 'job-6'))).toBe(-1);
    } finally {
      await cleanupClient(client, prefix);
    }
  });

  it.skipIf(!available(topology))('bad data: unmigratable records and foreign types are reported (exit 1) and left byte-for-byte untouched', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`bfbad${topology}`);
    const keys = new Keyspace(prefix);
    const { url, cluster } = topologyUrl(topology);
    try {
      await seedLegacy(client, keys, 50, { ttlEvery: 1000 });
      const head = `${prefix}:jobs:`;
      const bad: Record<string, string> = {
        [`${head}a-list`]: 'non-hash',
        [`${head}a-string`]: 'non-hash',
        [`${head}a-set`]: 'non-hash',
        [`${head}bad-ws`]: 'invalid-workspace',
        [`${head}no-ws`]: 'missing-workspace',
        [`${head}bad-rev`]: 'invalid-rev',
        [`${head}bad:id!`]: 'invalid-job-id',
      };
      await client.rpush(`${head}a-list`, 'x', 'y');
      await client.set(`${head}a-string`, 'plain');
      await client.sadd(`${head}a-set`, 'm');
      await client.hset(`${head}bad-ws`, 'job_id', 'bad-ws', 'workspace_id', 'Bad*WS', 'rev', '1');
      await client.hset(`${head}no-ws`, 'job_id', 'no-ws', 'rev', '1');
      await client.hset(`${head}bad-rev`, 'job_id', 'bad-rev', 'workspace_id', 'ws-1', 'rev', 'abc');
      await client.hset(`${head}bad:id!`, 'job_id', 'bad:id!', 'workspace_id', 'ws-1', 'rev', '1');
      const before = await Promise.all(Object.keys(bad).map((k) => dump(client, k)));
      await movePhase(client, keys, Phase.DualWrite, 100);

      const bf = await runCli([...target(url, prefix, cluster), '--json', 'backfill']);
      expect(bf.code, bf.stderr).toBe(1);
      expect(bf.json).toMatchObject({ scanned: 57, copied: 50, unmigratable: 7, ok: false });
      const listed = bf.json!.unmigratableRecords as Array<{ key: string; reason: string }>;
      expect(Object.fromEntries(listed.map((u) => [u.key, u.reason]))).toEqual(bad);
      expect(bf.stdout).toContain('unmigratable');

      const after = await Promise.all(Object.keys(bad).map((k) => dump(client, k)));
      after.forEach((d, i) => expect(d?.equals(before[i]!), Object.keys(bad)[i]).toBe(true));
      const v2Keys = await scanKeys(client, keys.v2Pattern());
      expect(v2Keys).toHaveLength(50);
      expect(v2Keys.some((k) => /bad|Bad|no-ws/.test(k.slice(prefix.length)))).toBe(false);
      expect((await scanKeys(client, keys.indexPattern)).some((k) => /bad|Bad/.test(k.slice(prefix.length)))).toBe(false);

      const v = await runCli([...target(url, prefix, cluster), '--json', 'verify', '--round-delay', '50ms']);
      expect(v.code, v.stderr).toBe(1);
      expect(v.json).toMatchObject({ byKind: { 'non-hash': 3, unmigratable: 4 }, mismatches: 7 });
    } finally {
      await cleanupClient(client, prefix);
    }
  });

  it.skipIf(!available(topology))('live writes through RedisJobQueue during backfill and during verify: 0 persistent mismatches', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`bflive${topology}`);
    const keys = new Keyspace(prefix);
    const queue = await RedisJobQueue.create(client, { keys, phase: { maxCacheMs: 50 } });
    const jobs = await seedLegacy(client, keys, topology === 'standalone' ? 6000 : 2000, { workspaces: 8 });
    let stop = false;
    let writes = 0;
    const writer = async (w: number): Promise<void> => {
      let i = 0;
      while (!stop) {
        i++;
        if (i % 3 === 0) {
          await queue.enqueue({
            workspaceId: `ws-${(i + w) % 8}`,
            action: 'live',
            params: { token: 'tok-SECRET', i },
            ...(i % 2 === 0 ? { ttlMs: 600_000 } : {}),
          });
        } else {
          const j = jobs[(i * 7919 + w * 104729) % jobs.length]!;
          await queue.updateStatus(j.workspaceId, j.jobId, { status: i % 2 === 0 ? 'running' : 'succeeded', result: { i, w } });
        }
        writes++;
      }
    };
    try {
      await movePhase(client, keys, Phase.DualWrite, 100);
      await queue.refreshPhase();
      const writers = [0, 1, 2, 3].map((w) => writer(w));
      const bf = await backfill(opContext(client, keys), { batchSize: 200, concurrency: 2 });
      expect(bf.unmigratable).toBe(0);
      const writesDuringBackfill = writes;
      const v = await verify(opContext(client, keys), { rounds: 3, roundDelayMs: 200, batchSize: 200 });
      const writesDuringVerify = writes - writesDuringBackfill;
      stop = true;
      await Promise.all(writers);
      expect(writesDuringBackfill).toBeGreaterThan(0);
      expect(writesDuringVerify).toBeGreaterThan(0);
      expect(v.mismatches, JSON.stringify(v.listed)).toBe(0);
      expect(v.ok).toBe(true);
      const quiet = await verify(opContext(client, keys), { rounds: 1 });
      expect(quiet).toMatchObject({ ok: true, mismatches: 0 });
    } finally {
      stop = true;
      await queue.close();
      await cleanupClient(client, prefix);
    }
  });

  it.skipIf(!available(topology))('reverse backfill (v2 → legacy) restores deleted legacy records byte-identical and marks legacy complete', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`bfrev${topology}`);
    const keys = new Keyspace(prefix);
    try {
      const jobs = await seedLegacy(client, keys, 500, { specials: true });
      await movePhase(client, keys, Phase.DualWrite, 100);
      await backfill(opContext(client, keys), {});
      const gone = jobs.filter((_, i) => i % 3 === 0);
      for (const j of gone) await client.del(keys.legacyJob(j.jobId));
      await movePhase(client, keys, Phase.ReadNew, 100);
      await client.hset(keys.state, 'legacy_complete', '0');
      const rev = await backfill(opContext(client, keys), { direction: 'reverse' });
      expect(rev).toMatchObject({ direction: 'reverse', op: 'reverse-backfill', copied: gone.length, unmigratable: 0, complete: true });
      await expectExactCopies(client, keys, jobs);
      const state = await new StateStore(client, keys).read();
      expect(state.legacyComplete).toBe(true);
      expect(state.lastBackfill).toMatchObject({ direction: 'reverse', complete: true });
      expect(await verify(opContext(client, keys), { rounds: 1 })).toMatchObject({ ok: true, mismatches: 0 });
    } finally {
      await cleanupClient(client, prefix);
    }
  });
});

describe.each(TOPOLOGIES)('repair compare-and-swap on %s', (topology) => {
  it.skipIf(!available(topology))('replaces or deletes the mirror only while it is exactly what verify saw', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`bfcas${topology}`);
    const keys = new Keyspace(prefix);
    const mirror = keys.v2Job('acme', 'j1');
    const cas = (mode: 'replace' | 'delete', seen: { type: string; rev: string; digest: string }, fields: string[] = [], owner = ''): Promise<number> =>
      callScript<number>(client, ScriptName.RepairCasOneKey, [
        mirror,
        '',
        '',
        mode,
        seen.type === 'none' ? 'absent' : 'hash',
        seen.rev,
        seen.digest,
        0,
        0,
        'j1',
        owner,
        ...fields,
      ]);
    const observe = async (): Promise<{ type: string; rev: string; digest: string }> => {
      const r = await recordBytes(client, mirror);
      return { type: r.type, rev: r.fields.get('rev')?.toString('latin1') ?? '', digest: r.type === 'hash' ? recordDigest(r.fields) : '' };
    };
    try {
      await client.hset(mirror, 'job_id', 'j1', 'workspace_id', 'acme', 'status', 'stale', 'rev', '3', 'bin', Buffer.from([0xff, 0x00, 0xfe]));
      const seen = await observe();
      // A write lands after verify looked (same rev, different content): the repair must refuse.
      await client.hset(mirror, 'status', 'newer');
      expect(await cas('replace', seen, ['job_id', 'j1', 'status', 'primary', 'rev', '3'])).toBe(0);
      expect(await client.hget(mirror, 'status')).toBe('newer');
      expect(await cas('delete', seen)).toBe(0);
      expect(await client.exists(mirror)).toBe(1);
      // A record naming another workspace is another tenant's job: never replaced, even when unchanged.
      expect(await cas('replace', await observe(), ['job_id', 'j1', 'workspace_id', 'other', 'rev', '9'], 'other')).toBe(-2);
      expect(await client.hget(mirror, 'status')).toBe('newer');
      // Still as seen: replaced with the whole snapshot (fields not in it are gone).
      const now = await observe();
      expect(await cas('replace', now, ['job_id', 'j1', 'status', 'primary', 'rev', '3'])).toBe(1);
      expect(await client.hgetall(mirror)).toEqual({ job_id: 'j1', status: 'primary', rev: '3' });
      // Expected absent, but a writer created it meanwhile: refused.
      expect(await cas('replace', { type: 'none', rev: '', digest: '' }, ['job_id', 'j1', 'rev', '1'])).toBe(0);
      expect(await cas('delete', await observe())).toBe(1);
      expect(await client.exists(mirror)).toBe(0);
    } finally {
      await cleanupClient(client, prefix);
    }
  });
});

describe.skipIf(!sharedClusterAvailable())('cluster shards', () => {
  it('--shard 0/2 and --shard 1/2 together copy everything; each alone is partial', async () => {
    const client = await coreClient('cluster');
    const prefix = uniquePrefix('bfshard');
    const keys = new Keyspace(prefix);
    const { url } = topologyUrl('cluster');
    try {
      const jobs = await seedLegacy(client, keys, 3000);
      await movePhase(client, keys, Phase.DualWrite, 100);
      const a = await runCli([...target(url, prefix, true), '--json', 'backfill', '--shard', '0/2']);
      expect(a.code, a.stderr).toBe(0);
      expect(a.json).toMatchObject({ complete: false, shard: '0/2' });
      expect((a.json!.nodes as unknown[]).length).toBe(2);
      const partial = await scanKeys(client, keys.v2Pattern());
      expect(partial.length).toBeGreaterThan(0);
      expect(partial.length).toBeLessThan(jobs.length);
      const b = await runCli([...target(url, prefix, true), '--json', 'backfill', '--shard', '1/2']);
      expect(b.code, b.stderr).toBe(0);
      expect((b.json!.nodes as unknown[]).length).toBe(1);
      expect((a.json!.copied as number) + (b.json!.copied as number)).toBe(jobs.length);
      expect(await scanKeys(client, keys.v2Pattern())).toHaveLength(jobs.length);
      const v = await runCli([...target(url, prefix, true), '--json', 'verify', '--round-delay', '50ms']);
      expect(v.code, v.stderr).toBe(0);
      expect(v.json).toMatchObject({ ok: true, mismatches: 0, scanned: 2 * jobs.length });
    } finally {
      await cleanupClient(client, prefix);
    }
  });
});
