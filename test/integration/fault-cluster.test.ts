/**
 * Issue 6, fault suite (Redis Cluster): one master of a private 3-master
 * cluster (AOF, appendfsync always) restarts or is killed with kill -9 while a
 * throttled `backfill --cluster` runs. The run fails clearly (exit 5, one
 * error line naming a host:port); once the node is back and the cluster is ok
 * again, the rerun rescans exactly the affected node (new run_id), resumes the
 * others from their checkpoints, and completes; verify is clean; and the
 * LEDGER CHECK holds: every seeded job is byte-identical in both layouts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, masterNodes, type RedisClient } from '../../src/core/redis.js';
import { loadCheckpoint } from '../../src/ops/checkpoint.js';
import { nodeRunId } from '../../src/ops/scan-engine.js';
import { runCli, target } from '../helpers/cli.js';
import { expectLedger, expectUnavailable, expectVerifyClean, runCliUntil, seedDualWrite, SLOW, waitForLockFree } from '../helpers/fault-helpers.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisCluster, type RedisClusterHandle, type RedisServerHandle } from '../helpers/redis-server.js';
import { scanKeys } from './backfill-helpers.js';

const N = 2000;

interface NodeReport {
  node: string;
  rescanned: boolean;
  resumedFrom: string | null;
  done: boolean;
}

const skipReason = processControlUnavailable();

describe.skipIf(skipReason !== undefined)('fault: one master of a private 3-master cluster fails mid-backfill', () => {
  let cluster: RedisClusterHandle;
  const open: RedisClient[] = [];

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3, appendonly: true, extraArgs: ['--appendfsync', 'always'] });
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => closeRedis(c)));
    await cluster?.stop();
  });

  async function connect(): Promise<RedisClient> {
    const c = await connectRedis({ url: cluster.url, cluster: true, commandTimeoutMs: 10_000 });
    open.push(c);
    return c;
  }

  /** Throttled backfill; `fault` hits `victim` once the checkpoint shows progress. Then: exit 5, node back, cluster ok. */
  async function interruptedBackfill(client: RedisClient, keys: Keyspace, victim: RedisServerHandle, fault: () => Promise<void>) {
    const args = target(cluster.url, keys.prefix, true);
    const first = await runCliUntil(
      [...args, '--json', '--lock-ttl', '1000', 'backfill', ...SLOW],
      { client, keys, op: 'backfill', min: 300, nodes: 3 },
      fault,
    );
    // The message names the node that went away, not just the startup node.
    expectUnavailable(first, `127.0.0.1:${victim.port}`);
    return { args };
  }

  /** The rerun after the node is back: complete, only the victim rescanned, the others resumed. */
  async function rerun(args: string[], victim: RedisServerHandle): Promise<void> {
    const second = await runCli([...args, '--json', 'backfill']);
    expect(second.code, second.stderr).toBe(0);
    const j = second.json as {
      complete: boolean;
      resumed: boolean;
      unmigratable: number;
      scanned: number;
      copied: number;
      skipped: number;
      nodes: NodeReport[];
    };
    expect(j).toMatchObject({ complete: true, resumed: true, unmigratable: 0 });
    expect(j.nodes).toHaveLength(3);
    const victimAddr = `127.0.0.1:${victim.port}`;
    for (const n of j.nodes) {
      expect(n.done).toBe(true);
      expect(n.rescanned, n.node).toBe(n.node === victimAddr);
      if (n.node === victimAddr) expect(n.resumedFrom).toBeNull();
    }
    expect(j.nodes.some((n) => n.node !== victimAddr && n.resumedFrom !== null)).toBe(true);
    expect(j.copied + j.skipped).toBe(j.scanned);
    await expectVerifyClean(args);
  }

  it('a master restarted (AOF) mid-backfill: exit 5; the rerun notices its new run_id, rescans that node only, completes; verify clean', async () => {
    let client = await connect();
    const keys = new Keyspace(uniquePrefix('fclrestart'));
    const ledger = await seedDualWrite(client, keys, N);
    const victim = cluster.nodes[1]!;

    const { args } = await interruptedBackfill(client, keys, victim, () => victim.restart());
    await cluster.waitForHealthy();
    client = await connect();
    // The checkpoint still holds the victim's old run_id: that is how the rerun knows to rescan it.
    const cp = await loadCheckpoint(client, keys, 'backfill');
    expect(cp.nodes.map((n) => n.node).sort()).toEqual(cluster.nodes.map((n) => `127.0.0.1:${n.port}`).sort());
    const victimNode = masterNodes(client).find((n) => n.options.port === victim.port)!;
    expect(cp.nodes.find((n) => n.node === `127.0.0.1:${victim.port}`)?.runId).not.toBe(await nodeRunId(victimNode));
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'optional' });
    await waitForLockFree(client, keys);

    await rerun(args, victim);
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
    expect(await scanKeys(client, keys.v2Pattern())).toHaveLength(N);
  });

  it('a master killed with kill -9 mid-backfill: exit 5; after it is restarted and the cluster is ok, the rerun completes; verify clean; nothing lost', async () => {
    let client = await connect();
    const keys = new Keyspace(uniquePrefix('fclkill9'));
    const ledger = await seedDualWrite(client, keys, N);
    const victim = cluster.nodes[0]!; // the startup node the CLI was given

    const { args } = await interruptedBackfill(client, keys, victim, () => victim.kill('SIGKILL'));
    await victim.restart();
    await cluster.waitForHealthy();
    client = await connect();
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'optional' });
    await waitForLockFree(client, keys);

    await rerun(args, victim);
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
    expect(await scanKeys(client, keys.v2Pattern())).toHaveLength(N);
  });
});
