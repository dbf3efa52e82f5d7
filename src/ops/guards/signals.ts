/**
 * What the guards watch, read from Redis itself on every master:
 *
 *  - memory: `INFO memory` (`used_memory` against `maxmemory`, or against
 *    `total_system_memory` when no maxmemory is set);
 *  - replica lag: `INFO replication` on the master (each `slaveN:` line's
 *    state, acknowledged `offset` and `lag` in seconds since its last ACK,
 *    against `master_repl_offset`);
 *  - latency: a probe this process times itself, PING on a dedicated
 *    connection every {@link PROBE_EVERY_MS}, p99 over a sliding window. The
 *    dedicated connection matters: on the data connection a PING would wait
 *    behind our own pipelined batches and measure us, not Redis.
 *
 * Each master gets one dedicated connection for all of this (short command
 * timeout), so a server too slow to answer INFO reads as "unreadable", which
 * the controller treats as over its level (fail closed).
 */
import type { Redis } from 'ioredis';
import { masterNodes, nodeAddress, type RedisClient } from '../../core/redis.js';

/** `INFO` text → field map (`# Section` lines and blanks skipped). */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** One master's memory, from `INFO memory`. */
export interface MemorySample {
  usedBytes: number;
  /** 0 when no maxmemory is configured. */
  maxmemoryBytes: number;
  /** Physical memory of the host as Redis sees it (null when not reported). */
  totalSystemBytes: number | null;
  policy: string;
}

/** Parses the fields of `INFO memory`; null when `used_memory` is missing. */
export function memoryFromInfo(info: Record<string, string>): MemorySample | null {
  const used = Number(info.used_memory);
  if (info.used_memory === undefined || !Number.isFinite(used)) return null;
  const total = Number(info.total_system_memory);
  return {
    usedBytes: used,
    maxmemoryBytes: Number(info.maxmemory ?? 0) || 0,
    totalSystemBytes: info.total_system_memory !== undefined && total > 0 ? total : null,
    policy: info.maxmemory_policy ?? 'unknown',
  };
}

/** One replica as its master reports it. */
export interface ReplicaInfo {
  /** `ip:port` the replica announced. */
  addr: string;
  /** `online`, or a sync state (`wait_bgsave`, `send_bulk`). */
  state: string;
  /** Replication offset the replica last acknowledged. */
  offset: number;
  /** Seconds since the replica's last acknowledgement (Redis sends one every second). */
  lagSeconds: number;
}

/** A master's replication, from `INFO replication`. */
export interface ReplicationSample {
  role: string;
  masterOffset: number;
  replicas: ReplicaInfo[];
}

/** Parses `INFO replication` (`slaveN:ip=…,port=…,state=…,offset=…,lag=…`). */
export function replicationFromInfo(info: Record<string, string>): ReplicationSample | null {
  if (info.role === undefined) return null;
  const replicas: ReplicaInfo[] = [];
  for (const [k, v] of Object.entries(info)) {
    if (!/^slave[0-9]+$/.test(k)) continue;
    const f: Record<string, string> = {};
    for (const part of v.split(',')) {
      const eq = part.indexOf('=');
      if (eq > 0) f[part.slice(0, eq)] = part.slice(eq + 1);
    }
    replicas.push({
      addr: `${f.ip ?? '?'}:${f.port ?? '?'}`,
      state: f.state ?? 'unknown',
      offset: Number(f.offset ?? 0) || 0,
      lagSeconds: Number(f.lag ?? 0) || 0,
    });
  }
  return { role: info.role, masterOffset: Number(info.master_repl_offset ?? 0) || 0, replicas };
}

/** How often the latency probe sends a PING. */
export const PROBE_EVERY_MS = 50;
/** Window of the probe's p99. */
export const PROBE_WINDOW_MS = 3000;
/** Command timeout of the guard connections: slower than this counts as unreadable (fail closed). */
export const GUARD_COMMAND_TIMEOUT_MS = 2000;

/** p-th percentile (0..100) of `values`, nearest rank; null when empty. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/**
 * One master's dedicated guard connection: INFO reads and the latency probe.
 * The probe never piles up: while a PING is outstanding no other is sent, and
 * its elapsed time counts as a sample, so a server that stops answering reads
 * as ever higher latency, not as silence.
 */
export class NodeProbe {
  private timer: NodeJS.Timeout | null = null;
  private readonly samples: Array<{ at: number; ms: number }> = [];
  private outstandingSince: number | null = null;
  private lastError: string | null = null;

  private constructor(
    readonly addr: string,
    private readonly conn: Redis,
  ) {
    // Failures surface through the commands; an unhandled 'error' event would crash the process.
    conn.on('error', (e: Error) => {
      this.lastError = e.message;
    });
  }

  /** Opens the dedicated connection of `node` (same credentials, short timeout). */
  static open(node: Redis): NodeProbe {
    const conn = node.duplicate({
      connectionName: 'orch-migrate:guard',
      commandTimeout: GUARD_COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      lazyConnect: false,
      enableOfflineQueue: true,
      retryStrategy: (times: number) => Math.min(200 * times, 1000),
    });
    return new NodeProbe(nodeAddress(node), conn);
  }

  /** `INFO <section>` as a field map; rejects on NOPERM, a timeout or a lost connection. */
  async info(section: 'memory' | 'replication' | 'server'): Promise<Record<string, string>> {
    return parseInfo(await this.conn.info(section));
  }

  /** Starts the PING probe. */
  startLatencyProbe(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.probe(), PROBE_EVERY_MS);
    this.timer.unref();
  }

  private probe(): void {
    if (this.outstandingSince !== null) return;
    const t0 = performance.now();
    this.outstandingSince = t0;
    this.conn.ping().then(
      () => {
        const now = performance.now();
        this.samples.push({ at: now, ms: now - t0 });
        this.outstandingSince = null;
        this.lastError = null;
        this.trim(now);
      },
      (err: unknown) => {
        this.outstandingSince = null;
        this.lastError = err instanceof Error ? err.message : String(err);
      },
    );
  }

  private trim(now: number): void {
    while (this.samples.length > 0 && now - this.samples[0]!.at > PROBE_WINDOW_MS) this.samples.shift();
  }

  /** p99 of the probe over the window (ms), an outstanding PING included; null before the first answer. */
  latencyP99(): { p99: number | null; samples: number; error: string | null } {
    const now = performance.now();
    this.trim(now);
    const values = this.samples.map((s) => s.ms);
    if (this.outstandingSince !== null) values.push(now - this.outstandingSince);
    return { p99: percentile(values, 99), samples: values.length, error: values.length === 0 ? this.lastError : null };
  }

  /** p50 and p99 over the window (for the bench and status). */
  latency(): { p50: number | null; p99: number | null } {
    const values = this.samples.map((s) => s.ms);
    return { p50: percentile(values, 50), p99: percentile(values, 99) };
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.conn.disconnect();
  }
}

/** Opens one {@link NodeProbe} per master of `client`. */
export function openProbes(client: RedisClient): NodeProbe[] {
  return masterNodes(client).map((n) => NodeProbe.open(n));
}
