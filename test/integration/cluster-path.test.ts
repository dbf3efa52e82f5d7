/**
 * Issue 13 item 4, the cluster path (src/ops/cluster-batch.ts): a backfill
 * batch goes as one pipeline per master, each write a script fenced by the
 * lease deadline, a MOVED/ASK key through the cluster client.
 *
 *  - A cluster backfill paused (SIGSTOP) past its lease while batches are in
 *    flight writes nothing once it wakes (SIGCONT): the v2 records and index
 *    entries counted after its lease ran out are all there are; it exits 4.
 *  - Slots resharded from one master to another mid-backfill (CLUSTER SETSLOT
 *    IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE), among them slots of legacy
 *    records and of v2 targets: nothing is lost (every job in both layouts,
 *    fields byte-identical, expiry within MIGRATE's few ms), and verify is clean.
 *  - On Redis 7+ a batch is a few cross-slot scripts per master
 *    (src/core/lua/xslot-*.lua), not scripts per key: counted in INFO
 *    commandstats against ORCH_CLUSTER_PER_KEY=1 (the per-key path), with the
 *    same results.
 *  - Slots held half-migrated (MIGRATING on one master, IMPORTING on another,
 *    some keys already moved) through a whole backfill and verify: the keys the
 *    cross-slot scripts answer "not here" go through the per-key path, which
 *    follows ASK (ASKING counted on the importing master); nothing is lost and
 *    verify is clean, then and after the slots are handed over.
 */
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { keySlot, PER_KEY_ENV } from '../../src/ops/cluster-batch.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { canonicalRecords, expectVerifyClean, seedDualWrite, waitForCheckpoint, waitForLockFree } from '../helpers/fault-helpers.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisCluster, type RedisClusterHandle } from '../helpers/redis-server.js';
import { poll } from '../helpers/wait.js';
import { scanKeys } from './backfill-helpers.js';

const skipReason = processControlUnavailable();

describe.skipIf(skipReason !== undefined)('the cluster path of backfill (private 3-master cluster)', () => {
  let cluster: RedisClusterHandle;
  const open: RedisClient[] = [];
  const direct: Redis[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 });
  });
  afterAll(async () => {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
    for (const r of direct) r.disconnect();
    await Promise.all(open.map((c) => closeRedis(c)));
    await cluster?.stop();
  });

  async function connect(): Promise<RedisClient> {
    const c = await connectRedis({ url: cluster.url, cluster: true, commandTimeoutMs: 10_000 });
    open.push(c);
    return c;
  }

  function node(port: number): Redis {
    const r = new Redis({ host: '127.0.0.1', port });
    direct.push(r);
    return r;
  }

  /** Calls of each command (INFO commandstats) summed over the masters. */
  async function commandCalls(commands: string[]): Promise<Record<string, number>> {
    const out: Record<string, number> = Object.fromEntries(commands.map((c) => [c, 0]));
    for (const n of cluster.nodes) {
      const info = await node(n.port).info('commandstats');
      for (const c of commands) out[c]! += Number(new RegExp(`^cmdstat_${c}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    }
    return out;
  }

  /** v2 records and index entries of the prefix, all masters together. */
  async function v2Counts(client: RedisClient, keys: Keyspace): Promise<{ records: number; indexed: number }> {
    const records = (await scanKeys(client, keys.v2Pattern())).length;
    let indexed = 0;
    for (const idx of await scanKeys(client, keys.indexPattern)) indexed += await client.zcard(idx);
    return { records, indexed };
  }

  it('paused (SIGSTOP) past its lease mid-run: after SIGCONT it writes no v2 record and no index entry, and exits 4', async () => {
    const client = await connect();
    const keys = new Keyspace(uniquePrefix('cpstop'));
    const N = 6000;
    await seedDualWrite(client, keys, N);
    let child: ChildProcess | undefined;
    // Large batches, several in flight, paced: the pause lands while batches are being copied.
    const run = runCli(
      [...target(cluster.url, keys.prefix, true), '--json', '--lock-ttl', '3000', 'backfill', '--rate', '1500', '--batch-size', '300', '--concurrency', '3'],
      {
        timeoutMs: 120_000,
        onSpawn: (c) => {
          child = c;
          children.push(c);
        },
      },
    );
    await waitForCheckpoint(client, keys, 'backfill', 600, 1);
    child!.kill('SIGSTOP');
    // Once the lease is gone, whatever the paused process had already handed to Redis has run.
    await waitForLockFree(client, keys, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    const before = await v2Counts(client, keys);
    expect(before.records).toBeGreaterThan(0);
    expect(before.records).toBeLessThan(N);

    child!.kill('SIGCONT');
    const stale: CliResult = await run;
    expect(stale.code, stale.stderr).toBe(4);
    expect(await v2Counts(client, keys)).toEqual(before);
  });

  it('slots resharded between two masters mid-backfill (legacy and v2 slots): nothing lost, every job in v2, verify clean', async () => {
    const client = await connect();
    const keys = new Keyspace(uniquePrefix('cpmoved'));
    const N = 3000;
    const ledger = await seedDualWrite(client, keys, N);
    const ports = cluster.nodes.map((n) => n.port);
    const conns = ports.map(node);
    const ids = await Promise.all(conns.map(async (c) => String(await c.cluster('MYID'))));
    const owner = async (slot: number): Promise<number> => {
      const slots = await conns[0]!.cluster('SLOTS');
      const r = slots.find(([a, b]) => slot >= a && slot <= b)!;
      return ids.indexOf(r[2]![2]);
    };
    // All from one master to one other (only the importing node bumps its config epoch, so no older
    // claim can win back a moved slot): slots of 8 early legacy records and of 8 late v2 targets.
    const from = await owner(keySlot(keys.legacyJob(ledger[0]!.jobId)));
    const to = (from + 1) % 3;
    const picked = new Set<number>();
    for (const e of ledger) {
      if (picked.size >= 8) break;
      const slot = keySlot(keys.legacyJob(e.jobId));
      if ((await owner(slot)) === from) picked.add(slot);
    }
    for (const e of [...ledger].reverse()) {
      if (picked.size >= 16) break;
      const slot = keySlot(keys.v2Job(e.workspaceId, e.jobId));
      if ((await owner(slot)) === from) picked.add(slot);
    }
    const moves = [...picked].map((slot) => ({ slot, from, to }));

    const reshard = async (): Promise<void> => {
      for (const m of moves)
        await reshardOne(m).catch((err: unknown) => {
          throw new Error(`moving slot ${m.slot} from node ${m.from} to ${m.to}: ${String(err)}`);
        });
    };
    const reshardOne = async (m: { slot: number; from: number; to: number }): Promise<void> => {
      {
        const src = conns[m.from]!;
        const dst = conns[m.to]!;
        await dst.cluster('SETSLOT', m.slot, 'IMPORTING', ids[m.from]!);
        await src.cluster('SETSLOT', m.slot, 'MIGRATING', ids[m.to]!);
        for (;;) {
          const batch = (await src.cluster('GETKEYSINSLOT', m.slot, 100)) as string[];
          if (batch.length === 0) break;
          await src.migrate('127.0.0.1', ports[m.to]!, '', 0, 5000, 'KEYS', ...batch);
        }
        for (const c of [dst, src, conns[3 - m.from - m.to]!]) await c.cluster('SETSLOT', m.slot, 'NODE', ids[m.to]!);
        // Like redis-cli --cluster reshard: the next slot moves once every node agrees on this one.
        for (let i = 0; i < 200; i++) {
          const views = await Promise.all(conns.map(async (c) => (await c.cluster('SLOTS')).find(([a, b]) => m.slot >= a && m.slot <= b)?.[2]?.[2]));
          if (views.every((v) => v === ids[m.to])) break;
          await new Promise((res) => setTimeout(res, 25));
        }
      }
    };

    const args = target(cluster.url, keys.prefix, true);
    let moved: Promise<void> | undefined;
    const r = await runCli([...args, '--json', 'backfill', '--rate', '400', '--batch-size', '50'], {
      timeoutMs: 120_000,
      onSpawn: (c) => {
        children.push(c);
        moved = waitForCheckpoint(client, keys, 'backfill', 300, 1).then(reshard, (err: unknown) => {
          throw new Error(`waiting for progress: ${String(err)}`);
        });
      },
    });
    await moved;
    expect(r.code, r.stderr).toBe(0);
    // A client connected after the move: the test's own client still holds the old slot map.
    const fresh = await connect();
    expect(r.json).toMatchObject({ complete: true, unmigratable: 0 });
    // The slots really moved.
    for (const m of moves) expect(await owner(m.slot)).toBe(m.to);
    // MIGRATE carries a TTL as time left, so a moved record's PEXPIRETIME may shift by a few ms: the
    // fields must be byte-identical to the original, the expiry within 100 ms of it.
    const problems: string[] = [];
    const [legacyNow, v2Now] = await Promise.all([
      canonicalRecords(
        fresh,
        ledger.map((e) => keys.legacyJob(e.jobId)),
      ),
      canonicalRecords(
        fresh,
        ledger.map((e) => keys.v2Job(e.workspaceId, e.jobId)),
      ),
    ]);
    const split = (rec: string): { at: number; rest: string } => {
      const m = /pexpireat=(-?[0-9]+)/.exec(rec);
      return { at: Number(m?.[1] ?? 0), rest: rec.replace(/pexpireat=-?[0-9]+/, '') };
    };
    for (const e of ledger) {
      const want = split(e.original);
      for (const [layout, rec] of [
        ['legacy', legacyNow.get(keys.legacyJob(e.jobId))],
        ['v2', v2Now.get(keys.v2Job(e.workspaceId, e.jobId))],
      ] as const) {
        if (rec === null || rec === undefined) problems.push(`${e.jobId}: ${layout} missing`);
        else if (split(rec).rest !== want.rest || Math.abs(split(rec).at - want.at) > 100) problems.push(`${e.jobId}: ${layout} differs`);
      }
    }
    expect(problems.slice(0, 10), `${problems.length} problem(s)`).toEqual([]);
    expect(await scanKeys(fresh, keys.v2Pattern())).toHaveLength(N);
    await expectVerifyClean(args);
  });

  it('cross-slot scripts: a few script calls per batch and master instead of per key; the per-key path (forced) gives the same result', async () => {
    const client = await connect();
    const N = 1500;
    const runs: Record<string, { evals: number; result: unknown; v2: { records: number; indexed: number } }> = {};
    for (const path of ['per-key', 'cross-slot'] as const) {
      const keys = new Keyspace(uniquePrefix(`cpx${path === 'per-key' ? 'pk' : 'xs'}`));
      await seedDualWrite(client, keys, N);
      const env = { [PER_KEY_ENV]: path === 'per-key' ? '1' : undefined };
      const args = target(cluster.url, keys.prefix, true);
      const before = await commandCalls(['evalsha', 'eval']);
      const r = await runCli([...args, '--json', 'backfill', '--batch-size', '500'], { timeoutMs: 120_000, env });
      const after = await commandCalls(['evalsha', 'eval']);
      expect(r.code, r.stderr).toBe(0);
      const v = await runCli([...args, '--json', 'verify', '--round-delay', '50ms'], { timeoutMs: 120_000, env });
      expect(v.code, v.stderr).toBe(0);
      expect(v.json).toMatchObject({ ok: true, mismatches: 0 });
      const { copied, skipped, unmigratable, complete } = r.json as Record<string, unknown>;
      runs[path] = {
        evals: after.evalsha! + after.eval! - before.evalsha! - before.eval!,
        result: { copied, skipped, unmigratable, complete },
        v2: await v2Counts(client, keys),
      };
    }
    expect(runs['cross-slot']!.result).toEqual({ copied: N, skipped: 0, unmigratable: 0, complete: true });
    expect(runs['per-key']!.result).toEqual(runs['cross-slot']!.result);
    expect(runs['cross-slot']!.v2).toEqual({ records: N, indexed: N });
    expect(runs['per-key']!.v2).toEqual({ records: N, indexed: N });
    // Per key: one backfill-create.lua per record. Cross-slot: a read, a create and an index script per batch and
    // master. Both also run the lock, checkpoint and findings scripts of every batch (SCAN MATCH batches over the
    // other tests' keys too), the same in both.
    expect(runs['per-key']!.evals).toBeGreaterThanOrEqual(N);
    expect(runs['per-key']!.evals - runs['cross-slot']!.evals).toBeGreaterThanOrEqual(N * 0.9);
  });

  it('slots held half-migrated through a backfill and a verify: keys answered "not here" follow ASK on the per-key path; nothing lost, verify clean', async () => {
    const client = await connect();
    const keys = new Keyspace(uniquePrefix('cpmig'));
    const N = 1200;
    const ledger = await seedDualWrite(client, keys, N);
    const ports = cluster.nodes.map((n) => n.port);
    const conns = ports.map(node);
    const ids = await Promise.all(conns.map(async (c) => String(await c.cluster('MYID'))));
    const slotsView = await conns[0]!.cluster('SLOTS');
    const owner = (slot: number): number => ids.indexOf(slotsView.find(([a, b]) => slot >= a && slot <= b)![2]![2]);
    // Two slots of one master: one holding a legacy record, one the v2 target of another job.
    const from = owner(keySlot(keys.legacyJob(ledger[0]!.jobId)));
    const to = (from + 1) % 3;
    const legacySlot = keySlot(keys.legacyJob(ledger[0]!.jobId));
    const v2Slot = ledger.map((e) => keySlot(keys.v2Job(e.workspaceId, e.jobId))).find((s) => s !== legacySlot && owner(s) === from)!;
    expect(v2Slot).toBeDefined();
    const slots = [legacySlot, v2Slot];
    const moveKeys = async (a: number, b: number): Promise<number> => {
      let moved = 0;
      for (const slot of slots)
        for (;;) {
          const batch = (await conns[a]!.cluster('GETKEYSINSLOT', slot, 100)) as string[];
          if (batch.length === 0) break;
          await conns[a]!.migrate('127.0.0.1', ports[b]!, '', 0, 5000, 'KEYS', ...batch);
          moved += batch.length;
        }
      return moved;
    };
    /** Both slots half-way from master a to master b: MIGRATING on a, IMPORTING on b, every key already on b. */
    const halfMigrate = async (a: number, b: number): Promise<void> => {
      for (const slot of slots) {
        await conns[b]!.cluster('SETSLOT', slot, 'IMPORTING', ids[a]!);
        await conns[a]!.cluster('SETSLOT', slot, 'MIGRATING', ids[b]!);
      }
      expect(await moveKeys(a, b)).toBeGreaterThan(0);
    };
    // The scan engine finishes only once no slot is migrating (its end-of-run sweep waits for that), so each run
    // is let through by handing the slots over once it has provably been through the half-migrated keys.
    const handOver = async (a: number, b: number): Promise<void> => {
      await moveKeys(a, b);
      // The order the cluster specification gives for ending a migration: the importing master first, then the
      // migrating one, then the rest; the other way round, the two bounce a client between them meanwhile.
      const order = [b, a, ...[0, 1, 2].filter((n) => n !== a && n !== b)];
      for (const slot of slots) for (const n of order) await conns[n]!.cluster('SETSLOT', slot, 'NODE', ids[b]!);
    };
    const asking = async (n: number): Promise<number> => Number(/^cmdstat_asking:calls=(\d+)/m.exec(await conns[n]!.info('commandstats'))?.[1] ?? 0);
    const args = target(cluster.url, keys.prefix, true);
    const env = { [PER_KEY_ENV]: undefined };

    // Backfill: the legacy record of one slot has moved ahead (absent on its master: read through ASK); the
    // other slot's targets do not exist yet (absent on their master: created through ASK).
    await halfMigrate(from, to);
    const askedBefore = await asking(to);
    const backfilled = runCli([...args, '--json', 'backfill', '--batch-size', '200'], { timeoutMs: 120_000, env });
    await poll('every v2 record written', async () => (await scanKeys(client, keys.v2Pattern())).length === N, { timeoutMs: 60_000 });
    expect((await asking(to)) - askedBefore).toBeGreaterThan(0);
    await handOver(from, to);
    const r = await backfilled;
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ copied: N, unmigratable: 0, complete: true });

    // Verify: both slots half-way back, every key of them moved ahead (legacy and v2 sides read through ASK).
    await halfMigrate(to, from);
    const askedBeforeVerify = await asking(from);
    const verified = runCli([...args, '--json', 'verify', '--round-delay', '50ms'], { timeoutMs: 120_000, env });
    await poll('verify to read the moved keys through ASK', async () => (await asking(from)) > askedBeforeVerify, { timeoutMs: 60_000 });
    await handOver(to, from);
    const v = await verified;
    expect(v.code, v.stderr).toBe(0);
    expect(v.json).toMatchObject({ ok: true, mismatches: 0 });

    const fresh = await connect();
    expect(await scanKeys(fresh, keys.v2Pattern())).toHaveLength(N);
    expect((await v2Counts(fresh, keys)).indexed).toBe(N);
    await expectVerifyClean(args);
  });
});
