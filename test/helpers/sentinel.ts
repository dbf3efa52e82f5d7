/**
 * A Sentinel-managed Redis for tests: a master, one replica and three
 * sentinels, all spawned from the same redis-server binary
 * (`redis-server sentinel.conf --sentinel`) through the harness launcher, so
 * none of them outlives the test run.
 *
 * Sentinel's internal periods are shortened with `SENTINEL DEBUG` (what Redis'
 * own sentinel tests do), so a demoted master is turned into a replica within
 * seconds instead of tens of seconds; nothing else about failover changes.
 * Every wait is a condition wait with a generous bound.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { askRedis } from '../../src/cli/demo/redis-process.js';
import { LOOPBACK, parseInfo, startRedisServer, type HostPort, type RedisServerHandle } from './redis-server.js';
import { poll } from './wait.js';

/** Options of {@link startSentinelSetup}. */
export interface SentinelSetupOptions {
  /** The monitored name (default `orchmaster`). */
  masterName?: string;
  /** Extra arguments for both data nodes. */
  nodeArgs?: string[];
  /** How long everything may take to come up (default 60 s). */
  readyTimeoutMs?: number;
}

/** What one failover did, measured. */
export interface FailoverReport {
  from: HostPort;
  to: HostPort;
  /** Local clock: SENTINEL FAILOVER sent. */
  issuedAt: number;
  /** Local clock: every sentinel names the new master. */
  switchedAt: number;
  /** issuedAt → switchedAt. */
  switchMs: number;
}

export interface SentinelSetup {
  readonly masterName: string;
  /** The two data nodes (the initial master first). */
  readonly nodes: RedisServerHandle[];
  readonly sentinels: RedisServerHandle[];
  /** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`, for --sentinel / ORCH_SENTINELS. */
  readonly sentinelList: string;
  /** The master as the first sentinel names it. */
  master(): Promise<HostPort>;
  /** The data node that is the master now, and the other one. */
  roles(): Promise<{ master: RedisServerHandle; replica: RedisServerHandle }>;
  /**
   * Waits until the non-master node is a replica of the master with its link
   * up and no sync in progress, and every sentinel lists it as a healthy
   * replica (so a failover may pick it). Returns the local time it was seen.
   */
  waitForReplicaInSync(timeoutMs?: number): Promise<number>;
  /** Issues SENTINEL FAILOVER and waits until every sentinel names the new master. */
  failover(timeoutMs?: number): Promise<FailoverReport>;
  stop(): Promise<void>;
}

async function ask<T>(hp: HostPort, fn: (c: Redis) => Promise<T>, timeoutMs = 2000): Promise<T> {
  return askRedis(hp.port, fn, timeoutMs, hp.host);
}

function until<T>(what: string, timeoutMs: number, check: () => Promise<T | null | false>): Promise<T> {
  return poll(`sentinel setup: ${what}`, check, { timeoutMs, retryErrors: true });
}

/** `SENTINEL <sub> <name>` rows as objects. */
function rows(reply: unknown): Array<Record<string, string>> {
  return (reply as string[][]).map((flat) => {
    const o: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]!] = flat[i + 1]!;
    return o;
  });
}

/** Starts master, replica and three sentinels and waits until they all know each other. */
export async function startSentinelSetup(opts: SentinelSetupOptions = {}): Promise<SentinelSetup> {
  const name = opts.masterName ?? 'orchmaster';
  const readyMs = opts.readyTimeoutMs ?? 60_000;
  // No diskless-sync delay: a demoted master resyncs at once rather than after 5 s.
  const nodeArgs = ['--repl-diskless-sync-delay', '0', ...(opts.nodeArgs ?? [])];
  const started: RedisServerHandle[] = [];
  const dirs: string[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(started.map((s) => s.stop()));
    await Promise.allSettled(dirs.map((d) => rm(d, { recursive: true, force: true })));
  };
  try {
    const first = await startRedisServer({ extraArgs: nodeArgs });
    started.push(first);
    const second = await startRedisServer({ extraArgs: [...nodeArgs, '--replicaof', LOOPBACK, String(first.port)] });
    started.push(second);
    const nodes = [first, second];
    await until('the replica to sync', readyMs, async () => {
      const info = parseInfo(await ask(second, (c) => c.info('replication')));
      return info.master_link_status === 'up' && info.master_sync_in_progress === '0';
    });

    const sentinels: RedisServerHandle[] = [];
    for (let i = 0; i < 3; i++) {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'orch-sentinel-'));
      dirs.push(dir);
      const conf = path.join(dir, 'sentinel.conf');
      // Sentinel rewrites this file (it is why --sentinel needs one); down-after is long so that a
      // busy CI machine never triggers a failover the test did not ask for.
      await writeFile(
        conf,
        [
          `sentinel monitor ${name} ${LOOPBACK} ${first.port} 2`,
          `sentinel down-after-milliseconds ${name} 10000`,
          `sentinel failover-timeout ${name} 30000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      const s = await startRedisServer({ dir, configFile: conf, extraArgs: ['--sentinel'] });
      started.push(s);
      sentinels.push(s);
      await ask(s, (c) => c.call('SENTINEL', 'DEBUG', 'info-period', '1000', 'publish-period', '500'));
    }
    const sentinelList = sentinels.map((s) => `${s.host}:${s.port}`).join(',');

    const master = async (): Promise<HostPort> => {
      const [host, port] = (await ask(sentinels[0]!, (c) => c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name))) as [string, string];
      return { host, port: Number(port) };
    };
    const roles = async (): Promise<{ master: RedisServerHandle; replica: RedisServerHandle }> => {
      const m = await master();
      const mi = nodes.findIndex((n) => n.port === m.port);
      if (mi < 0) throw new Error(`sentinel names an unknown master ${m.host}:${m.port}`);
      return { master: nodes[mi]!, replica: nodes[1 - mi]! };
    };
    const waitForReplicaInSync = async (timeoutMs = 60_000): Promise<number> =>
      until('the replica to be in sync and known to every sentinel', timeoutMs, async () => {
        const { master: m, replica: r } = await roles();
        const info = parseInfo(await ask(r, (c) => c.info('replication')));
        if (info.role !== 'slave' || info.master_port !== String(m.port) || info.master_link_status !== 'up' || info.master_sync_in_progress !== '0')
          return false;
        // With min-replicas-to-write, a replica counts once it has acknowledged the stream (about a second after the sync).
        const mi = parseInfo(await ask(m, (c) => c.info('replication')));
        if (mi.min_slaves_good_slaves !== undefined && Number(mi.min_slaves_good_slaves) < 1) return false;
        for (const s of sentinels) {
          const reps = rows(await ask(s, (c) => c.call('SENTINEL', 'REPLICAS', name)));
          const me = reps.find((x) => x.port === String(r.port));
          if (!me || /s_down|o_down|disconnected/.test(me.flags ?? '') || me['master-link-status'] !== 'ok') return false;
          const others = rows(await ask(s, (c) => c.call('SENTINEL', 'SENTINELS', name)));
          if (others.length < 2) return false;
        }
        return Date.now();
      });
    await waitForReplicaInSync(readyMs);

    const failover = async (timeoutMs = 60_000): Promise<FailoverReport> => {
      const from = await master();
      const issuedAt = Date.now();
      // NOGOODSLAVE / INPROG are transient right after a previous failover: ask again.
      await until('SENTINEL FAILOVER to be accepted', timeoutMs, async () => {
        try {
          return (await ask(sentinels[0]!, (c) => c.call('SENTINEL', 'FAILOVER', name))) === 'OK';
        } catch (err) {
          if (/NOGOODSLAVE|INPROG/.test(String(err))) return false;
          throw err;
        }
      });
      const to = await until('every sentinel to name the new master', timeoutMs, async () => {
        const seen = await Promise.all(
          sentinels.map(async (s) => {
            const [, port] = (await ask(s, (c) => c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name))) as [string, string];
            return Number(port);
          }),
        );
        return seen.every((p) => p !== from.port && p === seen[0]) ? { host: LOOPBACK, port: seen[0]! } : false;
      });
      const switchedAt = Date.now();
      return { from, to, issuedAt, switchedAt, switchMs: switchedAt - issuedAt };
    };

    let stopping: Promise<void> | undefined;
    return { masterName: name, nodes, sentinels, sentinelList, master, roles, waitForReplicaInSync, failover, stop: () => (stopping ??= stopAll()) };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
