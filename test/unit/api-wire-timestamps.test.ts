import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isCanonicalIso, isoTimestamp } from '../../src/api/schemas.js';
import { createdAtScore } from '../../src/core/job.js';

/** isoTimestamp before its canonical fast path: parse, then print. */
function parsed(raw: string): string | null {
  if (raw === '') return null;
  const ms = createdAtScore(raw);
  if (ms === 0 && !/^0+(\.0+)?$/.test(raw)) return null;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

describe('isoTimestamp: the canonical fast path answers what parsing would', () => {
  it('for every instant from year 0 to 9999 printed by Date', () => {
    fc.assert(
      fc.property(fc.integer({ min: -62_167_219_200_000, max: 253_402_300_799_999 }), (ms) => {
        const raw = new Date(ms).toISOString();
        expect(isoTimestamp(raw)).toBe(parsed(raw));
      }),
      { numRuns: 5000 },
    );
  });

  it('for strings of the canonical shape with any digits (Feb 30, 24:00, month 13, leap days)', () => {
    const d = (n: number): fc.Arbitrary<string> => fc.integer({ min: 0, max: 10 ** n - 1 }).map((x) => String(x).padStart(n, '0'));
    fc.assert(
      fc.property(d(4), d(2), d(2), d(2), d(2), d(2), d(3), (y, mo, da, h, mi, s, ms) => {
        const raw = `${y}-${mo}-${da}T${h}:${mi}:${s}.${ms}Z`;
        expect(isoTimestamp(raw)).toBe(parsed(raw));
      }),
      { numRuns: 20000 },
    );
    for (const raw of [
      '2025-02-30T00:00:00.000Z',
      '2024-02-29T12:00:00.000Z',
      '2023-02-29T12:00:00.000Z',
      '1900-02-29T00:00:00.000Z',
      '2000-02-29T00:00:00.000Z',
      '2025-01-01T24:00:00.000Z',
      '1970-01-01T00:00:00.000Z',
    ]) {
      expect(isoTimestamp(raw)).toBe(parsed(raw));
    }
  });

  it('for the canonical form with any one character replaced (non-digits where digits go, other separators)', () => {
    const base = fc.integer({ min: -62_167_219_200_000, max: 253_402_300_799_999 }).map((ms) => new Date(ms).toISOString());
    fc.assert(
      fc.property(base, fc.integer({ min: 0, max: 23 }), fc.constantFrom('/', ':', '0', '9', 'a', 'T', 'Z', ' ', '٣', '.', '-', '+'), (iso, at, ch) => {
        const raw = iso.slice(0, at) + ch + iso.slice(at + 1);
        expect(isoTimestamp(raw)).toBe(parsed(raw));
      }),
      { numRuns: 20000 },
    );
  });

  it('takes the fast path only for the exact printed form', () => {
    expect(isCanonicalIso('2025-01-01T00:00:00.000Z')).toBe(true);
    expect(isCanonicalIso('2025-02-30T00:00:00.000Z')).toBe(false);
    expect(isCanonicalIso('2025-01-01T00:00:00Z')).toBe(false);
    expect(isCanonicalIso('2025-01-01T00:00:00.000+00:00')).toBe(false);
    expect(isCanonicalIso('1970-01-01T00:00:00.000Z')).toBe(false);
    expect(isCanonicalIso('2025-01-01T00:00:00.000Z ')).toBe(false);
    expect(isCanonicalIso('+02025-01-01T00:00:00.000Z')).toBe(false);
    expect(isCanonicalIso('2025-01-01T00:00:0٣.000Z')).toBe(false);
  });
});
