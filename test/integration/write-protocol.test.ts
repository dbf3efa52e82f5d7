/**
 * The write protocol under concurrency (issue 2 acceptance): several writers
 * update the same jobs at random through RedisJobQueue while the phase moves
 * legacy → dual-write → read-new (with a copier doing what backfill does) →
 * new-only. Until new-only every record must be identical in both layouts
 * (fields as bytes, rev, expiry, index), and no acknowledged write may be lost.
 * Repeated with every writer's phase cache deliberately stale for settle_ms.
 */
import { describe, expect, it } from 'vitest';
import type { Job } from '../../src/core/job.js';
import { createdAtScore } from '../../src/core/job.js';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { applyIfNewer, readSnapshot, snapshotField, type Snapshot } from '../../src/core/protocol.js';
import { masterNodes, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { sleep, StateStore } from '../../src/core/state.js';
import { cleanupClient, coreClient, TOPOLOGIES } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';

const SETTLE_MS = 300;
const WRITERS = 5;
const WORKSPACES = ['ws-a', 'ws-b', 'ws-c', 'ws-d'];

interface Ack {
  rev: number;
  status: string;
  result: unknown;
  updatedAt: string;
}

/** Every acknowledged write, per job. */
class Ledger {
  readonly jobs = new Map<string, { ws: string; acks: Ack[] }>();
  record(job: Job): void {
    const id = job.jobId;
    let e = this.jobs.get(id);
    if (!e) this.jobs.set(id, (e = { ws: job.workspaceId, acks: [] }));
    e.acks.push({ rev: job.rev, status: job.status, result: job.result, updatedAt: job.updatedAt });
  }
  ids(): string[] {
    return [...this.jobs.keys()];
  }
}

/** Writers that can be paused at a safe point (no write in flight). */
class WriterPool {
  private stopped = false;
  private paused = false;
  private idle = 0;
  private resumeWaiters: Array<() => void> = [];
  readonly errors: unknown[] = [];
  writes = 0;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly queues: RedisJobQueue[],
    private readonly ledger: Ledger,
  ) {}

  start(): void {
    this.loops = this.queues.map((q, w) => this.loop(q, w));
  }

  private async loop(q: RedisJobQueue, w: number): Promise<void> {
    let n = 0;
    while (!this.stopped) {
      if (this.paused) {
        this.idle++;
        await new Promise<void>((r) => this.resumeWaiters.push(r));
        this.idle--;
        continue;
      }
      try {
        const ids = this.ledger.ids();
        if (ids.length < 60 || Math.random() < 0.15) {
          const ws = WORKSPACES[Math.floor(Math.random() * WORKSPACES.length)]!;
          this.ledger.record(await q.enqueue({ workspaceId: ws, action: 'plan', params: { w, n, api_key: 'sk_live_x' } }));
        } else {
          // Few hot jobs, so writers collide on the same records often.
          const id = ids[Math.floor(Math.random() * Math.min(ids.length, 40))]!;
          const ws = this.ledger.jobs.get(id)!.ws;
          const status = ['running', 'succeeded', 'failed'][n % 3] as 'running';
          this.ledger.record(await q.updateStatus(ws, id, { status, result: { w, n, bytes: 'héllo ☃' } }));
        }
        this.writes++;
        n++;
      } catch (err) {
        this.errors.push(err);
      }
    }
  }

  async pause(): Promise<void> {
    this.paused = true;
    while (this.idle < this.queues.length) await sleep(5);
  }

  resume(): void {
    this.paused = false;
    this.resumeWaiters.splice(0).forEach((r) => r());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.resume();
    await Promise.all(this.loops);
  }
}

/** What backfill does: every legacy record copied into v2 with apply-if-newer. */
async function copier(client: RedisClient, keys: Keyspace): Promise<number> {
  let copied = 0;
  for (const node of masterNodes(client)) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', keys.legacyPattern, 'COUNT', 200);
      cursor = next;
      for (const key of found) {
        const snap = await readSnapshot(client, key);
        const jobId = keys.parseLegacy(key);
        if (!snap || !jobId) continue;
        const ws = snapshotField(snap, 'workspace_id')!.toString();
        await applyIfNewer(client, keys.v2Job(ws, jobId), snap, {
          key: keys.index(ws),
          score: createdAtScore(snapshotField(snap, 'created_at')),
          member: jobId,
        });
        copied++;
      }
    } while (cursor !== '0');
  }
  return copied;
}

function fieldMap(s: Snapshot | null): Map<string, string> {
  const m = new Map<string, string>();
  if (!s) return m;
  for (let i = 0; i + 1 < s.fields.length; i += 2) m.set(s.fields[i]!.toString('hex'), s.fields[i + 1]!.toString('hex'));
  return m;
}

/** The stored record equals the newest acknowledged write (one of them, when a settle-window tie happened). */
function expectMatchesLedger(id: string, snap: Snapshot | null, ledger: Ledger): void {
  const entry = ledger.jobs.get(id)!;
  expect(snap, `job ${id} missing`).not.toBeNull();
  const maxRev = Math.max(...entry.acks.map((a) => a.rev));
  expect(snap!.rev, `job ${id} rev`).toBe(maxRev);
  const stored = {
    status: snapshotField(snap!, 'status')!.toString(),
    updatedAt: snapshotField(snap!, 'updated_at')!.toString(),
    result: snapshotField(snap!, 'result')!.toString(),
  };
  const candidates = entry.acks.filter((a) => a.rev === maxRev);
  const match = candidates.some(
    (a) => a.status === stored.status && a.updatedAt === stored.updatedAt && (a.result === null ? '' : JSON.stringify(a.result)) === stored.result,
  );
  expect(match, `job ${id}: stored ${JSON.stringify(stored)} is none of the acks at rev ${maxRev}`).toBe(true);
}

async function expectLayoutsIdentical(client: RedisClient, keys: Keyspace, ledger: Ledger): Promise<void> {
  for (const [id, { ws }] of ledger.jobs) {
    const [legacy, v2] = await Promise.all([readSnapshot(client, keys.legacyJob(id)), readSnapshot(client, keys.v2Job(ws, id))]);
    expect(v2, `v2 copy of ${id}`).not.toBeNull();
    expect(fieldMap(v2), `fields of ${id}`).toEqual(fieldMap(legacy));
    expect(v2!.rev).toBe(legacy!.rev);
    expect(v2!.pexpireAt).toBe(legacy!.pexpireAt);
    expect(await client.zscore(keys.index(ws), id), `index entry of ${id}`).not.toBeNull();
    expectMatchesLedger(id, legacy, ledger);
  }
}

describe.each(TOPOLOGIES)('write protocol under concurrency on %s', (topology) => {
  it.each([
    ['fresh phase (events channel, cache settle_ms/2)', false],
    ['every writer cached stale for settle_ms', true],
  ])('%s: layouts stay identical and no acknowledged write is lost', async (_label, stale) => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix('proto');
    const keys = new Keyspace(prefix);
    const store = new StateStore(client, keys);
    const queues: RedisJobQueue[] = [];
    try {
      for (let i = 0; i < WRITERS; i++) {
        queues.push(await RedisJobQueue.create(client, { keys, phase: stale ? { subscribe: false, maxCacheMs: SETTLE_MS } : {} }));
      }
      const ledger = new Ledger();
      const pool = new WriterPool(queues, ledger);
      pool.start();
      await sleep(300);

      const move = async (from: Phase, to: Phase): Promise<void> => {
        const s = await store.read();
        expect(s.phase).toBe(from);
        await store.transition({ from, to, expectedEpoch: s.epoch, fence: null, reason: 'concurrency test', settleMs: SETTLE_MS });
        await store.waitForSettle(await store.read());
      };

      await move(Phase.Legacy, Phase.DualWrite);
      const copied = await copier(client, keys);
      expect(copied).toBeGreaterThan(0);
      await sleep(400);
      await move(Phase.DualWrite, Phase.ReadNew);
      await sleep(400);

      await pool.pause();
      expect(pool.errors).toEqual([]);
      await expectLayoutsIdentical(client, keys, ledger);
      const writesBeforeNewOnly = pool.writes;
      pool.resume();

      await move(Phase.ReadNew, Phase.NewOnly);
      await sleep(300);
      await pool.stop();
      expect(pool.errors).toEqual([]);
      expect(pool.writes).toBeGreaterThan(writesBeforeNewOnly);
      expect(ledger.jobs.size).toBeGreaterThan(60);
      for (const [id, { ws }] of ledger.jobs) expectMatchesLedger(id, await readSnapshot(client, keys.v2Job(ws, id)), ledger);
    } finally {
      await Promise.all(queues.map((q) => q.close()));
      await cleanupClient(client, prefix);
    }
  });
});
