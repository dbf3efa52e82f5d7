/**
 * Canaries (issue 12): 50 workspaces, two of them move ahead of the global
 * phase with their own gates, while live writers write in every workspace.
 * Checked with a ledger at each step: no acknowledged write is lost, each
 * workspace reads from the path its phase says, a canary's cleanup deletes
 * exactly its legacy keys, its rollback restores them byte for byte, and the
 * workspaces no step touched keep every key byte-identical.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Layout, Phase } from '../../src/core/phase.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import type { RedisClient } from '../../src/core/redis.js';
import { phaseOf } from '../../src/core/state.js';
import { target } from '../helpers/cli.js';
import { cleanupClient, coreClient, TOPOLOGIES, topologyUrl, type Topology } from '../helpers/core-clients.js';
import { canonicalRecords } from '../helpers/fault-helpers.js';
import { sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';
import { scanAll } from '../helpers/lifecycle.js';
import { startRealApi, TOKENS } from './api-helpers.js';
import { cli, readState } from './safety-helpers.js';

const WORKSPACES = Array.from({ length: 50 }, (_, i) => `ws-${String(i).padStart(2, '0')}`);
// The API's test tokens name ws-a and ws-b: ws-a is a canary, ws-b is not.
const CANARIES = ['ws-a', 'ws-01'];
/** Workspaces no writer touches: their keys must come out byte-identical. */
const FROZEN = ['ws-02', 'ws-03', 'ws-04'];
const ALL = [...WORKSPACES, 'ws-a', 'ws-b'];
const JOBS_PER_WS = 6;

/** Acknowledged writes: the last status each job was given (the truth a reader must see). */
class Ledger {
  readonly last = new Map<string, { ws: string; status: string }>();
  failures = 0;
}

/** Live writers: create and update jobs in every workspace but the frozen ones, through the queue core. */
function startWriters(queue: RedisJobQueue, ledger: Ledger): { stop: () => Promise<void> } {
  let running = true;
  const active = ALL.filter((ws) => !FROZEN.includes(ws));
  const loop = async (n: number): Promise<void> => {
    let i = 0;
    while (running) {
      const ws = active[(n * 7 + i++) % active.length]!;
      try {
        if (i % 3 === 0) {
          const job = await queue.enqueue({ workspaceId: ws, action: 'live', params: { n: i } });
          ledger.last.set(job.jobId, { ws, status: 'queued' });
        } else {
          const own = [...ledger.last.entries()].filter(([, v]) => v.ws === ws);
          const pick = own[i % Math.max(1, own.length)];
          if (pick) {
            const status = i % 2 === 0 ? 'running' : 'succeeded';
            await queue.updateStatus(ws, pick[0], { status });
            ledger.last.set(pick[0], { ws, status });
          }
        }
      } catch {
        ledger.failures++;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const loops = [loop(1), loop(2), loop(3)];
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Every acknowledged write is what its owner reads now, through the phase-following queue. */
async function checkLedger(queue: RedisJobQueue, ledger: Ledger): Promise<void> {
  await queue.refreshPhase();
  for (const [jobId, { ws, status }] of ledger.last) {
    const job = await queue.getJob(ws, jobId);
    expect(job?.status, `${ws}/${jobId}`).toBe(status);
  }
}

/** Every key (both layouts, the index) of some workspaces, as canonical text. */
async function snapshot(client: RedisClient, keys: Keyspace, workspaces: string[]): Promise<Map<string, string | null>> {
  const legacy = await scanAll(client, keys.legacyPattern);
  const owners = await Promise.all(legacy.map((k) => client.hget(k, 'workspace_id')));
  const mine = legacy.filter((_, i) => workspaces.includes(owners[i] ?? ''));
  const v2 = (await Promise.all(workspaces.map((ws) => scanAll(client, keys.v2Pattern(ws))))).flat();
  const out = await canonicalRecords(client, [...mine, ...v2].sort());
  for (const ws of workspaces) out.set(keys.index(ws), JSON.stringify(await client.zrange(keys.index(ws), 0, -1, 'WITHSCORES')));
  return out;
}

async function legacyKeysOf(client: RedisClient, keys: Keyspace, ws: string): Promise<string[]> {
  const legacy = await scanAll(client, keys.legacyPattern);
  const owners = await Promise.all(legacy.map((k) => client.hget(k, 'workspace_id')));
  return legacy.filter((_, i) => owners[i] === ws);
}

describe.each(TOPOLOGIES)('canaries on %s', (topology: Topology) => {
  const skip = topology === 'cluster' && !sharedClusterAvailable();
  let client: RedisClient;
  let keys: Keyspace;
  let prefix: string;
  let args: string[];
  let queue: RedisJobQueue;

  beforeAll(async () => {
    if (skip) return;
    client = await coreClient(topology);
    prefix = uniquePrefix(`canary${topology}`);
    keys = new Keyspace(prefix);
    const { url, cluster } = topologyUrl(topology);
    args = target(url, prefix, cluster);
    queue = await RedisJobQueue.create(client, { keys, register: { leaseMs: 3000, name: 'canary-test' } });
    for (const ws of ALL) for (let j = 0; j < JOBS_PER_WS; j++) await queue.enqueue({ workspaceId: ws, action: 'seed', params: { j } });
  });
  afterAll(async () => {
    if (skip) return;
    await queue.close();
    await cleanupClient(client, prefix);
  });

  it.skipIf(skip)('two canaries flip, clean up and roll back on their own; the other 50 follow the global phase; nothing is lost', async () => {
    const ledger = new Ledger();
    await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'canary test']);
    await cli([...args, 'backfill']);
    const writers = startWriters(queue, ledger);
    try {
      const frozenBefore = await snapshot(client, keys, FROZEN);

      // A canary flip is gated on a verify that covered it.
      const refused = await cli([...args, 'flip-read', '--workspace', CANARIES.join(','), '--reason', 'canary'], 3);
      expect(refused.stderr).toMatch(/no verify has covered workspace ws-a/);
      // A sampled check is no evidence: the gate stays closed.
      await cli([...args, 'verify', '--workspace', CANARIES.join(','), '--sample', '0.5', '--round-delay', '100ms']);
      await cli([...args, 'flip-read', '--workspace', CANARIES.join(','), '--reason', 'canary'], 3);
      await cli([...args, 'verify', '--workspace', CANARIES.join(','), '--round-delay', '100ms']);
      const flip = await cli([...args, '--json', 'flip-read', '--workspace', CANARIES.join(','), '--reason', 'CHG canary']);
      expect(flip.json).toMatchObject({ workspaces: CANARIES, from: 'dual-write', to: 'read-new' });
      let state = await readState(client, keys);
      expect(state.phase).toBe(Phase.DualWrite);
      for (const ws of CANARIES) expect(phaseOf(state, ws)).toBe(Phase.ReadNew);
      expect(phaseOf(state, 'ws-b')).toBe(Phase.DualWrite);

      // Reads: v2 for exactly the canaries, legacy for everyone else (queue core and API).
      await queue.refreshPhase();
      for (const ws of ALL) expect((await queue.listJobs(ws, { limit: 5 })).readPath, ws).toBe(CANARIES.includes(ws) ? Layout.V2 : Layout.Legacy);
      const api = await startRealApi({ name: 'canary', ...(topology === 'cluster' ? { cluster: true } : {}), env: { ORCH_PREFIX: prefix } });
      try {
        const a = await api.inject('GET', '/ai/jobs?limit=3', TOKENS.a);
        const b = await api.inject('GET', '/ai/jobs?limit=3', TOKENS.b);
        expect(a.headers['x-read-path']).toBe('v2');
        expect(b.headers['x-read-path']).toBe('legacy');
        expect(a.json().jobs.length).toBeGreaterThan(0);
      } finally {
        await api.close();
      }

      // A global verify still passes with canaries ahead (their v2 is the primary now).
      await cli([...args, 'verify', '--round-delay', '100ms']);

      // Cleanup of one canary: exactly its legacy keys go, nothing else. Writers keep
      // creating jobs meanwhile, so "nothing else" is: every other key that existed survives.
      const [canary] = CANARIES as [string, string];
      await cli([...args, 'verify', '--workspace', canary, '--round-delay', '100ms']);
      const canaryBefore = await legacyKeysOf(client, keys, canary);
      const othersBefore = (await scanAll(client, keys.legacyPattern)).filter((k) => !canaryBefore.includes(k));
      const clean = await cli([...args, '--json', 'cleanup', '--workspace', canary, '--execute', '--min-soak', '0s', '--reason', 'canary cleanup']);
      expect(clean.json).toMatchObject({ workspaces: [canary], kept: 0, complete: true });
      expect(await legacyKeysOf(client, keys, canary)).toEqual([]);
      const deleted = clean.json!.deleted as number;
      // At least the keys it saw before; more only if writers created canary jobs before its new-only took effect.
      expect(deleted).toBeGreaterThanOrEqual(canaryBefore.length);
      expect(await client.zcard(keys.index(canary))).toBeGreaterThanOrEqual(deleted);
      const legacyAfter = new Set(await scanAll(client, keys.legacyPattern));
      expect(othersBefore.filter((k) => !legacyAfter.has(k))).toEqual([]);
      state = await readState(client, keys);
      expect(phaseOf(state, canary)).toBe(Phase.NewOnly);
      // A global rollback below a canary in new-only is refused, even forced.
      await cli([...args, 'rollback', '--execute', '--force', 'workspaces', '--reason', 'too early'], 3);

      // Rollback of that canary, after its cleanup: its legacy records come back, equal to v2 byte for byte.
      const rb = await cli([...args, '--json', 'rollback', '--workspace', canary, '--execute', '--reason', 'canary rollback']);
      expect(rb.json).toMatchObject({ workspaces: [canary], from: 'new-only', to: 'read-new', legacyComplete: { [canary]: true } });
      // Writers ran through the rollback; the comparison needs them quiet.
      await writers.stop();
      const v2Keys = await scanAll(client, keys.v2Pattern(canary));
      const restored = await legacyKeysOf(client, keys, canary);
      expect(restored.length).toBe(v2Keys.length);
      const legacyRecords = await canonicalRecords(client, restored);
      const v2Records = await canonicalRecords(
        client,
        restored.map((k) => keys.v2Job(canary, keys.parseLegacy(k)!)),
      );
      for (const k of restored) expect(legacyRecords.get(k), k).toBe(v2Records.get(keys.v2Job(canary, keys.parseLegacy(k)!)));
      expect(await snapshot(client, keys, FROZEN)).toEqual(frozenBefore);
      await checkLedger(queue, ledger);
      expect(ledger.failures).toBe(0);

      // Then the global flip and cleanup finish the rest; the overrides they caught up with are gone.
      await cli([...args, 'verify', '--round-delay', '100ms']);
      await cli([...args, 'flip-read', '--reason', 'global flip']);
      await cli([...args, 'verify', '--round-delay', '100ms']);
      await cli([...args, 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'global cleanup']);
      state = await readState(client, keys);
      expect(state.phase).toBe(Phase.NewOnly);
      expect(Object.keys(state.overrides)).toEqual([]);
      expect(await scanAll(client, keys.legacyPattern)).toEqual([]);
      await checkLedger(queue, ledger);
    } finally {
      await writers.stop();
    }
  });
});
