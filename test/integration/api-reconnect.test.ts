// Redis restarted and frozen (SIGSTOP) under a running API and under a running
// queue-core writer, on a private redis-server with an fsync'd AOF: both
// recover by themselves within seconds, the phase subscription comes back, and
// every acknowledged write is still there. Timing bounds are deliberately
// generous (CI shares two cores with the servers); the measured figures are
// printed for the report.
import { afterEach, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { closeRedis, ConnectionProfile, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { StateStore } from '../../src/core/state.js';
import { processControlUnavailable } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { startRealApi, TOKENS, waitForReadPath, type RealApi } from './api-helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Far more than a recovery needs; only a process that never recovers runs into it. */
const RECOVERY_BOUND_MS = 20_000;

async function until(what: string, check: () => Promise<boolean>, timeoutMs = RECOVERY_BOUND_MS): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(25);
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - started };
}

function figure(name: string, value: number | string): void {
  process.stdout.write(`[figures] ${name}: ${value}\n`);
}

const skip = processControlUnavailable();
const servers: RedisServerHandle[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function durableServer(): Promise<RedisServerHandle> {
  // Every acknowledged write is on disk before its reply, so a restart can be asked "was anything acknowledged lost?".
  const s = await startRedisServer({ appendonly: true, extraArgs: ['--appendfsync', 'always'] });
  servers.push(s);
  return s;
}

/** A client with scripts for test set-up (transitions), riding out the restarts too. */
async function adminClient(url: string): Promise<RedisClient> {
  const c = await connectRedis({ url, profile: ConnectionProfile.Service, connectionName: 'test-admin' });
  cleanups.push(() => closeRedis(c));
  return c;
}

async function subscribers(client: RedisClient, channel: string): Promise<number> {
  const reply = (await client.call('PUBSUB', 'NUMSUB', channel)) as [string, number];
  return Number(reply[1]);
}

describe.skipIf(skip !== undefined)('the API across Redis outages', () => {
  it('recovers by itself after a restart, answers 503 (and livez 200) meanwhile, and its phase subscription comes back', async () => {
    const server = await durableServer();
    const api: RealApi = await startRealApi({ name: 'restart', redisUrl: server.url, service: { redis: { commandTimeoutMs: 2000 } } });
    cleanups.push(() => api.close());
    const admin = await adminClient(server.url);
    const state = new StateStore(admin, api.keys);
    // A settle window of 10 minutes: the API may cache the phase for 5, so only the events channel moves it quickly.
    await state.transition({ from: Phase.Legacy, to: Phase.DualWrite, expectedEpoch: 0, fence: null, reason: 'test', settleMs: 600_000 });
    await api.service.queue.refreshPhase();
    const acked: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: { i }, job_id: `before-${i}` });
      expect(r.statusCode).toBe(201);
      acked.push(`before-${i}`);
    }
    expect((await api.inject('GET', '/healthz')).statusCode).toBe(200);

    await server.kill('SIGTERM');
    // Down: readiness fails with retry-after, liveness holds, job routes answer 503 at once.
    const health = await timed(() => api.inject('GET', '/healthz'));
    expect(health.value.statusCode).toBe(503);
    expect(health.value.headers['retry-after']).toBe('1');
    expect(health.value.json()).toMatchObject({ status: 'unavailable', checks: { redis: 'fail' } });
    expect((await api.inject('GET', '/livez')).statusCode).toBe(200);
    const list = await timed(() => api.inject('GET', '/ai/jobs', TOKENS.a));
    expect(list.value.statusCode).toBe(503);
    expect(list.value.headers['retry-after']).toBe('1');
    const post = await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: 'during' });
    expect(post.statusCode).toBe(503);
    expect(list.ms).toBeLessThan(10_000);
    figure('api: answer time while Redis is down (GET /ai/jobs, /healthz)', `${list.ms} ms, ${health.ms} ms`);

    await server.restart();
    const recovery = await until('healthz 200 after the restart', async () => (await api.inject('GET', '/healthz')).statusCode === 200);
    figure('api: restart → /healthz 200', `${recovery} ms`);
    expect((await api.inject('GET', '/ai/jobs', TOKENS.a)).statusCode).toBe(200);
    expect(api.service.client.status).toBe('ready');

    // The phase watcher's subscriber is back on the events channel...
    const resubscribed = await until('the phase subscription is back', async () => (await subscribers(admin, api.keys.events)) === 1);
    figure('api: restart → events channel resubscribed', `${recovery + resubscribed} ms (after readiness: ${resubscribed} ms)`);
    await waitForReadPath(api, TOKENS.a, 'legacy');
    // ...so a flip reaches it at once, not after the 5-minute cache.
    const s = await state.read();
    await state.transition({ from: Phase.DualWrite, to: Phase.ReadNew, expectedEpoch: s.epoch, fence: null, reason: 'test', settleMs: 600_000 });
    const flip = await timed(() => waitForReadPath(api, TOKENS.a, 'v2', 200));
    figure('api: flip after the restart → x-read-path v2', `${flip.ms} ms`);

    // Nothing acknowledged was lost, and writes work again.
    const after = await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: 'after-0' });
    expect(after.statusCode).toBe(201);
    acked.push('after-0');
    const ids = (await api.inject('GET', '/ai/jobs?limit=200', TOKENS.a)).json<{ jobs: Array<{ job_id: string }> }>().jobs.map((j) => j.job_id);
    for (const id of acked) expect(ids).toContain(id);
    expect(ids).not.toContain('during');
    expect(api.logs.text()).toContain('lost the Redis connection');
    expect(api.logs.text()).toContain('Redis connection ready again');
    // An outage is expected operation: warnings, no error-level lines with stacks.
    const levels = api.logs.lines.map((l) => (JSON.parse(l) as { level: number }).level);
    expect(levels.filter((l) => l >= 50)).toEqual([]);
  });

  it('answers while Redis is frozen (SIGSTOP) and recovers when it resumes', async () => {
    const server = await durableServer();
    const api = await startRealApi({ name: 'sigstop', redisUrl: server.url, service: { redis: { commandTimeoutMs: 2000 } } });
    cleanups.push(async () => {
      server.resume();
      await api.close();
    });
    expect((await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: 'before' })).statusCode).toBe(201);

    server.pause();
    const health = await timed(() => api.inject('GET', '/healthz'));
    expect(health.value.statusCode).toBe(503);
    expect((await api.inject('GET', '/livez')).statusCode).toBe(200);
    const list = await timed(() => api.inject('GET', '/ai/jobs', TOKENS.a));
    expect(list.value.statusCode).toBe(503);
    expect(health.ms).toBeLessThan(10_000);
    expect(list.ms).toBeLessThan(10_000);
    figure('api: answer time while Redis is frozen (/healthz, GET /ai/jobs)', `${health.ms} ms, ${list.ms} ms`);

    server.resume();
    const recovery = await until('healthz 200 after SIGCONT', async () => (await api.inject('GET', '/healthz')).statusCode === 200);
    figure('api: SIGCONT → /healthz 200', `${recovery} ms`);
    expect((await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: 'after' })).statusCode).toBe(201);
    const ids = (await api.inject('GET', '/ai/jobs?limit=200', TOKENS.a)).json<{ jobs: Array<{ job_id: string }> }>().jobs.map((j) => j.job_id);
    expect(ids).toEqual(expect.arrayContaining(['before', 'after']));
  });
});

describe.skipIf(skip !== undefined)('a queue-core writer across Redis outages', () => {
  it('keeps writing through a restart and a SIGSTOP with the service profile; every acknowledged job survives', async () => {
    const server = await durableServer();
    const keys = new Keyspace('twriter');
    const admin = await adminClient(server.url);
    await new StateStore(admin, keys).transition({ from: Phase.Legacy, to: Phase.DualWrite, expectedEpoch: 0, fence: null, reason: 'test', settleMs: 600_000 });
    const client = await connectRedis({ url: server.url, profile: ConnectionProfile.Service, commandTimeoutMs: 1500, connectionName: 'test-writer' });
    cleanups.push(() => closeRedis(client));
    const queue = await RedisJobQueue.create(client, { keys });
    cleanups.push(() => queue.close());

    const acked: Array<{ id: string; at: number }> = [];
    let failures = 0;
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const id = `w-${i}`;
        try {
          await queue.enqueue({ workspaceId: 'ws-w', jobId: id, action: 'write', params: { i } });
          acked.push({ id, at: Date.now() });
        } catch {
          // Not acknowledged: the writer moves on (a real one would retry with backoff).
          failures += 1;
          await sleep(20);
        }
      }
    })();
    const ackedAfter = (t: number): Promise<number> => until('the writer acknowledges again', async () => acked.some((a) => a.at > t));

    await until('the writer is running', async () => acked.length >= 50);
    await server.kill('SIGTERM');
    const downAt = Date.now();
    await sleep(500);
    const failuresWhileDown = failures;
    await server.restart();
    const restartedAt = Date.now();
    const restartRecovery = await ackedAfter(restartedAt);
    figure('writer: restart (0.5 s down) → next acknowledged write', `${restartRecovery} ms after the server was back (${restartedAt - downAt} ms down)`);
    expect(failuresWhileDown).toBeGreaterThan(0);

    await until('the writer is running again', async () => acked.filter((a) => a.at > restartedAt).length >= 50);
    server.pause();
    await sleep(3000);
    server.resume();
    const resumedAt = Date.now();
    const stopRecovery = await ackedAfter(resumedAt);
    figure('writer: SIGSTOP 3 s → next acknowledged write after SIGCONT', `${stopRecovery} ms`);
    await until('the writer is running after SIGCONT', async () => acked.filter((a) => a.at > resumedAt).length >= 50);
    stop = true;
    await writer;
    figure('writer: acknowledged / failed writes', `${acked.length} / ${failures}`);

    // Nothing acknowledged is lost: each acked job has its primary record and its queue reference.
    const refs = new Set(await admin.lrange(keys.queue, 0, -1));
    const pipeline = admin.pipeline();
    for (const a of acked) pipeline.hget(keys.legacyJob(a.id), 'workspace_id');
    const owners = ((await pipeline.exec()) ?? []).map(([, v]) => v);
    const missing = acked.filter((a, i) => owners[i] !== 'ws-w' || !refs.has(`ws-w:${a.id}`)).map((a) => a.id);
    expect(missing).toEqual([]);
    // The writer's phase subscription came back too.
    expect(await subscribers(admin, keys.events)).toBe(1);
    expect(client.status).toBe('ready');
  });
});
