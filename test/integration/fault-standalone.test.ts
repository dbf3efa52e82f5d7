/**
 * Issue 6, fault suite (single node): Redis is killed with kill -9, or frozen
 * with SIGSTOP, under a running backfill or cleanup. Every case ends with a
 * clear failure (exit 5, one error line naming host:port, bounded in time), a
 * rerun that completes, and the LEDGER CHECK: every seeded job is present and
 * byte-identical (fields and PEXPIRETIME) wherever it must be.
 *
 * Redis is only killed/paused on private servers spawned here, with AOF and
 * appendfsync always, so every acknowledged write survives kill -9. "Mid-run"
 * is made reliable by throttling with --rate and polling the checkpoint hash
 * until it shows progress, never by sleeping blindly.
 *
 * Also in the fault suite: fault-cluster.test.ts (a master restarted or killed
 * mid-backfill) and fault-cli-kill.test.ts (the CLI itself killed). A graceful
 * single-node restart mid-backfill is covered by backfill-resume.test.ts.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { StateStore } from '../../src/core/state.js';
import { loadCheckpoint, sumCounter } from '../../src/ops/checkpoint.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import {
  expectLedger,
  expectOneErrorLine,
  expectUnavailable,
  expectVerifyClean,
  fingerprint,
  runCliUntil,
  seedDualWrite,
  SLOW,
  waitForLockFree,
} from '../helpers/fault-helpers.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { scanKeys } from './backfill-helpers.js';

const N = 2000;
const skipReason = processControlUnavailable();

describe.skipIf(skipReason !== undefined)('fault: Redis dies or freezes under a running operation (private single node)', () => {
  const servers: RedisServerHandle[] = [];
  const clients: RedisClient[] = [];
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(clients.map((c) => closeRedis(c)));
    await Promise.all(servers.map((s) => s.stop()));
  });

  /** A private server whose every acknowledged write is on disk before the reply (survives kill -9). */
  async function durableServer(): Promise<RedisServerHandle> {
    const s = await startRedisServer({ appendonly: true, extraArgs: ['--appendfsync', 'always'] });
    servers.push(s);
    return s;
  }

  async function connect(server: RedisServerHandle): Promise<RedisClient> {
    const c = await connectRedis({ url: server.url, commandTimeoutMs: 10_000 });
    clients.push(c);
    return c;
  }

  const address = (server: RedisServerHandle): string => `127.0.0.1:${server.port}`;

  it('kill -9 mid-backfill: exit 5 naming host:port; after a restart the rerun rescans and completes; verify clean; nothing lost', async () => {
    const server = await durableServer();
    let client = await connect(server);
    const keys = new Keyspace(uniquePrefix('fkill9bf'));
    const args = target(server.url, keys.prefix);
    const ledger = await seedDualWrite(client, keys, N);

    const first = await runCliUntil(
      [...args, '--json', '--lock-ttl', '1000', 'backfill', ...SLOW],
      { client, keys, op: 'backfill', min: 300 },
      () => server.kill('SIGKILL'),
      children,
    );
    expectUnavailable(first, address(server));

    await server.restart();
    client = await connect(server);
    // Mid-crash ledger: legacy intact (AOF), and whatever reached v2 is whole (COPY is atomic).
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'optional' });
    const copiedBefore = (await scanKeys(client, keys.v2Pattern())).length;
    expect(copiedBefore).toBeGreaterThan(0);
    expect(copiedBefore).toBeLessThan(N);
    expect(sumCounter(await loadCheckpoint(client, keys, 'backfill'), 'scanned')).toBeGreaterThan(0);
    await waitForLockFree(client, keys);

    const second = await runCli([...args, '--json', 'backfill']);
    expect(second.code, second.stderr).toBe(0);
    const j = second.json as { complete: boolean; resumed: boolean; scanned: number; copied: number; skipped: number; nodes: Array<{ rescanned: boolean }> };
    // The restarted server has a new run_id: its SCAN cursor means nothing there, so it is rescanned from 0.
    expect(j.nodes).toHaveLength(1);
    expect(j.nodes[0]!.rescanned).toBe(true);
    expect(j).toMatchObject({ complete: true, resumed: false, unmigratable: 0 });
    expect(j.copied + j.skipped).toBe(j.scanned);
    expect(j.copied).toBeGreaterThanOrEqual(N - copiedBefore);
    await expectVerifyClean(args);
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
  });

  it('kill -9 mid-cleanup --execute: exit 5; after a restart the rerun completes; no job lost, legacy deleted only where v2 holds it', async () => {
    const server = await durableServer();
    let client = await connect(server);
    const keys = new Keyspace(uniquePrefix('fkill9clean'));
    const args = target(server.url, keys.prefix);
    const ledger = await seedDualWrite(client, keys, N);
    expect((await runCli([...args, 'backfill'])).code).toBe(0);
    const flip = await runCli([...args, 'flip-read', '--force', 'verify', '--reason', 'fault test: the ledger check proves the copy']);
    expect(flip.code, flip.stderr).toBe(0);
    // Legacy records v2 never got (written behind the protocol's back): cleanup must keep them.
    const extras = Array.from({ length: 5 }, (_, i) => keys.legacyJob(`extra-${i}`));
    for (const [i, k] of extras.entries()) await client.hset(k, { job_id: `extra-${i}`, workspace_id: 'ws-extra', status: 'queued', rev: '1' });
    const extrasBefore = await fingerprint(client, extras);

    const first = await runCliUntil(
      [...args, '--json', '--lock-ttl', '1000', 'cleanup', '--execute', '--min-soak', '0s', '--force', 'soak,verify', '--reason', 'fault test', ...SLOW],
      { client, keys, op: 'cleanup', min: 300 },
      () => server.kill('SIGKILL'),
      children,
    );
    expectUnavailable(first, address(server));

    await server.restart();
    client = await connect(server);
    // Mid-crash ledger: every job is in v2, whole; a legacy key is gone only where v2 holds the record.
    await expectLedger(client, keys, ledger, { legacy: 'optional', v2: 'present' });
    const legacyLeft = (await scanKeys(client, keys.legacyPattern)).length - extras.length;
    // It really was mid-run: some deleted, some not yet.
    expect(legacyLeft).toBeGreaterThan(0);
    expect(legacyLeft).toBeLessThan(N);
    expect(await fingerprint(client, extras)).toEqual(extrasBefore);
    const state = await new StateStore(client, keys).read();
    expect(state.phase).toBe(Phase.NewOnly);
    expect(state.legacyComplete).toBe(false);
    await waitForLockFree(client, keys);

    // In new-only, cleanup --execute resumes deleting without a transition (and without gates to force).
    const second = await runCli([...args, '--json', 'cleanup', '--execute', '--reason', 'fault test: resume']);
    expect(second.code, second.stderr).toBe(1); // completed, but the extras are kept
    expect(second.json).toMatchObject({ dryRun: false, phase: 'new-only', complete: true, kept: 5, keptByReason: { 'v2-missing': 5 } });
    await expectLedger(client, keys, ledger, { legacy: 'absent', v2: 'present' });
    expect(await fingerprint(client, extras)).toEqual(extrasBefore);
    expect((await scanKeys(client, keys.legacyPattern)).sort()).toEqual([...extras].sort());
  });

  it('SIGSTOP longer than --timeout 1000: a bounded exit 5, not a hang; after SIGCONT the rerun resumes and completes', async () => {
    const server = await durableServer();
    const client = await connect(server);
    const keys = new Keyspace(uniquePrefix('fsigstop'));
    const args = [...target(server.url, keys.prefix), '--timeout', '1000'];
    const ledger = await seedDualWrite(client, keys, N);

    let pausedAt = 0;
    let frozenRun: Promise<CliResult> | undefined;
    try {
      const first = await runCliUntil(
        [...args, '--json', '--lock-ttl', '1000', 'backfill', ...SLOW],
        { client, keys, op: 'backfill', min: 300 },
        () => {
          server.pause();
          pausedAt = Date.now();
          // A run started against the frozen server (TCP connects, nothing answers) must fail as clearly.
          frozenRun = runCli([...args, 'status'], { timeoutMs: 60_000 });
        },
        children,
      );
      expectUnavailable(first, address(server));
      expect(first.stderr).toMatch(/timed out/i);
      // No hang: a few command timeouts (the batch in flight, the checkpoint save, the lock release), not forever.
      expect(Date.now() - pausedAt).toBeLessThan(20_000);

      const frozen = await frozenRun!;
      expect(frozen.code, frozen.stderr).toBe(5);
      expect(expectOneErrorLine(frozen)).toContain(address(server));
      expect(frozen.durationMs).toBeLessThan(20_000);
    } finally {
      server.resume();
    }

    await waitForLockFree(client, keys);
    const second = await runCli([...args, '--json', 'backfill']);
    expect(second.code, second.stderr).toBe(0);
    const j = second.json as { complete: boolean; resumed: boolean; thisRun: { scanned: number }; nodes: Array<{ rescanned: boolean }> };
    // Same server process (same run_id): the checkpoint is good, so it resumes instead of rescanning.
    expect(j).toMatchObject({ complete: true, resumed: true });
    expect(j.nodes[0]!.rescanned).toBe(false);
    expect(j.thisRun.scanned).toBeLessThan(N);
    await expectVerifyClean(args);
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
  });
});
