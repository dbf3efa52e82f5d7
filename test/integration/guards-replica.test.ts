/**
 * A replica that stops acknowledging (its process SIGSTOPped) during a
 * backfill: the replica-lag guard slows, then pauses the run within a second
 * or two of noticing; after SIGCONT the run resumes by itself and completes;
 * nothing is lost (verify clean, the replica holds every copy); the pause is
 * in `--json`, the history, the heartbeat and the metrics file.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { expectLedger, seedDualWrite } from '../helpers/fault-helpers.js';
import { runCli, target } from '../helpers/cli.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import type { RedisServerHandle } from '../helpers/redis-server.js';
import { parsePrometheus } from '../unit/api-prom-parser.js';
import { expectExit, heartbeat, historyOf, startCli, startWithReplica, waitFor, waitForReplicaInSync, waitForRun } from './guards-helpers.js';

const skip = processControlUnavailable();
const servers: RedisServerHandle[] = [];
const clients: RedisClient[] = [];
const dir = mkdtempSync(path.join(os.tmpdir(), 'orch-guards-'));
afterAll(async () => {
  await Promise.all(clients.map((c) => closeRedis(c)));
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(skip !== undefined)('replica-lag guard', () => {
  it('SIGSTOP the replica mid-backfill: the run pauses, resumes after SIGCONT, completes; nothing lost; the pause is reported everywhere', async () => {
    const { master, replica } = await startWithReplica(servers);
    const client = await connectRedis({ url: master.url });
    clients.push(client);
    const replicaClient = await connectRedis({ url: replica.url });
    clients.push(replicaClient);
    const keys = new Keyspace(uniquePrefix('grepl'));
    const N = 12_000;
    const ledger = await seedDualWrite(client, keys, N);
    await waitForReplicaInSync(client);
    const metrics = path.join(dir, 'orch-migrate.prom');
    const run = await startCli([
      ...target(master.url, keys.prefix),
      '--json',
      'backfill',
      '--rate',
      '1500',
      '--max-replica-lag',
      '2s',
      '--metrics-file',
      metrics,
    ]);
    try {
      await waitForRun(client, keys, 'the backfill to make progress', (r) => r.done >= 1500);
      replica.pause();
      const stoppedAt = Date.now();
      const paused = await waitForRun(client, keys, 'the backfill to pause', (r) => r.state === 'paused', 30_000);
      console.log(`replica SIGSTOPped → backfill paused in ${Date.now() - stoppedAt} ms (Redis counts the lag in whole seconds since the last ACK)`);
      expect(paused.holding).toEqual(['replica-lag']);
      expect(paused.reason).toMatch(
        new RegExp(`^paused: replica 127\\.0\\.0\\.1:${replica.port} of 127\\.0\\.0\\.1:${master.port}: last ACK [0-9]+s ago, .* > 2s; resumes by itself`),
      );
      // Paused means no progress: the batches in flight finish, then nothing.
      await new Promise((r) => setTimeout(r, 1500));
      const a = (await heartbeat(client, keys))!;
      await new Promise((r) => setTimeout(r, 2000));
      const b = (await heartbeat(client, keys))!;
      expect(b.state).toBe('paused');
      expect(b.done).toBe(a.done);
      expect(b.done).toBeLessThan(N);
      const status = await runCli([...target(master.url, keys.prefix), 'status']);
      expect(status.stdout).toMatch(/^throttle +paused — paused: replica /m);
    } finally {
      replica.resume();
    }
    await waitForRun(client, keys, 'the backfill to resume', (r) => r.state !== 'paused', 60_000).catch(() => undefined);
    const r = await run.done;
    expectExit(r, 0);
    const j = r.json as {
      copied: number;
      complete: boolean;
      throttle: { pausedMs: number; pauses: number; byGuard: Record<string, { pausedMs: number; pauses: number }> };
    };
    expect(j).toMatchObject({ copied: N, complete: true });
    expect(j.throttle.pauses).toBeGreaterThanOrEqual(1);
    expect(j.throttle.byGuard['replica-lag']!.pausedMs).toBeGreaterThan(2000);
    expect(j.throttle.byGuard['replica-lag']!.pauses).toBeGreaterThanOrEqual(1);
    // The history records it.
    const entry = (await historyOf(client, keys, 'backfill'))[0]!;
    expect(entry.data).toMatchObject({ exitCode: 0, throttle: { byGuard: { 'replica-lag': { pauses: expect.any(Number) } } } });
    // So does the metrics file, in the Prometheus text format.
    const { samples } = parsePrometheus(readFileSync(metrics, 'utf8'));
    const value = (name: string, guard?: string): number | undefined =>
      samples.find((x) => x.name === name && x.labels.op === 'backfill' && (guard === undefined || x.labels.guard === guard))?.value;
    expect(value('orch_migrate_run_keys_done_total')).toBe(N);
    expect(value('orch_migrate_run_throttle_seconds_total', 'replica-lag')).toBeGreaterThan(2);
    expect(value('orch_migrate_run_pauses_total')).toBeGreaterThanOrEqual(1);
    // The heartbeat is gone with the run.
    expect(await client.exists(keys.run)).toBe(0);
    // Nothing lost: every job byte-identical in both layouts, verify clean, and the replica caught up with all of it.
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
    const v = await runCli([...target(master.url, keys.prefix), '--json', 'verify', '--round-delay', '50ms']);
    expectExit(v, 0);
    expect(v.json).toMatchObject({ ok: true, mismatches: 0 });
    await waitForReplicaInSync(client);
    await waitFor('the replica to hold every v2 copy', async () => {
      let n = 0;
      let cursor = '0';
      do {
        const [next, found] = await replicaClient.scan(cursor, 'MATCH', keys.v2Pattern(), 'COUNT', 1000);
        n += found.length;
        cursor = next;
      } while (cursor !== '0');
      return n === N;
    });
  });
});
