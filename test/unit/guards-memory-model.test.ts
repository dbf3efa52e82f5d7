/**
 * The memory model behind preflight's projection
 * (src/ops/guards/memory-model.ts): jemalloc size classes for both quanta,
 * sds and hash-table sizes, listpack entry encodings, the corrections added to
 * MEMORY USAGE, and the workspace-size estimate (many small workspaces are not
 * taken for a few large ones). The projection against a real backfill is
 * checked in test/integration/guards-preflight.test.ts and by the bench.
 */
import { describe, expect, it } from 'vitest';
import {
  dictBuckets,
  dictTableBytes,
  indexBytes,
  listpackEntryBytes,
  sdsBytes,
  sizeClass,
  skiplistNodeBytes,
  v2RecordBytes,
  workspaceSizes,
  type MemoryModel,
} from '../../src/ops/guards/memory-model.js';

const M16: MemoryModel = { quantum: 16, zsetMaxEntries: 128, zsetMaxValue: 64, cluster: false };

describe('size classes', () => {
  it('16-byte quantum (Debian and most builds): 8, 16, 32, 48, 64, then four per doubling', () => {
    expect([1, 8, 9, 16, 17, 33, 64, 65, 80, 81, 128, 129, 160, 161, 536, 1025, 3000].map((n) => sizeClass(n, 16))).toEqual([
      8, 8, 16, 16, 32, 48, 64, 80, 80, 96, 128, 160, 160, 192, 640, 1280, 3072,
    ]);
  });

  it("8-byte quantum (Redis' bundled jemalloc): 8, 16, 24, 32, 40, 48, 56, 64, then four per doubling", () => {
    expect([9, 17, 24, 25, 33, 41, 57, 65, 129].map((n) => sizeClass(n, 8))).toEqual([16, 24, 24, 32, 40, 48, 64, 80, 160]);
  });

  it('sds headers by length, dict tables as powers of two', () => {
    expect(sdsBytes(15)).toBe(sizeClass(1 + 15 + 1)); // type 5 below 32 bytes
    expect(sdsBytes(40)).toBe(sizeClass(3 + 40 + 1)); // type 8
    expect(dictBuckets(0)).toBe(0);
    expect(dictBuckets(3)).toBe(4);
    expect(dictBuckets(1025)).toBe(2048);
    expect(dictTableBytes(1_000_000)).toBe(1_048_576 * 8);
  });

  it('listpack entries: small integers compact, 64-bit timestamps 10 bytes, strings length + 2', () => {
    expect(listpackEntryBytes('7')).toBe(2);
    expect(listpackEntryBytes('1700000000000')).toBe(10);
    expect(listpackEntryBytes('job-123')).toBe(9);
    expect(listpackEntryBytes('x'.repeat(100))).toBe(100 + 2 + 1);
  });

  it('a skiplist node averages between its level-1 and level-2 sizes', () => {
    const e = skiplistNodeBytes(16);
    expect(e).toBeGreaterThan(sizeClass(40));
    expect(e).toBeLessThan(sizeClass(56));
  });
});

describe('v2RecordBytes', () => {
  const base = { usage: 500, legacyKeyLen: 15, v2KeyLen: 22, encoding: 'listpack', fields: 10, hasTtl: false };

  it('is the legacy record re-keyed, with the dictEntry rounded as the allocator does', () => {
    expect(v2RecordBytes(base, M16)).toBe(500 - sdsBytes(15) + sdsBytes(22) + (32 - 24));
  });

  it('adds the expires entry of a copy with a TTL, per-field rounding of a hashtable, and cluster slot metadata', () => {
    expect(v2RecordBytes({ ...base, hasTtl: true }, M16) - v2RecordBytes(base, M16)).toBe(32);
    expect(v2RecordBytes({ ...base, encoding: 'hashtable' }, M16) - v2RecordBytes(base, M16)).toBe(10 * 8 + (64 - 56));
    expect(v2RecordBytes(base, { ...M16, cluster: true })).toBe(500 - sdsBytes(15) + sdsBytes(22) + (48 - 40));
  });
});

describe('indexBytes', () => {
  it('a small workspace is a listpack (a few bytes per member), a large one a skiplist (~100 bytes per member)', () => {
    const small = indexBytes(100, 9, 20, M16, 'job-12345', '1700000000000');
    const large = indexBytes(10_000, 9, 20, M16, 'job-12345', '1700000000000');
    expect(small / 100).toBeLessThan(30);
    expect(large / 10_000).toBeGreaterThan(80);
    expect(large / 10_000).toBeLessThan(140);
    expect(indexBytes(0, 9, 20, M16)).toBe(0);
  });

  it('a member longer than zset-max-listpack-value makes even a small index a skiplist', () => {
    expect(indexBytes(10, 100, 20, M16)).toBeGreaterThan(indexBytes(10, 60, 20, M16) * 2);
  });
});

describe('workspaceSizes', () => {
  it('an exhaustive sample gives the exact counts', () => {
    expect(
      workspaceSizes(
        new Map([
          ['a', 3],
          ['b', 1],
        ]),
        4,
        4,
      ),
    ).toEqual([
      { size: 3, count: 1 },
      { size: 1, count: 1 },
    ]);
  });

  it('few large workspaces: every one seen many times, scaled up', () => {
    const counts = new Map(Array.from({ length: 200 }, (_, i) => [`ws-${i}`, 10] as [string, number]));
    const g = workspaceSizes(counts, 2000, 1_000_000);
    expect(g.reduce((a, x) => a + x.count, 0)).toBe(200);
    expect(g[0]!.size).toBe(5000);
  });

  it('many small workspaces (all seen once or twice): a tail of small ones, not a few large ones', () => {
    // 100,000 workspaces of 10 jobs; a sample of 2,000 sees ~1,980 once and ~20 twice.
    const counts = new Map<string, number>();
    for (let i = 0; i < 1980; i++) counts.set(`a${i}`, 1);
    for (let i = 0; i < 10; i++) counts.set(`b${i}`, 2);
    const g = workspaceSizes(counts, 2000, 1_000_000);
    const tail = g.find((x) => x.count > 1)!;
    expect(tail.count).toBeGreaterThan(50_000);
    expect(tail.size).toBeLessThan(128); // listpacks, as they really are
    expect(g.reduce((a, x) => a + x.size * x.count, 0)).toBeCloseTo(1_000_000, -3);
  });
});
