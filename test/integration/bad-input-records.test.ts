/**
 * Issue 6, bad-input suite (data): what an old job store really contains.
 * Malformed legacy records, a 100k-field hash, bytes that are not UTF-8 (in
 * values and field names), and keys of foreign types under both record
 * patterns. Every case ends with an exit code from the contract, and nothing
 * deleted or corrupted: the DUMP of every planted key is identical before and
 * after, and v2 copies of valid records are byte-identical to their source
 * (fields and PEXPIRETIME). Runs on the shared single node and the shared cluster
 * (their copy paths differ: COPY and batch scripts vs snapshot + apply-if-newer).
 *
 * Judgement call: the design validates job id, workspace_id and rev only; the
 * other fields are opaque bytes. So JSON garbage in `params` and empty values
 * are migrated byte-exact (and verify clean), not reported as unmigratable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { closeRedis, type RedisClient } from '../../src/core/redis.js';
import { runCli, target } from '../helpers/cli.js';
import { coreClient, movePhase, TOPOLOGIES, topologyUrl, type Topology } from '../helpers/core-clients.js';
import { canonicalRecord, expectLedger, expectVerifyClean, fingerprint, takeLedger } from '../helpers/fault-helpers.js';
import { deleteKeysWithPrefix, sharedClusterAvailable, uniquePrefix } from '../helpers/fixtures.js';
import { scanKeys, seedLegacy } from './backfill-helpers.js';

type Fields = Record<string, string>;

/** A valid record's fields. */
function job(jobId: string, workspaceId: string, extra: Fields = {}): Fields {
  return { job_id: jobId, workspace_id: workspaceId, action: 'summarize', status: 'queued', created_at: '2024-01-02T03:04:05.000Z', rev: '2', ...extra };
}

describe.each(TOPOLOGIES)('bad input: records on %s', (topology: Topology) => {
  const skip = topology === 'cluster' && !sharedClusterAvailable();
  let client: RedisClient;
  let url: string;
  let cluster: boolean;
  const prefixes: string[] = [];
  /** Keys deleteKeysWithPrefix cannot reach (names that are not UTF-8). */
  const stray: Buffer[] = [];

  beforeAll(async () => {
    if (skip) return;
    client = await coreClient(topology);
    ({ url, cluster } = topologyUrl(topology));
  });
  afterAll(async () => {
    if (skip) return;
    for (const k of stray) await client.del(k);
    for (const p of prefixes) await deleteKeysWithPrefix(client, p);
    await closeRedis(client);
  });

  function fresh(name: string): { keys: Keyspace; args: string[] } {
    const keys = new Keyspace(uniquePrefix(`${name}${topology.slice(0, 2)}`));
    prefixes.push(keys.prefix);
    return { keys, args: target(url, keys.prefix, cluster) };
  }

  it.skipIf(skip)('malformed legacy records: backfill exit 1 lists each as unmigratable; verify exit 1; cleanup keeps them byte for byte', async () => {
    const { keys, args } = fresh('badrec');
    const p = keys.prefix;
    const raw = (suffix: string): string => `${p}:jobs:${suffix}`;
    const seeded = await seedLegacy(client, keys, 40);
    // Odd but valid: migrated byte-exact.
    const odd: Record<string, { ws: string; fields: Fields }> = {
      'garbage-params': { ws: 'ws-odd', fields: job('garbage-params', 'ws-odd', { params: '{"a": [1, 2,', result: '}{', error: 'null\u0000' }) },
      'empty-values': { ws: 'ws-odd', fields: job('empty-values', 'ws-odd', { action: '', params: '', status: '', result: '', error: '', '': '' }) },
      'no-rev': { ws: 'ws-odd', fields: { job_id: 'no-rev', workspace_id: 'ws-odd', status: 'queued' } },
      'bad-created-at': { ws: 'ws-odd', fields: job('bad-created-at', 'ws-odd', { created_at: 'yesterday-ish' }) },
    };
    // Unmigratable, with the reason backfill must give.
    const bad: Array<{ key: string; reason: string; fields: Fields }> = [
      { key: raw('nows-1'), reason: 'missing-workspace', fields: { job_id: 'nows-1', status: 'queued', rev: '1' } },
      { key: raw('ws-empty'), reason: 'invalid-workspace', fields: job('ws-empty', '') },
      { key: raw('ws-upper'), reason: 'invalid-workspace', fields: job('ws-upper', 'ACME') },
      { key: raw('ws-space'), reason: 'invalid-workspace', fields: job('ws-space', 'Bad WS!') },
      { key: raw('ws-glob'), reason: 'invalid-workspace', fields: job('ws-glob', 'ws*') },
      { key: raw('ws-colon'), reason: 'invalid-workspace', fields: job('ws-colon', 'ws:1') },
      { key: raw('ws-dotdot'), reason: 'invalid-workspace', fields: job('ws-dotdot', '..') },
      { key: raw('ws-long'), reason: 'invalid-workspace', fields: job('ws-long', 'a'.repeat(33)) },
      { key: raw('has space'), reason: 'invalid-job-id', fields: job('has space', 'ws-0') },
      { key: raw('-leading-dash'), reason: 'invalid-job-id', fields: job('-leading-dash', 'ws-0') },
      { key: raw(''), reason: 'invalid-job-id', fields: job('', 'ws-0') },
      { key: raw('a:b'), reason: 'invalid-job-id', fields: job('a:b', 'ws-0') },
      { key: raw('glob*[a]?'), reason: 'invalid-job-id', fields: job('glob*[a]?', 'ws-0') },
      { key: raw('j'.repeat(129)), reason: 'invalid-job-id', fields: job('j'.repeat(129), 'ws-0') },
      { key: raw('ünïcode'), reason: 'invalid-job-id', fields: job('ünïcode', 'ws-0') },
      { key: raw('rev-abc'), reason: 'invalid-rev', fields: job('rev-abc', 'ws-0', { rev: 'abc' }) },
      { key: raw('rev-neg'), reason: 'invalid-rev', fields: job('rev-neg', 'ws-0', { rev: '-1' }) },
      { key: raw('rev-empty'), reason: 'invalid-rev', fields: job('rev-empty', 'ws-0', { rev: '' }) },
      { key: raw('rev-frac'), reason: 'invalid-rev', fields: job('rev-frac', 'ws-0', { rev: '1.5' }) },
      { key: raw('rev-space'), reason: 'invalid-rev', fields: job('rev-space', 'ws-0', { rev: ' 1' }) },
    ];
    for (const [id, o] of Object.entries(odd)) await client.hset(keys.legacyJob(id), o.fields);
    for (const b of bad) await client.hset(b.key, b.fields);
    await client.pexpire(raw('rev-abc'), 3_600_000);
    // A key whose name is not UTF-8: clients see it mangled, so it must be reported and never touched.
    const binaryKey = Buffer.concat([Buffer.from(`${p}:jobs:`), Buffer.from([0xff, 0xfe, 0x41])]);
    stray.push(binaryKey);
    await client.hset(binaryKey, 'workspace_id', 'ws-0', 'rev', '1');
    const binaryBefore = await client.dumpBuffer(binaryKey);

    await movePhase(client, keys, Phase.DualWrite, 100);
    const valid = [...seeded, ...Object.entries(odd).map(([jobId, o]) => ({ jobId, workspaceId: o.ws }))];
    const ledger = await takeLedger(client, keys, valid);
    const badKeys = bad.map((b) => b.key);
    const before = await fingerprint(client, badKeys);

    const bf = await runCli([...args, '--json', 'backfill']);
    expect(bf.code, bf.stderr).toBe(1);
    expect(bf.stderr).not.toMatch(/^\s+at /m);
    const j = bf.json as { copied: number; unmigratable: number; complete: boolean; unmigratableRecords: Array<{ key: string; reason: string }> };
    expect(j).toMatchObject({ copied: valid.length, unmigratable: bad.length + 1, complete: true });
    const listed = new Map(j.unmigratableRecords.map((r) => [r.key, r.reason]));
    for (const b of bad) expect(listed.get(b.key), b.key).toBe(b.reason);
    expect([...listed.values()].filter((r) => r === 'invalid-job-id')).toHaveLength(bad.filter((b) => b.reason === 'invalid-job-id').length + 1);
    // Only the valid records reached v2 (no key is ever built from an invalid workspace or job id).
    expect((await scanKeys(client, keys.v2Pattern())).sort()).toEqual(valid.map((v) => keys.v2Job(v.workspaceId, v.jobId)).sort());
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });

    const v = await runCli([...args, '--json', 'verify', '--round-delay', '50ms']);
    expect(v.code, v.stderr).toBe(1);
    expect(v.json).toMatchObject({ ok: false, mismatches: bad.length + 1, byKind: { unmigratable: bad.length + 1 } });

    expect((await runCli([...args, 'flip-read', '--force', 'verify', '--reason', 'bad-input test'])).code).toBe(0);
    const cl = await runCli([...args, '--json', 'cleanup', '--execute', '--min-soak', '0s', '--force', 'soak,verify', '--reason', 'bad-input test']);
    expect(cl.code, cl.stderr).toBe(1);
    expect(cl.json).toMatchObject({
      complete: true,
      deleted: valid.length,
      kept: bad.length + 1,
      keptByReason: { 'missing-workspace': 1, 'invalid-workspace': 7, 'invalid-job-id': 8, 'invalid-rev': 5 },
    });
    expect(await fingerprint(client, badKeys)).toEqual(before);
    expect(await client.dumpBuffer(binaryKey)).toEqual(binaryBefore);
    await expectLedger(client, keys, ledger, { legacy: 'absent', v2: 'present' });
  });

  it.skipIf(skip)('a 100k-field hash and bytes that are not UTF-8 (values and field names) are copied byte-exact; verify clean', async () => {
    const { keys, args } = fresh('bytes');
    const wide: Array<string | Buffer> = [];
    for (let f = 0; f < 100_000; f++) wide.push(`f${f}`, `v${f}-${'x'.repeat(f % 7)}`);
    const bin = (...b: number[]): Buffer => Buffer.from(b);
    const binary: Array<string | Buffer> = [
      'result',
      bin(0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x9f),
      bin(0xc0, 0xaf, 0x66),
      bin(0xed, 0xa0, 0x80), // overlong encoding as a field name, a lone surrogate as a value
      bin(0xfe, 0xff),
      Buffer.alloc(0),
      'params',
      Buffer.concat([Buffer.from('{"k":"'), bin(0xf8, 0x88, 0x80, 0x80, 0x80), Buffer.from('"}\r\n')]),
      'nul\u0000in-name',
      'nul\u0000in-value',
    ];
    const records: Array<{ jobId: string; extra: Array<string | Buffer>; olderV2?: boolean; ttl?: boolean }> = [
      // An older v2 copy exists, so even a single node moves it with apply-if-newer (a Lua HSET in chunks),
      // the path a 100k-field snapshot could break; COPY (the fresh path) keeps bytes by construction.
      { jobId: 'wide-older', extra: wide, olderV2: true, ttl: true },
      { jobId: 'binary-fresh', extra: binary, ttl: true },
      { jobId: 'binary-older', extra: binary, olderV2: true, ttl: true },
    ];
    for (const r of records) {
      const key = keys.legacyJob(r.jobId);
      // One array argument (ioredis flattens it): spreading 200k arguments would overflow the JS stack.
      const flat: Array<string | Buffer> = [...Object.entries(job(r.jobId, 'ws-bytes', { rev: '5' })).flat(), ...r.extra];
      await client.hset(key, flat as unknown as Record<string, string>);
      if (r.ttl) await client.pexpire(key, 7_200_000);
      if (r.olderV2) await client.hset(keys.v2Job('ws-bytes', r.jobId), job(r.jobId, 'ws-bytes', { rev: '4', status: 'stale' }));
    }
    expect(await client.hlen(keys.legacyJob('wide-older'))).toBe(100_000 + 6);
    await movePhase(client, keys, Phase.DualWrite, 100);
    const ledger = await takeLedger(
      client,
      keys,
      records.map((r) => ({ jobId: r.jobId, workspaceId: 'ws-bytes' })),
    );

    const bf = await runCli([...args, '--json', 'backfill']);
    expect(bf.code, bf.stderr).toBe(0);
    expect(bf.json).toMatchObject({ copied: records.length, unmigratable: 0, complete: true });
    await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
    // The canonical form compares bytes; spot-check that it really saw the odd ones.
    expect(await canonicalRecord(client, keys.v2Job('ws-bytes', 'binary-older'))).toContain(
      `${bin(0xc0, 0xaf, 0x66).toString('hex')}=${bin(0xed, 0xa0, 0x80).toString('hex')}`,
    );
    await expectVerifyClean(args);
  });

  it.skipIf(skip)('foreign key types under ai:jobs:* and ai:job:* are reported and left untouched (backfill, verify, cleanup exit 1)', async () => {
    const { keys, args } = fresh('foreign');
    const p = keys.prefix;
    const seeded = await seedLegacy(client, keys, 20);
    const plant = async (key: string, type: string): Promise<void> => {
      if (type === 'string') await client.set(key, 'not a hash');
      else if (type === 'list') await client.rpush(key, 'a', 'b');
      else if (type === 'set') await client.sadd(key, 'a', 'b');
      else if (type === 'zset') await client.zadd(key, 1, 'a');
      else await client.xadd(key, '*', 'f', 'v');
      await client.pexpire(key, 3_600_000);
    };
    const types = ['string', 'list', 'set', 'zset', 'stream'];
    const legacyForeign = types.map((t) => `${p}:jobs:foreign-${t}`);
    const v2Foreign = types.map((t) => `${p}:job:ws-0:foreign-${t}`);
    for (const [i, t] of types.entries()) {
      await plant(legacyForeign[i]!, t);
      await plant(v2Foreign[i]!, t);
    }
    // A valid legacy record whose v2 target is taken by a string.
    const clash = keys.legacyJob('clash-1');
    await client.hset(clash, job('clash-1', 'ws-0'));
    const clashTarget = keys.v2Job('ws-0', 'clash-1');
    await client.set(clashTarget, 'squatter');
    const planted = [...legacyForeign, ...v2Foreign, clash, clashTarget];
    const before = await fingerprint(client, planted);
    await movePhase(client, keys, Phase.DualWrite, 100);
    const ledger = await takeLedger(client, keys, seeded);

    const bf = await runCli([...args, '--json', 'backfill']);
    expect(bf.code, bf.stderr).toBe(1);
    const j = bf.json as { copied: number; unmigratable: number; unmigratableRecords: Array<{ key: string; reason: string; detail?: string }> };
    expect(j.copied).toBe(seeded.length);
    expect(j.unmigratable).toBe(types.length + 1);
    const listed = new Map(j.unmigratableRecords.map((r) => [r.key, r]));
    for (const [i, t] of types.entries()) expect(listed.get(legacyForeign[i]!)).toMatchObject({ reason: 'non-hash', detail: t });
    expect(listed.get(clash)?.reason).toBe('target-non-hash');

    const v = await runCli([...args, '--json', 'verify', '--round-delay', '50ms']);
    expect(v.code, v.stderr).toBe(1);
    const vj = v.json as { byKind: Record<string, number>; listed: Array<{ key: string; kind: string }> };
    const reported = new Set(vj.listed.map((m) => m.key));
    for (const k of [...legacyForeign, ...v2Foreign]) expect(reported.has(k), k).toBe(true);
    expect(vj.byKind['non-hash']).toBeGreaterThanOrEqual(types.length * 2);

    expect((await runCli([...args, 'flip-read', '--force', 'verify', '--reason', 'bad-input test'])).code).toBe(0);
    const cl = await runCli([...args, '--json', 'cleanup', '--execute', '--min-soak', '0s', '--force', 'soak,verify', '--reason', 'bad-input test']);
    expect(cl.code, cl.stderr).toBe(1);
    expect(cl.json).toMatchObject({ deleted: seeded.length, kept: types.length + 1, keptByReason: { 'non-hash': types.length, 'v2-non-hash': 1 } });
    expect(await fingerprint(client, planted)).toEqual(before);
    await expectLedger(client, keys, ledger, { legacy: 'absent', v2: 'present' });
  });
});
