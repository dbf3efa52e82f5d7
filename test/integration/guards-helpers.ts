/**
 * Shared steps of the guard-rail suites (test/integration/guards-*.test.ts):
 * private servers with a replica, reading a run's heartbeat and Redis' memory,
 * a CLI run in the background, and waits on conditions (never sleeps for
 * correctness: CI shares two cores with the servers).
 */
import type { ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import type { Keyspace } from '../../src/core/keys.js';
import type { RedisClient } from '../../src/core/redis.js';
import type { RunInFlight } from '../../src/ops/run-heartbeat.js';
import type { HistoryEntry } from '../../src/core/state.js';
import { StateStore } from '../../src/core/state.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { poll } from '../helpers/wait.js';

/** Polls `check` every 25 ms until true, or throws after `timeoutMs` naming `what`. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  await poll(what, check, { timeoutMs, everyMs: 25 });
}

/** The run in flight (the first live heartbeat), or null. */
export async function heartbeat(client: RedisClient, keys: Keyspace): Promise<RunInFlight | null> {
  const all = await client.hgetall(keys.run);
  const runs = Object.values(all).map((v) => JSON.parse(v) as RunInFlight);
  return runs[0] ?? null;
}

/** Waits until the heartbeat satisfies `pred`; returns it. */
export async function waitForRun(
  client: RedisClient,
  keys: Keyspace,
  what: string,
  pred: (r: RunInFlight) => boolean,
  timeoutMs = 60_000,
): Promise<RunInFlight> {
  let seen: RunInFlight | null = null;
  await waitFor(
    what,
    async () => {
      seen = await heartbeat(client, keys);
      return seen !== null && pred(seen);
    },
    timeoutMs,
  );
  return seen!;
}

/** used_memory of a server, bytes. */
export async function usedMemory(client: RedisClient): Promise<number> {
  return Number(/^used_memory:([0-9]+)/m.exec(await client.info('memory'))?.[1] ?? NaN);
}

/**
 * used_memory once it has settled (the main dict may still be rehashing into
 * its doubled table right after a big write): the same reading three times,
 * 300 ms apart, within 0.1%.
 */
export async function settledUsedMemory(client: RedisClient): Promise<number> {
  let prev = await usedMemory(client);
  let stable = 0;
  for (let i = 0; i < 100 && stable < 3; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await usedMemory(client);
    stable = Math.abs(now - prev) <= prev * 0.001 ? stable + 1 : 0;
    prev = now;
  }
  return prev;
}

/** A CLI run in the background: its child and its result. */
export interface Background {
  child: ChildProcess;
  done: Promise<CliResult>;
}

/** Starts the CLI; resolves once the child is spawned. */
export async function startCli(args: string[]): Promise<Background> {
  let child: ChildProcess | null = null;
  const done = runCli(args, {
    timeoutMs: 110_000,
    onSpawn: (c) => {
      child = c;
    },
  });
  await waitFor('the CLI to spawn', () => child !== null, 5000);
  return { child: child!, done };
}

/** A master and a replica that follows it (online). */
export async function startWithReplica(
  servers: RedisServerHandle[],
  extraArgs: string[] = [],
): Promise<{ master: RedisServerHandle; replica: RedisServerHandle }> {
  const master = await startRedisServer({ extraArgs });
  servers.push(master);
  const replica = await startRedisServer({ extraArgs: ['--replicaof', master.host, String(master.port)] });
  servers.push(replica);
  return { master, replica };
}

/** Waits until every replica of `master` is online and has acknowledged everything. */
export async function waitForReplicaInSync(master: RedisClient): Promise<void> {
  await waitFor(
    'the replica to be online and in sync',
    async () => {
      const info = await master.info('replication');
      const offset = Number(/master_repl_offset:([0-9]+)/.exec(info)?.[1] ?? -1);
      const m = /slave0:.*state=([a-z_]+),offset=([0-9]+)/.exec(info);
      return m !== null && m[1] === 'online' && Number(m[2]) === offset;
    },
    60_000,
  );
}

/** History entries of one type, newest first. */
export async function historyOf(client: RedisClient, keys: Keyspace, type: string): Promise<HistoryEntry[]> {
  return (await new StateStore(client, keys).history(100)).filter((h) => h.type === type);
}

/** Asserts an exit code, showing the output when it differs. */
export function expectExit(r: CliResult, code: number): void {
  expect(r.code, `--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(code);
}
