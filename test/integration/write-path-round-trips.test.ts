/**
 * The single-node write path costs one round trip (issue 13 item 2,
 * docs/performance.md "Write path"): after warm-up, every enqueue and every
 * updateStatus sends exactly one command, an EVALSHA of write-job.lua, in each
 * phase. Counted with MONITOR on a real server, by the queue connection's own
 * address (the shared server carries other suites' traffic; commands a script
 * runs show as source "lua" and are not the client's).
 *
 * And a phase cache that is stale (no events, a 5-minute cache) still writes
 * the layout of the phase in force: write-job.lua routes by the phase it
 * reads, and the reply's newer epoch makes the queue re-read its cache.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Phase, PHASE_ORDER } from '../../src/core/phase.js';
import { readRecord } from '../../src/core/protocol.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { luaSource } from '../../src/core/scripts.js';
import { sleep, StateStore } from '../../src/core/state.js';
import { cleanupClient, movePhase } from '../helpers/core-clients.js';
import { sharedStandaloneUrl, uniquePrefix } from '../helpers/fixtures.js';

const WRITE_JOB_SHA = createHash('sha1').update(luaSource('write-job.lua')).digest('hex');
/** Settle window of these tests' state records: the phase cache outlives every test. */
const LONG_SETTLE_MS = 600_000;

interface Seen {
  source: string;
  args: string[];
}

/**
 * Records every command the server receives until stop(); stop() first waits until a marker from
 * another connection has come through. A raw socket rather than ioredis' monitor(): the stream of
 * MONITOR lines on a busy shared server confuses ioredis' reply queue (its connect-time commands).
 */
async function monitor(url: string): Promise<{ stop: () => Promise<Seen[]> }> {
  const { hostname, port } = new URL(url);
  const sock = net.connect(Number(port), hostname);
  await once(sock, 'connect');
  const seen: Seen[] = [];
  let buf = '';
  let started = false;
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\r\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      if (line === '+OK') started = true;
      // +<time> [<db> <source>] "cmd" "arg" ...
      const m = /^\+\S+ \[\d+ (\S+)\] (.*)$/.exec(line);
      if (!m) continue;
      const args = [...m[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((a) => a[1]!);
      seen.push({ source: m[1]!, args });
    }
  });
  sock.write('MONITOR\r\n');
  for (let i = 0; i < 500 && !started; i++) await sleep(10);
  if (!started) throw new Error('MONITOR did not start');
  return {
    stop: async () => {
      const marker = `end-of-window-${Math.random().toString(36).slice(2)}`;
      const probe = await connectRedis({ url });
      await probe.echo(marker);
      for (let i = 0; i < 500 && !seen.some((s) => s.args[0]?.toLowerCase() === 'echo' && s.args[1] === marker); i++) await sleep(10);
      await closeRedis(probe);
      sock.destroy();
      return seen;
    },
  };
}

/** `host:port` of a connection as the server names it (MONITOR's source). */
async function addressOf(client: RedisClient): Promise<string> {
  const info = String(await (client as Redis).client('INFO'));
  const m = /(?:^| )addr=(\S+)/.exec(info);
  if (!m) throw new Error(`no addr in CLIENT INFO: ${info}`);
  return m[1]!;
}

async function queueIn(url: string, keys: Keyspace, phase: Phase): Promise<{ client: RedisClient; queue: RedisJobQueue }> {
  const client = await connectRedis({ url });
  const store = new StateStore(client, keys);
  // A state record with a long settle window, then the phase (legacy: forward and back).
  await store.transition({ from: Phase.Legacy, to: Phase.DualWrite, expectedEpoch: 0, fence: null, settleMs: LONG_SETTLE_MS });
  await movePhase(client, keys, phase);
  // A long lease: no heartbeat falls inside the counted window.
  const queue = await RedisJobQueue.create(client, { keys, register: { leaseMs: LONG_SETTLE_MS, name: 'round-trip-test' } });
  return { client, queue };
}

describe('the single-node write path', () => {
  it.each(PHASE_ORDER)('%s: one EVALSHA of write-job.lua and no other command per enqueue and per update, after warm-up', async (phase) => {
    const url = sharedStandaloneUrl();
    const keys = new Keyspace(uniquePrefix(`rt${PHASE_ORDER.indexOf(phase)}`));
    const { client, queue } = await queueIn(url, keys, phase);
    try {
      expect((await queue.phase()).phase).toBe(phase);
      // Warm-up: the first call of a script on a server may be an EVAL after NOSCRIPT.
      const warm = await queue.enqueue({ workspaceId: 'ws-a', action: 'plan' });
      await queue.updateStatus('ws-a', warm.jobId, { status: 'running' });
      const me = await addressOf(client);

      const mon = await monitor(url);
      const jobs = [];
      for (let i = 0; i < 10; i++) jobs.push(await queue.enqueue({ workspaceId: i % 2 === 0 ? 'ws-a' : 'ws-b', action: 'plan', params: { i } }));
      for (const j of jobs) await queue.updateStatus(j.workspaceId, j.jobId, { status: 'succeeded', result: { ok: true } });
      const seen = (await mon.stop()).filter((s) => s.source === me);

      expect(seen.map((s) => [s.args[0]!.toLowerCase(), s.args[1], s.args[2]])).toEqual(Array.from({ length: 20 }, () => ['evalsha', WRITE_JOB_SHA, '7']));
      // Each call acted in this phase, and the writes happened (not refused).
      for (const j of jobs) expect(await queue.getJob(j.workspaceId, j.jobId)).toMatchObject({ status: 'succeeded', rev: 2, result: { ok: true } });
    } finally {
      await queue.close();
      await cleanupClient(client, keys.prefix);
    }
  });

  it('a stale phase cache (no events, a 5-minute cache) still writes the layout of the phase in force, and the queue then re-reads its phase', async () => {
    const url = sharedStandaloneUrl();
    const keys = new Keyspace(uniquePrefix('rtstale'));
    const client = await connectRedis({ url });
    const admin = await connectRedis({ url });
    const store = new StateStore(admin, keys);
    await store.transition({ from: Phase.Legacy, to: Phase.DualWrite, expectedEpoch: 0, fence: null, settleMs: LONG_SETTLE_MS });
    const queue = await RedisJobQueue.create(client, { keys, phase: { subscribe: false }, register: { leaseMs: LONG_SETTLE_MS } });
    try {
      const before = await queue.enqueue({ workspaceId: 'ws-a', action: 'plan' });
      await store.transition({ from: Phase.DualWrite, to: Phase.ReadNew, expectedEpoch: 1, fence: null });
      // The cache has not seen the flip: it would route to the legacy primary.
      expect(queue.watcher.peek()).toMatchObject({ phase: Phase.DualWrite, epoch: 1 });
      const me = await addressOf(client);
      const mon = await monitor(url);
      const job = await queue.enqueue({ workspaceId: 'ws-a', action: 'plan' });
      const updated = await queue.updateStatus('ws-a', before.jobId, { status: 'running' });
      const seen = (await mon.stop()).filter((s) => s.source === me);
      // One write-job call each. The rest is the background re-read the first reply set off (the
      // state record and the overrides) and the acknowledgement of epoch 2 (a heartbeat): never awaited by a write.
      const writes = seen.filter((s) => s.args[1] === WRITE_JOB_SHA);
      expect(writes.map((s) => s.args[0]!.toLowerCase())).toEqual(['evalsha', 'evalsha']);
      const heartbeatSha = createHash('sha1').update(luaSource('writer-heartbeat.lua')).digest('hex');
      for (const s of seen.filter((x) => x.args[1] !== WRITE_JOB_SHA)) {
        expect([s.args[0]!.toLowerCase(), s.args[1]]).toSatisfy(
          ([cmd, arg]: [string, string]) =>
            (cmd === 'hgetall' && (arg === keys.state || arg === keys.workspacePhases)) || (cmd === 'evalsha' && arg === heartbeatSha),
        );
      }

      // read-new: the v2 record is the primary, legacy the mirror, the reference is workspace-qualified.
      const v2 = await readRecord(client, keys.v2Job('ws-a', job.jobId));
      const legacy = await readRecord(client, keys.legacyJob(job.jobId));
      expect(v2.type).toBe('hash');
      expect(legacy.fields.map(String)).toEqual(v2.fields.map(String));
      expect(await client.zscore(keys.index('ws-a'), job.jobId)).not.toBeNull();
      expect(await client.lrange(keys.queue, -1, -1)).toEqual([`ws-a:${job.jobId}`]);
      // The update went to the v2 primary first (rev 2 there) and was mirrored to legacy.
      expect(updated).toMatchObject({ rev: 2, status: 'running' });
      const v2Before = await readRecord(client, keys.v2Job('ws-a', before.jobId));
      expect(v2Before.fields.map(String)).toEqual((await readRecord(client, keys.legacyJob(before.jobId))).fields.map(String));

      // The reply named epoch 2: the queue re-reads its phase without waiting for the cache to expire.
      let phase: string = '';
      for (let i = 0; i < 200 && phase !== Phase.ReadNew; i++) {
        await sleep(10);
        phase = queue.watcher.peek()?.phase ?? '';
      }
      expect(phase).toBe(Phase.ReadNew);
      await expect.poll(() => queue.registration?.acknowledged, { timeout: 5000 }).toBe(2);
    } finally {
      await queue.close();
      await closeRedis(admin);
      await cleanupClient(client, keys.prefix);
    }
  });
});
