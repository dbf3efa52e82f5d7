/**
 * `preflight`: can this Redis take the migration? Run on its own, and first by
 * `enable-dual-write` and `backfill` (src/cli/commands/preflight.ts), whose
 * refusals are gates forced one by one (`--force memory --reason "…"`).
 *
 * Checks, each `ok`, `warn` or `refuse`, on every master:
 *
 * | check      | refuses when                                                                 | warns when |
 * |------------|------------------------------------------------------------------------------|------------|
 * | `version`  | a master runs Redis < 7.0 (COPY, PEXPIRETIME, RESTORE ABSTTL), or cannot be read | |
 * | `eviction` | `maxmemory-policy` is `allkeys-*`: eviction would delete jobs and the state record | `volatile-*`: jobs with a TTL may go early |
 * | `memory`   | used + 1.1 × the projected growth would pass `--max-memory-pct` of maxmemory | it comes within 10 points of it; no maxmemory |
 * | `replicas` | a replica is not online, or lags more than `--max-replica-lag`; we talk to a replica | the replica output buffer limit would cut a replica that stalls < 60 s at the write rate |
 * | `cluster`  | a master is down or in fail state, slots are not all covered; a cluster node without `--cluster` | |
 *
 * A check whose signal cannot be read refuses (fail closed), naming the fix.
 *
 * The memory projection (src/ops/guards/memory-model.ts) samples `MEMORY
 * USAGE` of legacy records (SCAN order is hash order, so the first keys are a
 * random sample) until the mean is known within a few percent, times the
 * migratable count, plus the index and the hash-table growth, per master by
 * its share of the slots. `projection` carries the figures (bytes).
 */
import type { Cluster, Redis } from 'ioredis';
import { isWorkspaceId } from '../core/ids.js';
import { createdAtScore } from '../core/job.js';
import type { Keyspace } from '../core/keys.js';
import { isAclDenial, isCluster, masterNodes, nodeAddress, type RedisClient } from '../core/redis.js';
import type { OpContext, ProgressFn } from './context.js';
import type { GateStatus } from './gates.js';
import { errorText, fmtBytes, fmtLag, type LagLevel } from './guards/guards.js';
import { dictTableBytes, indexBytes, v2RecordBytes, workspaceSizes, type MemoryModel, type RecordSample } from './guards/memory-model.js';
import { memoryFromInfo, parseInfo, replicationFromInfo } from './guards/signals.js';

/** The preflight checks, named as the gates `--force` overrides. */
export const PreflightGate = { Version: 'version', Eviction: 'eviction', Memory: 'memory', Replicas: 'replicas', Cluster: 'cluster' } as const;
export type PreflightGate = (typeof PreflightGate)[keyof typeof PreflightGate];
export const PREFLIGHT_GATES: readonly PreflightGate[] = Object.values(PreflightGate);

/** One check (`--json`: `{name, ok, level, detail}` plus the fix). */
export interface PreflightCheck {
  name: PreflightGate;
  ok: boolean;
  level: 'ok' | 'warn' | 'refuse';
  /** What was found, one line per master joined with "; ". */
  detail: string;
  /** What to do about a refusal or a warning. */
  fix: string | null;
}

/** The projection on one master. */
export interface NodeProjection {
  node: string;
  usedBytes: number;
  maxmemoryBytes: number;
  /** Share of the growth that lands here (its share of the slots). */
  share: number;
  growthBytes: number;
  projectedUsedBytes: number;
  /** Of maxmemory (or of system memory without one); null when neither is known. */
  projectedPct: number | null;
}

/** The memory projection (`--json` `projection`; bytes). */
export interface MemoryProjection {
  /** Mean bytes a v2 copy of one job adds (record, key, expiry entry). */
  perJobBytes: number;
  /** Migratable legacy jobs (estimated unless `exact`). */
  jobs: number;
  /** Bytes of the v2 copies still to make. */
  v2Bytes: number;
  /** Bytes of the workspace indexes still to build. */
  indexBytes: number;
  /** used_memory now, all masters. */
  usedBytes: number;
  /** maxmemory, all masters (0 when any master has none). */
  maxmemoryBytes: number;
  /** v2 records that already exist (a resumed backfill, live dual writes). */
  existingV2: number;
  /** Jobs still to copy. */
  pendingJobs: number;
  /** Growth of the main and expires hash tables. */
  tableBytes: number;
  /** v2Bytes + indexBytes + tableBytes. */
  growthBytes: number;
  projectedUsedBytes: number;
  /** Records sampled with MEMORY USAGE. */
  samples: number;
  /** 95% confidence half-width of the per-job mean, in percent. */
  sampleErrorPct: number;
  /** Estimated workspaces (= indexes). */
  workspaces: number;
  /** Share of sampled legacy keys that are not migratable (never copied). */
  unmigratableShare: number;
  /** Mean length of a v2 key, an index key and a member (for the replication stream estimate). */
  keyBytes: number;
  indexKeyBytes: number;
  memberBytes: number;
  /** Counts are exact (SCAN) rather than sampled (RANDOMKEY × DBSIZE). */
  exact: boolean;
  model: MemoryModel;
  nodes: NodeProjection[];
}

/** Result of {@link preflight} (`--json`). */
export interface PreflightResult {
  /** No check refuses. */
  ok: boolean;
  checks: PreflightCheck[];
  projection: MemoryProjection | null;
  durationMs: number;
  /**
   * An ACL refusal met while reading (the checks it hid refuse, failing closed).
   * A missing grant is a configuration error to fix, not a gate: callers raise it
   * (exit 2, naming the rule) unless every check it hid was forced by name.
   */
  denied: Error | null;
}

/** Options of {@link preflight}. */
export interface PreflightOptions {
  /** The memory guard's throttle level the projection must stay under (default 90). */
  maxMemoryPct?: number | null;
  /** Replica lag above which the replicas check refuses (default 10 s). */
  maxReplicaLag?: LagLevel | null;
  /** The run's --rate, for the replica output buffer check (default: full speed, {@link ASSUMED_FULL_SPEED}). */
  rate?: number | null;
  /** Records to sample with MEMORY USAGE at least (default 2000). */
  samples?: number;
  /**
   * The masters, when the client cannot give them: a cluster in fail state
   * refuses a cluster connection, so the command reaches each master on its
   * own (null = it did not answer). Default: the client's masters.
   */
  masters?: Array<{ addr: string; node: Redis | null; error?: Error }>;
  /** Treat the masters as one Redis Cluster (default: whether the client is a cluster client). */
  cluster?: boolean;
  onProgress?: ProgressFn;
}

/** Default --max-memory-pct (the memory guard's throttle level). */
export const DEFAULT_MAX_MEMORY_PCT = 90;
/** Default replica lag level. */
export const DEFAULT_MAX_REPLICA_LAG: LagLevel = { value: 10, unit: 's' };
/** Keys/s an unthrottled backfill reaches on one node (README performance report), for the buffer check. */
export const ASSUMED_FULL_SPEED = 40_000;
/** The projection's margin: it is within ±10%, so it is taken at +10% against the level. */
export const PROJECTION_MARGIN = 0.1;
const DEFAULT_SAMPLES = 2000;
const MAX_SAMPLES = 10_000;
/** Sample more while the per-job mean is not known within this (95% half-width). */
const TARGET_ERROR_PCT = 2;
/** Up to this many keys on a master, counts are exact (one SCAN pass); above it, sampled. */
const EXACT_COUNT_LIMIT = 250_000;
const RANDOMKEY_SAMPLES = 2000;
/** SCAN calls spent looking for legacy records to sample, per master. */
const MAX_SAMPLE_SCANS = 300;
const NODE_TIMEOUT_MS = 3000;
/** Without a seconds-based replica-lag guard, a replica should be able to stall this long before its output buffer cuts it. */
const MIN_REPLICA_STALL_S = 60;
/** Seconds the replica-lag guard needs beyond its level to notice a stall (Redis reports the lag in whole seconds) and pause. */
const GUARD_REACTION_S = 5;

/**
 * Replication bytes one copied key costs. On one node the batch script's
 * effects are a COPY and a ZADD (key names, a member and a score); on a
 * cluster a RESTORE carries the record's serialized value, which the in-memory
 * size bounds.
 */
export function replicationBytesPerKey(p: MemoryProjection | null, cluster: boolean): number {
  if (!p || p.perJobBytes === 0) return 500;
  if (cluster) return p.perJobBytes;
  return Math.max(1, Math.round(p.keyBytes * 2 + p.indexKeyBytes + p.memberBytes + 80));
}

/** Seconds until a stalled replica is dropped: the hard limit, or the soft limit held for its seconds, at `stream` bytes/s. */
export function timeToCut(ob: { hard: number; soft: number; softSeconds: number }, stream: number): number {
  const hard = ob.hard > 0 ? ob.hard / stream : Infinity;
  const soft = ob.soft > 0 && ob.softSeconds > 0 ? ob.soft / stream + ob.softSeconds : Infinity;
  return Math.min(hard, soft);
}

/** The largest replication stream (bytes/s) a replica survives stalling `needed` seconds with. */
export function maxStream(ob: { hard: number; soft: number; softSeconds: number }, needed: number): number {
  const hard = ob.hard > 0 ? ob.hard / needed : Infinity;
  const soft = ob.soft > 0 && ob.softSeconds > 0 && needed > ob.softSeconds ? ob.soft / (needed - ob.softSeconds) : Infinity;
  return Math.min(hard, soft);
}
const CLUSTER_SLOTS = 16384;
const MB = 1024 * 1024;

/** Rejects after `ms` (a master that is down must not hang preflight). */
function timed<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** What one master says about itself. */
interface NodeFacts {
  addr: string;
  /** null when the master could not be reached at all. */
  node: Redis | null;
  server: Record<string, string> | Error;
  memory: Record<string, string> | Error;
  replication: Record<string, string> | Error;
  keyspace: Record<string, string> | Error;
  cluster: Record<string, string> | Error;
  /** client-output-buffer-limit (replica class), or why not. */
  outputBuffer: { hard: number; soft: number; softSeconds: number } | Error;
  zset: { entries: number; value: number } | null;
  quantum: number | null;
}

/** A refusal that asking again will not change (ACL, credentials). */
export function isPermanent(err: Error): boolean {
  return /^(NOPERM|WRONGPASS|NOAUTH)\b/.test(err.message);
}

async function info(node: Redis, section: string, addr: string): Promise<Record<string, string> | Error> {
  let last: Error = new Error('not asked');
  // A timeout on a busy server is asked again (twice); a refusal is final at once.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return parseInfo(await timed(node.info(section), NODE_TIMEOUT_MS, `INFO ${section} on ${addr}`));
    } catch (e) {
      last = e instanceof Error ? e : new Error(String(e));
      if (isPermanent(last)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return last;
}

/** A config value, or why it could not be read (the reason is shown, never turned into a value). */
async function configGet(node: Redis, name: string, addr: string): Promise<string | Error> {
  try {
    const r = (await timed(node.config('GET', name), NODE_TIMEOUT_MS, `CONFIG GET on ${addr}`)) as string[];
    return r.length >= 2 ? String(r[1]) : new Error(`CONFIG GET ${name} returned nothing on ${addr}`);
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** Facts of a master that did not answer at all. */
function unreachable(addr: string, error: Error): NodeFacts {
  return {
    addr,
    node: null,
    server: error,
    memory: error,
    replication: error,
    keyspace: error,
    cluster: error,
    outputBuffer: error,
    zset: null,
    quantum: null,
  };
}

async function gatherNode(node: Redis, addr = nodeAddress(node)): Promise<NodeFacts> {
  const [server, memory, replication, keyspace, cluster, obl, zEntries, zValue, stats] = await Promise.all([
    info(node, 'server', addr),
    info(node, 'memory', addr),
    info(node, 'replication', addr),
    info(node, 'keyspace', addr),
    info(node, 'cluster', addr),
    configGet(node, 'client-output-buffer-limit', addr),
    configGet(node, 'zset-max-listpack-entries', addr),
    configGet(node, 'zset-max-listpack-value', addr),
    timed(node.call('MEMORY', 'MALLOC-STATS') as Promise<string>, NODE_TIMEOUT_MS, 'MEMORY MALLOC-STATS').catch(() => null),
  ]);
  const q = typeof stats === 'string' ? /Quantum size:\s*([0-9]+)/.exec(stats) : null;
  return {
    addr,
    node,
    server,
    memory,
    replication,
    keyspace,
    cluster,
    outputBuffer: obl instanceof Error ? new Error(`CONFIG GET client-output-buffer-limit failed: ${errorText(obl)}`) : parseOutputBuffer(obl),
    // Unreadable (CONFIG disabled on managed Redis): the projection uses Redis' defaults for the index encoding.
    zset: typeof zEntries === 'string' && typeof zValue === 'string' ? { entries: Number(zEntries), value: Number(zValue) } : null,
    quantum: q ? Number(q[1]) : null,
  };
}

/** The replica class of `client-output-buffer-limit` ("normal 0 0 0 slave 268435456 67108864 60 pubsub …"). */
export function parseOutputBuffer(v: string): { hard: number; soft: number; softSeconds: number } | Error {
  const m = /(?:^|\s)(?:slave|replica)\s+([0-9]+)\s+([0-9]+)\s+([0-9]+)/.exec(v);
  return m
    ? { hard: Number(m[1]), soft: Number(m[2]), softSeconds: Number(m[3]) }
    : new Error(`cannot parse client-output-buffer-limit ${JSON.stringify(v.slice(0, 80))}`);
}

/** Redis version "7.0.15" → [7, 0]; null when unparseable. */
function versionOf(v: string | undefined): [number, number] | null {
  const m = /^([0-9]+)\.([0-9]+)/.exec(v ?? '');
  return m ? [Number(m[1]), Number(m[2])] : null;
}

function check(name: PreflightGate, level: PreflightCheck['level'], detail: string, fix: string | null = null): PreflightCheck {
  return { name, ok: level !== 'refuse', level, detail, fix };
}

const worst = (levels: Array<PreflightCheck['level']>): PreflightCheck['level'] =>
  levels.includes('refuse') ? 'refuse' : levels.includes('warn') ? 'warn' : 'ok';

const FIX_UNREADABLE =
  'Check that every master is reachable and that the user may run INFO, MEMORY and CONFIG GET (e.g. ACL SETUSER <user> +info +memory +config|get); then rerun';

function versionCheck(facts: NodeFacts[]): PreflightCheck {
  const lines: string[] = [];
  const levels: Array<PreflightCheck['level']> = [];
  for (const f of facts) {
    if (f.server instanceof Error) {
      levels.push('refuse');
      lines.push(`cannot read INFO server on ${f.addr}: ${errorText(f.server)}`);
      continue;
    }
    const v = versionOf(f.server.redis_version);
    const ok = v !== null && (v[0] > 7 || (v[0] === 7 && v[1] >= 0));
    levels.push(ok ? 'ok' : 'refuse');
    lines.push(`${f.addr} runs Redis ${f.server.redis_version ?? '?'}${ok ? '' : ' (7.0+ is needed for COPY, PEXPIRETIME and RESTORE ABSTTL)'}`);
  }
  const level = worst(levels);
  return check(
    PreflightGate.Version,
    level,
    lines.join('; '),
    level === 'refuse' ? (lines.some((l) => l.startsWith('cannot')) ? FIX_UNREADABLE : 'Upgrade every master to Redis 7.0 or later, then rerun') : null,
  );
}

function evictionCheck(facts: NodeFacts[]): PreflightCheck {
  const lines: string[] = [];
  const levels: Array<PreflightCheck['level']> = [];
  for (const f of facts) {
    const m = f.memory instanceof Error ? null : memoryFromInfo(f.memory);
    if (!m) {
      levels.push('refuse');
      lines.push(`cannot read INFO memory on ${f.addr}${f.memory instanceof Error ? `: ${errorText(f.memory)}` : ''}`);
      continue;
    }
    if (m.policy.startsWith('allkeys-')) {
      levels.push('refuse');
      lines.push(`${f.addr} has maxmemory-policy ${m.policy}: at maxmemory Redis would evict jobs, v2 copies and the migration state record without a word`);
    } else if (m.policy.startsWith('volatile-')) {
      levels.push('warn');
      lines.push(`${f.addr} has maxmemory-policy ${m.policy}: at maxmemory, jobs with a TTL may be evicted before they expire`);
    } else {
      levels.push('ok');
      lines.push(`${f.addr} has maxmemory-policy ${m.policy}`);
    }
  }
  const level = worst(levels);
  const fix =
    level === 'refuse'
      ? lines.some((l) => l.startsWith('cannot'))
        ? FIX_UNREADABLE
        : 'CONFIG SET maxmemory-policy noeviction (or volatile-*) on every master for the migration, then rerun'
      : level === 'warn'
        ? 'Consider CONFIG SET maxmemory-policy noeviction during the migration; the memory guard stops the run before maxmemory'
        : null;
  return check(PreflightGate.Eviction, level, lines.join('; '), fix);
}

/** Counts of the layouts on one master. */
interface NodeCounts {
  legacy: number;
  v2: number;
  exact: boolean;
}

async function countNode(node: Redis, keys: Keyspace): Promise<NodeCounts> {
  const size = await node.dbsize();
  if (size <= EXACT_COUNT_LIMIT) {
    let legacy = 0;
    let v2 = 0;
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', keys.jobFamilyPattern, 'COUNT', 1000);
      cursor = next;
      for (const k of found) {
        const l = keys.layoutOf(k);
        if (l === 'legacy') legacy++;
        else if (l === 'v2') v2++;
      }
    } while (cursor !== '0');
    return { legacy, v2, exact: true };
  }
  const p = node.pipeline();
  for (let i = 0; i < RANDOMKEY_SAMPLES; i++) p.randomkey();
  let legacy = 0;
  let v2 = 0;
  let seen = 0;
  for (const [err, k] of (await p.exec()) ?? []) {
    if (err || typeof k !== 'string') continue;
    seen++;
    const l = keys.layoutOf(k);
    if (l === 'legacy') legacy++;
    else if (l === 'v2') v2++;
  }
  return seen === 0 ? { legacy: 0, v2: 0, exact: false } : { legacy: Math.round((legacy / seen) * size), v2: Math.round((v2 / seen) * size), exact: false };
}

/** One sampled legacy key. */
interface Sampled {
  ok: boolean;
  record: RecordSample | null;
  workspace: string | null;
  jobId: string | null;
  score: number | null;
}

/** Samples up to `want` legacy records of one master, from `cursor`; returns the samples and where to go on. */
async function sampleNode(node: Redis, keys: Keyspace, want: number, from: string): Promise<{ samples: Sampled[]; cursor: string }> {
  const picked: string[] = [];
  let cursor = from;
  let calls = 0;
  do {
    const [next, found] = await node.scan(cursor, 'MATCH', keys.legacyPattern, 'COUNT', 1000);
    cursor = next;
    picked.push(...found);
    calls++;
  } while (cursor !== '0' && picked.length < want && calls < MAX_SAMPLE_SCANS);
  const list = picked.slice(0, Math.max(want, 0));
  // Keys beyond `want` in the last page are dropped; resuming at `cursor` may skip them, which a sample can afford.
  const samples: Sampled[] = [];
  const bad: Sampled = { ok: false, record: null, workspace: null, jobId: null, score: null };
  // A key whose name is not a valid job id is never copied; it is not even read (a name that is
  // not UTF-8 would not survive the round trip through a string and would be asked of another slot).
  const named = list.filter((k) => {
    if (keys.parseLegacy(k) !== null) return true;
    samples.push(bad);
    return false;
  });
  if (named.length === 0) return { samples, cursor };
  const p = node.pipeline();
  for (const k of named) {
    p.type(k);
    p.call('MEMORY', 'USAGE', k, 'SAMPLES', '0');
    p.call('OBJECT', 'ENCODING', k);
    p.hlen(k);
    p.hmget(k, 'workspace_id', 'created_at');
    p.pttl(k);
  }
  const r = (await p.exec()) ?? [];
  let failed: Error | null = null;
  named.forEach((k, i) => {
    const at = (j: number): [Error | null, unknown] => (r[i * 6 + j] ?? [new Error('no reply'), null]) as [Error | null, unknown];
    const [tErr, type] = at(0);
    const [uErr, usage] = at(1);
    if (tErr || uErr) {
      failed = tErr ?? uErr;
      return;
    }
    if (type === 'none' || usage === null) return; // expired meanwhile
    const jobId = keys.parseLegacy(k)!;
    const [, enc] = at(2);
    const [, hlen] = at(3);
    const [, hm] = at(4);
    const [, pttl] = at(5);
    const [ws, createdAt] = (Array.isArray(hm) ? hm : [null, null]) as Array<string | null>;
    if (type !== 'hash' || ws === null || !isWorkspaceId(ws)) {
      samples.push(bad);
      return;
    }
    samples.push({
      ok: true,
      workspace: ws,
      jobId,
      score: createdAtScore(createdAt),
      record: {
        usage: Number(usage),
        legacyKeyLen: Buffer.byteLength(k),
        v2KeyLen: Buffer.byteLength(keys.v2Job(ws, jobId)),
        encoding: String(enc),
        fields: Number(hlen),
        hasTtl: Number(pttl) > 0,
      },
    });
  });
  // MEMORY refused (ACL) or a node gone: the projection cannot be made, and the check says why.
  if (failed !== null && !samples.some((s) => s.ok)) throw failed;
  return { samples, cursor };
}

/** Mean and 95% half-width (percent of the mean). */
function meanAndError(values: number[]): { mean: number; errorPct: number } {
  if (values.length === 0) return { mean: 0, errorPct: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  if (values.length < 2 || mean === 0) return { mean, errorPct: values.length < 2 ? 100 : 0 };
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1);
  return { mean, errorPct: ((1.96 * Math.sqrt(variance / values.length)) / mean) * 100 };
}

/** Each master's share of the slots (1 on a single node). */
function slotShares(client: RedisClient, facts: NodeFacts[], cluster: boolean): Map<string, number> {
  const shares = new Map<string, number>();
  if (!cluster || !isCluster(client)) {
    for (const f of facts) shares.set(f.addr, 1 / facts.length);
    return shares;
  }
  const slots = (client as Cluster & { slots?: string[][] }).slots ?? [];
  const owned = new Map<string, number>();
  for (const owners of slots) {
    const master = owners?.[0];
    if (master) owned.set(master, (owned.get(master) ?? 0) + 1);
  }
  const known = [...owned.values()].reduce((a, b) => a + b, 0);
  for (const f of facts) shares.set(f.addr, known > 0 ? (owned.get(f.addr) ?? 0) / CLUSTER_SLOTS : 1 / facts.length);
  return shares;
}

/** `db0:keys=…,expires=…` → expires count. */
function expiresOf(keyspace: Record<string, string> | Error): number {
  if (keyspace instanceof Error) return 0;
  const m = /expires=([0-9]+)/.exec(keyspace.db0 ?? '');
  return m ? Number(m[1]) : 0;
}

/** Builds the projection; throws when a master cannot be sampled (the memory check then refuses). */
async function project(ctx: OpContext, all: NodeFacts[], opts: PreflightOptions, cluster: boolean): Promise<MemoryProjection> {
  const { keys, client } = ctx;
  const facts = all as Array<NodeFacts & { node: Redis }>;
  const f0 = facts[0];
  const model: MemoryModel = {
    quantum: facts.find((f) => f.quantum !== null)?.quantum ?? 16,
    zsetMaxEntries: f0?.zset?.entries ?? 128,
    zsetMaxValue: f0?.zset?.value ?? 64,
    cluster,
  };
  const counts = await Promise.all(facts.map((f) => timed(countNode(f.node, keys), 120_000, `counting keys on ${f.addr}`)));
  const legacyTotal = counts.reduce((a, c) => a + c.legacy, 0);
  const want = Math.max(opts.samples ?? DEFAULT_SAMPLES, 1);
  // Per master, in proportion to its legacy keys.
  const perNode: Sampled[][] = facts.map(() => []);
  const cursors = facts.map(() => '0');
  const exhausted = facts.map(() => false);
  let target = want;
  for (;;) {
    await Promise.all(
      facts.map(async (f, i) => {
        if (exhausted[i]) return;
        const share = legacyTotal > 0 ? counts[i]!.legacy / legacyTotal : 0;
        const need = Math.ceil(target * share) - perNode[i]!.length;
        if (need <= 0) return;
        const r = await sampleNode(f.node, keys, need, cursors[i]!);
        cursors[i] = r.cursor;
        if (r.cursor === '0') exhausted[i] = true;
        perNode[i]!.push(...r.samples);
      }),
    );
    const per = perNode
      .flat()
      .filter((s) => s.ok)
      .map((s) => v2RecordBytes(s.record!, model));
    const { errorPct } = meanAndError(per);
    if (errorPct <= TARGET_ERROR_PCT || exhausted.every(Boolean) || target >= MAX_SAMPLES) break;
    target = Math.min(MAX_SAMPLES, target * 2);
    opts.onProgress?.({
      stage: 'preflight',
      done: perNode.flat().length,
      total: null,
      totalIsEstimate: true,
      message: `per-job size known within ±${errorPct.toFixed(1)}%: sampling up to ${target} records`,
    });
  }
  const samples = perNode.flat();
  const good = samples.filter((s) => s.ok);
  const perJob = good.map((s) => v2RecordBytes(s.record!, model));
  const { mean: perJobBytes, errorPct } = meanAndError(perJob);
  const unmigratableShare = samples.length > 0 ? 1 - good.length / samples.length : 0;
  const exact = counts.every((c) => c.exact);
  const jobs = Math.round(legacyTotal * (1 - unmigratableShare));
  const existingV2 = counts.reduce((a, c) => a + c.v2, 0);
  const pendingJobs = Math.max(0, jobs - existingV2);
  const pendingShare = jobs > 0 ? pendingJobs / jobs : 0;

  // The index: one sorted set per workspace.
  const byWs = new Map<string, number>();
  for (const s of good) byWs.set(s.workspace!, (byWs.get(s.workspace!) ?? 0) + 1);
  const exhaustive = exhausted.every(Boolean) && good.length >= jobs;
  const groups = workspaceSizes(byWs, good.length, exhaustive ? good.length : jobs);
  const memberLen = good.length > 0 ? good.reduce((a, s) => a + Buffer.byteLength(s.jobId!), 0) / good.length : 0;
  const wsLen = good.length > 0 ? good.reduce((a, s) => a + s.workspace!.length, 0) / good.length : 0;
  const member = good[0]?.jobId ?? 'x'.repeat(Math.round(memberLen));
  const score = String(good[0]?.score ?? 0);
  let idx = 0;
  let workspaces = 0;
  for (const g of groups) {
    idx += g.count * indexBytes(Math.round(g.size), memberLen, keys.prefix.length + ':job-index:'.length + wsLen, model, member, score);
    workspaces += g.count;
  }
  const indexTotal = Math.round(idx * pendingShare);
  const v2Bytes = Math.round(perJobBytes * pendingJobs);
  const ttlShare = good.length > 0 ? good.filter((s) => s.record!.hasTtl).length / good.length : 0;

  // Hash tables, per master by its share of the slots.
  const shares = slotShares(client, facts, cluster);
  let tableBytes = 0;
  const nodeTables: number[] = [];
  for (const f of facts) {
    const share = shares.get(f.addr) ?? 0;
    const before = f.keyspace instanceof Error ? 0 : Number(/keys=([0-9]+)/.exec(f.keyspace.db0 ?? '')?.[1] ?? 0);
    const added = (pendingJobs + (pendingJobs > 0 ? workspaces : 0)) * share;
    const expBefore = expiresOf(f.keyspace);
    const expAdded = pendingJobs * ttlShare * share;
    const t =
      dictTableBytes(before + added, model.quantum) -
      dictTableBytes(before, model.quantum) +
      (dictTableBytes(expBefore + expAdded, model.quantum) - dictTableBytes(expBefore, model.quantum));
    nodeTables.push(t);
    tableBytes += t;
  }
  const growthBytes = v2Bytes + indexTotal + tableBytes;
  const nodes: NodeProjection[] = facts.map((f, i) => {
    const m = f.memory instanceof Error ? null : memoryFromInfo(f.memory);
    const share = shares.get(f.addr) ?? 0;
    const used = m?.usedBytes ?? 0;
    const growth = Math.round((v2Bytes + indexTotal) * share + nodeTables[i]!);
    const limit = m ? (m.maxmemoryBytes > 0 ? m.maxmemoryBytes : m.totalSystemBytes) : null;
    return {
      node: f.addr,
      usedBytes: used,
      maxmemoryBytes: m?.maxmemoryBytes ?? 0,
      share,
      growthBytes: growth,
      projectedUsedBytes: used + growth,
      projectedPct: limit ? ((used + growth * (1 + PROJECTION_MARGIN)) / limit) * 100 : null,
    };
  });
  const usedBytes = nodes.reduce((a, n) => a + n.usedBytes, 0);
  return {
    perJobBytes: Math.round(perJobBytes),
    jobs,
    v2Bytes,
    indexBytes: indexTotal,
    usedBytes,
    maxmemoryBytes: nodes.some((n) => n.maxmemoryBytes === 0) ? 0 : nodes.reduce((a, n) => a + n.maxmemoryBytes, 0),
    existingV2,
    pendingJobs,
    tableBytes,
    growthBytes,
    projectedUsedBytes: usedBytes + growthBytes,
    samples: samples.length,
    sampleErrorPct: Math.round(errorPct * 10) / 10,
    workspaces: Math.round(workspaces),
    unmigratableShare: Math.round(unmigratableShare * 1000) / 1000,
    keyBytes: good.length > 0 ? Math.round(good.reduce((a, x) => a + x.record!.v2KeyLen, 0) / good.length) : 0,
    indexKeyBytes: Math.round(keys.prefix.length + ':job-index:'.length + wsLen),
    memberBytes: Math.round(memberLen),
    exact,
    model,
    nodes,
  };
}

function memoryCheck(facts: NodeFacts[], projection: MemoryProjection | Error, maxPct: number | null): PreflightCheck {
  if (projection instanceof Error)
    return check(PreflightGate.Memory, 'refuse', `cannot project the memory the migration needs: ${errorText(projection)}`, FIX_UNREADABLE);
  const level = maxPct ?? 100;
  const head = `${projection.jobs.toLocaleString('en-US')} job(s) to migrate${projection.existingV2 > 0 ? ` (${projection.existingV2.toLocaleString('en-US')} already in v2)` : ''}: +${fmtBytes(projection.growthBytes)} projected (${fmtBytes(projection.v2Bytes)} v2 copies at ${projection.perJobBytes} B/job ±${projection.sampleErrorPct}%, ${fmtBytes(projection.indexBytes)} index, ${fmtBytes(projection.tableBytes)} hash tables)`;
  const lines: string[] = [head];
  const levels: Array<PreflightCheck['level']> = [];
  let suggestion: string | null = null;
  for (const n of projection.nodes) {
    const f = facts.find((x) => x.addr === n.node);
    const m = f && !(f.memory instanceof Error) ? memoryFromInfo(f.memory) : null;
    if (!m) {
      levels.push('refuse');
      lines.push(`cannot read INFO memory on ${n.node}`);
      continue;
    }
    const pct = n.projectedPct;
    const after = `${fmtBytes(n.usedBytes)} → ${fmtBytes(n.projectedUsedBytes)}`;
    if (m.maxmemoryBytes === 0) {
      levels.push(pct !== null && pct > level ? 'refuse' : 'warn');
      lines.push(
        `${n.node} has no maxmemory: ${after}${pct === null ? '' : ` (${pct.toFixed(0)}% of system memory with the margin)`}; without a limit Redis grows until the OS kills it, and the memory guard measures against system memory`,
      );
      suggestion ??= 'Set maxmemory on every master (CONFIG SET maxmemory …) so the memory guard and this check have a limit to hold';
      continue;
    }
    // With room for what a connection or two add meanwhile, in whole megabytes.
    const needed = Math.ceil((((n.usedBytes + n.growthBytes * (1 + PROJECTION_MARGIN)) / (level / 100)) * 1.02) / MB) * MB;
    if (pct! > level) {
      levels.push('refuse');
      lines.push(
        `${n.node}: ${after} of maxmemory ${fmtBytes(m.maxmemoryBytes)} = ${pct!.toFixed(1)}% with the ${PROJECTION_MARGIN * 100}% margin, over the ${level}% the memory guard allows`,
      );
      suggestion = `Raise maxmemory to at least ${fmtBytes(needed)} on ${n.node} (CONFIG SET maxmemory ${needed}), or free memory; then rerun. The memory guard would slow the run at ${level}% and stop it at its critical level`;
    } else if (pct! > level - 10) {
      levels.push('warn');
      lines.push(
        `${n.node}: ${after} of maxmemory ${fmtBytes(m.maxmemoryBytes)} = ${pct!.toFixed(1)}% with the margin, close to the ${level}% the memory guard allows`,
      );
      suggestion ??= `Consider raising maxmemory on ${n.node} to ${fmtBytes(needed)} or more`;
    } else {
      levels.push('ok');
      lines.push(`${n.node}: ${after} of maxmemory ${fmtBytes(m.maxmemoryBytes)} = ${pct!.toFixed(1)}% with the margin`);
    }
  }
  return check(PreflightGate.Memory, worst(levels), lines.join('; '), worst(levels) === 'ok' ? null : suggestion);
}

function replicasCheck(facts: NodeFacts[], projection: MemoryProjection | null, opts: PreflightOptions): PreflightCheck {
  const max = opts.maxReplicaLag === undefined ? DEFAULT_MAX_REPLICA_LAG : opts.maxReplicaLag;
  const lines: string[] = [];
  const levels: Array<PreflightCheck['level']> = [];
  let fix: string | null = null;
  const rate = opts.rate ?? ASSUMED_FULL_SPEED;
  const bytesPerKey = replicationBytesPerKey(projection, projection?.model.cluster ?? facts.length > 1);
  const stream = rate * bytesPerKey;
  // How long the replica-lag guard may take to pause the run once a replica stalls: its level, plus a few seconds to notice.
  const needed = max === null ? MIN_REPLICA_STALL_S : max.unit === 's' ? max.value + GUARD_REACTION_S : MIN_REPLICA_STALL_S;
  for (const f of facts) {
    const r = f.replication instanceof Error ? null : replicationFromInfo(f.replication);
    if (!r) {
      levels.push('refuse');
      lines.push(`cannot read INFO replication on ${f.addr}${f.replication instanceof Error ? `: ${errorText(f.replication)}` : ''}`);
      fix = FIX_UNREADABLE;
      continue;
    }
    if (r.role !== 'master') {
      levels.push('refuse');
      lines.push(`${f.addr} is a ${r.role}, not a master`);
      fix = 'Point --redis-url at the master (a replica refuses the writes, and its INFO does not show the other replicas)';
      continue;
    }
    if (r.replicas.length === 0) {
      levels.push('ok');
      lines.push(`${f.addr} has no replica`);
      continue;
    }
    for (const rep of r.replicas) {
      const behind = Math.max(0, r.masterOffset - rep.offset);
      const lagging = max !== null && (max.unit === 's' ? rep.lagSeconds > max.value : behind > max.value);
      const shown = `replica ${rep.addr} of ${f.addr}: state ${rep.state}, last ACK ${rep.lagSeconds}s ago, ${fmtBytes(behind)} behind`;
      if (rep.state !== 'online') {
        levels.push('refuse');
        lines.push(`${shown} (not online: a full sync is running)`);
        fix = 'Wait until every replica is online (INFO replication on its master), then rerun';
      } else if (lagging) {
        levels.push('refuse');
        lines.push(`${shown}, over --max-replica-lag ${fmtLag(max)}`);
        fix = 'Find out why the replica lags (network, disk, a stopped process) and rerun once it has caught up';
      } else {
        levels.push('ok');
        lines.push(shown);
      }
    }
    const ob = f.outputBuffer;
    if (ob instanceof Error) {
      levels.push('warn');
      lines.push(`cannot check the replica output buffer limit on ${f.addr}: ${ob.message}`);
      continue;
    }
    const cut = timeToCut(ob, stream);
    if (r.replicas.length > 0 && cut < needed) {
      const safeRate = Math.floor(maxStream(ob, needed) / bytesPerKey);
      levels.push('warn');
      lines.push(
        `${f.addr}: at ${rate.toLocaleString('en-US')} keys/s (~${fmtBytes(stream)}/s of replication) a replica that stalls is dropped after ${cut.toFixed(1)}s by client-output-buffer-limit replica (${fmtBytes(ob.hard)} hard, ${fmtBytes(ob.soft)}/${ob.softSeconds}s soft) and resyncs in full, before the replica-lag guard would pause the run (~${needed}s)`,
      );
      fix ??= `Run with --rate ${Math.max(1, safeRate)} or lower, or raise client-output-buffer-limit replica (e.g. CONFIG SET client-output-buffer-limit "replica 512mb 128mb 60")`;
    }
  }
  return check(PreflightGate.Replicas, worst(levels), lines.join('; '), worst(levels) === 'ok' ? null : fix);
}

async function clusterCheck(cluster: boolean, facts: NodeFacts[], onDenied: (e: Error) => void): Promise<PreflightCheck> {
  if (!cluster) {
    const f = facts[0]!;
    if (f.cluster instanceof Error)
      return check(PreflightGate.Cluster, 'refuse', `cannot read INFO cluster on ${f.addr}: ${errorText(f.cluster)}`, FIX_UNREADABLE);
    if (f.cluster.cluster_enabled === '1') {
      return check(
        PreflightGate.Cluster,
        'refuse',
        `${f.addr} is a Redis Cluster node, but --cluster was not given: only this node would be scanned`,
        'Add --cluster (the URL is then a startup node of the cluster)',
      );
    }
    return check(PreflightGate.Cluster, 'ok', `${f.addr} is a single node (no cluster)`);
  }
  const lines: string[] = [];
  const levels: Array<PreflightCheck['level']> = [];
  let nodesText: string | null = null;
  for (const f of facts) {
    if (f.node === null || f.cluster instanceof Error || f.server instanceof Error) {
      levels.push('refuse');
      lines.push(`master ${f.addr} does not answer: ${errorText(f.server instanceof Error ? f.server : f.cluster)}`);
      continue;
    }
    try {
      const ci = parseInfo(String(await timed(f.node.cluster('INFO') as Promise<string>, NODE_TIMEOUT_MS, `CLUSTER INFO on ${f.addr}`)));
      nodesText ??= String(await timed(f.node.cluster('NODES') as Promise<string>, NODE_TIMEOUT_MS, `CLUSTER NODES on ${f.addr}`));
      const bad = ci.cluster_state !== 'ok' || ci.cluster_slots_ok !== String(CLUSTER_SLOTS);
      levels.push(bad ? 'refuse' : 'ok');
      lines.push(
        `${f.addr}: cluster_state ${ci.cluster_state ?? '?'}, ${ci.cluster_slots_ok ?? '?'}/${CLUSTER_SLOTS} slots ok${Number(ci.cluster_slots_pfail ?? 0) + Number(ci.cluster_slots_fail ?? 0) > 0 ? `, ${ci.cluster_slots_pfail ?? 0} pfail, ${ci.cluster_slots_fail ?? 0} fail` : ''}`,
      );
    } catch (e) {
      if (e instanceof Error && isAclDenial(e)) onDenied(e);
      levels.push('refuse');
      lines.push(`cannot read CLUSTER INFO on ${f.addr}: ${errorText(e)}`);
    }
  }
  for (const line of (nodesText ?? '').split('\n')) {
    const parts = line.split(' ');
    const flags = parts[2] ?? '';
    if (!flags.includes('master')) continue;
    // FAIL is the cluster's agreement that a master is down; PFAIL ("fail?") is one node's suspicion,
    // common for a moment after a restart or under load, so it only warns.
    if (/(^|,)fail(,|$)/.test(flags)) levels.push('refuse');
    else if (/(^|,)fail\?(,|$)/.test(flags)) levels.push('warn');
    else continue;
    const addr = (parts[1] ?? '?').split('@')[0] ?? '?';
    lines.push(`master ${addr} is flagged ${flags}${/fail(,|$)/.test(flags) ? ' (the cluster agrees it is down)' : ''}`);
  }
  const level = worst(levels);
  const fix =
    level === 'refuse'
      ? 'Bring every master back (or let a replica take over) until CLUSTER INFO says cluster_state:ok on every node, then rerun'
      : level === 'warn'
        ? 'A node suspects a master (PFAIL): check CLUSTER NODES again in a few seconds'
        : null;
  return check(PreflightGate.Cluster, level, lines.join('; '), fix);
}

/** Runs every check. Read-only: it takes no lock and writes nothing. */
export async function preflight(ctx: OpContext, opts: PreflightOptions = {}): Promise<PreflightResult> {
  const started = Date.now();
  opts.onProgress?.({ stage: 'preflight', done: 0, total: null, totalIsEstimate: true, message: 'reading every master' });
  const cluster = opts.cluster ?? isCluster(ctx.client);
  const masters: NonNullable<PreflightOptions['masters']> = opts.masters ?? masterNodes(ctx.client).map((node) => ({ addr: nodeAddress(node), node }));
  const facts = await Promise.all(
    masters.map((m) => (m.node ? gatherNode(m.node, m.addr) : Promise.resolve(unreachable(m.addr, m.error ?? new Error('not reachable'))))),
  );
  const reachable = facts.filter((f) => f.node !== null && !(f.server instanceof Error) && !(f.memory instanceof Error));
  let projection: MemoryProjection | Error;
  if (reachable.length < facts.length) {
    projection = new Error(
      `${facts.length - reachable.length} master(s) could not be read (${facts
        .filter((f) => !reachable.includes(f))
        .map((f) => f.addr)
        .join(', ')})`,
    );
  } else {
    opts.onProgress?.({ stage: 'preflight', done: 0, total: null, totalIsEstimate: true, message: 'sampling legacy records for the memory projection' });
    projection = await project(ctx, facts, opts, cluster).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  }
  let denied =
    [projection, ...facts.flatMap((f) => [f.server, f.memory, f.replication, f.keyspace, f.cluster])].find(
      (e): e is Error => e instanceof Error && isAclDenial(e),
    ) ?? null;
  const checks = [
    versionCheck(facts),
    evictionCheck(facts),
    memoryCheck(facts, projection, opts.maxMemoryPct === undefined ? DEFAULT_MAX_MEMORY_PCT : opts.maxMemoryPct),
    replicasCheck(facts, projection instanceof Error ? null : projection, opts),
    await clusterCheck(cluster, facts, (e) => (denied ??= e)),
  ];
  return { ok: checks.every((c) => c.ok), checks, projection: projection instanceof Error ? null : projection, durationMs: Date.now() - started, denied };
}

/**
 * Raises the ACL refusal preflight met (exit 2, naming the grant) unless every
 * check that refuses was forced by name: an operator who overrides them all has
 * chosen to run without what they read.
 */
export function raiseDenied(r: PreflightResult, forced: readonly string[] = []): void {
  if (r.denied && r.checks.some((c) => c.level === 'refuse' && !forced.includes(c.name))) throw r.denied;
}

/** The checks as gates: a refusal is a closed gate, forceable by its name alone. */
export function preflightGates(r: PreflightResult): GateStatus[] {
  return r.checks.map((c) => ({
    name: c.name,
    open: c.level !== 'refuse',
    reason: `preflight ${c.name}: ${c.detail}`,
    opensWith: c.fix,
    forceable: true,
  }));
}
