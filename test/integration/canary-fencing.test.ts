/**
 * A canary move by a run that lost its lock changes no routing (issue 12 with
 * the safety rules of issue 9). On a single node the overrides, the epoch and
 * the fence are one script; on a cluster the overrides hash is in another
 * slot, so its compare-and-set refuses past the run's lease deadline, and a
 * refused epoch step puts back exactly what the run changed (never an
 * override a newer run set since).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EpochConflictError, FencedError } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { LeaseLock } from '../../src/core/lock.js';
import { Phase } from '../../src/core/phase.js';
import type { RedisClient } from '../../src/core/redis.js';
import { StateStore, type WorkspaceTransitionOptions } from '../../src/core/state.js';
import { defaultWorkspaceState, readWorkspaceStates } from '../../src/core/workspaces.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, type Topology } from '../helpers/core-clients.js';
import { sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';

describe.each(TOPOLOGIES)('canary moves of a run that lost its lock on %s', (topology: Topology) => {
  const skip = topology === 'cluster' && !sharedClusterAvailable();
  let client: RedisClient;
  let keys: Keyspace;
  let store: StateStore;

  beforeAll(async () => {
    if (skip) return;
    client = await coreClient(topology);
    keys = new Keyspace(uniquePrefix(`canaryfence${topology}`));
    store = new StateStore(client, keys);
    await movePhase(client, keys, Phase.DualWrite, 100);
  });
  afterAll(async () => {
    vi.useRealTimers();
    if (!skip) await cleanupClient(client, keys.prefix);
  });

  const move = async (over: Partial<WorkspaceTransitionOptions>): Promise<void> => {
    const s = await store.read();
    await store.transitionWorkspaces({
      workspaces: ['ws-a', 'ws-b'],
      expected: { 'ws-a': null, 'ws-b': null },
      to: Phase.ReadNew,
      states: new Map(['ws-a', 'ws-b'].map((ws) => [ws, { ...defaultWorkspaceState(), changedAt: 42 }])),
      expectedEpoch: s.epoch,
      fence: null,
      reason: 'fencing test',
      ...over,
    });
  };
  const overrides = async (): Promise<Record<string, string>> => client.hgetall(keys.workspacePhases);

  it.skipIf(skip)('a stale fence: refused, no override and no workspace record left behind', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const stale = await LeaseLock.acquire(client, keys, { command: 'stale', ttlMs: 1000 });
    vi.useRealTimers();
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = await LeaseLock.acquire(client, keys, { command: 'fresh', ttlMs: 10_000 });
    try {
      const epoch = (await store.read()).epoch;
      await expect(move({ fence: stale.fence, leaseDeadlineMs: stale.deadlineMs })).rejects.toBeInstanceOf(FencedError);
      expect(await overrides()).toEqual({});
      expect((await readWorkspaceStates(client, keys, ['ws-a'])).get('ws-a')!.changedAt).not.toBe(42);
      expect((await store.read()).epoch).toBe(epoch);
      // The holder of the newest fence moves them.
      await move({ fence: fresh.fence, leaseDeadlineMs: fresh.deadlineMs });
      expect(await overrides()).toEqual({ 'ws-a': Phase.ReadNew, 'ws-b': Phase.ReadNew });
    } finally {
      await fresh.release();
      await stale.release();
    }
  });

  it.skipIf(skip)('an override that changed since the run looked: refused as a whole, nothing changed', async () => {
    const before = await overrides();
    const epoch = (await store.read()).epoch;
    // The run saw ws-a without an override; it is in read-new now.
    await expect(move({ to: Phase.NewOnly })).rejects.toBeInstanceOf(EpochConflictError);
    expect(await overrides()).toEqual(before);
    expect((await store.read()).epoch).toBe(epoch);
  });

  // Only a cluster writes the overrides apart from the epoch (a single node has one script).
  if (topology === 'cluster') {
    it.skipIf(skip)('cluster: past the lease deadline the overrides are not written at all', async () => {
      const before = await overrides();
      const [sec] = await client.time();
      await expect(
        move({ expected: { 'ws-a': Phase.ReadNew, 'ws-b': Phase.ReadNew }, to: Phase.NewOnly, leaseDeadlineMs: Number(sec) * 1000 - 5_000 }),
      ).rejects.toBeInstanceOf(FencedError);
      expect(await overrides()).toEqual(before);
    });

    it.skipIf(skip)('cluster: a refused epoch step puts back only its own change', async () => {
      const before = await overrides();
      const s = await store.read();
      // A stale epoch: the overrides' compare-and-set passes, the epoch step refuses, the overrides come back.
      await expect(move({ expected: { 'ws-a': Phase.ReadNew, 'ws-b': Phase.ReadNew }, to: Phase.NewOnly, expectedEpoch: s.epoch - 1 })).rejects.toBeInstanceOf(
        EpochConflictError,
      );
      expect(await overrides()).toEqual(before);
    });
  }
});
