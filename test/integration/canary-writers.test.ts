/**
 * Canary overrides flipping under live writers (issue 12), through the queue
 * core on a single node and on the cluster: one workspace's override moves
 * dual-write ⇄ read-new again and again while three registered writers create
 * and update jobs in it and in a workspace that follows the global phase.
 * After every move (once the writers acknowledged its epoch) each
 * acknowledged write is what its owner reads; at the end both layouts hold
 * every job identically (in dual-write and read-new both are written).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Layout, Phase } from '../../src/core/phase.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import type { RedisClient } from '../../src/core/redis.js';
import { phaseOf, StateStore } from '../../src/core/state.js';
import { defaultWorkspaceState } from '../../src/core/workspaces.js';
import { waitForAcks } from '../../src/core/writers.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, type Topology } from '../helpers/core-clients.js';
import { canonicalRecords } from '../helpers/fault-helpers.js';
import { sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';

const CANARY = 'ws-canary';
const FOLLOWER = 'ws-global';
const FLIPS = 8;

describe.each(TOPOLOGIES)('canary override flips under writers on %s', (topology: Topology) => {
  const skip = topology === 'cluster' && !sharedClusterAvailable();
  let client: RedisClient;
  let keys: Keyspace;
  let prefix: string;
  const queues: RedisJobQueue[] = [];

  beforeAll(async () => {
    if (skip) return;
    client = await coreClient(topology);
    prefix = uniquePrefix(`canaryflip${topology}`);
    keys = new Keyspace(prefix);
    await movePhase(client, keys, Phase.DualWrite, 100);
    for (let i = 0; i < 3; i++) queues.push(await RedisJobQueue.create(client, { keys, register: { leaseMs: 3000, name: `flip-writer-${i}` } }));
  });
  afterAll(async () => {
    if (skip) return;
    for (const q of queues) await q.close();
    await cleanupClient(client, prefix);
  });

  it.skipIf(skip)('every acknowledged write survives each move, and both layouts agree at the end', async () => {
    const store = new StateStore(client, keys);
    /** Acknowledged writes: job → [workspace, last marker ('queued' = created, not updated since), writer]. Each writer updates only its own jobs, so "last acknowledged" is well defined. */
    const ledger = new Map<string, [string, string, number]>();
    let running = true;
    let failures = 0;
    const writer = async (q: RedisJobQueue, n: number): Promise<void> => {
      for (let i = 0; running; i++) {
        const ws = (n + i) % 2 === 0 ? CANARY : FOLLOWER;
        try {
          const mine = [...ledger.entries()].filter(([, [w, , by]]) => w === ws && by === n);
          if (i % 3 === 0 || mine.length === 0) {
            const job = await q.enqueue({ workspaceId: ws, action: 'flip', params: { n, i } });
            ledger.set(job.jobId, [ws, 'queued', n]);
          } else {
            const [id] = mine[(i * 7) % mine.length]!;
            // A unique marker per write (in `error`: the status is an enum), so the last one is recognisable.
            const marker = `w${n}-${i}`;
            await q.updateStatus(ws, id, { status: 'running', error: marker });
            ledger.set(id, [ws, marker, n]);
          }
        } catch {
          failures++;
        }
        await new Promise((r) => setTimeout(r, 3));
      }
    };
    const loops = queues.map((q, n) => writer(q, n));

    const move = async (to: Phase | null): Promise<void> => {
      const s = await store.read();
      const res = await store.transitionWorkspaces({
        workspaces: [CANARY],
        expected: { [CANARY]: (s.overrides[CANARY] as Phase | undefined) ?? null },
        to,
        states: new Map([[CANARY, defaultWorkspaceState()]]),
        expectedEpoch: s.epoch,
        fence: null,
        reason: 'flip test',
      });
      await waitForAcks(client, keys, res.epoch, { timeoutMs: 20_000, serverTime: () => store.serverTime() });
    };
    const readBack = async (): Promise<string[]> => {
      const q = queues[0]!;
      await q.refreshPhase();
      const wrong: string[] = [];
      for (const [id, [ws]] of [...ledger.entries()].slice(-200)) {
        const job = await q.getJob(ws, id);
        if (job === null) wrong.push(`${ws}/${id} missing`);
      }
      return wrong;
    };

    try {
      for (let i = 0; i < FLIPS; i++) {
        await move(Phase.ReadNew);
        const s = await store.read();
        expect(phaseOf(s, CANARY)).toBe(Phase.ReadNew);
        expect(phaseOf(s, FOLLOWER)).toBe(Phase.DualWrite);
        expect((await queues[0]!.listJobs(CANARY, { limit: 1 })).readPath).toBe(Layout.V2);
        expect((await queues[0]!.listJobs(FOLLOWER, { limit: 1 })).readPath).toBe(Layout.Legacy);
        expect(await readBack()).toEqual([]);
        await move(null);
        expect(Object.keys((await store.read()).overrides)).toEqual([]);
        expect(await readBack()).toEqual([]);
      }
    } finally {
      running = false;
      await Promise.all(loops);
    }
    expect(failures).toBe(0);
    expect(ledger.size).toBeGreaterThan(20);

    // Both layouts written in both phases: every job is identical in each, with the acknowledged status.
    const ids = [...ledger.keys()];
    const legacy = await canonicalRecords(
      client,
      ids.map((id) => keys.legacyJob(id)),
    );
    const v2 = await canonicalRecords(
      client,
      ids.map((id) => keys.v2Job(ledger.get(id)![0], id)),
    );
    const differ = ids.filter((id) => legacy.get(keys.legacyJob(id)) === null || legacy.get(keys.legacyJob(id)) !== v2.get(keys.v2Job(ledger.get(id)![0], id)));
    expect(differ).toEqual([]);
    for (const [id, [ws, marker]] of ledger) {
      const job = await queues[1]!.getJob(ws, id);
      if (marker === 'queued') expect(job?.status, `${ws}/${id}`).toBe('queued');
      else expect(job?.error, `${ws}/${id}`).toBe(marker);
      expect(await client.zscore(keys.index(ws), id)).not.toBeNull();
    }
  });
});
