// Verify's digest comparison without Redis: the client-side content digest is
// equal iff two field sets are byte-equal (fast-check), record-facts replies
// decode unambiguously, and the pair decision needs every fact to agree.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createdAtScore } from '../../src/core/job.js';
import { recordDigest } from '../../src/ops/record-compare.js';
import { decide, DigestVerdict } from '../../src/ops/verify/digest-pairs.js';
import { decodeFacts, type RecordFacts } from '../../src/ops/verify/record-facts.js';

const bytes = fc.uint8Array({ minLength: 0, maxLength: 8 }).map((u) => Buffer.from(u));
/** Names that concatenate into each other ('a'+'bc' = 'ab'+'c'), or any bytes (latin1, as verify keys them). */
const name = fc.oneof(
  fc.constantFrom('a', 'ab', 'b', 'bc', 'c', ''),
  fc.uint8Array({ minLength: 1, maxLength: 4 }).map((u) => Buffer.from(u).toString('latin1')),
);
const record = fc.array(fc.tuple(name, bytes), { minLength: 0, maxLength: 6 }).map((entries) => new Map(entries));

function byteEqual(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k)?.equals(v) === true);
}

describe('the content digest', () => {
  it('is equal iff the field sets are byte-equal (random pairs, near misses included)', () => {
    const pair = record.chain((m) =>
      fc.oneof(
        fc.constant([m, new Map(m)] as const),
        record.map((o) => [m, o] as const),
        m.size === 0
          ? record.map((o) => [m, o] as const)
          : fc.tuple(fc.constantFrom(...m.keys()), bytes).map(([k, v]) => [m, new Map([...m, [k, v]])] as const),
        // The same fields in another order: still equal.
        fc.constant([m, new Map([...m].reverse())] as const),
      ),
    );
    fc.assert(
      fc.property(pair, ([a, b]) => {
        expect(recordDigest(a) === recordDigest(b)).toBe(byteEqual(a, b));
      }),
      { numRuns: 2000 },
    );
  });

  it('tells {a: "bc"} from {ab: "c"} and values that differ in one non-UTF-8 byte', () => {
    expect(recordDigest(new Map([['a', Buffer.from('bc')]]))).not.toBe(recordDigest(new Map([['ab', Buffer.from('c')]])));
    const x = Buffer.from([0xff, 0xfe, 0x80]);
    const y = Buffer.from([0xff, 0xfd, 0x80]);
    expect(x.toString('utf8')).toBe(y.toString('utf8'));
    expect(recordDigest(new Map([['v', x]]))).not.toBe(recordDigest(new Map([['v', y]])));
  });
});

describe('record-facts replies', () => {
  const hex = 'ab'.repeat(20);
  it('decode absent, foreign and hash replies, with absent fields, negative expiries and values holding the separators', () => {
    expect(decodeFacts(Buffer.from('n'), 2)).toEqual({ type: 'none', digest: '', pexpireAt: -2, fields: [null, null] });
    expect(decodeFacts(Buffer.from('tstring'), 0)).toMatchObject({ type: 'string' });
    expect(decodeFacts(Buffer.from(`h${hex}-1:-4:a:-b3:ws1`), 3)).toEqual({ type: 'hash', digest: hex, pexpireAt: -1, fields: [null, 'a:-b', 'ws1'] });
    expect(decodeFacts(Buffer.from(`h${hex}1700000000123:`), 0)).toEqual({ type: 'hash', digest: hex, pexpireAt: 1_700_000_000_123, fields: [] });
  });
});

describe('the pair decision', () => {
  const created = '2024-01-02T03:04:05.000Z';
  const side = (over: Partial<RecordFacts> = {}): RecordFacts => ({ type: 'hash', digest: 'd1', pexpireAt: -1, fields: [], ...over });
  const score = createdAtScore(created);

  it('is equal only when types, digests, expiries and the index entry all agree', () => {
    expect(decide(side(), side(), score, created, 1000)).toBe(DigestVerdict.Equal);
    expect(decide(side(), side({ digest: 'd2' }), score, created, 1000)).toBe('content');
    expect(decide(side(), side({ type: 'string', digest: '' }), score, created, 1000)).toBe(DigestVerdict.Suspect);
    expect(decide(side(), side({ type: 'none', digest: '' }), score, created, 1000)).toBe(DigestVerdict.Suspect);
    expect(decide(side({ pexpireAt: 5_000 }), side({ pexpireAt: 5_900 }), score, created, 1000)).toBe(DigestVerdict.Equal);
    expect(decide(side({ pexpireAt: 5_000 }), side({ pexpireAt: 6_001 }), score, created, 1000)).toBe(DigestVerdict.Suspect);
    expect(decide(side(), side({ pexpireAt: 5_000 }), score, created, 1000)).toBe(DigestVerdict.Suspect);
    expect(decide(side(), side(), null, created, 1000)).toBe(DigestVerdict.Suspect);
    expect(decide(side(), side(), score + 1, created, 1000)).toBe(DigestVerdict.Suspect);
  });
});
