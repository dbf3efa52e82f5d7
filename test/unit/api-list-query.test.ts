import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { listQueryFast, ListQuerySchema } from '../../src/api/schemas.js';

/** What the route would do with the schema alone: the parsed query, or null for a 400. */
function bySchema(query: unknown): unknown {
  const r = ListQuerySchema.safeParse(query);
  return r.success ? r.data : null;
}

/** A query object as fastify's parser builds it (fast-querystring: a prototype chain without Object.prototype). */
function fastifyQuery(entries: Array<[string, unknown]>): Record<string, unknown> {
  function Empty(): void {}
  Empty.prototype = Object.create(null) as object;
  const q = new (Empty as unknown as new () => Record<string, unknown>)();
  for (const [k, v] of entries) q[k] = v;
  return q;
}

const CURSOR = 'A'.repeat(67);

describe('listQueryFast: the hand check of GET /ai/jobs answers what ListQuerySchema would, or defers to it', () => {
  const key = fc.constantFrom('limit', 'cursor', 'limits', 'Limit', '__proto__', 'workspace_id', '');
  const value = fc.oneof(
    fc.constantFrom(
      '50',
      '1',
      '200',
      '201',
      '999',
      '1000',
      '0',
      '050',
      '-1',
      '1.5',
      ' 5',
      '5 ',
      '',
      CURSOR,
      `${CURSOR}=`,
      'A'.repeat(66),
      'A'.repeat(4096),
      'A'.repeat(4097),
    ),
    fc.string({ maxLength: 8 }),
    fc.array(fc.constantFrom('1', '2'), { maxLength: 2 }),
    fc.constant(undefined),
    fc.integer(),
  );

  it('for random queries, plain objects and fastify-shaped ones', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key, value), { maxLength: 3 }), fc.boolean(), (entries, shaped) => {
        const q = shaped ? fastifyQuery(entries) : Object.fromEntries(entries);
        const fast = listQueryFast(q);
        // Whenever the fast path answers, it answers exactly what the schema answers; it never accepts what the schema refuses.
        if (fast !== null) expect(fast).toEqual(bySchema(q));
        // It may defer an accepted query only for a value no query string produces (undefined).
        else if (bySchema(q) !== null && entries.every(([, v]) => typeof v === 'string')) expect.fail(`fast path deferred on ${JSON.stringify(entries)}`);
      }),
      { numRuns: 20000 },
    );
  });

  it('takes the common queries itself', () => {
    expect(listQueryFast(fastifyQuery([['limit', '50']]))).toEqual({ limit: 50 });
    expect(listQueryFast(fastifyQuery([]))).toEqual({});
    expect(
      listQueryFast(
        fastifyQuery([
          ['limit', '200'],
          ['cursor', CURSOR],
        ]),
      ),
    ).toEqual({ limit: 200, cursor: CURSOR });
  });

  it('defers what the schema refuses (it words the 400)', () => {
    for (const q of [{ limit: '201' }, { limit: '0' }, { limit: ['1', '2'] }, { cursor: 'short' }, { workspace_id: 'ws-b' }, null, 'limit=5', []]) {
      expect(listQueryFast(q)).toBeNull();
    }
    // An inherited enumerable key counts, as it does for zod's strict object.
    const inherited = Object.create({ workspace_id: 'ws-b' }) as Record<string, unknown>;
    inherited.limit = '5';
    expect(listQueryFast(inherited)).toBeNull();
    expect(bySchema(inherited)).toBeNull();
  });
});
