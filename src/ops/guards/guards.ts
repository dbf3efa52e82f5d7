/**
 * The guards and their levels. Each guard reads one signal per master and
 * compares it with a throttle level (over it, the run slows down, and for the
 * guards whose signal recovers when the load stops, pauses) and a critical
 * level (at or over it, the run stops: checkpoint saved, exit 6).
 *
 * | guard         | signal                                         | throttle          | critical          |
 * |---------------|------------------------------------------------|-------------------|-------------------|
 * | `memory`      | used_memory / maxmemory (INFO memory)          | slows the run     | stops it (exit 6) |
 * | `latency`     | p99 of the PING probe (src/ops/guards/signals.ts) | slows, pauses  | stops it          |
 * | `replica-lag` | seconds since ACK, or bytes behind, per replica | slows, pauses    | stops it          |
 *
 * Memory does not pause: stopping the copy does not give the memory back (the
 * copies stay), so a paused run would wait for ever; slowing gives eviction of
 * expiring keys and the operator time, and the critical level stops the run.
 * A signal that cannot be read counts as over its throttle level (fail closed).
 */
import { memoryFromInfo, replicationFromInfo, type NodeProbe } from './signals.js';

/** Guard names, as the flags, `--json`, the history and the metrics label them. */
export const GuardName = {
  Memory: 'memory',
  Latency: 'latency',
  ReplicaLag: 'replica-lag',
  /** Not a guard: a pause or a rate set by `orch-migrate control`, accounted like one. */
  Control: 'control',
} as const;
export type GuardName = (typeof GuardName)[keyof typeof GuardName];

/** A replica lag level: seconds since the replica's last acknowledgement, or bytes behind the master. */
export interface LagLevel {
  value: number;
  unit: 's' | 'bytes';
}

/** Levels of every guard; null = that level is off. */
export interface GuardSettings {
  memory: { throttlePct: number | null; criticalPct: number | null };
  latency: { throttleMs: number | null; criticalMs: number | null };
  replicaLag: { throttle: LagLevel | null; critical: LagLevel | null };
}

/** Whether any level of each guard is on. */
export function activeGuards(s: GuardSettings): { memory: boolean; latency: boolean; replicaLag: boolean } {
  return {
    memory: s.memory.throttlePct !== null || s.memory.criticalPct !== null,
    latency: s.latency.throttleMs !== null || s.latency.criticalMs !== null,
    replicaLag: s.replicaLag.throttle !== null || s.replicaLag.critical !== null,
  };
}

/** ok · over the throttle level · at or over the critical level · signal unreadable (counts as over). */
export type GuardLevel = 'ok' | 'over' | 'critical' | 'unreadable';

/** One guard's reading on one master. */
export interface GuardReading {
  guard: GuardName;
  level: GuardLevel;
  /** `host:port` of the master. */
  node: string;
  /** The signal (percent, ms, seconds or bytes), null when unreadable. */
  value: number | null;
  /** One line for people: what was read, against which level. */
  text: string;
  /** Whether being over this guard may pause the run (memory only slows it). */
  pauses: boolean;
}

const LEVEL_ORDER: Record<GuardLevel, number> = { ok: 0, over: 1, unreadable: 2, critical: 3 };

/** The worst of two levels (critical > unreadable > over > ok). */
export function worse(a: GuardLevel, b: GuardLevel): GuardLevel {
  return LEVEL_ORDER[a] >= LEVEL_ORDER[b] ? a : b;
}

/** Bytes as an operator reads them. */
export function fmtBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? String(Math.round(v)) : v.toFixed(1)} ${units[i]}`;
}

/** A lag level as written on the command line. */
export function fmtLag(l: LagLevel): string {
  return l.unit === 's' ? `${l.value}s` : fmtBytes(l.value);
}

/** The message of an error, first line, without a URL that might carry a password. */
export function errorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return (msg.split('\n')[0] ?? msg).replace(/redis(s)?:\/\/\S+/gi, '<url>').slice(0, 200);
}

/** Memory guard on one master. */
export function evaluateMemory(node: string, info: Record<string, string> | Error, levels: GuardSettings['memory']): GuardReading {
  const base = { guard: GuardName.Memory, node, pauses: false } as const;
  const m = info instanceof Error ? null : memoryFromInfo(info);
  if (!m) {
    const why = info instanceof Error ? errorText(info) : 'INFO memory has no used_memory';
    // Blind is worse than over: an unreadable signal pauses, like the other guards' (fail closed).
    return { ...base, pauses: true, level: 'unreadable', value: null, text: `cannot read INFO memory on ${node}: ${why}` };
  }
  const limit = m.maxmemoryBytes > 0 ? m.maxmemoryBytes : m.totalSystemBytes;
  if (limit === null) return { ...base, pauses: true, level: 'unreadable', value: null, text: `${node} reports neither maxmemory nor total_system_memory` };
  const pct = (m.usedBytes / limit) * 100;
  const of = m.maxmemoryBytes > 0 ? 'maxmemory' : 'system memory (no maxmemory set)';
  const head = `used_memory ${pct.toFixed(1)}% of ${of} (${fmtBytes(m.usedBytes)} of ${fmtBytes(limit)}) on ${node}`;
  if (levels.criticalPct !== null && pct >= levels.criticalPct)
    return { ...base, level: 'critical', value: pct, text: `${head} ≥ critical ${levels.criticalPct}%` };
  if (levels.throttlePct !== null && pct > levels.throttlePct) return { ...base, level: 'over', value: pct, text: `${head} > ${levels.throttlePct}%` };
  return { ...base, level: 'ok', value: pct, text: head };
}

/** Replica lag guard on one master: the worst of its replicas. */
export function evaluateReplicas(node: string, info: Record<string, string> | Error, levels: GuardSettings['replicaLag']): GuardReading {
  const base = { guard: GuardName.ReplicaLag, node, pauses: true } as const;
  const r = info instanceof Error ? null : replicationFromInfo(info);
  if (!r) {
    const why = info instanceof Error ? errorText(info) : 'INFO replication has no role';
    return { ...base, level: 'unreadable', value: null, text: `cannot read INFO replication on ${node}: ${why}` };
  }
  if (r.replicas.length === 0) return { ...base, level: 'ok', value: 0, text: `${node} has no replica` };
  let worst: GuardReading = { ...base, level: 'ok', value: 0, text: `${r.replicas.length} replica(s) of ${node} in sync` };
  for (const rep of r.replicas) {
    const behind = Math.max(0, r.masterOffset - rep.offset);
    const measure = (l: LagLevel): number => (l.unit === 's' ? rep.lagSeconds : behind);
    const shown = `replica ${rep.addr} of ${node}: last ACK ${rep.lagSeconds}s ago, ${fmtBytes(behind)} behind`;
    let reading: GuardReading;
    if (rep.state !== 'online') {
      // A replica in a full resync is the worst moment to add load; it recovers by itself.
      reading = { ...base, level: 'over', value: null, text: `replica ${rep.addr} of ${node} is not online (state=${rep.state})` };
    } else if (levels.critical !== null && measure(levels.critical) >= levels.critical.value) {
      reading = { ...base, level: 'critical', value: measure(levels.critical), text: `${shown} ≥ critical ${fmtLag(levels.critical)}` };
    } else if (levels.throttle !== null && measure(levels.throttle) > levels.throttle.value) {
      reading = { ...base, level: 'over', value: measure(levels.throttle), text: `${shown} > ${fmtLag(levels.throttle)}` };
    } else {
      reading = { ...base, level: 'ok', value: levels.throttle ? measure(levels.throttle) : rep.lagSeconds, text: shown };
    }
    if (LEVEL_ORDER[reading.level] > LEVEL_ORDER[worst.level] || (reading.level === worst.level && (reading.value ?? 0) > (worst.value ?? 0))) worst = reading;
  }
  return worst;
}

/** Latency guard on one master, from its probe. */
export function evaluateLatency(
  node: string,
  probe: { p99: number | null; samples: number; error: string | null },
  levels: GuardSettings['latency'],
): GuardReading {
  const base = { guard: GuardName.Latency, node, pauses: true } as const;
  if (probe.p99 === null) {
    return { ...base, level: 'unreadable', value: null, text: `no latency probe answer from ${node} yet${probe.error ? `: ${probe.error}` : ''}` };
  }
  const head = `probe p99 ${probe.p99.toFixed(1)} ms on ${node} (${probe.samples} PINGs in ${PROBE_WINDOW_S}s)`;
  if (levels.criticalMs !== null && probe.p99 >= levels.criticalMs)
    return { ...base, level: 'critical', value: probe.p99, text: `${head} ≥ critical ${levels.criticalMs} ms` };
  if (levels.throttleMs !== null && probe.p99 > levels.throttleMs)
    return { ...base, level: 'over', value: probe.p99, text: `${head} > ${levels.throttleMs} ms` };
  return { ...base, level: 'ok', value: probe.p99, text: head };
}

const PROBE_WINDOW_S = 3;

/** Where the controller gets its readings from (the Redis implementation below; a fake in unit tests). */
export interface GuardSignals {
  sample(): Promise<GuardReading[]>;
  close(): void;
}

/** Readings from every master through its dedicated {@link NodeProbe}. */
export class RedisGuardSignals implements GuardSignals {
  private readonly on: ReturnType<typeof activeGuards>;

  constructor(
    private readonly probes: NodeProbe[],
    private readonly settings: GuardSettings,
  ) {
    this.on = activeGuards(settings);
    if (this.on.latency) for (const p of probes) p.startLatencyProbe();
  }

  async sample(): Promise<GuardReading[]> {
    const per = await Promise.all(
      this.probes.map(async (p) => {
        const out: GuardReading[] = [];
        const read = (section: 'memory' | 'replication'): Promise<Record<string, string> | Error> =>
          p.info(section).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
        const [mem, repl] = await Promise.all([this.on.memory ? read('memory') : null, this.on.replicaLag ? read('replication') : null]);
        if (mem !== null) out.push(evaluateMemory(p.addr, mem, this.settings.memory));
        if (repl !== null) out.push(evaluateReplicas(p.addr, repl, this.settings.replicaLag));
        if (this.on.latency) out.push(evaluateLatency(p.addr, p.latencyP99(), this.settings.latency));
        return out;
      }),
    );
    return per.flat();
  }

  close(): void {
    for (const p of this.probes) p.close();
  }
}
