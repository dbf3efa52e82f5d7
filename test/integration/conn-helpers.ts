/**
 * Shared by the connectivity suites (conn-*.test.ts): live queue-core writers
 * with a ledger of acknowledged writes, and a check of that ledger against the
 * store. The writers run through whatever connection they are given (an ACL
 * user, a Sentinel-managed master), so what they prove is about that connection.
 */
import type { Redis } from 'ioredis';
import { Keyspace } from '../../src/core/keys.js';
import { Layout, routeFor } from '../../src/core/phase.js';
import type { RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { StateStore } from '../../src/core/state.js';
import { poll } from '../helpers/wait.js';

/** The last acknowledged write of one job. */
export interface LedgerEntry {
  workspaceId: string;
  rev: number;
  /** Local clock when the write was acknowledged. */
  at: number;
}

/**
 * Writers creating and updating jobs in a loop, each job owned by one writer
 * (so the ledger's entry is the store's truth), plus one worker dequeuing.
 */
/** A write that failed: when, on which job (an update), and why. */
export interface FailedWrite {
  at: number;
  jobId: string | null;
  error: unknown;
}

export class LiveWriters {
  readonly ledger = new Map<string, LedgerEntry>();
  readonly errors: unknown[] = [];
  readonly failures: FailedWrite[] = [];
  writes = 0;
  dequeued = 0;
  private stopped = false;
  private loops: Array<Promise<void>> = [];
  private readonly mine: string[][];

  constructor(
    private readonly queues: RedisJobQueue[],
    private readonly opts: { workspaces?: number; pauseMs?: number; dequeue?: RedisJobQueue | null } = {},
  ) {
    this.mine = queues.map(() => []);
  }

  start(): void {
    this.loops = this.queues.map((q, w) => this.writer(q, w));
    if (this.opts.dequeue) this.loops.push(this.worker(this.opts.dequeue));
  }

  private async writer(q: RedisJobQueue, w: number): Promise<void> {
    let n = 0;
    const ids = this.mine[w]!;
    while (!this.stopped) {
      n++;
      let target: string | null = null;
      try {
        if (ids.length < 5 || n % 3 === 0) {
          const job = await q.enqueue({ workspaceId: `ws${n % (this.opts.workspaces ?? 4)}`, action: 'live', params: { w, n, password: 'never-shown' } });
          this.ledger.set(job.jobId, { workspaceId: job.workspaceId, rev: job.rev, at: Date.now() });
          ids.push(job.jobId);
        } else {
          const id = ids[n % ids.length]!;
          target = id;
          const e = this.ledger.get(id)!;
          const job = await q.updateStatus(e.workspaceId, id, { status: n % 2 ? 'running' : 'succeeded', result: { w, n } });
          this.ledger.set(id, { ...e, rev: job.rev, at: Date.now() });
        }
        this.writes++;
      } catch (err) {
        this.errors.push(err);
        this.failures.push({ at: Date.now(), jobId: target, error: err });
      }
      await new Promise((r) => setTimeout(r, this.opts.pauseMs ?? 10));
    }
  }

  private async worker(q: RedisJobQueue): Promise<void> {
    while (!this.stopped) {
      try {
        if ((await q.dequeue()) !== null) this.dequeued++;
      } catch (err) {
        this.errors.push(err);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /** Writes acknowledged so far. */
  count(): number {
    return this.writes;
  }
}

/**
 * Ledger entries the store does not hold at (at least) the acknowledged rev,
 * in the primary layout of the current phase. `since`: only writes
 * acknowledged at or after that local time.
 */
export async function lostWrites(client: RedisClient, keys: Keyspace, ledger: Map<string, LedgerEntry>, since = 0): Promise<string[]> {
  const { phase } = await new StateStore(client, keys).read();
  const primary = routeFor(phase).primary;
  const lost: string[] = [];
  const entries = [...ledger.entries()].filter(([, e]) => e.at >= since);
  for (let i = 0; i < entries.length; i += 200) {
    const chunk = entries.slice(i, i + 200);
    const revs = await Promise.all(
      chunk.map(([id, e]) => (client as Redis).hget(primary === Layout.Legacy ? keys.legacyJob(id) : keys.v2Job(e.workspaceId, id), 'rev')),
    );
    chunk.forEach(([id, e], j) => {
      if (revs[j] === null || Number(revs[j]) < e.rev) lost.push(id);
    });
  }
  return lost;
}

/** Polls `check` until it returns a truthy value, or throws `what` after `timeoutMs` (condition waits, never fixed sleeps). */
export async function waitFor<T>(what: string, check: () => Promise<T | null | undefined | false>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  return poll(what, check, { timeoutMs, everyMs, retryErrors: true });
}
