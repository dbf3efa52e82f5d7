// Verify compares pairs by server-side digests (on a cluster the two keys of a
// pair live on different masters): every kind of difference must still be
// found, on one node and on the 3-master cluster, and equal content that dumps
// differently (another field order) must not be one. The digest itself is
// checked against byte-equality of random field sets (fast-check). On the
// cluster, both paths: the cross-slot scripts and the per-key path.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { backfill } from '../../src/ops/backfill.js';
import { PER_KEY_ENV } from '../../src/ops/cluster-batch.js';
import { recordDigest } from '../../src/ops/record-compare.js';
import { verify } from '../../src/ops/verify.js';
import { DigestMode, factsOf } from '../../src/ops/verify/record-facts.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, type Topology } from '../helpers/core-clients.js';
import { sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';
import { opContext, seedLegacy } from './backfill-helpers.js';

const available = (t: Topology): boolean => t === 'standalone' || sharedClusterAvailable();

describe.each(TOPOLOGIES)('verify by digest on %s', (topology) => {
  // A cluster has two paths (src/ops/cluster-batch.ts): cross-slot scripts per master (Redis 7+), and the per-key path they fall back on.
  const paths = topology === 'cluster' ? (['cross-slot', 'per-key'] as const) : (['single node'] as const);
  it.skipIf(!available(topology)).each(paths)('finds each kind of difference, and only those (%s)', async (path) => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`vdig${topology}`);
    const keys = new Keyspace(prefix);
    const saved = process.env[PER_KEY_ENV];
    if (path === 'per-key') process.env[PER_KEY_ENV] = '1';
    else delete process.env[PER_KEY_ENV];
    try {
      await seedLegacy(client, keys, 240, { workspaces: 24, ttlEvery: 1_000_000 });
      await movePhase(client, keys, Phase.DualWrite, 100);
      await backfill(opContext(client, keys), {});
      const v2 = (i: number): string => keys.v2Job(`ws-${i % 24}`, `job-${i}`);
      const legacy = (i: number): string => keys.legacyJob(`job-${i}`);

      // One byte of one field.
      const params = (await client.hgetBuffer(v2(1), 'params'))!;
      params.writeUInt8(params.readUInt8(params.length - 2) ^ 0x01, params.length - 2);
      await client.hset(v2(1), 'params', params);
      // An extra field, a missing field.
      await client.hset(v2(2), 'extra', 'x');
      await client.hdel(v2(3), 'status');
      // Expiries: beyond the tolerance (reported), within it (not).
      const at = Date.now() + 3_600_000;
      await client.pexpireat(legacy(4), at);
      await client.pexpireat(v2(4), at + 5_000);
      await client.pexpireat(legacy(5), at);
      await client.pexpireat(v2(5), at + 400);
      // A missing index entry; an orphan; a v2 key of a foreign type.
      await client.zrem(keys.index('ws-6'), 'job-6');
      await client.hset(keys.v2Job('ws-7', 'ghost-7'), 'job_id', 'ghost-7', 'workspace_id', 'ws-7', 'rev', '1');
      await client.del(v2(8));
      await client.set(v2(8), 'not a hash');
      // An index entry whose v2 record does not exist.
      await client.zadd(keys.index('ws-12'), 1, 'job-99999');
      // Binary values that differ in one non-UTF-8 byte (both decode to the same replacement characters).
      await client.hset(legacy(9), 'blob', Buffer.from([0xff, 0xfe, 0x80]));
      await client.hset(v2(9), 'blob', Buffer.from([0xff, 0xfd, 0x80]));
      // Equal concatenations: {a: "bc"} against {ab: "c"}.
      await client.hset(legacy(10), 'a', 'bc');
      await client.hset(v2(10), 'ab', 'c');
      // Equal content in another field order (another DUMP): not a difference.
      const fields = await client.hgetallBuffer(legacy(11));
      await client.del(v2(11));
      for (const name of Object.keys(fields).reverse()) await client.hset(v2(11), name, fields[name]!);
      expect((await client.dumpBuffer(v2(11)))!.equals((await client.dumpBuffer(legacy(11)))!)).toBe(false);

      const r = await verify(opContext(client, keys), { roundDelayMs: 20, ttlToleranceMs: 1000 });
      expect(r.ok).toBe(false);
      expect(r.byKind).toEqual({
        'field-diff': 2,
        'extra-field': 2,
        'missing-field': 2,
        ttl: 1,
        'index-missing': 1,
        'index-dangling': 1,
        orphan: 1,
        // Once: the legacy record backs the foreign key, so the pair reports it (the v2 pass leaves backed keys to the pair).
        'non-hash': 1,
      });
      const fieldsOf = (kind: string): string[] =>
        r.listed
          .filter((m) => m.kind === kind)
          .flatMap((m) => m.fields ?? [])
          .sort();
      expect(fieldsOf('field-diff')).toEqual(['blob', 'params']);
      expect(fieldsOf('extra-field')).toEqual(['ab', 'extra']);
      expect(fieldsOf('missing-field')).toEqual(['a', 'status']);
      expect(r.listed.find((m) => m.kind === 'ttl')?.jobId).toBe('job-4');
      expect(r.listed.find((m) => m.kind === 'orphan')?.jobId).toBe('ghost-7');
      expect(r.listed.filter((m) => m.kind === 'non-hash').every((m) => m.key === v2(8))).toBe(true);
      expect(r.listed.some((m) => m.jobId === 'job-5' || m.jobId === 'job-11')).toBe(false);
    } finally {
      if (saved === undefined) delete process.env[PER_KEY_ENV];
      else process.env[PER_KEY_ENV] = saved;
      await cleanupClient(client, prefix);
    }
  });

  it.skipIf(!available(topology))('the content digest is equal iff the field sets are byte-equal, and equals the client-side digest', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix(`vdigp${topology}`);
    // A hash tag keeps both keys of a pair on one master (the digest does not care).
    const a = `${prefix}:{p}:a`;
    const b = `${prefix}:{p}:b`;
    const bytes = fc.uint8Array({ minLength: 0, maxLength: 6 }).map((u) => Buffer.from(u));
    const name = fc.oneof(
      fc.constantFrom('a', 'ab', 'b', 'bc', 'c'),
      fc
        .uint8Array({ minLength: 1, maxLength: 4 })
        .map((u) => Buffer.from(u))
        .map((x) => x.toString('latin1')),
    );
    const record = fc.dictionary(name, bytes, { minKeys: 1, maxKeys: 5 });
    // Pairs that are often equal, or close: the same map, one value changed, one field renamed or moved.
    const pair = record.chain((m) =>
      fc.oneof(
        fc.constant([m, new Map(Object.entries(m))] as const),
        record.map((other) => [m, new Map(Object.entries(other))] as const),
        fc.tuple(fc.constantFrom(...Object.keys(m)), bytes).map(([k, v]) => [m, new Map([...Object.entries(m), [k, v]])] as const),
      ),
    );
    const write = async (key: string, m: Map<string, Buffer>): Promise<void> => {
      await client.del(key);
      const flat: Buffer[] = [];
      for (const [k, v] of m) flat.push(Buffer.from(k, 'latin1'), v);
      await client.hset(key, ...(flat as [Buffer, Buffer]));
    };
    try {
      await fc.assert(
        fc.asyncProperty(pair, async ([left, right]) => {
          const l = new Map(Object.entries(left));
          await write(a, l);
          await write(b, right);
          const [fa, fb] = await Promise.all([factsOf(client, a, DigestMode.Content), factsOf(client, b, DigestMode.Content)]);
          const equal = l.size === right.size && [...l].every(([k, v]) => right.get(k)?.equals(v) === true);
          expect(fa.digest === fb.digest).toBe(equal);
          expect(fa.digest).toBe(recordDigest(l));
          expect(fb.digest).toBe(recordDigest(right));
          // The DUMP digest never calls different content equal.
          const [da, db] = await Promise.all([factsOf(client, a, DigestMode.Dump), factsOf(client, b, DigestMode.Dump)]);
          if (!equal) expect(da.digest).not.toBe(db.digest);
        }),
        { numRuns: topology === 'standalone' ? 300 : 100 },
      );
    } finally {
      await client.del(a, b);
      await cleanupClient(client, prefix);
    }
  });
});
