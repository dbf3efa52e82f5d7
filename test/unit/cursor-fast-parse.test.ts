import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { payloadFast, PayloadSchema } from '../../src/api/cursor-envelope.js';
import { CursorSchema, v2CursorFast } from '../../src/core/cursor.js';

/** What a schema returns for `value`, or null when it refuses it. */
function bySchema(schema: { safeParse(v: unknown): { success: boolean; data?: unknown } }, value: unknown): unknown {
  const r = schema.safeParse(value);
  return r.success ? r.data : null;
}

const str = (max: number): fc.Arbitrary<string> => fc.oneof(fc.string({ maxLength: 8 }), fc.constant('x'.repeat(max)), fc.constant('x'.repeat(max + 1)));
const num = fc.oneof(fc.double(), fc.integer(), fc.constantFrom(Infinity, -Infinity, NaN, -0, 1735689600000));
const anyValue = (max: number): fc.Arbitrary<unknown> =>
  fc.oneof(str(max), num, fc.constant(null), fc.constant(undefined), fc.boolean(), fc.array(fc.integer(), { maxLength: 1 }));

describe('cursor fast parses answer what their schema would, or defer to it', () => {
  it('v2 cursors (src/core/cursor.ts)', () => {
    const obj = fc.record(
      { p: fc.oneof(fc.constantFrom('v2', 'legacy', 'V2', ''), anyValue(4)), s: anyValue(4), m: anyValue(256), extra: anyValue(4) },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(obj, anyValue(4)), (v) => {
        const fast = v2CursorFast(v);
        if (fast !== null) expect(fast).toEqual(bySchema(CursorSchema, v));
        // Every v2 cursor the schema accepts is taken by the fast path.
        else if (typeof v === 'object' && v !== null && (v as { p?: unknown }).p === 'v2') expect(bySchema(CursorSchema, v)).toBeNull();
      }),
      { numRuns: 20000 },
    );
    expect(v2CursorFast({ p: 'v2', s: 1, m: 'job-1', x: 1 })).toEqual({ p: 'v2', s: 1, m: 'job-1' });
    expect(v2CursorFast({ p: 'legacy', n: 'a:1', c: '0', k: 10, after: null })).toBeNull();
  });

  it('envelope payloads (src/api/cursor-envelope.ts)', () => {
    const obj = fc.record(
      { w: anyValue(64), p: fc.oneof(fc.constantFrom('v2', 'legacy', 'V2'), anyValue(4)), c: anyValue(2048), extra: anyValue(4) },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(obj, anyValue(4)), (v) => {
        const fast = payloadFast(v);
        if (fast !== null) expect(fast).toEqual(bySchema(PayloadSchema, v));
        else expect(bySchema(PayloadSchema, v)).toBeNull();
      }),
      { numRuns: 20000 },
    );
  });
});
