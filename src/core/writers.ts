/**
 * Writer registration (docs/design.md "Writers register and acknowledge").
 *
 * The settle window assumes every writer refreshes its cached phase in time.
 * A writer paused past it (GC, a slow network) would not. So each queue-core
 * process keeps a heartbeat in `<p>:migration:jobs:writers` naming the epoch
 * it acts on, and acknowledges a new epoch only once every write it started
 * under an older one has finished. A transition then waits for every live
 * writer's acknowledgement instead of trusting the clock alone; an entry whose
 * heartbeat is older than its own lease is dead and ignored. A writer that
 * cannot heartbeat within its lease stops writing until it has refreshed
 * (src/core/redis-queue.ts), so "dead" really means "not writing".
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { GateError } from './errors.js';
import type { Keyspace } from './keys.js';
import type { RedisClient } from './redis.js';
import { callScript, ScriptName } from './scripts.js';
import { sleep } from './state.js';

/** Default lease of a writer's heartbeat. */
export const DEFAULT_WRITER_LEASE_MS = 10_000;
/** Default bound of the wait for acknowledgements after a transition. */
export const DEFAULT_ACK_TIMEOUT_MS = 10_000;
/** Dead entries older than this many leases are removed by readers. */
const PRUNE_AFTER_LEASES = 10;

/** One registered writer as read back. */
export interface WriterStatus {
  id: string;
  epoch: number;
  /** Server time (ms) of the last heartbeat. */
  at: number;
  leaseMs: number;
  host: string;
  pid: number;
  name: string;
  /** Heartbeat within its lease, by the server clock. */
  live: boolean;
  ageMs: number;
}

/** Options of {@link WriterRegistration}. */
export interface WriterRegistrationOptions {
  /** Lease of the heartbeat (default 10 s); heartbeats go out every third of it. */
  leaseMs?: number;
  /** Shown by `orch-migrate status`. */
  name?: string;
}

/** Reads every registered writer; prunes entries long dead. */
export async function listWriters(client: RedisClient, keys: Keyspace, now: number): Promise<WriterStatus[]> {
  const raw = await client.hgetall(keys.writers);
  const out: WriterStatus[] = [];
  const stale: string[] = [];
  for (const [id, json] of Object.entries(raw)) {
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(json) as Record<string, unknown>;
    } catch {
      stale.push(id);
      continue;
    }
    const at = Number(v.at ?? 0);
    const leaseMs = Number(v.lease_ms ?? DEFAULT_WRITER_LEASE_MS);
    const ageMs = Math.max(0, now - at);
    if (ageMs > leaseMs * PRUNE_AFTER_LEASES) {
      stale.push(id);
      continue;
    }
    out.push({
      id,
      epoch: Number(v.epoch ?? 0),
      at,
      leaseMs,
      host: String(v.host ?? '?'),
      pid: Number(v.pid ?? 0),
      name: String(v.name ?? ''),
      live: ageMs <= leaseMs,
      ageMs,
    });
  }
  if (stale.length > 0) await client.hdel(keys.writers, ...stale).catch(() => undefined);
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** Live writers that have not acknowledged `epoch`. */
export function laggards(writers: WriterStatus[], epoch: number): WriterStatus[] {
  return writers.filter((w) => w.live && w.epoch < epoch);
}

/** "name pid@host at epoch N" for messages. */
export function describeWriter(w: WriterStatus): string {
  return `${w.name || 'writer'} pid ${w.pid}@${w.host} (id ${w.id}) at epoch ${w.epoch}, heartbeat ${Math.round(w.ageMs / 1000)}s ago`;
}

/** The refusal when writers did not acknowledge in time (exit 3, gate `writers`). */
export class WritersLaggingError extends GateError {
  readonly laggards: WriterStatus[];
  constructor(epoch: number, lagging: WriterStatus[], timeoutMs: number) {
    const names = lagging.slice(0, 5).map(describeWriter).join('; ');
    super(
      'writers',
      `Refused: ${lagging.length} live writer(s) did not acknowledge epoch ${epoch} within ${Math.round(timeoutMs / 1000)}s: ${names}${lagging.length > 5 ? '; …' : ''}.`,
      {
        suggestion:
          'Check those processes (a stuck or partitioned writer keeps acting on the old phase). Once they acknowledge or their lease runs out, rerun; or override with --force writers --reason "…".',
      },
    );
    this.laggards = lagging;
  }
}

/**
 * Waits until every live writer has acknowledged `epoch` (polling), or throws
 * {@link WritersLaggingError} after `timeoutMs`. Writers that die meanwhile stop counting.
 */
export async function waitForAcks(
  client: RedisClient,
  keys: Keyspace,
  epoch: number,
  opts: { timeoutMs?: number; signal?: AbortSignal; serverTime: () => Promise<number>; onWait?: (lagging: WriterStatus[]) => void },
): Promise<WriterStatus[]> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let reported = false;
  for (;;) {
    const writers = await listWriters(client, keys, await opts.serverTime());
    const lagging = laggards(writers, epoch);
    if (lagging.length === 0) return writers;
    if (Date.now() >= deadline) throw new WritersLaggingError(epoch, lagging, timeoutMs);
    if (!reported) {
      opts.onWait?.(lagging);
      reported = true;
    }
    await sleep(100, opts.signal);
  }
}

/** This process' own entry: heartbeats on a timer, acknowledges epochs on request. */
export class WriterRegistration {
  readonly id: string;
  readonly leaseMs: number;
  private readonly name: string;
  private epoch = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Local clock time of the last heartbeat Redis confirmed. */
  private lastOkAt = 0;
  private stopped = false;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keyspace,
    opts: WriterRegistrationOptions = {},
  ) {
    this.id = `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.leaseMs = opts.leaseMs ?? DEFAULT_WRITER_LEASE_MS;
    this.name = opts.name ?? 'queue-core';
  }

  /**
   * Registers at `epoch` and starts heartbeating. A first heartbeat that fails
   * (Redis out of memory, a blip) does not stop the process from starting: the
   * timer retries, and until one succeeds the registration is not fresh, so every
   * write heartbeats first and fails as the heartbeat did.
   */
  async start(epoch: number): Promise<void> {
    this.epoch = epoch;
    await this.beat().catch(() => undefined);
    this.timer = setInterval(
      () => {
        void this.beat().catch(() => undefined);
      },
      Math.max(50, Math.floor(this.leaseMs / 3)),
    );
    // The heartbeat alone must not keep a process alive.
    this.timer.unref();
  }

  /** The epoch acknowledged so far. */
  get acknowledged(): number {
    return this.epoch;
  }

  /** True while the last confirmed heartbeat is recent enough that no transition may have skipped us. */
  get fresh(): boolean {
    return Date.now() - this.lastOkAt < this.leaseMs * 0.8;
  }

  /** Acknowledges `epoch` (never goes back) with an immediate heartbeat. */
  async ack(epoch: number): Promise<void> {
    if (epoch <= this.epoch) return;
    this.epoch = epoch;
    await this.beat();
  }

  /** One heartbeat now. */
  async beat(): Promise<void> {
    if (this.stopped) return;
    const started = Date.now();
    await callScript<number>(this.client, ScriptName.WriterHeartbeat, [
      this.keys.writers,
      this.id,
      this.epoch,
      this.leaseMs,
      os.hostname(),
      process.pid,
      this.name,
    ]);
    // Counted from before the call: a heartbeat delayed in flight must not look fresher than it is.
    this.lastOkAt = Math.max(this.lastOkAt, started);
  }

  /** Stops heartbeating and removes the entry. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.client.hdel(this.keys.writers, this.id).catch(() => undefined);
  }
}
