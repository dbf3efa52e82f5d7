/**
 * The client side of the write path (docs/performance.md "Write path"): the
 * hand-checked enqueue input agrees with the zod schema it shortcuts, and
 * pooled job ids stay valid and distinct.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isJobId } from '../../src/core/ids.js';
import { EnqueueInputSchema, newJobFields, parseEnqueueInput, parseInput } from '../../src/core/job.js';
import { newJobId } from '../../src/core/redis-queue.js';

/** What the schema makes of `input`: the stored JSON of params and the other fields, or the error message. */
function outcome(parse: (v: unknown) => ReturnType<typeof parseEnqueueInput>, input: unknown): unknown {
  try {
    const p = parse(input);
    const { params, ...rest } = p;
    return { ok: rest, storedParams: JSON.stringify(params) };
  } catch (err) {
    return {
      error: err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err),
    };
  }
}

const viaZod = (v: unknown): ReturnType<typeof parseEnqueueInput> => parseInput(EnqueueInputSchema, v);

const sym = Symbol('s');
const withProto = JSON.parse('{"__proto__": {"x": 1}, "a": 1}') as Record<string, unknown>;
const nonEnumerable = Object.defineProperty({ a: 1 }, 'hidden', {
  value: 2,
  enumerable: false,
});

const EDGE_INPUTS: unknown[] = [
  { workspaceId: 'acme', action: 'plan' },
  {
    workspaceId: 'acme',
    action: 'plan',
    params: { a: 1, b: [1, 2], c: { d: null } },
  },
  {
    workspaceId: 'acme',
    action: 'plan',
    params: {},
    jobId: 'job_1',
    ttlMs: 1000,
    extra: 'dropped',
  },
  { workspaceId: 'acme', action: 'x'.repeat(128) },
  { workspaceId: 'acme', action: 'x'.repeat(129) },
  { workspaceId: 'acme', action: '' },
  { workspaceId: 'Acme', action: 'plan' },
  { workspaceId: 'acme', action: 'plan', jobId: 'bad id' },
  { workspaceId: 'acme', action: 'plan', jobId: 42 },
  { workspaceId: 'acme', action: 'plan', ttlMs: 0 },
  { workspaceId: 'acme', action: 'plan', ttlMs: 1.5 },
  { workspaceId: 'acme', action: 'plan', ttlMs: 2 ** 53 },
  { workspaceId: 'acme', action: 'plan', ttlMs: '1000' },
  { workspaceId: 'acme', action: 'plan', params: [] },
  { workspaceId: 'acme', action: 'plan', params: null },
  { workspaceId: 'acme', action: 'plan', params: 'text' },
  { workspaceId: 'acme', action: 'plan', params: new Date(0) },
  { workspaceId: 'acme', action: 'plan', params: new Map([['a', 1]]) },
  {
    workspaceId: 'acme',
    action: 'plan',
    params: Object.create(null) as object,
  },
  { workspaceId: 'acme', action: 'plan', params: { [sym]: 1, a: 1 } },
  { workspaceId: 'acme', action: 'plan', params: withProto },
  { workspaceId: 'acme', action: 'plan', params: nonEnumerable },
  {
    workspaceId: 'acme',
    action: 'plan',
    params: { u: undefined, f: () => 1, d: new Date(0) },
  },
  null,
  undefined,
  'acme',
  [],
];

describe('parseEnqueueInput', () => {
  it.each(EDGE_INPUTS.map((v, i) => [i, v] as const))('agrees with EnqueueInputSchema on edge input #%i', (_i, input) => {
    expect(outcome(parseEnqueueInput, input)).toEqual(outcome(viaZod, input));
  });

  it('agrees with EnqueueInputSchema on random input', () => {
    const input = fc.record(
      {
        workspaceId: fc.oneof(fc.constantFrom('acme', 'ws-1', 'A', ''), fc.string()),
        jobId: fc.oneof(fc.constantFrom('job_1', 'bad id'), fc.string(), fc.integer()),
        action: fc.oneof(fc.string({ maxLength: 140 }), fc.integer()),
        params: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), fc.jsonValue()),
        ttlMs: fc.oneof(fc.integer(), fc.double(), fc.constant(2 ** 53)),
        other: fc.anything(),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(input, (v) => {
        expect(outcome(parseEnqueueInput, v)).toEqual(outcome(viaZod, v));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps what newJobFields stores the same as through zod', () => {
    const input = {
      workspaceId: 'acme',
      action: 'plan',
      params: { prompt: 'x', n: 1, nested: { a: [1, 'b'] } },
    };
    const now = new Date(0);
    const a = parseEnqueueInput(input);
    const b = viaZod(input);
    expect(
      newJobFields({
        jobId: 'j',
        workspaceId: a.workspaceId,
        action: a.action,
        params: a.params,
        now,
      }),
    ).toEqual(
      newJobFields({
        jobId: 'j',
        workspaceId: b.workspaceId,
        action: b.action,
        params: b.params,
        now,
      }),
    );
  });
});

describe('newJobId', () => {
  it('stays valid and distinct across several refills of its random pool', () => {
    const ids = Array.from({ length: 3000 }, () => newJobId());
    expect(ids.every((id) => isJobId(id) && /^job_[0-9a-z]+_[0-9a-f]{12}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    // Random parts differ too (not only the time part).
    expect(new Set(ids.map((id) => id.slice(-12))).size).toBe(ids.length);
  });
});
