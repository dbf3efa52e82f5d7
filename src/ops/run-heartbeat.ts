/**
 * The run in flight, as `status` shows it: every guarded run (backfill,
 * verify, cleanup, reverse backfill) writes a heartbeat into the hash
 * `<p>:migration:jobs:run`, one field per run, every {@link HEARTBEAT_EVERY_MS}:
 * operation, holder, progress, rate, ETA and throttle state. The key's
 * expiry is refreshed with each beat ({@link HEARTBEAT_TTL_MS}, a few beats),
 * so a killed run's heartbeat disappears by itself; an entry older than its
 * stated ttl (another run still beating) is ignored by readers and removed
 * by the next beat. Timestamps come from the Redis server clock, so readers
 * on other machines agree on the age.
 */
import os from 'node:os';
import type { Keyspace } from '../core/keys.js';
import type { RedisClient } from '../core/redis.js';
import type { ThrottleSummary, RunState } from './guards/controller.js';

/** How often a run writes its heartbeat. */
export const HEARTBEAT_EVERY_MS = 1000;
/** Expiry of the heartbeat: a few beats, so a killed run's entry goes away within seconds. */
export const HEARTBEAT_TTL_MS = 5000;

/** One run in flight (the heartbeat's JSON). */
export interface RunInFlight {
  /** `<host>:<pid>:<op>`. */
  id: string;
  /** `backfill`, `reverse-backfill`, `verify`, `cleanup`. */
  op: string;
  /** The command line, credentials removed (as the lock shows it). */
  command: string;
  actor: string;
  host: string;
  pid: number;
  /** Server ms when the run started and when it last beat. */
  startedAt: number;
  at: number;
  ttlMs: number;
  /** What is being done now (the progress stage). */
  stage: string;
  done: number;
  total: number | null;
  totalIsEstimate: boolean;
  /** Keys per second over the last seconds. */
  keysPerSecond: number;
  /** ms to go at the current rate, null when unknown. */
  etaMs: number | null;
  /** The effective ceiling (control rate, else --rate), null = none. */
  ceiling: number | null;
  /** The rate allowed now (null = the ceiling or unlimited). */
  allowedRate: number | null;
  state: RunState;
  /** Why it is slowed or paused, one line. */
  reason: string | null;
  /** Guards holding it back now. */
  holding: string[];
  /** One line per guard reading of the last sample. */
  guards: Array<{ guard: string; level: string; node: string; text: string }>;
  throttle: ThrottleSummary;
}

/** What a run reports with each beat. */
export type BeatData = Omit<RunInFlight, 'id' | 'op' | 'command' | 'actor' | 'host' | 'pid' | 'startedAt' | 'at' | 'ttlMs'>;

/** ms to go at `rate` for `total - done` keys; null when either is unknown. */
export function etaMs(done: number, total: number | null, rate: number): number | null {
  if (total === null || rate <= 0) return null;
  return Math.max(0, Math.round(((total - done) / rate) * 1000));
}

/** Writes one run's heartbeat. */
export class RunHeartbeat {
  readonly id: string;
  private startedAt: number | null = null;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keyspace,
    private readonly ident: { op: string; command: string; actor: string },
  ) {
    this.id = `${os.hostname()}:${process.pid}:${ident.op}`;
  }

  /** Writes a beat (in order; a failed write is retried by the next beat, never fails the run). */
  beat(data: BeatData): Promise<void> {
    this.writing = this.writing.then(() => this.write(data)).catch(() => undefined);
    return this.writing;
  }

  private async write(data: BeatData): Promise<void> {
    const [secs, micros] = await this.client.time();
    const at = Number(secs) * 1000 + Math.floor(Number(micros) / 1000);
    this.startedAt ??= at;
    const entry: RunInFlight = {
      id: this.id,
      op: this.ident.op,
      command: this.ident.command,
      actor: this.ident.actor,
      host: os.hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      at,
      ttlMs: HEARTBEAT_TTL_MS,
      ...data,
    };
    const all = await this.client.hgetall(this.keys.run);
    const stale = Object.entries(all)
      .filter(([id, v]) => id !== this.id && !isLive(parseRun(v), at))
      .map(([id]) => id);
    const m = this.client.multi();
    m.hset(this.keys.run, this.id, JSON.stringify(entry));
    if (stale.length > 0) m.hdel(this.keys.run, ...stale);
    m.pexpire(this.keys.run, HEARTBEAT_TTL_MS);
    await m.exec();
  }

  /** Removes this run's entry (the run ended, whatever the outcome). */
  async end(): Promise<void> {
    await this.writing;
    await this.client.hdel(this.keys.run, this.id).catch(() => undefined);
  }
}

function parseRun(v: string): RunInFlight | null {
  try {
    const r = JSON.parse(v) as RunInFlight;
    return typeof r.op === 'string' && typeof r.at === 'number' ? r : null;
  } catch {
    return null;
  }
}

function isLive(r: RunInFlight | null, now: number): r is RunInFlight {
  return r !== null && now - r.at <= (r.ttlMs || HEARTBEAT_TTL_MS);
}

/** The runs in flight (live heartbeats only), oldest first. `now` is the server's clock. */
export async function readRuns(client: RedisClient, keys: Keyspace, now: number): Promise<RunInFlight[]> {
  const all = await client.hgetall(keys.run);
  return Object.values(all)
    .map(parseRun)
    .filter((r): r is RunInFlight => isLive(r, now))
    .sort((a, b) => a.startedAt - b.startedAt);
}
