/**
 * The operator lease lock (docs/design.md "Every mutation of a run is fenced by its lock"): a token under PX expiry, renewed while
 * the holder runs, released compare-and-delete in `finally`. A killed holder
 * stops blocking once its lease runs out (Liquibase's stale lock, fixed).
 *
 * Fencing: each acquisition increments `lock_fence` in the state record and the
 * holder passes its fence to every state write; the scripts refuse a fence
 * that is no longer the newest, so a stale holder cannot move the phase.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { FencedError, LockHeldError, type LockHolder } from './errors.js';
import type { Keyspace } from './keys.js';
import type { RedisClient } from './redis.js';
import { callScript, ScriptName } from './scripts.js';
import { StateField } from './state.js';

/** Default lease. Short enough that a killed run frees the lock quickly, long enough to ride out a GC pause. */
export const DEFAULT_LOCK_TTL_MS = 30_000;

/**
 * How long before the lease's end a cluster write is refused: a fifth of the
 * lease, at most 2 s. It absorbs clock skew between the lock's node and the
 * data's node; renewal runs every third of the lease, well inside it.
 */
export function leaseMargin(ttlMs: number): number {
  return Math.min(2_000, Math.floor(ttlMs / 5));
}

/** Options of {@link LeaseLock.acquire}. */
export interface LeaseLockOptions {
  /** Lease length in ms (default 30 s). */
  ttlMs?: number;
  /** The command being run, shown to a second operator (credentials already removed). */
  command: string;
  /** Who is acting (`--actor`/ORCH_ACTOR), as the history records it. */
  actor?: string;
}

/** What the lock key holds, plus its remaining lease. */
export interface LockInfo extends LockHolder {
  /** Remaining lease in ms. */
  remainingMs: number;
}

function describeHolder(h: LockInfo): string {
  const ago = Math.max(0, Math.round((Date.now() - h.since) / 1000));
  const who = h.actor && h.actor !== `${h.user}@${h.host}` ? `${h.actor} (${h.user}@${h.host}` : `${h.user}@${h.host} (`;
  return `${who}${who.endsWith('(') ? '' : ', '}pid ${h.pid}, \`${h.command}\`) since ${new Date(h.since).toISOString()} (${ago}s ago)`;
}

/** A held lease. Use {@link withLock} rather than managing it by hand. */
export class LeaseLock {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  /** Server time (unix ms) of the last successful renewal; 0 before the first. */
  private renewedAtServerMs = 0;

  private constructor(
    private readonly client: RedisClient,
    /** The lock key. Data scripts on a single node declare it and compare {@link value}. */
    readonly key: string,
    /** The exact value this holder wrote (it contains a random token). */
    readonly value: string,
    readonly fence: number,
    readonly ttlMs: number,
  ) {}

  /**
   * Throws {@link FencedError} (exit 4) unless the lock key still holds our
   * value: expired, deleted or taken over all mean "stop writing now". Runs
   * before every batch where a script cannot check the lock itself (a cluster:
   * the lock key hashes to another slot than the data).
   */
  async assertHeld(): Promise<void> {
    if (this.controller.signal.aborted) throw this.lostError();
    const cur = await this.client.get(this.key);
    if (cur !== this.value) {
      this.lose();
      throw this.lostError();
    }
  }

  private lostError(): FencedError {
    const reason: unknown = this.controller.signal.reason;
    return reason instanceof FencedError ? reason : new FencedError('The migration lock lease was lost (expired, deleted or taken over)');
  }

  /**
   * The server time (unix ms) after which this run must assume its lease is
   * gone: the last renewal's server time plus the lease, minus a margin for
   * clock skew between cluster nodes. Cluster data scripts, which cannot read
   * the lock key (another slot), refuse to write past it; a process paused
   * past its lease therefore cannot delete anything when it wakes. 0 before
   * the first renewal (no deadline: nothing is written before it).
   */
  get deadlineMs(): number {
    if (this.renewedAtServerMs === 0) return 0;
    return this.renewedAtServerMs + this.ttlMs - leaseMargin(this.ttlMs);
  }

  /** Aborted when the lease is lost; long operations watch it and stop writing. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Reads the current holder, or null when the lock is free. */
  static async inspect(client: RedisClient, keys: Keyspace): Promise<LockInfo | null> {
    const [raw, pttl] = await Promise.all([client.get(keys.lock), client.pttl(keys.lock)]);
    if (raw === null) return null;
    try {
      const h = JSON.parse(raw) as Partial<LockHolder>;
      return {
        user: String(h.user ?? '?'),
        host: String(h.host ?? '?'),
        pid: Number(h.pid ?? 0),
        command: String(h.command ?? '?'),
        since: Number(h.since ?? 0),
        actor: typeof h.actor === 'string' ? h.actor : `${String(h.user ?? '?')}@${String(h.host ?? '?')}`,
        ttlMs: Number(h.ttlMs ?? 0),
        remainingMs: Math.max(0, pttl),
      };
    } catch {
      return { user: '?', host: '?', pid: 0, command: '?', since: 0, actor: '?', ttlMs: 0, remainingMs: Math.max(0, pttl) };
    }
  }

  /** Takes the lease or throws {@link LockHeldError} (exit 4) naming the holder. */
  static async acquire(client: RedisClient, keys: Keyspace, opts: LeaseLockOptions): Promise<LeaseLock> {
    const ttlMs = opts.ttlMs ?? DEFAULT_LOCK_TTL_MS;
    let user: string;
    try {
      user = os.userInfo().username;
    } catch {
      user = process.env.USER ?? 'unknown';
    }
    const holder: LockHolder & { token: string } = {
      user,
      host: os.hostname(),
      pid: process.pid,
      command: opts.command,
      since: Date.now(),
      actor: opts.actor ?? `${user}@${os.hostname()}`,
      ttlMs,
      token: randomBytes(16).toString('hex'),
    };
    const value = JSON.stringify(holder);
    const ok = await client.set(keys.lock, value, 'PX', ttlMs, 'NX');
    if (ok !== 'OK') {
      const cur = await LeaseLock.inspect(client, keys);
      const who = cur ? describeHolder(cur) : 'another run';
      const wait = cur ? Math.ceil(cur.remainingMs / 1000) : Math.ceil(ttlMs / 1000);
      throw new LockHeldError(`Migration lock is held by ${who}`, cur, {
        suggestion: `Wait for that run to finish. If it is dead, its lease expires by itself within ${wait}s; then rerun. See runbooks/incident-stuck-lock.md.`,
      });
    }
    const fence = await client.hincrby(keys.state, StateField.LockFence, 1);
    const lock = new LeaseLock(client, keys.lock, value, fence, ttlMs);
    // The first renewal fixes the deadline on the server's clock at once.
    await lock.renew();
    lock.startRenewal();
    return lock;
  }

  private startRenewal(): void {
    const every = Math.max(100, Math.floor(this.ttlMs / 3));
    this.timer = setInterval(() => {
      void this.renew();
    }, every);
    // Renewal alone must not keep a finished CLI process alive.
    this.timer.unref();
  }

  /** Extends the lease; aborts {@link signal} when it was lost. Returns whether we still hold it. */
  async renew(): Promise<boolean> {
    if (this.released || this.controller.signal.aborted) return false;
    try {
      const at = Number(await callScript<number>(this.client, ScriptName.LockRenew, [this.key, this.value, this.ttlMs]));
      if (at <= 0) {
        this.lose();
        return false;
      }
      // Replies can arrive out of order across reconnects: keep the latest.
      this.renewedAtServerMs = Math.max(this.renewedAtServerMs, at);
      return true;
    } catch {
      // Transient: the next tick retries. If Redis stays away the run fails on its own commands.
      return true;
    }
  }

  /** Marks the lease lost: the run's signal aborts, and every later write is refused. */
  lose(): void {
    if (this.timer) clearInterval(this.timer);
    if (!this.controller.signal.aborted) this.controller.abort(new FencedError('The migration lock lease was lost (expired, deleted or taken over)'));
  }

  /** Compare-and-delete; never frees someone else's lock. Safe to call twice. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    try {
      await callScript<number>(this.client, ScriptName.LockRelease, [this.key, this.value]);
    } catch {
      // Unreachable Redis: the lease expires by itself.
    }
  }
}

/** Runs `fn` holding the lease; the lease is released in `finally`. */
export async function withLock<T>(client: RedisClient, keys: Keyspace, opts: LeaseLockOptions, fn: (lock: LeaseLock) => Promise<T>): Promise<T> {
  const lock = await LeaseLock.acquire(client, keys, opts);
  try {
    return await fn(lock);
  } finally {
    await lock.release();
  }
}
