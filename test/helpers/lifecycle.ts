/**
 * Helpers of the phase-lifecycle suites: seeding legacy data through the real
 * queue core, waiting for the lock, and reading the history.
 */
import type { ChildProcess } from 'node:child_process';
import { Keyspace } from '../../src/core/keys.js';
import { LeaseLock, type LockInfo } from '../../src/core/lock.js';
import { masterNodes, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { StateStore, type HistoryEntry } from '../../src/core/state.js';

/** Creates `n` jobs through the queue core in the current phase (legacy by default); returns their ids. */
export async function seedJobs(client: RedisClient, keys: Keyspace, n: number, workspaces = 5): Promise<Array<{ workspaceId: string; jobId: string }>> {
  const q = await RedisJobQueue.create(client, { keys, phase: { subscribe: false } });
  const out: Array<{ workspaceId: string; jobId: string }> = [];
  try {
    const CHUNK = 200;
    for (let i = 0; i < n; i += CHUNK) {
      const jobs = await Promise.all(
        Array.from({ length: Math.min(CHUNK, n - i) }, (_, j) =>
          q.enqueue({ workspaceId: `ws${(i + j) % workspaces}`, action: 'seed', params: { i: i + j, api_key: 'sk_test' } }),
        ),
      );
      for (const j of jobs) out.push({ workspaceId: j.workspaceId, jobId: j.jobId });
    }
  } finally {
    await q.close();
  }
  return out;
}

/** Polls until the lock is held (by anyone), or throws after `timeoutMs`. */
export async function waitForLock(client: RedisClient, keys: Keyspace, timeoutMs = 20_000): Promise<LockInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await LeaseLock.inspect(client, keys);
    if (info) return info;
    if (Date.now() > deadline) throw new Error('the lock was never taken');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Resolves when a spawned child has exited. */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** The newest `n` history entries, newest first. */
export function history(client: RedisClient, keys: Keyspace, n = 50): Promise<HistoryEntry[]> {
  return new StateStore(client, keys).history(n);
}

/** Every key of one SCAN MATCH pattern across the masters (small test keyspaces only). */
export async function scanAll(client: RedisClient, pattern: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of masterNodes(client)) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      out.push(...found);
      cursor = next;
    } while (cursor !== '0');
  }
  return [...new Set(out)].sort();
}
