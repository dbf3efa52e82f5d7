// Pure rules of backfill and verify: what is migratable, what a mismatch is,
// the content digest, shard selection and counters.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Phase } from '../../src/core/phase.js';
import { Keyspace } from '../../src/core/keys.js';
import { decodeFieldsRow } from '../../src/ops/backfill.js';
import { checkSource, isUnmigratable, parseSourceKey, UnmigratableReason, type ParsedSource } from '../../src/ops/migratable.js';
import { classifyPair, diffFields, displayField, expiryDiffers, fieldMap, MismatchKind, recordDigest, type RecordView } from '../../src/ops/record-compare.js';
import { addCounters, selectShard } from '../../src/ops/scan-engine.js';

const keys = new Keyspace('ai');

function view(fields: Record<string, string | Buffer>, pexpireAt = -1): RecordView {
  const flat: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) flat.push(Buffer.from(k), Buffer.isBuffer(v) ? v : Buffer.from(v));
  return { type: 'hash', fields: fieldMap(flat), pexpireAt };
}
const ABSENT: RecordView = { type: 'none', fields: new Map(), pexpireAt: -2 };
const base = { job_id: 'j1', workspace_id: 'acme', created_at: '2024-01-01T00:00:00.000Z', rev: '2', status: 'queued' };
const score = Date.parse(base.created_at);

describe('migratable records', () => {
  it('takes the job id from the legacy key suffix and refuses invalid ones', () => {
    expect(parseSourceKey(keys, 'forward', 'ai:jobs:job_1')).toEqual({ key: 'ai:jobs:job_1', jobId: 'job_1', keyWorkspace: null });
    const bad = parseSourceKey(keys, 'forward', 'ai:jobs:bad:id');
    expect(isUnmigratable(bad) && bad.reason).toBe(UnmigratableReason.InvalidJobId);
    expect(isUnmigratable(parseSourceKey(keys, 'reverse', 'ai:job:Bad*WS:j1'))).toBe(true);
    expect(parseSourceKey(keys, 'reverse', 'ai:job:acme:j1')).toMatchObject({ jobId: 'j1', keyWorkspace: 'acme' });
  });

  it('checks workspace and rev, and builds targets only from valid workspaces', () => {
    const src = parseSourceKey(keys, 'forward', 'ai:jobs:j1') as ParsedSource;
    expect(checkSource(keys, 'forward', src, 'acme', base.created_at, '3')).toMatchObject({
      target: 'ai:job:acme:j1',
      index: 'ai:job-index:acme',
      score,
      rev: 3,
    });
    expect(checkSource(keys, 'forward', src, 'acme', null, null)).toMatchObject({ rev: 0, score: 0 });
    expect(checkSource(keys, 'forward', src, null, null, '1')).toMatchObject({ reason: UnmigratableReason.MissingWorkspace });
    expect(checkSource(keys, 'forward', src, 'Bad*WS', null, '1')).toMatchObject({ reason: UnmigratableReason.InvalidWorkspace });
    expect(checkSource(keys, 'forward', src, 'acme\nx', null, '1')).toMatchObject({ reason: UnmigratableReason.InvalidWorkspace });
    expect(checkSource(keys, 'forward', src, 'acme', null, 'abc')).toMatchObject({ reason: UnmigratableReason.InvalidRev });
    expect(checkSource(keys, 'forward', src, 'acme', null, '-1')).toMatchObject({ reason: UnmigratableReason.InvalidRev });
    const rsrc = parseSourceKey(keys, 'reverse', 'ai:job:acme:j1') as ParsedSource;
    expect(checkSource(keys, 'reverse', rsrc, 'acme', null, '1')).toMatchObject({ target: 'ai:jobs:j1', index: null });
    expect(checkSource(keys, 'reverse', rsrc, 'other', null, '1')).toMatchObject({ reason: UnmigratableReason.WorkspaceMismatch });
  });
});

describe('record comparison', () => {
  it('compares fields as bytes, including names and values that are not UTF-8', () => {
    const a = fieldMap([Buffer.from([0xff, 0x01]), Buffer.from([0xc3, 0x28]), Buffer.from('x'), Buffer.from('1')]);
    const b = fieldMap([Buffer.from([0xff, 0x01]), Buffer.from([0xc3, 0x29]), Buffer.from('y'), Buffer.from('1')]);
    const d = diffFields(a, b);
    expect(d.changed.map(displayField)).toEqual([`base64:${Buffer.from([0xff, 0x01]).toString('base64')}`]);
    expect(d.missing).toEqual(['x']);
    expect(d.extra).toEqual(['y']);
  });

  it('expiry: tolerance, and persistent vs expiring is always a difference', () => {
    expect(expiryDiffers(-1, -1, 0)).toBe(false);
    expect(expiryDiffers(-1, 5000, 1000)).toBe(true);
    expect(expiryDiffers(5000, -1, 1000)).toBe(true);
    expect(expiryDiffers(5000, 5900, 1000)).toBe(false);
    expect(expiryDiffers(5000, 6001, 1000)).toBe(true);
  });

  it('classifies every kind of pair mismatch', () => {
    const pair = (legacy: RecordView, v2: RecordView, indexScore: number | null = score, v2Primary = false) =>
      classifyPair({ workspaceId: 'acme', jobId: 'j1', legacy, v2, indexScore }, 1000, v2Primary ? Phase.ReadNew : Phase.DualWrite).map((i) => i.kind);
    expect(pair(view(base), view(base))).toEqual([]);
    expect(pair(view(base), ABSENT)).toEqual([MismatchKind.Missing]);
    expect(pair(ABSENT, view(base))).toEqual([MismatchKind.Orphan]);
    // In new-only (globally, or a canary workspace) legacy is not written: its absence or leftovers are no mismatch.
    const newOnly = (legacy: RecordView, v2: RecordView, indexScore: number | null = score) =>
      classifyPair({ workspaceId: 'acme', jobId: 'j1', legacy, v2, indexScore }, 1000, Phase.NewOnly).map((i) => i.kind);
    expect(newOnly(ABSENT, view(base))).toEqual([]);
    expect(newOnly(view({ ...base, status: 'stale' }), view(base))).toEqual([]);
    expect(newOnly(ABSENT, view(base), null)).toEqual([MismatchKind.IndexMissing]);
    // A legacy record of another workspace does not back this v2 record: two tenants hold one id.
    expect(pair(view({ ...base, workspace_id: 'other' }), view(base))).toEqual([MismatchKind.IdConflict]);
    expect(pair(view(base), view({ ...base, status: 'failed' }))).toEqual([MismatchKind.FieldDiff]);
    const { status: _s, ...noStatus } = base;
    expect(pair(view(base), view(noStatus))).toEqual([MismatchKind.MissingField]);
    expect(pair(view(base), view({ ...base, extra: '1' }))).toEqual([MismatchKind.ExtraField]);
    expect(pair(view(base), view(base, 123456))).toEqual([MismatchKind.Ttl]);
    expect(pair(view(base), view(base), null)).toEqual([MismatchKind.IndexMissing]);
    expect(pair(view(base), view(base), 1)).toEqual([MismatchKind.IndexScore]);
    expect(pair(view(base), { type: 'string', fields: new Map(), pexpireAt: -1 })).toEqual([MismatchKind.NonHash]);
    // An orphan's index entry matters only when v2 is the primary.
    expect(pair(ABSENT, view(base), null)).toEqual([MismatchKind.Orphan]);
    expect(pair(ABSENT, view(base), null, true)).toEqual([MismatchKind.Orphan, MismatchKind.IndexMissing]);
  });

  it('digest is order-independent and matches the Lua definition', () => {
    const a = view({ a: '1', b: '2' }).fields;
    const b = fieldMap([Buffer.from('b'), Buffer.from('2'), Buffer.from('a'), Buffer.from('1')]);
    expect(recordDigest(a)).toBe(recordDigest(b));
    expect(recordDigest(a)).not.toBe(recordDigest(view({ a: '1', b: '3' }).fields));
    // sha1(sorted(sha1("<len>:<field><value>")).join(''))
    const parts = ['1:a1', '1:b2'].map((s) => createHash('sha1').update(s).digest('hex')).sort();
    expect(recordDigest(a)).toBe(createHash('sha1').update(parts.join('')).digest('hex'));
  });
});

describe('read-fields-batch reply decoding', () => {
  it('is unambiguous whatever the values hold', () => {
    const enc = (vals: Array<string | null>): Buffer =>
      Buffer.concat([
        Buffer.from('h'),
        ...vals.map((v) => (v === null ? Buffer.from('-') : Buffer.concat([Buffer.from(`${Buffer.byteLength(v)}:`), Buffer.from(v)]))),
      ]);
    expect(decodeFieldsRow(enc(['acme', '2024-01-01T00:00:00Z', '3']), 3)).toEqual(['hash', 'acme', '2024-01-01T00:00:00Z', '3']);
    // A hostile workspace_id cannot shift the other fields.
    expect(decodeFieldsRow(enc(['ws:3:-x', null, '1']), 3)).toEqual(['hash', 'ws:3:-x', null, '1']);
    expect(decodeFieldsRow(enc(['日本', '', '-']), 3)).toEqual(['hash', '日本', '', '-']);
    expect(decodeFieldsRow(Buffer.from('n'), 3)).toEqual(['none', null, null, null]);
    expect(decodeFieldsRow(Buffer.from('tlist'), 3)).toEqual(['list', null, null, null]);
    expect(decodeFieldsRow(Buffer.from('e'), 0)).toEqual(['exists']);
  });
});

describe('scan engine helpers', () => {
  const nodes = ['10.0.0.3:7000', '10.0.0.1:7000', '10.0.0.2:7000'].map((addr) => ({ addr, node: addr }));
  it('splits masters into disjoint shards that cover them all', () => {
    const s0 = selectShard(nodes, { index: 0, count: 2 }).map((n) => n.addr);
    const s1 = selectShard(nodes, { index: 1, count: 2 }).map((n) => n.addr);
    expect(s0).toEqual(['10.0.0.1:7000', '10.0.0.3:7000']);
    expect(s1).toEqual(['10.0.0.2:7000']);
    expect(selectShard(nodes, null).map((n) => n.addr)).toEqual(['10.0.0.1:7000', '10.0.0.2:7000', '10.0.0.3:7000']);
    expect(selectShard(nodes, { index: 3, count: 4 })).toEqual([]);
  });

  it('adds counters', () => {
    const c: Record<string, number> = { scanned: 1 };
    addCounters(c, { scanned: 2, copied: 3 });
    expect(c).toEqual({ scanned: 3, copied: 3 });
  });
});
