/**
 * What the migration adds to Redis' `used_memory`, computed the way Redis
 * 7.0 allocates it, so that preflight's projection (src/ops/preflight.ts)
 * lands within ±10% of the growth a backfill really causes.
 *
 * The inputs are measured, not assumed: `MEMORY USAGE key SAMPLES 0` of
 * sampled legacy records (the v2 copy is the same value under a longer key
 * name), the allocator's quantum (`MEMORY MALLOC-STATS`), the zset encoding
 * limits (`CONFIG GET zset-max-listpack-*`) and the key counts. Three things
 * MEMORY USAGE does not show are added here:
 *
 *  - allocator rounding of the fixed-size structs it counts at their C size
 *    (a dictEntry is 24 bytes but a 32-byte allocation with a 16-byte
 *    quantum);
 *  - the expires-dict entry of a copy with a TTL;
 *  - the main and expires hash tables, which double in size as keys are added
 *    (8 bytes per bucket, a power of two ≥ the number of keys);
 *
 * and the index: per workspace a sorted set of job ids scored by created_at,
 * a compact listpack up to `zset-max-listpack-entries` members, else a
 * skiplist plus a dict (~100 bytes per member).
 */

/** Size of the allocation jemalloc makes for `n` bytes (size classes: 4 per doubling above 4 quanta). */
export function sizeClass(n: number, quantum = 16): number {
  if (n <= 0) return 0;
  if (n <= 8) return 8;
  if (n <= 4 * quantum) return Math.ceil(n / quantum) * quantum;
  const spacing = 2 ** (Math.ceil(Math.log2(n)) - 3);
  return Math.ceil(n / spacing) * spacing;
}

/** Bytes of an sds string of `len` bytes (header type by length, NUL terminator, allocator rounding). */
export function sdsBytes(len: number, quantum = 16): number {
  const hdr = len < 32 ? 1 : len < 256 ? 3 : len < 65536 ? 5 : 9;
  return sizeClass(hdr + len + 1, quantum);
}

/** Buckets of a Redis dict holding `n` entries: the smallest power of two ≥ n (min 4), 0 when empty. */
export function dictBuckets(n: number): number {
  if (n <= 0) return 0;
  return Math.max(4, 2 ** Math.ceil(Math.log2(n)));
}

/** Bytes of a dict's bucket array for `n` entries. */
export function dictTableBytes(n: number, quantum = 16): number {
  return sizeClass(dictBuckets(n) * 8, quantum);
}

/** C sizes Redis 7.0 uses (x86-64). */
export const REDIS_SIZES = {
  robj: 16,
  dictEntry: 24,
  /** Slot-to-key metadata a cluster node adds to every main-dict entry (two pointers). */
  clusterEntryMeta: 16,
  dict: 56,
  zset: 16,
  zskiplist: 32,
  /** zskiplistNode without its levels: ele, score, backward. */
  skiplistNode: 24,
  skiplistLevel: 16,
  maxLevel: 32,
} as const;

/** Expected allocation of a skiplist node (level k with probability 0.75 · 0.25^(k-1)). */
export function skiplistNodeBytes(quantum = 16): number {
  let e = 0;
  for (let k = 1; k <= REDIS_SIZES.maxLevel; k++) e += 0.75 * 0.25 ** (k - 1) * sizeClass(REDIS_SIZES.skiplistNode + REDIS_SIZES.skiplistLevel * k, quantum);
  return e;
}

/** Bytes of one listpack entry holding `s` (integers get their compact encodings). */
export function listpackEntryBytes(s: string): number {
  let body: number;
  if (/^-?(0|[1-9][0-9]{0,18})$/.test(s) && Number.isSafeInteger(Number(s))) {
    const v = Number(s);
    if (v >= 0 && v <= 127) body = 1;
    else if (v >= -4096 && v <= 4095) body = 2;
    else if (v >= -32768 && v <= 32767) body = 3;
    else if (v >= -8388608 && v <= 8388607) body = 4;
    else if (v >= -2147483648 && v <= 2147483647) body = 5;
    else body = 9;
  } else {
    const len = Buffer.byteLength(s);
    body = len + (len <= 63 ? 1 : len <= 4095 ? 2 : 5);
  }
  return body + (body <= 127 ? 1 : body < 16383 ? 2 : 3);
}

/** Allocator and encoding facts of one server. */
export interface MemoryModel {
  /** jemalloc quantum (16 on most builds; 8 on Redis' bundled jemalloc). */
  quantum: number;
  /** zset-max-listpack-entries / -value. */
  zsetMaxEntries: number;
  zsetMaxValue: number;
  /** Redis Cluster: main-dict entries carry slot metadata. */
  cluster: boolean;
}

/** Facts of one sampled legacy record. */
export interface RecordSample {
  /** MEMORY USAGE key SAMPLES 0. */
  usage: number;
  legacyKeyLen: number;
  v2KeyLen: number;
  /** `hashtable` or `listpack`. */
  encoding: string;
  fields: number;
  hasTtl: boolean;
}

/**
 * Bytes the v2 copy of one record adds: its MEMORY USAGE under the v2 key
 * name, corrected for allocator rounding of what MEMORY USAGE counts at C
 * size, plus its expires entry.
 */
export function v2RecordBytes(s: RecordSample, m: MemoryModel): number {
  const q = m.quantum;
  const entry = REDIS_SIZES.dictEntry + (m.cluster ? REDIS_SIZES.clusterEntryMeta : 0);
  let bytes = s.usage - sdsBytes(s.legacyKeyLen, q) + sdsBytes(s.v2KeyLen, q) + (sizeClass(entry, q) - entry);
  if (s.encoding === 'hashtable') {
    bytes += s.fields * (sizeClass(REDIS_SIZES.dictEntry, q) - REDIS_SIZES.dictEntry) + (sizeClass(REDIS_SIZES.dict, q) - REDIS_SIZES.dict);
  }
  if (s.hasTtl) bytes += sizeClass(REDIS_SIZES.dictEntry, q);
  return bytes;
}

/** Bytes of one workspace index: a sorted set of `entries` members (mean length `memberLen`) and its key. */
export function indexBytes(
  entries: number,
  memberLen: number,
  keyLen: number,
  m: MemoryModel,
  sampleMember = 'x'.repeat(Math.round(memberLen)),
  sampleScore = '1700000000000',
): number {
  if (entries <= 0) return 0;
  const q = m.quantum;
  const entry = REDIS_SIZES.dictEntry + (m.cluster ? REDIS_SIZES.clusterEntryMeta : 0);
  const keyBytes = sdsBytes(keyLen, q) + sizeClass(entry, q) + sizeClass(REDIS_SIZES.robj, q);
  if (entries <= m.zsetMaxEntries && memberLen <= m.zsetMaxValue) {
    const lp = 6 + 1 + entries * (listpackEntryBytes(sampleMember) + listpackEntryBytes(sampleScore));
    return keyBytes + sizeClass(lp, q);
  }
  const fixed =
    sizeClass(REDIS_SIZES.zset, q) +
    sizeClass(REDIS_SIZES.dict, q) +
    sizeClass(REDIS_SIZES.zskiplist, q) +
    sizeClass(REDIS_SIZES.skiplistNode + REDIS_SIZES.skiplistLevel * REDIS_SIZES.maxLevel, q);
  const perEntry = sdsBytes(Math.round(memberLen), q) + skiplistNodeBytes(q) + sizeClass(REDIS_SIZES.dictEntry, q);
  return keyBytes + fixed + dictTableBytes(entries, q) + entries * perEntry;
}

/** A group of workspaces of one (estimated) size. */
export interface WorkspaceGroup {
  /** Jobs in each workspace of the group. */
  size: number;
  /** Workspaces in the group. */
  count: number;
}

/**
 * Estimated jobs per workspace from a sample of the workspaces of `n` records
 * out of `total`. Workspaces seen at least twice are scaled up; the ones seen
 * once stand for a tail whose number is estimated with Chao1 (singletons and
 * doubletons), so that many small workspaces are not mistaken for a few large
 * ones (which would turn cheap listpacks into skiplists in the projection).
 * With an exhaustive sample (`n >= total`) the counts are exact.
 */
export function workspaceSizes(counts: ReadonlyMap<string, number>, n: number, total: number): WorkspaceGroup[] {
  if (n <= 0 || total <= 0) return [];
  if (n >= total) return [...counts.values()].map((c) => ({ size: c, count: 1 }));
  const scale = total / n;
  const groups: WorkspaceGroup[] = [];
  let f1 = 0;
  let f2 = 0;
  for (const c of counts.values()) {
    if (c === 1) f1++;
    else groups.push({ size: c * scale, count: 1 });
    if (c === 2) f2++;
  }
  if (f1 > 0) {
    const unseen = f2 > 0 ? (f1 * f1) / (2 * f2) : (f1 * (f1 - 1)) / 2;
    const tailJobs = f1 * scale;
    // Every workspace holds at least one job.
    const tailWorkspaces = Math.max(1, Math.min(Math.round(f1 + unseen), Math.floor(tailJobs)));
    groups.push({ size: tailJobs / tailWorkspaces, count: tailWorkspaces });
  }
  return groups;
}
