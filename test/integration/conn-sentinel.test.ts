/**
 * Issue 15, Sentinel: a master, a replica and three sentinels from the same
 * redis-server binary (test/helpers/sentinel.ts). The CLI, the API and
 * queue-core writers find the master through the sentinels, and
 * `SENTINEL FAILOVER` is issued in the middle of a backfill and in the middle
 * of a cleanup, with writers running throughout:
 *  - the interrupted run exits 5 with its checkpoint kept; the rerun notices
 *    the new master's run_id and rescans that node from 0;
 *  - the migration completes, verify is clean (also read from the replica,
 *    with its lag stated), the state record, its history and the checkpoints
 *    survive both failovers;
 *  - every job seeded before the migration is intact; every write the writers
 *    had acknowledged before a failover was replicated (WAIT) survives it, and
 *    so does every write acknowledged once the demoted master is a replica
 *    again; the writes acknowledged inside a failover window are counted, not
 *    asserted (asynchronous replication can lose a write acknowledged in the
 *    instant of the promotion, even with min-replicas-to-write; see
 *    docs/connectivity.md).
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadApiConfig } from '../../src/api/config.js';
import { createApiService, type ApiService } from '../../src/api/server.js';
import { askRedis } from '../../src/cli/demo/redis-process.js';
import { ExitCode } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { classifyRedisError, closeRedis, connectedAddress, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { StateStore } from '../../src/core/state.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { deleteKeysWithPrefix, sharedClusterNodes, uniquePrefix } from '../helpers/fixtures.js';
import { scanAll } from '../helpers/lifecycle.js';
import { findFreePort, parseInfo } from '../helpers/redis-server.js';
import { startSentinelSetup, type FailoverReport, type SentinelSetup } from '../helpers/sentinel.js';
import { bearer, captureStream, TOKENS, tokenEntries } from '../unit/api-helpers.js';
import { LiveWriters, lostWrites, waitFor, type LedgerEntry } from './conn-helpers.js';

const SEED = 3000;
/** Slow enough that a failover lands mid-run, fast enough for CI: ~5 s per pass. */
const RATE = ['--rate', '600', '--batch-size', '100'];

let setup: SentinelSetup;

beforeAll(async () => {
  // The configuration docs/connectivity.md recommends for a migration behind Sentinel: a master
  // refuses writes (NOREPLICAS, exit 5 for the CLI) once its replica has been promoted away,
  // instead of acknowledging writes that the failover then discards. Measured without it, about a
  // second of acknowledged writes was lost per failover; with it, 0-2 per run (the instant of the promotion).
  setup = await startSentinelSetup({ nodeArgs: ['--min-replicas-to-write', '1', '--min-replicas-max-lag', '10'] });
});
afterAll(async () => {
  await setup?.stop();
});

/** A core client that finds the master through the sentinels and follows failovers. */
function sentinelClient(profile: 'cli' | 'service' = 'service', name = 'sentinel-test'): Promise<RedisClient> {
  return connectRedis({
    url: 'redis://localhost',
    sentinel: {
      sentinels: setup.sentinelList.split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) })),
      masterName: setup.masterName,
    },
    profile,
    connectionName: name,
  });
}

function cli(prefix: string, args: string[]): Promise<CliResult> {
  return runCli(['--sentinel', setup.sentinelList, '--sentinel-master', setup.masterName, '--prefix', prefix, '--lock-ttl', '5000', '--json', ...args], {
    timeoutMs: 120_000,
  });
}

/** Reruns a command that a failover interrupted until it completes (exit 4: the lease of the run the failover cut off). */
async function rerun(prefix: string, args: string[]): Promise<{ result: CliResult; attempts: number }> {
  let attempts = 0;
  const result = await waitFor(
    `${args[0]} to complete after the failover`,
    async () => {
      attempts++;
      const r = await cli(prefix, args);
      if (r.code === ExitCode.Locked || r.code === ExitCode.Unavailable) return null;
      return r;
    },
    90_000,
    500,
  );
  expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
  return { result, attempts };
}

/** The run_id of the node at host:port. */
async function runIdOf(port: number): Promise<string> {
  return parseInfo(await askRedis(port, (c) => c.info('server'))).run_id ?? '';
}

/** One checkpoint entry of a Sentinel-managed master (the node identity is sentinel:<name>). */
async function checkpointEntry(
  admin: RedisClient,
  keys: Keyspace,
  op: string,
): Promise<{ run_id: string; cursor: string; counters: Record<string, number> } | null> {
  const raw = await admin.hget(keys.checkpoint(op), `sentinel:${setup.masterName}`);
  return raw ? (JSON.parse(raw) as { run_id: string; cursor: string; counters: Record<string, number> }) : null;
}

/**
 * Makes sure every write acknowledged so far is on the replica (a write, then
 * WAIT 1), and returns the local time just before: writes acknowledged before
 * it cannot be lost by the failover that follows.
 */
async function replicatedCutoff(admin: RedisClient, prefix: string): Promise<number> {
  const cutoff = Date.now();
  await admin.set(`${prefix}:wait-probe`, String(cutoff));
  expect(await (admin as Redis).wait(1, 10_000)).toBe(1);
  return cutoff;
}

describe('Redis Sentinel', () => {
  it('finds the master through the sentinels; a wrong master name is exit 2, unreachable sentinels exit 5, bad values are usage errors', async () => {
    const prefix = uniquePrefix('sentok');
    const viaFlags = await cli(prefix, ['status']);
    expect(viaFlags.code, viaFlags.stderr).toBe(0);
    const viaEnv = await runCli(['--prefix', prefix, '--json', 'status'], {
      env: { ORCH_SENTINELS: setup.sentinelList, ORCH_SENTINEL_MASTER: setup.masterName },
    });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);

    const unknown = await runCli(['--sentinel', setup.sentinelList, '--sentinel-master', 'no-such-master', '--json', 'status']);
    expect(unknown.code, unknown.stderr).toBe(ExitCode.Usage);
    expect(unknown.json).toMatchObject({ error: { code: 'ERR_SENTINEL_MASTER' } });
    expect(unknown.stderr).toContain('--sentinel-master');

    const closed = await findFreePort();
    const down = await runCli(['--sentinel', `127.0.0.1:${closed}`, '--sentinel-master', setup.masterName, '--json', 'status']);
    expect(down.code, down.stderr).toBe(ExitCode.Unavailable);

    for (const [args, message] of [
      [['--sentinel', '127.0.0.1', '--sentinel-master', 'm'], /--sentinel: expected host:port/],
      [['--sentinel', `${setup.sentinelList},127.0.0.1:99999`, '--sentinel-master', 'm'], /--sentinel: expected host:port/],
      [['--sentinel', '127.0.0.1:26379,127.0.0.1:26379', '--sentinel-master', 'm'], /no entry twice/],
      [['--sentinel', setup.sentinelList, '--sentinel-master', 'bad name'], /--sentinel-master: expected a master name/],
      [['--sentinel', setup.sentinelList], /--sentinel \(ORCH_SENTINELS\) is set without --sentinel-master/],
      [['--sentinel', setup.sentinelList, '--sentinel-master', setup.masterName, '--cluster'], /exclude each other/],
    ] as Array<[string[], RegExp]>) {
      const r = await runCli([...args, 'status']);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(ExitCode.Usage);
      expect(r.stderr).toMatch(message);
    }
  });

  it('verify --read-from-replica without Sentinel: the replica the master lists, its lag stated; refused with --repair, on a cluster, or without a replica', async () => {
    const prefix = uniquePrefix('replread');
    const { master, replica } = await setup.roles();
    const direct = (args: string[]): Promise<CliResult> => runCli(['--redis-url', master.url, '--prefix', prefix, '--json', ...args]);
    const admin = await sentinelClient('cli', 'replica-admin');
    try {
      await admin.hset(new Keyspace(prefix).legacyJob('j1'), { job_id: 'j1', workspace_id: 'ws1', status: 'queued', created_at: new Date().toISOString() });
      expect((await direct(['enable-dual-write', '--reason', 'replica read', '--settle-ms', '100'])).code).toBe(0);
      expect((await direct(['backfill'])).code).toBe(0);
      const r = await direct(['verify', '--rounds', '2', '--round-delay', '200ms', '--read-from-replica']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json).toMatchObject({ ok: true, readFrom: { role: 'replica', address: `127.0.0.1:${replica.port}`, linkStatus: 'up' } });
      const human = await runCli(['--redis-url', master.url, '--prefix', prefix, 'verify', '--rounds', '1', '--read-from-replica']);
      expect(human.stdout).toMatch(new RegExp(`read from replica 127\\.0\\.0\\.1:${replica.port}: [0-9]+ byte\\(s\\) behind the master at the start`));

      const repair = await direct(['verify', '--repair', '--read-from-replica']);
      expect(repair.code).toBe(ExitCode.Usage);
      expect(repair.stderr).toMatch(/--read-from-replica: --repair writes on the master/);
      // The replica itself has no replica of its own to read from.
      const none = await runCli(['--redis-url', replica.url, '--prefix', prefix, '--json', 'verify', '--read-from-replica']);
      expect(none.code, none.stderr).toBe(ExitCode.Usage);
      expect(none.json).toMatchObject({ error: { code: 'ERR_NO_REPLICA' } });
      const node = sharedClusterNodes()[0]!;
      const cluster = await runCli(['--redis-url', `redis://${node.host}:${node.port}`, '--cluster', '--prefix', prefix, 'verify', '--read-from-replica']);
      expect(cluster.code, cluster.stderr).toBe(ExitCode.Usage);
      expect(cluster.stderr).toMatch(/not supported with --cluster/);
    } finally {
      await deleteKeysWithPrefix(admin as Redis, prefix).catch(() => undefined);
      await closeRedis(admin);
    }
  });

  it('a failover mid-backfill and mid-cleanup: the migration completes, verify is clean, writers and the API follow, state and checkpoints survive', async () => {
    const prefix = uniquePrefix('sentinel');
    const keys = new Keyspace(prefix);
    const admin = await sentinelClient('service', 'sentinel-admin');
    const writerClient = await sentinelClient('service', 'sentinel-writer');
    let writers: LiveWriters | null = null;
    const queues: RedisJobQueue[] = [];
    let api: ApiService | null = null;
    const figures: Record<string, unknown> = {};
    try {
      // The old service's jobs, through the queue core, through the sentinels.
      const seeder = await RedisJobQueue.create(writerClient, { keys, register: false });
      for (let i = 0; i < SEED; i += 250) {
        await Promise.all(
          Array.from({ length: Math.min(250, SEED - i) }, (_, j) => seeder.enqueue({ workspaceId: `ws${(i + j) % 5}`, action: 'seed', params: { i: i + j } })),
        );
      }
      await seeder.close();
      const seeded = new Map<string, Record<string, string>>();
      for (const key of await scanAll(admin, keys.legacyPattern)) seeded.set(key, await admin.hgetall(key));
      expect(seeded.size).toBe(SEED);

      queues.push(...(await Promise.all([0, 1].map(() => RedisJobQueue.create(writerClient, { keys })))));
      writers = new LiveWriters(queues, { workspaces: 5, pauseMs: 20 });
      writers.start();
      const config = loadApiConfig({
        REDIS_URL: 'redis://localhost',
        ORCH_SENTINELS: setup.sentinelList,
        ORCH_SENTINEL_MASTER: setup.masterName,
        ORCH_PREFIX: prefix,
        ORCH_API_TOKENS: JSON.stringify(tokenEntries('ws0', 'ws1')),
        LOG_LEVEL: 'silent',
      });
      api = await createApiService(config, { logStream: captureStream() });
      const service = api;
      const apiAnswers = async (path: 'legacy' | 'v2'): Promise<void> => {
        await waitFor(`the API to answer on the ${path} path`, async () => {
          const r = await service.app.inject({ method: 'GET', url: '/ai/jobs?limit=10', headers: bearer(TOKENS.a) });
          return r.statusCode === 200 && r.headers['x-read-path'] === path;
        });
      };
      await apiAnswers('legacy');

      const step = async (args: string[]): Promise<CliResult> => {
        const r = await cli(prefix, args);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        return r;
      };
      await step(['enable-dual-write', '--reason', 'sentinel test', '--settle-ms', '200']);

      /** Runs `args`, issues a failover once its checkpoint shows progress, and returns both outcomes. */
      const failoverDuring = async (
        op: string,
        args: string[],
      ): Promise<{ run: CliResult; report: FailoverReport; cutoff: number; oldRunId: string; runMs: number }> => {
        const before = await setup.master();
        const oldRunId = await runIdOf(before.port);
        const started = Date.now();
        let settled = false;
        const running = cli(prefix, args).finally(() => (settled = true));
        await waitFor(`${op} to checkpoint some progress`, async () => ((await checkpointEntry(admin, keys, op))?.counters.scanned ?? 0) > 0, 60_000, 50);
        const cutoff = await replicatedCutoff(admin, prefix);
        expect(settled, `${op} finished before the failover could be issued`).toBe(false);
        const report = await setup.failover();
        const run = await running;
        // The admin client reconnects on its own, but its profile (service: maxRetriesPerRequest 0) rejects what is
        // sent while it does: the reads below wait until it answers again through the new master.
        await waitFor('the admin connection to follow the failover', async () => (await admin.ping()) === 'PONG', 30_000, 50);
        return { run, report, cutoff, oldRunId, runMs: Date.now() - started };
      };

      // ── Failover 1, in the middle of the backfill.
      const bf = await failoverDuring('backfill', ['backfill', ...RATE]);
      figures.failover1SwitchMs = bf.report.switchMs;
      figures.backfillDuringFailover = { exitCode: bf.run.code, ranMs: bf.runMs };
      expect(bf.run.code, bf.run.stderr).toBe(ExitCode.Unavailable);
      expect(bf.run.stderr).toMatch(/checkpoint kept|progress is checkpointed/);
      // The state record and the checkpoint are on the new master: they replicated.
      const state1 = await new StateStore(admin, keys).read();
      expect(state1).toMatchObject({ phase: 'dual-write', epoch: 1 });
      const cp1 = await checkpointEntry(admin, keys, 'backfill');
      expect(cp1?.run_id).toBe(bf.oldRunId);
      expect(cp1?.counters.scanned ?? 0).toBeGreaterThan(0);
      const newRunId = await runIdOf(bf.report.to.port);
      expect(newRunId).not.toBe(bf.oldRunId);
      // The rerun sees the new master's run_id: the cursor is void, the node is rescanned from 0.
      const bf2 = await rerun(prefix, ['backfill']);
      const nodes = (bf2.result.json as { nodes: Array<{ node: string; rescanned: boolean; resumedFrom: string | null }> }).nodes;
      expect(nodes).toEqual([expect.objectContaining({ node: `sentinel:${setup.masterName}`, rescanned: true, resumedFrom: null })]);
      expect(bf2.result.json).toMatchObject({ unmigratable: 0 });
      expect(Number(bf2.result.json!.scanned)).toBeGreaterThanOrEqual(SEED);
      expect((await checkpointEntry(admin, keys, 'backfill'))?.run_id).toBe(newRunId);
      figures.backfillRerun = { attempts: bf2.attempts, scanned: bf2.result.json!.scanned, copied: bf2.result.json!.copied, skipped: bf2.result.json!.skipped };
      await apiAnswers('legacy');

      const v1 = await step(['verify', '--rounds', '3', '--round-delay', '300ms']);
      expect(v1.json).toMatchObject({ ok: true, mismatches: 0 });
      const sync1 = await setup.waitForReplicaInSync();
      figures.failover1ReplicaBackMs = sync1 - bf.report.switchedAt;
      // Verify may read from the replica (the demoted master, now in sync), and says how far behind it was.
      const fromReplica = await step(['verify', '--rounds', '3', '--round-delay', '300ms', '--read-from-replica']);
      const readFrom = (fromReplica.json as { readFrom: { role: string; address: string; lagBytesAtStart: number; lagBytesAtEnd: number; linkStatus: string } })
        .readFrom;
      expect(readFrom).toMatchObject({ role: 'replica', linkStatus: 'up' });
      expect(readFrom.address).toBe(`127.0.0.1:${bf.report.from.port}`);
      expect(typeof readFrom.lagBytesAtStart).toBe('number');
      expect(fromReplica.json).toMatchObject({ ok: true, mismatches: 0 });
      figures.replicaLagBytes = [readFrom.lagBytesAtStart, readFrom.lagBytesAtEnd];

      await step(['flip-read', '--reason', 'sentinel test']);
      await step(['verify', '--rounds', '3', '--round-delay', '300ms']);
      await apiAnswers('v2');

      // ── Failover 2, in the middle of the cleanup.
      const cl = await failoverDuring('cleanup', ['cleanup', '--execute', '--min-soak', '0s', '--reason', 'sentinel test: no soak', ...RATE]);
      figures.failover2SwitchMs = cl.report.switchMs;
      figures.cleanupDuringFailover = { exitCode: cl.run.code, ranMs: cl.runMs };
      expect(cl.run.code, cl.run.stderr).toBe(ExitCode.Unavailable);
      const state2 = await new StateStore(admin, keys).read();
      expect(state2).toMatchObject({ phase: 'new-only', epoch: 3 });
      expect((await checkpointEntry(admin, keys, 'cleanup'))?.run_id).toBe(cl.oldRunId);
      const cl2 = await rerun(prefix, ['cleanup', '--execute', '--min-soak', '0s', '--reason', 'sentinel test: resume']);
      figures.cleanupRerun = { attempts: cl2.attempts, deleted: cl2.result.json!.deleted, kept: cl2.result.json!.kept };
      expect(cl2.result.json).toMatchObject({ kept: 0 });
      expect(await scanAll(admin, keys.legacyPattern)).toEqual([]);
      const sync2 = await setup.waitForReplicaInSync();
      figures.failover2ReplicaBackMs = sync2 - cl.report.switchedAt;
      await apiAnswers('v2');
      // The API and the writers now talk to the second new master.
      expect(connectedAddress(service.client as Redis)).toBe(`127.0.0.1:${cl.report.to.port}`);

      // Every seeded job is in v2, field for field, after both failovers.
      const wrong: string[] = [];
      for (const [legacyKey, fields] of seeded) {
        const id = keys.parseLegacy(legacyKey)!;
        const v2 = await admin.hgetall(keys.v2Job(fields.workspace_id!, id));
        if (JSON.stringify(Object.entries(v2).sort()) !== JSON.stringify(Object.entries(fields).sort())) wrong.push(id);
      }
      expect(wrong).toEqual([]);

      // Back through the reverse backfill, and both layouts agree again.
      await step(['rollback', '--execute', '--reason', 'sentinel test: drill']);
      const vEnd = await step(['verify', '--rounds', '3', '--round-delay', '300ms']);
      expect(vEnd.json).toMatchObject({ ok: true, mismatches: 0 });

      await writers.stop();
      const ledger = writers.ledger;
      // Writers followed both failovers by themselves: they wrote after each switch.
      const after = (t: number): number => [...ledger.values()].filter((e) => e.at > t).length;
      expect(after(sync1)).toBeGreaterThan(0);
      expect(after(sync2)).toBeGreaterThan(0);
      // Writes replicated before a failover, or acknowledged once the demoted master was a replica again, all survive.
      const inWindow = (t: number): boolean => !(t < bf.cutoff || (t >= sync1 && t < cl.cutoff) || t >= sync2);
      const safe = new Map<string, LedgerEntry>([...ledger].filter(([, e]) => !inWindow(e.at)));
      expect(await lostWrites(admin, keys, safe)).toEqual([]);
      const windowed = new Map<string, LedgerEntry>([...ledger].filter(([id]) => !safe.has(id)));
      const lostInWindows = await lostWrites(admin, keys, windowed);
      // What they could not do during a failover failed as "unavailable"; the only other failure is an
      // update of a job whose creation a failover window lost (acknowledged by the demoted master).
      const unexpected = writers.failures.filter((f) => {
        const kind = (classifyRedisError(f.error, 'x') as Error).name;
        if (kind === 'RedisUnavailableError') return !inWindow(f.at);
        return !(kind === 'JobNotFoundError' && f.jobId !== null && lostInWindows.includes(f.jobId));
      });
      expect(unexpected.map((f) => `${new Date(f.at).toISOString()} ${f.jobId ?? 'create'}: ${String(f.error)}`)).toEqual([]);
      figures.writes = {
        acknowledged: writers.writes,
        failed: writers.failures.length,
        acknowledgedInFailoverWindows: windowed.size,
        lostInFailoverWindows: lostInWindows.length,
      };

      // The audit trail survived: every transition from before the failovers is still there.
      const history = await new StateStore(admin, keys).history(200);
      const transitions = history.filter((h) => h.type === 'transition').map((h) => `${String(h.data.from)}→${String(h.data.to)}`);
      expect(transitions).toEqual(expect.arrayContaining(['legacy→dual-write', 'dual-write→read-new', 'read-new→new-only', 'new-only→read-new']));
      expect(await admin.exists(keys.checkpoint('backfill'))).toBe(1);
      expect(await admin.exists(keys.checkpoint('cleanup'))).toBe(1);
      const status = await step(['status']);
      expect(status.json).toMatchObject({ phase: 'read-new' });
      // Measured on this run (printed for the record; the assertions above do not depend on them).
      console.info(`sentinel failover figures: ${JSON.stringify(figures)}`);
    } finally {
      await writers?.stop();
      for (const q of queues) await q.close().catch(() => undefined);
      await api?.close();
      await closeRedis(writerClient);
      // Best effort: the servers go with the setup anyway, and a failure here must not hide the test's own.
      await deleteKeysWithPrefix(admin as Redis, prefix).catch(() => undefined);
      await closeRedis(admin);
    }
  });
});
