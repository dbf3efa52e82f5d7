/**
 * The memory guard on a real server whose maxmemory is set so that a backfill
 * crosses the throttle level and then the critical level: it slows, then stops
 * with exit 6, its checkpoint kept and the stop recorded (guard, reading,
 * throttle) in the history and the `--json` error; with maxmemory raised the
 * rerun resumes from the checkpoint and completes; verify is clean.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { loadCheckpoint, sumCounter } from '../../src/ops/checkpoint.js';
import type { MemoryProjection } from '../../src/ops/preflight.js';
import { runCli, target } from '../helpers/cli.js';
import { expectLedger, seedDualWrite } from '../helpers/fault-helpers.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { expectExit, historyOf, settledUsedMemory, startCli, waitForRun } from './guards-helpers.js';

const skip = processControlUnavailable();
const servers: RedisServerHandle[] = [];
const clients: RedisClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => closeRedis(c)));
  await Promise.all(servers.map((s) => s.stop()));
});

describe.skipIf(skip !== undefined)('memory guard', () => {
  it('crossing the throttle level slows the backfill, the critical level stops it (exit 6, checkpoint kept); raised maxmemory: the rerun resumes, completes, verify clean', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const client = await connectRedis({ url: server.url });
    clients.push(client);
    const keys = new Keyspace(uniquePrefix('gmem'));
    const args = target(server.url, keys.prefix);
    const N = 20_000;
    const ledger = await seedDualWrite(client, keys, N);
    const pf = await runCli([...args, '--json', 'preflight']);
    const growth = (pf.json!.projection as MemoryProjection).growthBytes;
    const used = await settledUsedMemory(client);
    // Critical (90%) at ~60% of the copy, throttle at ~25% of it.
    const critical = 90;
    const maxmemory = Math.round((used + 0.6 * growth) / (critical / 100));
    const throttle = Math.floor(((used + 0.25 * growth) / maxmemory) * 10_000) / 100;
    await client.config('SET', 'maxmemory', String(maxmemory));

    const run = await startCli([
      ...args,
      '--json',
      'backfill',
      '--rate',
      '4000',
      '--max-memory-pct',
      String(throttle),
      '--critical-memory-pct',
      String(critical),
      '--force',
      'memory',
      '--reason',
      'memory guard drill',
    ]);
    const slowed = await waitForRun(client, keys, 'the memory guard to slow the run', (r) => r.state === 'throttled' || r.done >= N, 90_000).catch(() => null);
    const r = await run.done;
    expectExit(r, 6);
    expect(slowed?.state).toBe('throttled');
    expect(slowed?.holding).toEqual(['memory']);
    expect(slowed?.reason).toMatch(/^slowed to [0-9]+ keys\/s: used_memory [0-9.]+% of maxmemory .* > [0-9.]+%/);
    const err = (
      r.json as {
        error: {
          code: string;
          message: string;
          suggestion: string;
          guard: string;
          reading: string;
          throttle: { byGuard: Record<string, { throttledMs: number }> };
        };
      }
    ).error;
    expect(r.json).toMatchObject({ ok: false, exitCode: 6 });
    expect(err.code).toBe('ERR_GUARD');
    expect(err.guard).toBe('memory');
    expect(err.message).toMatch(
      new RegExp(`^Stopped by the memory guard: used_memory [0-9.]+% of maxmemory .* on 127\\.0\\.0\\.1:${server.port} ≥ critical 90%; checkpoint kept$`),
    );
    expect(err.suggestion).toMatch(/raise maxmemory .* rerun: it resumes from the checkpoint/);
    expect(err.throttle.byGuard.memory!.throttledMs).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/^error: Stopped by the memory guard/m);
    // Its checkpoint is kept, part of the way.
    const cp = await loadCheckpoint(client, keys, 'backfill');
    const scanned = sumCounter(cp, 'scanned');
    expect(scanned).toBeGreaterThan(N * 0.2);
    expect(scanned).toBeLessThan(N);
    // The history has the stop, with the guard and what it read.
    const entry = (await historyOf(client, keys, 'backfill'))[0]!;
    expect(entry.data).toMatchObject({
      exitCode: 6,
      error: 'ERR_GUARD',
      guard: 'memory',
      reading: expect.stringMatching(/≥ critical 90%/),
      throttle: { byGuard: { memory: { throttledMs: expect.any(Number) } } },
    });
    expect(await client.exists(keys.lock)).toBe(0);

    await client.config('SET', 'maxmemory', '0');
    const again = await runCli([...args, '--json', 'backfill']);
    expectExit(again, 0);
    expect(again.json).toMatchObject({ resumed: true, complete: true, copied: N, unmigratable: 0 });
    expect((again.json as { thisRun: { scanned: number } }).thisRun.scanned).toBeLessThan(N);
    const v = await runCli([...args, '--json', 'verify', '--round-delay', '50ms']);
    expectExit(v, 0);
    expect(v.json).toMatchObject({ ok: true, mismatches: 0 });
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
  });
});
