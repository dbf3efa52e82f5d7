/**
 * Issue 9, item 7: writers that hold a stale phase.
 *
 *  - Single node, through a TCP proxy that holds one writer's traffic (a GC
 *    pause or a slow network): the writer's commands are held across
 *    `flip-read` and `cleanup --execute`, then delivered. The write script reads
 *    the phase itself, so every acknowledged write ends up in v2, no legacy key
 *    comes back after cleanup, and no write fails.
 *  - Registration and acknowledgement (both topologies): a live writer that
 *    does not acknowledge a new epoch makes the transition exit 3 naming it and
 *    closes the `writers` gate of the next step; an entry whose heartbeat is
 *    older than its lease is ignored; `status --json` lists writers; an idle
 *    registered writer acknowledges promptly.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { jobFromHash } from '../../src/core/job.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { callScript, ScriptName } from '../../src/core/scripts.js';
import { target } from '../helpers/cli.js';
import { cleanupClient, coreClient, TOPOLOGIES, topologyUrl, type Topology } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { scanKeys, seedLegacy } from './backfill-helpers.js';
import { cli, readState, waitFor } from './safety-helpers.js';

/** The last acknowledged write of each job: its rev and what it set. */
interface Acked {
  workspaceId: string;
  rev: number;
  status: string;
  result: string;
}

describe('a writer held across flip-read and cleanup --execute (single node, TCP proxy)', () => {
  const servers: RedisServerHandle[] = [];
  const proxies: TcpProxy[] = [];
  afterAll(async () => {
    for (const p of proxies) await p.close();
    await Promise.all(servers.map((s) => s.stop()));
  });

  it('every acknowledged write is in v2, no legacy key comes back after cleanup, no write fails', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const proxy = await TcpProxy.start({ host: server.host, port: server.port });
    proxies.push(proxy);
    const admin = await connectRedis({ url: server.url });
    const keys = new Keyspace(uniquePrefix('heldwriter'));
    const args = target(server.url, keys.prefix);
    // The writer reaches Redis only through the proxy; its commands must outlive the hold.
    const wclient = await connectRedis({ url: proxy.url, commandTimeoutMs: 120_000 });
    let q: RedisJobQueue | null = null;
    try {
      const seeded = await seedLegacy(admin, keys, 200);
      await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'held writer test']);
      await cli([...args, 'backfill']);
      await cli([...args, 'verify', '--round-delay', '50ms']);

      q = await RedisJobQueue.create(wclient, { keys, register: { leaseMs: 1000, name: 'held-writer' } });
      const queue = q;
      const acked = new Map<string, Acked>();
      const failures: unknown[] = [];
      let seq = 0;
      let acks = 0;
      let stop = false;
      const record = (job: { jobId: string; workspaceId: string; rev: number; status: string; result: unknown }): void => {
        acks++;
        const prev = acked.get(job.jobId);
        if (!prev || job.rev > prev.rev)
          acked.set(job.jobId, { workspaceId: job.workspaceId, rev: job.rev, status: job.status, result: JSON.stringify(job.result) });
      };
      const known = seeded.map((j) => ({ jobId: j.jobId, workspaceId: j.workspaceId }));
      const writeOnce = async (): Promise<void> => {
        const n = seq++;
        try {
          if (n % 3 === 0) {
            const job = await queue.enqueue({ workspaceId: `ws-${n % 4}`, jobId: `live-${n}`, action: 'live', params: { n } });
            record(job);
            known.push({ jobId: job.jobId, workspaceId: job.workspaceId });
          } else {
            const target = known[(n * 7919) % known.length]!;
            record(await queue.updateStatus(target.workspaceId, target.jobId, { status: n % 2 === 0 ? 'running' : 'succeeded', result: { n } }));
          }
        } catch (err) {
          failures.push(err);
        }
      };
      // Two loops, so that writes are in flight whenever the hold comes.
      const loop = async (): Promise<void> => {
        while (!stop) await writeOnce();
      };
      const loops = [loop(), loop()];
      await waitFor('live writes under way', () => acked.size >= 40);

      proxy.hold();
      const acksAtHold = acks;
      // One more write, certainly in flight and held (its bytes reach the proxy, not Redis).
      const held = writeOnce();
      await waitFor('the held write to reach the proxy', () => proxy.bufferedFromClients > 0);

      // Meanwhile the operator moves on, talking to Redis directly. The held writer cannot
      // heartbeat: once its 1 s lease runs out it is dead and no transition waits for it.
      await cli([...args, 'flip-read', '--reason', 'held writer test']);
      await cli([...args, 'verify', '--round-delay', '50ms']);
      await cli([...args, 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'held writer test: short soak']);
      expect(await readState(admin, keys)).toMatchObject({ phase: 'new-only', legacyComplete: false });
      expect(await scanKeys(admin, keys.legacyPattern)).toEqual([]);
      // The writer stayed held: at most the replies already on their way when the hold began got through.
      expect(acks - acksAtHold, 'acknowledgements during the hold').toBeLessThanOrEqual(2);

      // The writer wakes up still believing in dual-write, and its held commands arrive.
      proxy.release();
      await held;
      const after = seq;
      await waitFor('writes after the release', () => seq >= after + 30);
      stop = true;
      await Promise.all(loops);

      expect(failures, 'no write failed').toEqual([]);
      // Not one legacy key re-created: the scripts routed the late writes by the phase in force (new-only).
      expect(await scanKeys(admin, keys.legacyPattern)).toEqual([]);
      // Every acknowledged write is in v2: the record holds the last acknowledged rev and what it wrote.
      const wrong: string[] = [];
      for (const [jobId, a] of acked) {
        const hash = await admin.hgetall(keys.v2Job(a.workspaceId, jobId));
        const v2 = Object.keys(hash).length === 0 ? null : jobFromHash(hash);
        if (v2 === null || v2.rev !== a.rev || v2.status !== a.status || JSON.stringify(v2.result) !== a.result) {
          wrong.push(`${jobId}: v2 ${v2 === null ? 'missing' : `rev ${v2.rev} ${v2.status}`}, acknowledged rev ${a.rev} ${a.status}`);
        }
      }
      expect(acked.size).toBeGreaterThan(40);
      expect(wrong.slice(0, 10)).toEqual([]);
      // And the writer caught up: its heartbeat names the new-only epoch again.
      const epoch = (await readState(admin, keys)).epoch;
      await waitFor('the writer to acknowledge new-only', () => queue.registration!.acknowledged === epoch);
      const st = await cli([...args, '--json', 'status']);
      const writers = (st.json as { writers: Array<{ name: string; epoch: number; live: boolean }> }).writers;
      expect(writers.filter((w) => w.name === 'held-writer').map((w) => [w.epoch, w.live])).toEqual([[epoch, true]]);
    } finally {
      await q?.close();
      await closeRedis(wclient);
      await closeRedis(admin);
    }
  });
});

/** Writes a heartbeat entry as a registered process would (server time as `at`). */
async function heartbeat(client: RedisClient, keys: Keyspace, id: string, epoch: number, leaseMs: number, name: string): Promise<void> {
  await callScript<number>(client, ScriptName.WriterHeartbeat, [keys.writers, id, epoch, leaseMs, 'test-host', 4242, name]);
}

interface StatusWriter {
  id: string;
  name: string;
  epoch: number;
  live: boolean;
}

describe.each(TOPOLOGIES)('writer registration and acknowledgement on %s', (topology: Topology) => {
  it('a live writer that does not acknowledge: flip-read --ack-timeout 1s exits 3 naming it and the next step is refused; a dead entry is ignored; status --json lists writers', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`ack${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      await seedLegacy(client, keys, 20);
      await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'ack test']);
      await cli([...args, 'backfill']);
      await cli([...args, 'verify', '--round-delay', '50ms']);

      // A dead entry: its last heartbeat is three leases old. It is pruned only after ten leases
      // (100 s), so a CLI slow to start on a loaded machine still sees it, as dead.
      const now = Number((await client.time())[0]) * 1000;
      await client.hset(
        keys.writers,
        'dead-writer',
        JSON.stringify({ epoch: 0, at: now - 30_000, lease_ms: 10_000, host: 'gone', pid: 1, name: 'dead-writer' }),
      );
      // A stuck one: heartbeating (fresh `at`, long lease) but acting on epoch 1 forever.
      await heartbeat(client, keys, 'stuck-writer-id', 1, 120_000, 'stuck-writer');
      const st = await cli([...args, '--json', 'status']);
      const listed = (st.json as { writers: StatusWriter[] }).writers;
      expect(listed.map((w) => [w.name, w.epoch, w.live])).toEqual([
        ['dead-writer', 0, false],
        ['stuck-writer', 1, true],
      ]);

      // The gate before the move is open (both live entries are at epoch 1; the dead one does not count) ...
      const flip = await cli([...args, '--json', '--ack-timeout', '1s', 'flip-read', '--reason', 'ack test'], 3);
      // ... but after the move the stuck writer never acknowledges epoch 2.
      expect(flip.stderr).toMatch(/stuck-writer/);
      expect(flip.stderr).toMatch(/epoch 2/);
      expect(flip.stderr).not.toMatch(/dead-writer/);
      expect(flip.json).toMatchObject({ ok: false, exitCode: 3 });
      expect(await readState(client, keys)).toMatchObject({ phase: 'read-new', epoch: 2 });
      const history = await client.xrevrange(keys.history, '+', '-', 'COUNT', 20);
      expect(history.some(([, f]) => f[1] === 'ack-timeout')).toBe(true);

      // The next steps are refused while it lags: cleanup's writers gate, backfill's wait for acknowledgements.
      await cli([...args, 'verify', '--round-delay', '50ms']);
      const clean = await cli([...args, '--json', 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'ack test'], 3);
      expect(clean.json).toMatchObject({ ok: false, exitCode: 3 });
      expect(clean.stderr).toMatch(/stuck-writer/);
      await cli([...args, '--ack-timeout', '1s', 'backfill'], 3);
      expect(await readState(client, keys)).toMatchObject({ phase: 'read-new', epoch: 2 });

      // Once it acknowledges, the step goes through; the dead entry never mattered.
      await heartbeat(client, keys, 'stuck-writer-id', 2, 120_000, 'stuck-writer');
      await cli([...args, '--ack-timeout', '1s', 'backfill']);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });

  it('an idle registered writer acknowledges a transition at once (it is told by the events channel), and stops being listed when it closes', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`idle${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    const wclient = await coreClient(topology);
    let q: RedisJobQueue | null = null;
    try {
      q = await RedisJobQueue.create(wclient, { keys, register: { leaseMs: 3000, name: 'idle-writer' } });
      await q.enqueue({ workspaceId: 'ws-a', jobId: 'before-1', action: 'x', params: {} });
      // No writes from here on: an API process with no traffic, a worker waiting for work.
      await cli([...args, '--ack-timeout', '5s', 'enable-dual-write', '--settle-ms', '100', '--reason', 'idle writer test']);
      const st = await cli([...args, '--json', 'status']);
      expect((st.json as { writers: StatusWriter[] }).writers.map((w) => [w.name, w.epoch, w.live])).toEqual([['idle-writer', 1, true]]);
      await cli([...args, '--ack-timeout', '5s', 'rollback', '--execute', '--reason', 'idle writer test']);
      expect(q.registration!.acknowledged).toBe(2);

      await q.close();
      q = null;
      const gone = await cli([...args, '--json', 'status']);
      expect((gone.json as { writers: StatusWriter[] }).writers).toEqual([]);
    } finally {
      await q?.close();
      await closeRedis(wclient);
      await cleanupClient(client, keys.prefix);
    }
  });

  it('the writers gate: a live writer behind the current epoch refuses the next transition before anything moves; --force writers overrides it alone', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`wgate${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'writers gate test']);
      await cli([...args, 'verify', '--round-delay', '50ms']);
      await heartbeat(client, keys, 'behind-id', 0, 120_000, 'behind-writer');
      const r = await cli([...args, '--json', 'flip-read', '--reason', 'writers gate test'], 3);
      expect(r.stderr).toMatch(/behind-writer/);
      expect(r.stderr).toMatch(/--force writers/);
      expect(await readState(client, keys)).toMatchObject({ phase: 'dual-write', epoch: 1 });
      // Forcing another gate does not force this one.
      await cli([...args, 'flip-read', '--force', 'verify', '--reason', 'writers gate test'], 3);
      expect(await readState(client, keys)).toMatchObject({ phase: 'dual-write', epoch: 1 });
      await cli([...args, 'flip-read', '--force', 'writers', '--reason', 'writers gate test: that process is being replaced']);
      expect(await readState(client, keys)).toMatchObject({ phase: 'read-new', epoch: 2 });
      const history = await client.xrevrange(keys.history, '+', '-', 'COUNT', 20);
      expect(history.some(([, f]) => f[1] === 'force' && f[7]!.includes('"writers"'))).toBe(true);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});
