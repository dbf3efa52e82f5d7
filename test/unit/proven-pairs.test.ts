// The pair table behind verify's proven-pair shortcut (src/ops/verify/proven-pairs.ts) is exact: a hash
// collision only costs a byte comparison, it never makes an unproven pair look proven; and it is bounded.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pairHash, PairTable } from '../../src/ops/verify/proven-pairs.js';

describe('PairTable', () => {
  it('every pair collides (a constant hash): only the pairs added are found', () => {
    const t = new PairTable(10_000, () => 7);
    for (let i = 0; i < 600; i += 2) expect(t.add(`ws-${i % 5}`, `job-${i}`)).toBe(true);
    for (let i = 0; i < 600; i++) expect(t.has(`ws-${i % 5}`, `job-${i}`), `job-${i}`).toBe(i % 2 === 0);
    // The same job id in another workspace is another pair.
    expect(t.has('ws-1', 'job-0')).toBe(false);
    expect(t.size).toBe(300);
  });

  it('two pairs with the same real hash stay apart', () => {
    // Find two distinct pairs with the same 32-bit hash of their encodings, then check each alone.
    const seen = new Map<number, number>();
    let pair: [number, number] | null = null;
    for (let i = 0; pair === null; i++) {
      const h = pairHash('ws-0', `job-${i}`);
      const j = seen.get(h);
      if (j !== undefined) pair = [j, i];
      else seen.set(h, i);
    }
    const [a, b] = pair;
    const t = new PairTable(10);
    t.add('ws-0', `job-${a}`);
    expect(t.has('ws-0', `job-${a}`)).toBe(true);
    expect(t.has('ws-0', `job-${b}`)).toBe(false);
  });

  it('is unambiguous whatever the ids hold, and gives back what was added', () => {
    const id = fc.string({ minLength: 0, maxLength: 12, unit: 'binary' });
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(id, id), { maxLength: 60, selector: ([w, j]) => `${w}\u0000${j}` }), fc.tuple(id, id), (pairs, probe) => {
        const t = new PairTable(1_000);
        for (const [w, j] of pairs) t.add(w, j);
        expect([...t.entries()].map((e) => [e.ws, e.jobId])).toEqual(pairs);
        const known = pairs.some(([w, j]) => w === probe[0] && j === probe[1]);
        expect(t.has(probe[0], probe[1])).toBe(known);
      }),
    );
  });

  it('entriesUnless gives every pair in order, as null exactly when the other table holds it (same hash or not)', () => {
    const id = fc.string({ minLength: 0, maxLength: 8, unit: 'binary' });
    const pairs = fc.uniqueArray(fc.tuple(id, id), { maxLength: 60, selector: ([w, j]) => `${w}\u0000${j}` });
    fc.assert(
      fc.property(pairs, fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }), fc.boolean(), (list, held, collide) => {
        const t = new PairTable(1_000);
        // A constant hash in the other table forces the string path; the real one the code-unit path.
        const other = collide ? new PairTable(1_000, () => 3) : new PairTable(1_000);
        list.forEach(([w, j], i) => {
          t.add(w, j);
          if (held[i]) other.add(w, j);
        });
        // Pairs the other table holds that this one does not change nothing.
        other.add('\u0000', 'not-in-this-table');
        const expected = list.map(([w, j], i) => (held[i] ? null : { ws: w, jobId: j }));
        expect([...t.entriesUnless(other)]).toEqual(expected);
      }),
    );
  });

  it('refuses beyond its bound (the caller then checks per key), but still knows what it holds', () => {
    const t = new PairTable(3);
    expect([t.add('w', 'a'), t.add('w', 'b'), t.add('w', 'c'), t.add('w', 'd')]).toEqual([true, true, true, false]);
    expect(t.full).toBe(true);
    expect(t.add('w', 'a')).toBe(true);
    expect(t.has('w', 'd')).toBe(false);
    expect(t.size).toBe(3);
  });

  it('grows past its first arrays and buffer', () => {
    const t = new PairTable(100_000);
    for (let i = 0; i < 20_000; i++) t.add(`ws-${i % 97}`, `job-${i}-${'x'.repeat(i % 40)}`);
    for (let i = 0; i < 20_000; i++) expect(t.has(`ws-${i % 97}`, `job-${i}-${'x'.repeat(i % 40)}`)).toBe(true);
    expect(t.has('ws-1', 'job-0-')).toBe(false);
    expect(t.size).toBe(20_000);
  });
});
