/**
 * Issue 4, cleanup acceptance (5): cleanup can never touch v2 keys; it keeps
 * (and reports) unmigratable records, foreign key types and anything v2 lacks
 * or holds at a lower rev; it converts the pending list before deleting; it is
 * a dry run unless --execute; and an interrupted run resumes in new-only.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import type { RedisClient } from '../../src/core/redis.js';
import { StateStore } from '../../src/core/state.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, TOPOLOGIES, topologyUrl } from '../helpers/core-clients.js';
import { sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';
import { history, scanAll, seedJobs } from '../helpers/lifecycle.js';

const SEEDED = 150;

/** DUMP + PTTL of every key, so "untouched" means byte for byte, expiry included. */
async function fingerprint(client: RedisClient, keyList: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const k of keyList) {
    const [dump, pttl] = await Promise.all([client.dumpBuffer(k), client.pttl(k)]);
    out.set(k, `${dump?.toString('hex') ?? 'nil'}/${pttl > 0 ? 'ttl' : pttl}`);
  }
  return out;
}

describe.each(TOPOLOGIES)('cleanup safety on %s', (topology) => {
  const skip = topology === 'cluster' && !sharedClusterAvailable();
  let client: RedisClient;
  const prefix = uniquePrefix(`clean${topology}`);
  const keys = new Keyspace(prefix);
  let args: string[];
  let tmp: string;
  const planted = {
    invalidName: `${prefix}:jobs:has space`,
    foreign: `${prefix}:jobs:str1`,
    badWorkspace: `${prefix}:jobs:unmig1`,
    noWorkspace: `${prefix}:jobs:nows1`,
    v2Lacks: `${prefix}:jobs:lacking1`,
    v2Older: `${prefix}:jobs:newer1`,
  };

  beforeAll(async () => {
    if (skip) return;
    client = await coreClient(topology);
    const t = topologyUrl(topology);
    args = target(t.url, prefix, t.cluster);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'orch-cleanup-'));
    await seedJobs(client, keys, SEEDED);
    await client.hset(planted.invalidName, { job_id: 'has space', workspace_id: 'ws0', rev: '1' });
    await client.set(planted.foreign, 'not a hash');
    await client.hset(planted.badWorkspace, { job_id: 'unmig1', workspace_id: 'Bad WS!', rev: '1' });
    await client.hset(planted.noWorkspace, { job_id: 'nows1', status: 'queued', rev: '1' });
    // Bare references whose job cannot be resolved stay as they are.
    await client.rpush(keys.queue, 'ghost1', 'unmig1');
  });
  afterAll(async () => {
    if (skip) return;
    rmSync(tmp, { recursive: true, force: true });
    await cleanupClient(client, prefix);
  });

  it.skipIf(skip)('deletes exactly the legacy keys v2 covers, keeps and reports the rest, converts the queue, never touches v2', async () => {
    expect((await runCli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'cleanup test'])).code).toBe(0);
    const bf = await runCli([...args, '--json', 'backfill']);
    expect(bf.code, bf.stderr).toBe(1); // the planted unmigratable records
    expect(bf.json).toMatchObject({ copied: SEEDED, unmigratable: 4 });

    // Planted after the backfill: a record v2 lacks, and one v2 holds at a lower rev.
    await client.hset(planted.v2Lacks, { job_id: 'lacking1', workspace_id: 'ws0', status: 'queued', rev: '1' });
    await client.hset(planted.v2Older, { job_id: 'newer1', workspace_id: 'ws1', status: 'succeeded', rev: '5' });
    await client.hset(keys.v2Job('ws1', 'newer1'), { job_id: 'newer1', workspace_id: 'ws1', status: 'running', rev: '3' });
    // v2-only data, including a record under a job id that never existed in legacy, and its index.
    await client.hset(keys.v2Job('ws9', 'orphan1'), { job_id: 'orphan1', workspace_id: 'ws9', status: 'queued', rev: '7' });
    await client.zadd(keys.index('ws9'), 1, 'orphan1');
    await client.pexpire(keys.v2Job('ws9', 'orphan1'), 3_600_000);

    const flip = await runCli([...args, 'flip-read', '--force', 'verify', '--reason', 'test: no verify needed here']);
    expect(flip.code, flip.stderr).toBe(0);

    const v2Keys = [...(await scanAll(client, `${prefix}:job:*`)), ...(await scanAll(client, `${prefix}:job-index:*`))];
    expect(v2Keys.length).toBe(SEEDED + 2 + 5 + 1); // records + newer1 + orphan1, 5 indexes + ws9's
    const v2Before = await fingerprint(client, v2Keys);
    const legacyBefore = await scanAll(client, keys.legacyPattern);
    const queueBefore = await client.lrange(keys.queue, 0, -1);
    expect(queueBefore.filter((r) => !r.includes(':'))).toHaveLength(SEEDED + 2);

    // Dry run: reports, changes nothing, takes no lock.
    const dry = await runCli([...args, '--json', 'cleanup']);
    expect(dry.code, dry.stderr).toBe(1); // some keys would be kept
    expect(dry.json).toMatchObject({ dryRun: true, deleted: 0, kept: 6, phase: 'read-new', blockedBy: { gate: 'soak' } });
    // A dry run's "would delete" comes from SCAN, which may return a key twice while a busy server resizes.
    expect(dry.json!.wouldDelete).toBeGreaterThanOrEqual(SEEDED);
    const dryText = await runCli([...args, 'cleanup']);
    expect(dryText.stdout).toMatch(/would be deleted/);
    expect(await scanAll(client, keys.legacyPattern)).toEqual(legacyBefore);
    expect(await client.lrange(keys.queue, 0, -1)).toEqual(queueBefore);
    expect((await new StateStore(client, keys).read()).phase).toBe('read-new');

    const report = path.join(tmp, 'kept.ndjson');
    const run = await runCli([
      ...args,
      '--json',
      'cleanup',
      '--execute',
      '--min-soak',
      '0s',
      '--force',
      'soak,verify',
      '--reason',
      'test: verify skipped',
      '--report',
      report,
    ]);
    expect(run.code, run.stderr).toBe(1); // completed, but kept keys are problems to look at
    expect(run.json).toMatchObject({
      dryRun: false,
      deleted: SEEDED,
      kept: 6,
      phase: 'new-only',
      transitioned: true,
      complete: true,
      keptByReason: {
        'invalid-job-id': 1,
        'non-hash': 1,
        'invalid-workspace': 1,
        'missing-workspace': 1,
        'v2-missing': 1,
        'v2-older': 1,
      },
      queue: { converted: SEEDED, unresolved: 2 },
    });

    // Legacy: exactly the planted keys are left.
    expect(await scanAll(client, keys.legacyPattern)).toEqual(Object.values(planted).sort());
    // v2: byte-for-byte untouched, expiries included.
    expect(await fingerprint(client, v2Keys)).toEqual(v2Before);
    expect((await scanAll(client, `${prefix}:job:*`)).length).toBe(SEEDED + 2);
    // Queue: same length and order; every resolvable bare reference converted.
    const queueAfter = await client.lrange(keys.queue, 0, -1);
    expect(queueAfter).toHaveLength(queueBefore.length);
    queueAfter.forEach((ref, i) => {
      const before = queueBefore[i]!;
      if (before === 'ghost1' || before === 'unmig1') expect(ref).toBe(before);
      else expect(ref).toMatch(new RegExp(`^ws[0-4]:${before}$`));
    });
    // The report lists every kept key with its reason.
    const lines = readFileSync(report, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { key: string; reason: string });
    expect(lines.map((l) => l.key).sort()).toEqual(Object.values(planted).sort());

    const st = await new StateStore(client, keys).read();
    expect(st.phase).toBe('new-only');
    expect(st.legacyComplete).toBe(false);
    expect(st.lastCleanup).toMatchObject({ dryRun: false, complete: true, deleted: SEEDED, kept: 6, epoch: st.epoch });
    const h = await history(client, keys);
    expect(h.some((e) => e.type === 'force' && e.data.reason === 'test: verify skipped' && (e.data.gates as string[]).includes('verify'))).toBe(true);

    // Rerun in new-only: no transition, nothing more to delete, v2 still untouched.
    const again = await runCli([...args, '--json', 'cleanup', '--execute']);
    expect(again.json).toMatchObject({ transitioned: false, deleted: 0, kept: 6, phase: 'new-only', epoch: st.epoch });
    expect(await fingerprint(client, v2Keys)).toEqual(v2Before);
  });
});

describe('cleanup resumes after an interruption', () => {
  let client: RedisClient;
  const prefix = uniquePrefix('cleanresume');
  const keys = new Keyspace(prefix);
  let args: string[];
  beforeAll(async () => {
    client = await coreClient('standalone');
    const t = topologyUrl('standalone');
    args = target(t.url, prefix, t.cluster);
    await seedJobs(client, keys, 300);
  });
  afterAll(async () => {
    await cleanupClient(client, prefix);
  });

  it('SIGINT keeps the checkpoint (exit 130); cleanup --execute in new-only resumes without a transition', async () => {
    expect((await runCli([...args, 'enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    expect((await runCli([...args, 'backfill'])).code).toBe(0);
    expect((await runCli([...args, 'flip-read', '--force', 'verify', '--reason', 'test'])).code).toBe(0);
    let child: ChildProcess | undefined;
    const slow = runCli(
      [...args, 'cleanup', '--execute', '--min-soak', '0s', '--force', 'soak,verify', '--reason', 'test', '--rate', '100', '--batch-size', '10'],
      {
        onSpawn: (c) => (child = c),
      },
    );
    // Let it delete some keys, then interrupt.
    for (let i = 0; i < 100 && (await scanAll(client, keys.legacyPattern)).length > 220; i++) await new Promise((r) => setTimeout(r, 100));
    child!.kill('SIGINT');
    const first = await slow;
    expect(first.code, first.stderr).toBe(130);
    const left = (await scanAll(client, keys.legacyPattern)).length;
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(300);

    const status = await runCli([...args, '--json', 'status']);
    expect(status.json).toMatchObject({ phase: 'new-only', next: { command: 'orch-migrate cleanup --execute' } });
    const epoch = status.json!.epoch as number;

    const resumed = await runCli([...args, '--json', 'cleanup', '--execute']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.json).toMatchObject({ transitioned: false, resumed: true, complete: true, deleted: 300, kept: 0, epoch, phase: 'new-only' });
    expect(await scanAll(client, keys.legacyPattern)).toEqual([]);
    expect((await scanAll(client, `${prefix}:job:*`)).length).toBe(300);
    const after = await runCli([...args, '--json', 'status']);
    expect((after.json!.next as { command: string }).command).toBe('none');
  });

  it('an interrupted rollback from new-only: status names `rollback --execute`, which resumes the reverse backfill and stays in read-new', async () => {
    let child: ChildProcess | undefined;
    const slow = runCli([...args, 'rollback', '--execute', '--rate', '100', '--batch-size', '10'], { onSpawn: (c) => (child = c) });
    for (let i = 0; i < 100 && (await scanAll(client, keys.legacyPattern)).length < 60; i++) await new Promise((r) => setTimeout(r, 100));
    child!.kill('SIGINT');
    expect((await slow).code).toBe(130);
    const partial = (await scanAll(client, keys.legacyPattern)).length;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(300);

    const status = await runCli([...args, '--json', 'status']);
    expect(status.json).toMatchObject({ phase: 'read-new', legacyComplete: false, next: { command: 'orch-migrate rollback --execute' } });
    // The gate shows what `rollback --execute` does now (resume the reverse backfill): open, never "closed" beside that advice.
    const rollbackGate = (status.json!.gates as Record<string, { open: boolean; gates: Array<{ reason: string }> }>).rollback!;
    expect(rollbackGate.open).toBe(true);
    expect(rollbackGate.gates[0]!.reason).toMatch(/resumes the reverse backfill/);
    const preview = await runCli([...args, '--json', 'rollback']);
    expect(preview.json).toMatchObject({ dryRun: true, action: 'resume-reverse-backfill', from: 'read-new', to: 'read-new' });

    const resumed = await runCli([...args, '--json', 'rollback', '--execute']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.json).toMatchObject({
      action: 'resume-reverse-backfill',
      from: 'read-new',
      to: 'read-new',
      legacyComplete: true,
      reverseBackfill: { complete: true, resumed: true },
    });
    expect((resumed.json!.reverseBackfill as { scanned: number }).scanned).toBeGreaterThanOrEqual(300);
    expect((await scanAll(client, keys.legacyPattern)).length).toBe(300);
    expect((await new StateStore(client, keys).read()).phase).toBe('read-new');
  });
});

describe.skipIf(!sharedClusterAvailable())('rollback after cleanup on a cluster', () => {
  let client: RedisClient;
  const prefix = uniquePrefix('rbcluster');
  const keys = new Keyspace(prefix);
  let args: string[];
  beforeAll(async () => {
    client = await coreClient('cluster');
    const t = topologyUrl('cluster');
    args = target(t.url, prefix, t.cluster);
    await seedJobs(client, keys, 200);
  });
  afterAll(async () => {
    await cleanupClient(client, prefix);
  });

  it('new-only → read-new restores every legacy record from v2 on every master, then read-new → dual-write', async () => {
    const legacyBefore = await scanAll(client, keys.legacyPattern);
    const snapshot = new Map(await Promise.all(legacyBefore.map(async (k) => [k, await client.hgetall(k)] as const)));
    expect((await runCli([...args, 'enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    expect((await runCli([...args, 'backfill'])).code).toBe(0);
    expect((await runCli([...args, 'flip-read', '--force', 'verify', '--reason', 'test'])).code).toBe(0);
    const clean = await runCli([...args, '--json', 'cleanup', '--execute', '--min-soak', '0s', '--force', 'soak,verify', '--reason', 'test']);
    expect(clean.json).toMatchObject({ deleted: 200, kept: 0 });
    expect(await scanAll(client, keys.legacyPattern)).toEqual([]);

    // read-new → dual-write is refused while legacy is incomplete, when asked for the phase step alone.
    const early = await runCli([...args, '--json', 'rollback', '--execute', '--phase-only']);
    expect(early.code).toBe(0); // new-only → read-new, no reverse backfill
    const refused = await runCli([...args, '--json', 'rollback', '--execute', '--phase-only']);
    expect(refused.code).toBe(3);
    expect(refused.json).toMatchObject({ error: { code: 'ERR_GATE' } });
    expect(refused.stderr).toMatch(/legacy layout is incomplete/);

    // Plain rollback --execute in read-new with legacy incomplete resumes the reverse backfill and stays.
    const resumed = await runCli([...args, '--json', 'rollback', '--execute']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.json).toMatchObject({ from: 'read-new', to: 'read-new', action: 'resume-reverse-backfill', legacyComplete: true });
    expect(await scanAll(client, keys.legacyPattern)).toEqual(legacyBefore);
    for (const [k, h] of snapshot) expect(await client.hgetall(k)).toEqual(h);

    const back = await runCli([...args, '--json', 'rollback', '--execute']);
    expect(back.json).toMatchObject({ from: 'read-new', to: 'dual-write', dryRun: false });
  });
});
