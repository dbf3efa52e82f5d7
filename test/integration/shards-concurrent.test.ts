/**
 * Issue 13 item 1, concurrent shards: each `backfill --shard i/n` holds its own
 * lease and fence in the operator lock (src/core/lock.ts), so shards of one
 * count run side by side while every global holder excludes them all.
 *
 * Library (shared standalone): the lease rules and the fences, in-process.
 * CLI (a private 3-master cluster): two shard processes at once finish with
 * nothing missed and verify clean while a global command and a shard of
 * another count are refused; a shard killed with kill -9 blocks only itself
 * until its lease runs out, then resumes from its checkpoint; a shard
 * SIGSTOPped past its lease writes no checkpoint and at most the batch it was
 * in after SIGCONT.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FencedError, LockHeldError } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { LeaseLock } from '../../src/core/lock.js';
import { Phase } from '../../src/core/phase.js';
import { closeRedis, connectRedis, masterNodes, nodeAddress, type RedisClient } from '../../src/core/redis.js';
import { callScript, ScriptName } from '../../src/core/scripts.js';
import { StateStore } from '../../src/core/state.js';
import { loadCheckpoint } from '../../src/ops/checkpoint.js';
import { FindingsStore } from '../../src/ops/findings.js';
import { selectShard } from '../../src/ops/scan-engine.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { cleanupClient, coreClient, movePhase } from '../helpers/core-clients.js';
import { expectLedger, expectVerifyClean, seedDualWrite } from '../helpers/fault-helpers.js';
import { deleteKeysWithPrefix, processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { exited } from '../helpers/lifecycle.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-server.js';
import { scanKeys } from './backfill-helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('shard leases (library)', () => {
  let client: RedisClient;
  const prefix = uniquePrefix('shardlock');
  const keys = new Keyspace(prefix);
  beforeAll(async () => {
    client = await coreClient('standalone');
    await movePhase(client, keys, Phase.DualWrite, 100);
  });
  afterAll(async () => {
    vi.useRealTimers();
    await cleanupClient(client, prefix);
  });

  it('shards of one count hold leases side by side; global and another count are refused; each has its own fence', async () => {
    const s0 = await LeaseLock.acquire(client, keys, { command: 'backfill --shard 0/2', shard: { index: 0, count: 2 } });
    const s1 = await LeaseLock.acquire(client, keys, { command: 'backfill --shard 1/2', shard: { index: 1, count: 2 } });
    try {
      expect((await LeaseLock.inspectAll(client, keys)).map((h) => h.shard)).toEqual(['0/2', '1/2']);
      expect(s1.fence).toBeGreaterThan(s0.fence);
      // A global run, the same shard twice, and a shard of another count: refused, naming a live holder.
      for (const shard of [null, { index: 0, count: 2 }, { index: 0, count: 3 }]) {
        const err = await LeaseLock.acquire(client, keys, { command: 'probe', shard }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LockHeldError);
        expect((err as LockHeldError).holder).toMatchObject({ pid: process.pid });
      }
      // Both fences are current at once: each shard writes state fields under its own.
      const store = new StateStore(client, keys);
      await store.setFields(s0.fenceToken, { last_backfill: '{"by":"s0"}' });
      await store.setFields(s1.fenceToken, { last_backfill: '{"by":"s1"}' });
      // A shard's fence moves no phase: transitions are global.
      const s = await store.read();
      await expect(store.transition({ from: s.phase, to: Phase.ReadNew, expectedEpoch: s.epoch, fence: s0.fenceToken, reason: 'x' })).rejects.toBeInstanceOf(
        FencedError,
      );
      // The data scripts check each holder's own entry.
      await expect(s0.assertHeld()).resolves.toBeUndefined();
      await expect(s1.assertHeld()).resolves.toBeUndefined();
    } finally {
      await s0.release();
      await s1.release();
    }
    expect(await LeaseLock.inspectAll(client, keys)).toEqual([]);
    expect(await client.exists(keys.lock)).toBe(0);
  });

  it('a shard paused past its lease: another shard is untouched, a global run takes over, and the stale shard can write neither data nor state', async () => {
    const legacyKey = keys.legacyJob('shard-paused');
    await client.hset(legacyKey, { workspace_id: 'ws-p', rev: '1' });
    // The renewal of the paused shard is frozen; the live shard renews normally.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const paused = await LeaseLock.acquire(client, keys, { command: 'paused', ttlMs: 1000, shard: { index: 0, count: 2 } });
    vi.useRealTimers();
    const live = await LeaseLock.acquire(client, keys, { command: 'live', ttlMs: 5000, shard: { index: 1, count: 2 } });
    try {
      // While the paused shard's lease lives, only it blocks its own shard; other shards come and go.
      await expect(LeaseLock.acquire(client, keys, { command: 'same', shard: { index: 0, count: 2 } })).rejects.toBeInstanceOf(LockHeldError);
      await sleep(1200);
      // Its lease ran out although the key lives on (the live shard keeps renewing it).
      expect(await client.exists(keys.lock)).toBe(1);
      expect((await LeaseLock.inspectAll(client, keys)).map((h) => h.shard)).toEqual(['1/2']);
      expect(await live.renew()).toBe(true);
      await expect(live.assertHeld()).resolves.toBeUndefined();
      // The stale shard: its entry is past its deadline, so every check refuses it.
      await expect(paused.assertHeld()).rejects.toBeInstanceOf(FencedError);
      await expect(
        callScript<number>(client, ScriptName.IndexDropDangling, [
          keys.index('ws-p'),
          keys.v2Job('ws-p', 'shard-paused'),
          keys.lock,
          'shard-paused',
          paused.value,
        ]),
      ).rejects.toBeInstanceOf(FencedError);
      expect(await paused.renew()).toBe(false);
    } finally {
      await live.release();
    }
    // A global run takes over: the paused shard's fence is void from then on, and so is its release.
    const global = await LeaseLock.acquire(client, keys, { command: 'global', ttlMs: 5000 });
    try {
      const store = new StateStore(client, keys);
      await expect(store.setFields(paused.fenceToken, { last_backfill: '{"by":"stale"}' })).rejects.toBeInstanceOf(FencedError);
      await paused.release();
      expect((await LeaseLock.inspect(client, keys))?.command).toBe('global');
      await store.setFields(global.fenceToken, { last_backfill: '{"by":"global"}' });
    } finally {
      await global.release();
    }
    expect(await client.hgetall(legacyKey)).toEqual({ workspace_id: 'ws-p', rev: '1' });
  });

  it("findings of a shard: a fresh pass of one shard clears only its own masters' findings", async () => {
    const one = new Keyspace(uniquePrefix('shardfind'));
    const all = new FindingsStore(client, one, 'backfill');
    const node = nodeAddress(masterNodes(client)[0]!);
    await all.add([{ key: `${one.prefix}:jobs:a`, reason: 'invalid-job-id' }], node);
    await all.add([{ key: `${one.prefix}:jobs:b`, reason: 'invalid-job-id' }], '10.9.9.9:7000');
    // On one node, shard 0/2 owns the only master; shard 1/2 owns none.
    const s0 = new FindingsStore(client, one, 'backfill', { shard: { index: 0, count: 2 } });
    const s1 = new FindingsStore(client, one, 'backfill', { shard: { index: 1, count: 2 } });
    expect((await s0.summary()).total).toBe(1);
    expect((await s1.summary()).total).toBe(0);
    await s1.clear();
    expect((await all.summary()).total).toBe(2);
    await s0.clear();
    expect(await all.list(10)).toEqual([{ key: `${one.prefix}:jobs:b`, reason: 'invalid-job-id' }]);
    await all.clear();
  });
});

const skipReason = processControlUnavailable();

describe.skipIf(skipReason !== undefined)('concurrent shards (CLI, private 3-master cluster)', () => {
  let cluster: RedisClusterHandle;
  let client: RedisClient;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    client = await connectRedis({ url: cluster.url, cluster: true, commandTimeoutMs: 10_000 });
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (client) await closeRedis(client);
    await cluster?.stop();
  });

  /** The masters of a shard, as the scan engine picks them. */
  const shardNodes = (index: number, count: number): string[] =>
    selectShard(
      masterNodes(client).map((n) => ({ addr: nodeAddress(n), node: n })),
      { index, count },
    ).map((n) => n.addr);

  /** Keys scanned on `node` according to the checkpoint. */
  const scannedOn = async (keys: Keyspace, node: string): Promise<number> =>
    (await loadCheckpoint(client, keys, 'backfill')).nodes.find((n) => n.node === node)?.counters.scanned ?? 0;

  /** Global flags (--lock-ttl) go before the subcommand, the command's own (--rate) after it. */
  const global = (extra: string[]): string[] => (extra[0] === '--lock-ttl' ? extra.slice(0, 2) : []);
  const own = (extra: string[]): string[] => (extra[0] === '--lock-ttl' ? extra.slice(2) : extra);

  function spawnShard(args: string[], shard: string, extra: string[]): { done: Promise<CliResult>; child: () => ChildProcess } {
    let child: ChildProcess | undefined;
    const done = runCli([...args, '--json', ...global(extra), 'backfill', '--shard', shard, '--batch-size', '50', ...own(extra)], {
      timeoutMs: 180_000,
      onSpawn: (c) => {
        child = c;
        children.push(c);
      },
    });
    return { done, child: () => child! };
  }

  it('two shard processes at once: both finish, nothing missed, verify clean; meanwhile a global command and a shard of another count exit 4, and status shows both shards', async () => {
    const keys = new Keyspace(uniquePrefix('shardsboth'));
    const args = target(cluster.url, keys.prefix, true);
    const ledger = await seedDualWrite(client, keys, 3000);
    try {
      // Paced so that each runs for several seconds (shard 0/2 has two masters, 1/2 one).
      const a = spawnShard(args, '0/2', ['--rate', '300']);
      const b = spawnShard(args, '1/2', ['--rate', '150']);
      // Provably at the same time: both leases live at once.
      await until('both shard leases', async () =>
        (await LeaseLock.inspectAll(client, keys)).filter((h) => h.shard !== null).length === 2 ? true : undefined,
      );
      const [global, other, status] = await Promise.all([
        runCli([...args, '--json', 'backfill']),
        runCli([...args, '--json', 'backfill', '--shard', '0/3']),
        runCli([...args, '--json', 'status']),
      ]);
      expect(global.code, global.stderr).toBe(4);
      expect(global.json).toMatchObject({ exitCode: 4, error: { code: 'ERR_LOCKED' } });
      expect(global.stderr).toMatch(/shard [01]\/2 of a sharded backfill/);
      expect(other.code, other.stderr).toBe(4);
      expect(other.stderr).toMatch(/another count/);
      expect(status.code, status.stderr).toBe(0);
      const shards = (status.json!.shards as Array<{ shard: string; holder: { remainingMs: number; pid: number }; nodes: string[] }>).map((s) => ({
        shard: s.shard,
        nodes: s.nodes,
        leased: s.holder.remainingMs > 0,
      }));
      // Unless one of them finished in between (the machine is shared), both are listed with their own masters.
      for (const s of shards) expect(s).toEqual({ shard: s.shard, nodes: shardNodes(Number(s.shard[0]), 2), leased: true });
      expect(shards.length).toBeGreaterThanOrEqual(1);

      const [ra, rb] = await Promise.all([a.done, b.done]);
      expect(ra.code, ra.stderr).toBe(0);
      expect(rb.code, rb.stderr).toBe(0);
      expect((ra.json!.copied as number) + (rb.json!.copied as number)).toBe(ledger.length);
      // The one that finished last found every master done: the pass is complete, and recorded so.
      expect([ra.json!.complete, rb.json!.complete]).toContain(true);
      const last = JSON.parse((await client.hget(keys.state, 'last_backfill'))!) as { complete: boolean; scanned: number; copied: number };
      expect(last).toMatchObject({ complete: true, scanned: ledger.length, copied: ledger.length });
      expect(await LeaseLock.inspectAll(client, keys)).toEqual([]);
      await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
      await expectVerifyClean(args);
    } finally {
      await deleteKeysWithPrefix(client, keys.prefix);
    }
  });

  it('kill -9 of one shard: the other finishes; the dead one blocks only its own shard until its lease runs out, then resumes from its checkpoint; verify clean', async () => {
    const keys = new Keyspace(uniquePrefix('shardkill'));
    const args = target(cluster.url, keys.prefix, true);
    const ledger = await seedDualWrite(client, keys, 3000);
    const [victimNode] = shardNodes(1, 2);
    try {
      // Paced so that the kill lands mid-run (the victim's master holds about a third of the keys).
      const victim = spawnShard(args, '1/2', ['--lock-ttl', '8000', '--rate', '100']);
      const other = spawnShard(args, '0/2', ['--lock-ttl', '8000', '--rate', '400']);
      // Progress on the victim's master, unless the victim ended first (then its output says why).
      const early = victim.done.then((r) => r);
      const started = await Promise.race([until('victim progress', async () => ((await scannedOn(keys, victimNode!)) >= 100 ? true : undefined)), early]);
      expect(started, typeof started === 'object' ? `the victim ended first: ${started.stderr}` : '').toBe(true);
      victim.child().kill('SIGKILL');
      await exited(victim.child());

      // While its lease lives (8 s from its last renewal): its own shard is refused, a global run too,
      // with the dead shard named; a shard of the same count is free to take its own lease.
      expect((await LeaseLock.inspectAll(client, keys)).find((h) => h.shard === '1/2')?.pid).toBe(victim.child().pid);
      const own = await LeaseLock.acquire(client, keys, { command: 'probe', ttlMs: 1000, shard: { index: 1, count: 2 } }).catch((e: unknown) => e);
      const glob = await LeaseLock.acquire(client, keys, { command: 'probe', ttlMs: 1000 }).catch((e: unknown) => e);
      if (own instanceof LeaseLock) await own.release();
      if (glob instanceof LeaseLock) await glob.release();
      expect(own).toBeInstanceOf(LockHeldError);
      expect((own as LockHeldError).holder?.pid).toBe(victim.child().pid);
      expect(glob).toBeInstanceOf(LockHeldError);

      const r0 = await other.done;
      expect(r0.code, r0.stderr).toBe(0);
      // Its masters are done; the dead shard's master is not: the pass is not complete.
      expect(r0.json).toMatchObject({ complete: false, shard: '0/2' });
      expect(JSON.parse((await client.hget(keys.state, 'last_backfill'))!)).toMatchObject({ complete: false, shard: '0/2' });

      // The dead lease runs out by itself (nobody deletes the key), then the shard resumes from its checkpoint.
      await until('the dead lease to expire', async () => ((await LeaseLock.inspectAll(client, keys)).length === 0 ? true : undefined), 20_000);
      const resumed = await runCli([...args, '--json', 'backfill', '--shard', '1/2']);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.json).toMatchObject({ resumed: true, complete: true, shard: '1/2' });
      // Resumed, not rescanned: this run scanned less than the node holds.
      const nodes = resumed.json!.nodes as Array<{ node: string; resumedFrom: string | null }>;
      expect(nodes).toEqual([expect.objectContaining({ node: victimNode, resumedFrom: expect.any(String) })]);
      expect((resumed.json!.thisRun as { scanned: number }).scanned).toBeLessThan(resumed.json!.scanned as number);
      expect(JSON.parse((await client.hget(keys.state, 'last_backfill'))!)).toMatchObject({ complete: true, scanned: ledger.length });
      await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
      await expectVerifyClean(args);
    } finally {
      await deleteKeysWithPrefix(client, keys.prefix);
    }
  });

  it('a shard SIGSTOPped past its lease: after SIGCONT it exits 4, its checkpoint does not move, at most the batch it was in lands; the rerun completes and verify is clean', async () => {
    const keys = new Keyspace(uniquePrefix('shardstop'));
    const args = target(cluster.url, keys.prefix, true);
    const ledger = await seedDualWrite(client, keys, 2000);
    const [node] = shardNodes(1, 2);
    try {
      const run = spawnShard(args, '1/2', ['--lock-ttl', '1500', '--rate', '100']);
      await until('progress', async () => ((await scannedOn(keys, node!)) >= 50 ? true : undefined));
      run.child().kill('SIGSTOP');
      // Past its lease: no shard holds the lock any more.
      await until('the paused lease to expire', async () => ((await LeaseLock.inspectAll(client, keys)).length === 0 ? true : undefined), 20_000);
      await sleep(500);
      const v2Before = (await scanKeys(client, keys.v2Pattern())).length;
      const cpBefore = (await loadCheckpoint(client, keys, 'backfill')).nodes.find((n) => n.node === node);
      run.child().kill('SIGCONT');
      const r = await run.done;
      expect(r.code, r.stderr).toBe(4);
      const cpAfter = (await loadCheckpoint(client, keys, 'backfill')).nodes.find((n) => n.node === node);
      expect(cpAfter).toEqual(cpBefore);
      // Creates already sent for the batch in flight may land (create-if-absent copies), nothing more: 50 keys a batch.
      const v2After = (await scanKeys(client, keys.v2Pattern())).length;
      expect(v2After - v2Before).toBeLessThanOrEqual(50);
      expect(await client.hget(keys.state, 'last_backfill')).toBeNull();

      const again = await runCli([...args, '--json', 'backfill', '--shard', '1/2']);
      expect(again.code, again.stderr).toBe(0);
      const rest = await runCli([...args, '--json', 'backfill', '--shard', '0/2']);
      expect(rest.code, rest.stderr).toBe(0);
      expect(rest.json).toMatchObject({ complete: true });
      await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
      await expectVerifyClean(args);
    } finally {
      await deleteKeysWithPrefix(client, keys.prefix);
    }
  });
});
