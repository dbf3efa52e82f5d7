/**
 * The apply-if-newer and write-primary primitives against real Redis, on one
 * node and on a cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { applyIfNewer, readSnapshot, writePrimary, type Snapshot } from '../../src/core/protocol.js';
import type { RedisClient } from '../../src/core/redis.js';
import { cleanupClient, coreClient, TOPOLOGIES } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';

function snap(rev: number, pairs: Array<[string | Buffer, string | Buffer]>, pexpireAt = -1): Snapshot {
  const fields: Buffer[] = [];
  for (const [f, v] of pairs) fields.push(Buffer.from(f), Buffer.from(v));
  fields.push(Buffer.from('rev'), Buffer.from(String(rev)));
  return { rev, pexpireAt, fields };
}

function asMap(s: Snapshot | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; s && i + 1 < s.fields.length; i += 2) out[s.fields[i]!.toString('hex')] = s.fields[i + 1]!.toString('hex');
  return out;
}

describe.each(TOPOLOGIES)('write protocol primitives on %s', (topology) => {
  let client: RedisClient;
  const prefix = uniquePrefix('prim');
  const keys = new Keyspace(prefix);
  beforeAll(async () => {
    client = await coreClient(topology);
  });
  afterAll(async () => {
    await cleanupClient(client, prefix);
  });

  it('applies to a missing target, skips an older or identical snapshot, and replaces a lower rev wholesale', async () => {
    const key = keys.v2Job('ws', 'a1');
    expect(
      await applyIfNewer(
        client,
        key,
        snap(2, [
          ['status', 'running'],
          ['extra', 'x'],
        ]),
      ),
    ).toBe('applied');
    expect(await applyIfNewer(client, key, snap(1, [['status', 'queued']]))).toBe('skipped');
    expect(
      await applyIfNewer(
        client,
        key,
        snap(2, [
          ['status', 'running'],
          ['extra', 'x'],
        ]),
      ),
    ).toBe('skipped');
    expect(await applyIfNewer(client, key, snap(3, [['status', 'done']]))).toBe('applied');
    // Replaced, not merged: the field the newer snapshot lacks is gone.
    expect(await client.hgetall(key)).toEqual({ status: 'done', rev: '3' });
  });

  it('breaks a same-rev tie by content digest, so applying two snapshots in either order converges', async () => {
    const a = snap(5, [['status', 'A']]);
    const b = snap(5, [['status', 'B']]);
    const k1 = keys.v2Job('ws', 'tie1');
    const k2 = keys.v2Job('ws', 'tie2');
    await applyIfNewer(client, k1, a);
    await applyIfNewer(client, k1, b);
    await applyIfNewer(client, k2, b);
    await applyIfNewer(client, k2, a);
    expect(await client.hgetall(k1)).toEqual(await client.hgetall(k2));
  });

  it('carries bytes that are not UTF-8 (names and values), unicode, and the exact expiry', async () => {
    const key = keys.legacyJob('bin1');
    const at = Date.now() + 3_600_000;
    const s = snap(
      7,
      [
        [Buffer.from([0xff, 0xfe, 0x00, 0x41]), Buffer.from([0x80, 0x81, 0x00, 0xc3, 0x28])],
        ['unicode', 'héllo ☃ 𝄞'],
      ],
      at,
    );
    expect(await applyIfNewer(client, key, s)).toBe('applied');
    const back = await readSnapshot(client, key);
    expect(asMap(back)).toEqual(asMap(s));
    expect(back!.pexpireAt).toBe(at);
  });

  it('writes the v2 index entry with the record', async () => {
    const key = keys.v2Job('ws-ix', 'j1');
    await applyIfNewer(client, key, snap(1, [['job_id', 'j1']]), { key: keys.index('ws-ix'), score: 1234, member: 'j1' });
    expect(await client.zscore(keys.index('ws-ix'), 'j1')).toBe('1234');
  });

  it('copies a 100,000-field hash (chunked HSET, no Lua stack overflow)', async () => {
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i < 100_000; i++) pairs.push([`f${i}`, `v${i}`]);
    const key = keys.v2Job('ws', 'huge');
    expect(await applyIfNewer(client, key, snap(1, pairs))).toBe('applied');
    expect(await client.hlen(key)).toBe(100_001);
  });

  it('refuses a target that is not a hash or has a malformed rev, and leaves it untouched', async () => {
    const listKey = keys.v2Job('ws', 'alist');
    await client.rpush(listKey, 'x');
    expect(await applyIfNewer(client, listKey, snap(1, [['a', 'b']]))).toBe('wrong-type');
    expect(await client.lrange(listKey, 0, -1)).toEqual(['x']);
    const badRev = keys.v2Job('ws', 'badrev');
    await client.hset(badRev, 'rev', 'abc', 'status', 'x');
    expect(await applyIfNewer(client, badRev, snap(9, [['a', 'b']]))).toBe('bad-rev');
    expect(await client.hgetall(badRev)).toEqual({ rev: 'abc', status: 'x' });
  });

  it("never lets one workspace's snapshot replace another workspace's legacy record of the same id", async () => {
    const key = keys.legacyJob('shared-id');
    await applyIfNewer(
      client,
      key,
      snap(1, [
        ['workspace_id', 'ws-a'],
        ['status', 'a'],
      ]),
    );
    expect(
      await applyIfNewer(
        client,
        key,
        snap(9, [
          ['workspace_id', 'ws-b'],
          ['status', 'b'],
        ]),
      ),
    ).toBe('owner-conflict');
    expect(await client.hget(key, 'workspace_id')).toBe('ws-a');
  });

  it('write-primary bumps rev atomically and returns the whole snapshot with its expiry', async () => {
    const key = keys.legacyJob('wp1');
    const created = await writePrimary(client, key, { mode: 'create', fields: { status: 'queued', job_id: 'wp1' }, ttlMs: 60_000, jobId: 'wp1' });
    expect(created.rev).toBe(1);
    expect(created.pexpireAt).toBeGreaterThan(Date.now());
    const updates = await Promise.all(
      Array.from({ length: 20 }, (_, i) => writePrimary(client, key, { mode: 'update', fields: { status: `s${i}` }, jobId: 'wp1' })),
    );
    expect(updates.map((u) => u.rev).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    const last = await readSnapshot(client, key);
    expect(last!.rev).toBe(21);
    expect(last!.pexpireAt).toBe(created.pexpireAt);
  });
});
