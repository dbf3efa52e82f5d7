/**
 * The operator lease lock (docs/design.md "Every mutation of a run is fenced by its lock"): leases with
 * server-clock deadlines, renewed while the holder runs, released
 * compare-and-delete in `finally`. A killed holder stops blocking once its
 * lease runs out (Liquibase's stale lock, fixed).
 *
 * Holders: one key (a hash, src/core/lua/lock-acquire.lua) holds one entry per
 * holder: `global` (every command that writes), or `shard:<i>/<n>` (a backfill
 * with `--shard i/n`). The global holder excludes every other holder; shards of
 * the same count run side by side, each with its own lease and fence, so a
 * killed shard blocks only itself until its lease runs out. Taking, renewing
 * and releasing are one script each on that one key, so they are atomic on a
 * cluster too.
 *
 * Fencing: each acquisition increments `lock_fence` in the state record and the
 * holder passes its fence to every state write; the scripts refuse a fence
 * that is no longer the newest (a shard's: no longer its shard's newest, see
 * src/core/lua/lock-fence.lua), so a stale holder cannot move the phase.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { FencedError, LockHeldError, type LockHolder } from './errors.js';
import type { Keyspace } from './keys.js';
import type { RedisClient } from './redis.js';
import { callScript, ScriptName } from './scripts.js';

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

/** The holder that excludes every other one. */
export const GLOBAL_HOLDER = 'global';

/** A shard of the masters (`--shard i/n`). */
export interface LockShard {
  index: number;
  count: number;
}

/** The lock entry of a run: `global`, or `shard:<i>/<n>` for a shard of more than one. */
export function holderOf(shard: LockShard | null | undefined): string {
  return shard && shard.count > 1 ? `shard:${shard.index}/${shard.count}` : GLOBAL_HOLDER;
}

/** `0/2` of a shard holder, null for the global one (and an older version's lock). */
export function shardOfHolder(holder: string): string | null {
  const m = /^shard:([0-9]+\/[0-9]+)$/.exec(holder);
  return m ? m[1]! : null;
}

/** Options of {@link LeaseLock.acquire}. */
export interface LeaseLockOptions {
  /** Lease length in ms (default 30 s). */
  ttlMs?: number;
  /** The command being run, shown to a second operator (credentials already removed). */
  command: string;
  /** Who is acting (`--actor`/ORCH_ACTOR), as the history records it. */
  actor?: string;
  /** Take a shard's lease (`backfill --shard i/n`, n > 1) instead of the global one. */
  shard?: LockShard | null;
}

/** One live holder of the lock, plus its remaining lease. */
export interface LockInfo extends LockHolder {
  /** Remaining lease in ms (server clock). */
  remainingMs: number;
  /** `global`, `shard:<i>/<n>`, or `legacy` (a lock an older orch-migrate took). */
  holder: string;
  /** `i/n` of a shard holder, else null. */
  shard: string | null;
}

function describeHolder(h: LockInfo): string {
  const ago = Math.max(0, Math.round((Date.now() - h.since) / 1000));
  const who = h.actor && h.actor !== `${h.user}@${h.host}` ? `${h.actor} (${h.user}@${h.host}` : `${h.user}@${h.host} (`;
  return `${who}${who.endsWith('(') ? '' : ', '}pid ${h.pid}, \`${h.command}\`) since ${new Date(h.since).toISOString()} (${ago}s ago)`;
}

/** Decodes a holder JSON (what the entry carries after its deadline and token). */
function holderInfo(holder: string, json: string, remainingMs: number): LockInfo {
  const base = { holder, shard: shardOfHolder(holder), remainingMs: Math.max(0, remainingMs) };
  try {
    const h = JSON.parse(json) as Partial<LockHolder>;
    return {
      user: String(h.user ?? '?'),
      host: String(h.host ?? '?'),
      pid: Number(h.pid ?? 0),
      command: String(h.command ?? '?'),
      since: Number(h.since ?? 0),
      actor: typeof h.actor === 'string' ? h.actor : `${String(h.user ?? '?')}@${String(h.host ?? '?')}`,
      ttlMs: Number(h.ttlMs ?? 0),
      ...base,
    };
  } catch {
    return { user: '?', host: '?', pid: 0, command: '?', since: 0, actor: '?', ttlMs: 0, ...base };
  }
}

/** Splits a hash entry `<deadline>:<token>:<json>`; null when it is not one. */
function parseEntry(v: string): { deadline: number; token: string; json: string } | null {
  const m = /^([0-9]+):([0-9a-f]+):/.exec(v);
  return m ? { deadline: Number(m[1]), token: m[2]!, json: v.slice(m[0].length) } : null;
}

/** Global first, then shards by name: the order status and refusals list them in. */
function byHolder(a: LockInfo, b: LockInfo): number {
  const rank = (h: LockInfo): number => (h.shard === null ? 0 : 1);
  return rank(a) - rank(b) || (a.holder < b.holder ? -1 : a.holder > b.holder ? 1 : 0);
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
    /** The lock key. Data scripts on a single node declare it and pass {@link value}. */
    readonly key: string,
    /** This run's entry: `global` or `shard:<i>/<n>`. */
    readonly holder: string,
    /** The random token of this acquisition. */
    readonly token: string,
    /** This holder's fence: it guards state writes (see {@link fenceToken}). */
    readonly fence: number,
    readonly ttlMs: number,
  ) {}

  /**
   * What data scripts compare (src/core/lua/includes/holds-lock.lua):
   * `<token>@<holder>`.
   */
  get value(): string {
    return `${this.token}@${this.holder}`;
  }

  /** The `shard` of this lease (`i/n`), or null for the global one. */
  get shard(): string | null {
    return shardOfHolder(this.holder);
  }

  /**
   * The fence as state writes pass it (src/core/lua/fenced-hset.lua): the
   * number for the global holder, `<n>@shard:<i>/<n>` for a shard, whose
   * fence is checked against its own shard's.
   */
  get fenceToken(): number | string {
    return this.holder === GLOBAL_HOLDER ? this.fence : `${this.fence}@${this.holder}`;
  }

  /**
   * Throws {@link FencedError} (exit 4) unless this run still holds its lease
   * (its entry, its token, its deadline not passed): expired, deleted or taken
   * over all mean "stop writing now". Runs before every batch where a script
   * cannot check the lock itself (a cluster: the lock key hashes to another
   * slot than the data).
   */
  async assertHeld(): Promise<void> {
    if (this.controller.signal.aborted) throw this.lostError();
    const held = Number(await callScript<number>(this.client, ScriptName.LockHolds, [this.key, this.value]));
    if (held !== 1) {
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

  /**
   * Every live holder, global first, then shards by name; empty when the lock
   * is free. Entries past their deadline are left out (the next acquisition
   * removes them).
   */
  static async inspectAll(client: RedisClient, keys: Keyspace): Promise<LockInfo[]> {
    const kind = await client.type(keys.lock);
    if (kind === 'none') return [];
    if (kind === 'string') {
      // A lock taken by an older orch-migrate (SET NX PX): one holder that excludes everyone.
      const [raw, pttl] = await Promise.all([client.get(keys.lock), client.pttl(keys.lock)]);
      return raw === null ? [] : [holderInfo('legacy', raw, pttl)];
    }
    if (kind !== 'hash') return [holderInfo(kind, '{}', await client.pttl(keys.lock))];
    const [entries, [secs, micros]] = await Promise.all([client.hgetall(keys.lock), client.time()]);
    const now = Number(secs) * 1000 + Math.floor(Number(micros) / 1000);
    const out: LockInfo[] = [];
    for (const [holder, v] of Object.entries(entries)) {
      const e = parseEntry(v);
      if (e && e.deadline >= now) out.push(holderInfo(holder, e.json, e.deadline - now));
    }
    return out.sort(byHolder);
  }

  /** The first live holder (the global one when there is one), or null when the lock is free. */
  static async inspect(client: RedisClient, keys: Keyspace): Promise<LockInfo | null> {
    return (await LeaseLock.inspectAll(client, keys))[0] ?? null;
  }

  /** Takes the lease or throws {@link LockHeldError} (exit 4) naming the holder in the way. */
  static async acquire(client: RedisClient, keys: Keyspace, opts: LeaseLockOptions): Promise<LeaseLock> {
    const ttlMs = opts.ttlMs ?? DEFAULT_LOCK_TTL_MS;
    const holder = holderOf(opts.shard);
    let user: string;
    try {
      user = os.userInfo().username;
    } catch {
      user = process.env.USER ?? 'unknown';
    }
    const info: LockHolder = {
      user,
      host: os.hostname(),
      pid: process.pid,
      command: opts.command,
      since: Date.now(),
      actor: opts.actor ?? `${user}@${os.hostname()}`,
      ttlMs,
    };
    const token = randomBytes(16).toString('hex');
    const reply = await callScript<Array<number | string>>(client, ScriptName.LockAcquire, [keys.lock, holder, token, ttlMs, JSON.stringify(info)]);
    if (Number(reply[0]) !== 1) {
      const [, inWay, entry, remaining] = reply;
      const by = String(inWay);
      const e = by === 'legacy' ? null : parseEntry(String(entry ?? ''));
      const cur = holderInfo(by, by === 'legacy' ? String(entry ?? '') : (e?.json ?? '{}'), Number(remaining ?? 0));
      const wait = Math.ceil(cur.remainingMs / 1000);
      const what = cur.shard ? `shard ${cur.shard} of a sharded backfill, ` : '';
      const why =
        holder !== GLOBAL_HOLDER && cur.shard !== null && shardOfHolder(holder) !== cur.shard
          ? ` (a shard of another count: every live shard must use the same n)`
          : '';
      throw new LockHeldError(`Migration lock is held by ${what}${describeHolder(cur)}${why}`, cur, {
        suggestion: `Wait for that run to finish. If it is dead, its lease expires by itself within ${wait}s; then rerun. See runbooks/incident-stuck-lock.md.`,
      });
    }
    const fence = Number(await callScript<number>(client, ScriptName.LockFence, [keys.state, holder]));
    const lock = new LeaseLock(client, keys.lock, holder, token, fence, ttlMs);
    // The first renewal fixes the deadline on the server's clock at once, and proves the lease
    // survived until the fence was issued (a process paused in between must not run on).
    if (!(await lock.renew()) || lock.renewedAtServerMs === 0) {
      await lock.release();
      throw lock.lostError();
    }
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
      const at = Number(await callScript<number>(this.client, ScriptName.LockRenew, [this.key, this.holder, this.token, this.ttlMs]));
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

  /** Compare-and-delete of this holder's entry; never frees someone else's lease. Safe to call twice. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    try {
      await callScript<number>(this.client, ScriptName.LockRelease, [this.key, this.holder, this.token]);
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
