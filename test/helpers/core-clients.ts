/**
 * Clients made with the package's own connectRedis (scripts registered, bounded
 * retries), pointed at the harness' shared servers.
 */
import { connectRedis, closeRedis, type RedisClient } from '../../src/core/redis.js';
import { Keyspace } from '../../src/core/keys.js';
import { Phase, PHASE_ORDER } from '../../src/core/phase.js';
import { StateStore } from '../../src/core/state.js';
import { deleteKeysWithPrefix, sharedClusterNodes, sharedStandaloneUrl } from './fixtures.js';

/** The two topologies every Redis integration suite runs on. */
export const TOPOLOGIES = ['standalone', 'cluster'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

/** URL and cluster flag of a shared topology (what the CLI's --redis-url/--cluster get). */
export function topologyUrl(topology: Topology): { url: string; cluster: boolean } {
  if (topology === 'standalone') return { url: sharedStandaloneUrl(), cluster: false };
  const n = sharedClusterNodes()[0]!;
  return { url: `redis://${n.host}:${n.port}`, cluster: true };
}

/** A core client on a shared topology. */
export function coreClient(topology: Topology): Promise<RedisClient> {
  const { url, cluster } = topologyUrl(topology);
  return connectRedis({ url, cluster, commandTimeoutMs: 10_000 });
}

/** Removes a test's keys and closes the client. */
export async function cleanupClient(client: RedisClient, prefix: string): Promise<void> {
  await deleteKeysWithPrefix(client, prefix);
  await closeRedis(client);
}

/**
 * Moves the state record to `target` one step at a time, forwards or backwards,
 * as the operators' commands would (no lock: fence null).
 */
export async function movePhase(client: RedisClient, keys: Keyspace, target: Phase, settleMs?: number): Promise<void> {
  const store = new StateStore(client, keys);
  for (let guard = 0; guard < 8; guard++) {
    const s = await store.read();
    if (s.phase === target) return;
    const i = PHASE_ORDER.indexOf(s.phase);
    const to = PHASE_ORDER.indexOf(target) > i ? PHASE_ORDER[i + 1]! : PHASE_ORDER[i - 1]!;
    await store.transition({ from: s.phase, to, expectedEpoch: s.epoch, fence: null, reason: 'test', ...(settleMs ? { settleMs } : {}) });
  }
  throw new Error(`could not reach ${target}`);
}
