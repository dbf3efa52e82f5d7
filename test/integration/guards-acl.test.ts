/**
 * Guards fail closed (src/ops/guards/controller.ts): an ACL user that cannot
 * run INFO gets a backfill that refuses to start (exit 6) with a message that
 * names the guard, what it could not read, and the fix; and when INFO is taken
 * away mid-run the run pauses, saying why, and resumes once it is given back.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { loadCheckpoint } from '../../src/ops/checkpoint.js';
import { runCli, target } from '../helpers/cli.js';
import { expectLedger, seedDualWrite } from '../helpers/fault-helpers.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { expectExit, heartbeat, historyOf, startCli, waitForRun } from './guards-helpers.js';

const skip = processControlUnavailable();
const servers: RedisServerHandle[] = [];
const clients: RedisClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => closeRedis(c)));
  await Promise.all(servers.map((s) => s.stop()));
});

const PREFLIGHT_GATES = 'version,eviction,memory,replicas,cluster';

describe.skipIf(skip !== undefined)('guards fail closed', () => {
  it('a user without INFO: preflight names the grant (exit 2); every check forced past it, the guards refuse to start the run (exit 6) naming the fix; no password printed', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const admin = await connectRedis({ url: server.url });
    clients.push(admin);
    const keys = new Keyspace(uniquePrefix('gacl'));
    await seedDualWrite(admin, keys, 1000);
    await admin.call('ACL', 'SETUSER', 'mig', 'on', '>pw-not-in-output', '~*', '&*', '+@all', '-info');
    const args = target(`redis://mig:pw-not-in-output@127.0.0.1:${server.port}`, keys.prefix);

    // A missing grant is a configuration error naming the rule (exit 2), not a gate.
    const refused = await runCli([...args, 'backfill']);
    expectExit(refused, 2);
    expect(refused.stderr).toMatch(/refused INFO for ACL user "mig"/);
    expect(refused.stderr).toMatch(/ACL SETUSER mig \+info/);
    // Forcing only some of the checks it hid is not enough.
    expectExit(await runCli([...args, 'backfill', '--force', 'memory', '--reason', 'acl drill']), 2);

    const r = await runCli([...args, '--json', 'backfill', '--force', PREFLIGHT_GATES, '--reason', 'acl drill']);
    expectExit(r, 6);
    expect(r.json).toMatchObject({ ok: false, exitCode: 6, error: { code: 'ERR_GUARD_UNREADABLE', guard: 'memory' } });
    const err = (r.json as { error: { message: string; suggestion: string } }).error;
    expect(err.message).toMatch(
      /^The memory guard cannot read its signal \(cannot read INFO memory on 127\.0\.0\.1:[0-9]+: NOPERM .*\); a guard that cannot see fails closed, so the run did not start$/,
    );
    expect(err.suggestion).toMatch(/ACL SETUSER <user> \+info/);
    expect(err.suggestion).toMatch(/--max-memory-pct off --critical-memory-pct off/);
    expect(r.stdout + r.stderr).not.toContain('pw-not-in-output');
    // Nothing started: no checkpoint, no heartbeat, the lock released, the refusal in the history.
    expect((await loadCheckpoint(admin, keys, 'backfill')).nodes).toEqual([]);
    expect(await admin.exists(keys.run)).toBe(0);
    expect(await admin.exists(keys.lock)).toBe(0);
    expect((await historyOf(admin, keys, 'backfill'))[0]!.data).toMatchObject({ exitCode: 6, error: 'ERR_GUARD_UNREADABLE', guard: 'memory' });
  });

  it('INFO taken away mid-run: the run pauses saying it cannot read; given back: it resumes and completes', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const admin = await connectRedis({ url: server.url });
    clients.push(admin);
    const keys = new Keyspace(uniquePrefix('gacl2'));
    const N = 8000;
    const ledger = await seedDualWrite(admin, keys, N);
    await admin.call('ACL', 'SETUSER', 'mig', 'on', '>pw2', '~*', '&*', '+@all');
    const args = target(`redis://mig:pw2@127.0.0.1:${server.port}`, keys.prefix);
    const run = await startCli([...args, '--json', 'backfill', '--rate', '1000', '--batch-size', '100']);
    try {
      await waitForRun(admin, keys, 'progress', (x) => x.done >= 1000);
      await admin.call('ACL', 'SETUSER', 'mig', '-info');
      const blind = await waitForRun(admin, keys, 'the run to pause, blind', (x) => x.state === 'paused', 30_000);
      expect(blind.reason).toMatch(/^paused: cannot read INFO memory on 127\.0\.0\.1:[0-9]+: NOPERM .*; resumes by itself/);
      expect(blind.holding).toEqual(expect.arrayContaining(['memory', 'replica-lag']));
      await new Promise((r) => setTimeout(r, 1500));
      const a = (await heartbeat(admin, keys))!.done;
      await new Promise((r) => setTimeout(r, 1500));
      expect((await heartbeat(admin, keys))!.done).toBe(a);
    } finally {
      await admin.call('ACL', 'SETUSER', 'mig', '+info');
    }
    const r = await run.done;
    expectExit(r, 0);
    const j = r.json as { copied: number; throttle: { byGuard: Record<string, { pausedMs: number }> } };
    expect(j.copied).toBe(N);
    expect(j.throttle.byGuard.memory!.pausedMs).toBeGreaterThan(1000);
    await expectLedger(admin, keys, ledger, { legacy: 'present', v2: 'present' });
  });
});
