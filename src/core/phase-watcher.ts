/**
 * Caches the migration phase for writers. The cache lives at most settle_ms
 * (default: half of it, for margin), and a message on the events channel
 * refreshes it at once, so processes follow a flip without a restart.
 */
import type { Redis, Cluster } from 'ioredis';
import type { Keyspace } from './keys.js';
import type { RedisClient } from './redis.js';
import { StateCorruptError, StateStore, type MigrationState } from './state.js';

/** Options of {@link PhaseWatcher}. */
export interface PhaseWatcherOptions {
  /** Longest time a cached phase is used; capped at the record's settle_ms. Default settle_ms / 2. */
  maxCacheMs?: number;
  /** Subscribe to the events channel (default true). Tests turn it off to simulate the stalest allowed writer. */
  subscribe?: boolean;
  /** Called after every refresh that saw a new epoch. */
  onChange?: (state: MigrationState) => void;
  /** Called when the record turns unusable (corrupt, evicted) while a last valid phase is kept. */
  onProblem?: (err: StateCorruptError) => void;
}

/** A cached view of the state record. */
export class PhaseWatcher {
  readonly store: StateStore;
  private cached: { state: MigrationState; at: number } | null = null;
  private inflight: Promise<MigrationState> | null = null;
  private subscriber: Redis | Cluster | null = null;
  private corrupt: StateCorruptError | null = null;

  constructor(
    client: RedisClient,
    readonly keys: Keyspace,
    private readonly opts: PhaseWatcherOptions = {},
  ) {
    this.store = new StateStore(client, keys);
  }

  /** Subscribes to transition events (when enabled) and loads the phase. */
  async start(): Promise<MigrationState> {
    if (this.opts.subscribe !== false) {
      const sub = this.store.client.duplicate();
      sub.on('error', () => undefined);
      // Re-read at once rather than on the next write: onChange must fire for an idle
      // process too, or it never acknowledges the new epoch and every transition waits
      // out --ack-timeout for it (src/core/writers.ts).
      const reread = (): void => {
        this.invalidate();
        void this.refresh().catch(() => undefined);
      };
      sub.on('message', reread);
      // A reconnect may have missed messages.
      sub.on('ready', reread);
      await sub.subscribe(this.keys.events);
      this.subscriber = sub;
    }
    return this.refresh();
  }

  /** Forgets the cached phase; the next read goes to Redis. */
  invalidate(): void {
    this.cached = null;
  }

  /**
   * Marks the cached phase as due for a re-read while keeping it: {@link current}
   * then re-reads before answering, {@link peek} answers with it and re-reads in
   * the background.
   */
  expire(): void {
    if (this.cached) this.cached = { state: this.cached.state, at: Number.NEGATIVE_INFINITY };
  }

  private ttl(state: MigrationState): number {
    const wanted = this.opts.maxCacheMs ?? Math.floor(state.settleMs / 2);
    return Math.min(wanted, state.settleMs);
  }

  /** The phase, from cache when fresh enough (concurrent misses share one read). */
  async current(): Promise<MigrationState> {
    const c = this.cached;
    if (c && Date.now() - c.at < this.ttl(c.state)) return c.state;
    return this.inflight ?? this.refresh();
  }

  /**
   * The cached phase without waiting for Redis: a stale entry is returned as
   * it is and re-read in the background; null only when nothing is cached (or
   * it was just invalidated). For callers whose writes do not route by the
   * cache: the single-node write script reads the phase itself and uses the
   * caller's only when the record is unusable (src/core/lua/write-job.lua).
   */
  peek(): MigrationState | null {
    const c = this.cached;
    if (c === null) return null;
    if (this.inflight === null && Date.now() - c.at >= this.ttl(c.state)) void this.refresh().catch(() => undefined);
    return c.state;
  }

  /**
   * The state record is unusable (corrupt, or missing while a migration
   * exists) and {@link current} answers with the last valid phase; null while
   * the record reads fine. Services that must not guess (the API) refuse with
   * 503 while this is set; writers keep acting on the last valid phase.
   */
  get problem(): StateCorruptError | null {
    return this.corrupt;
  }

  /** Reads the record now; never answers with a read that started before the call. */
  refresh(): Promise<MigrationState> {
    const startedAt = Date.now();
    const read = this.store
      .read()
      .then((state) => {
        const prev = this.cached?.state;
        this.corrupt = null;
        // The cache age counts from before the read, so it never outlives the bound;
        // an older read finishing late never replaces a newer one.
        if (!this.cached || this.cached.at <= startedAt) this.cached = { state, at: startedAt };
        if (!prev || prev.epoch !== state.epoch) this.opts.onChange?.(state);
        return state;
      })
      .catch((err: unknown) => {
        // Never fall back to "legacy" on a broken record: keep the last valid phase and say so.
        if (!(err instanceof StateCorruptError) || !this.cached) throw err;
        if (this.corrupt === null) this.opts.onProblem?.(err);
        this.corrupt = err;
        this.cached = { state: this.cached.state, at: startedAt };
        return this.cached.state;
      })
      .finally(() => {
        if (this.inflight === read) this.inflight = null;
      });
    this.inflight = read;
    return read;
  }

  /** Unsubscribes. */
  async close(): Promise<void> {
    const sub = this.subscriber;
    this.subscriber = null;
    if (sub) {
      try {
        await sub.quit();
      } catch {
        sub.disconnect();
      }
    }
  }
}
