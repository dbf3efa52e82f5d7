/**
 * Issue 9, the invariant behind every item: whatever the interleaving, no
 * acknowledged write is lost. A fast-check property on the real single node:
 * two writers (RedisJobQueue, separate connections) create and update a small
 * set of jobs while an operator copies (backfill), repairs (verify --repair)
 * and moves the phase (the real transition ops, gates included: a refused move
 * is part of the game), one operator action at a time, each concurrent with
 * the writers. A ledger keeps the last acknowledged write of every job.
 *
 * At the end, the primary of the final phase holds exactly the last
 * acknowledged write of each job; in dual-write and read-new, after a backfill
 * and a verify --repair, both layouts do, and verify is clean.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GateError, JobExistsError, JobNotFoundError } from '../../src/core/errors.js';
import { jobFromHash, type Job } from '../../src/core/job.js';
import { Keyspace } from '../../src/core/keys.js';
import { Layout, Phase, routeFor } from '../../src/core/phase.js';
import { closeRedis, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { backfill } from '../../src/ops/backfill.js';
import { cleanup } from '../../src/ops/cleanup.js';
import { enableDualWrite } from '../../src/ops/enable-dual-write.js';
import { flipRead } from '../../src/ops/flip-read.js';
import { rollback } from '../../src/ops/rollback.js';
import { verify } from '../../src/ops/verify.js';
import { coreClient } from '../helpers/core-clients.js';
import { deleteKeysWithPrefix, uniquePrefix } from '../helpers/fixtures.js';
import { opContext } from './backfill-helpers.js';
import { readState } from './safety-helpers.js';

/** Jobs of the game: three per workspace; ids are unique, so every create of one id is the same job. */
const JOBS = ['ws-a', 'ws-b'].flatMap((ws) => [0, 1, 2].map((i) => ({ workspaceId: ws, jobId: `${ws}-job-${i}` })));

type WriterAction = { t: 'write'; writer: 0 | 1; job: number; create: boolean; status: 'running' | 'succeeded' | 'failed'; n: number };
type OperatorAction = { t: 'copy' } | { t: 'repair' } | { t: 'forward' } | { t: 'back' };
interface Step {
  writes: WriterAction[];
  operator: OperatorAction | null;
}

const writerAction: fc.Arbitrary<WriterAction> = fc.record({
  t: fc.constant('write' as const),
  writer: fc.constantFrom(0 as const, 1 as const),
  job: fc.nat({ max: JOBS.length - 1 }),
  // Mostly updates: a job is created once, then written many times.
  create: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
  status: fc.constantFrom('running' as const, 'succeeded' as const, 'failed' as const),
  n: fc.nat({ max: 1_000_000 }),
});
const operatorAction: fc.Arbitrary<OperatorAction> = fc.oneof(
  fc.constant({ t: 'copy' as const }),
  fc.constant({ t: 'repair' as const }),
  { arbitrary: fc.constant({ t: 'forward' as const }), weight: 2 },
  fc.constant({ t: 'back' as const }),
);
const step: fc.Arbitrary<Step> = fc.record({
  writes: fc.array(writerAction, { minLength: 0, maxLength: 4 }),
  operator: fc.option(operatorAction, { nil: null }),
});

const QUIET = { rounds: 2, roundDelayMs: 10 };

describe('no acknowledged write is lost, whatever the interleaving (single node, fast-check)', () => {
  let admin: RedisClient;
  let w1: RedisClient;
  let w2: RedisClient;
  const prefixes: string[] = [];

  beforeAll(async () => {
    admin = await coreClient('standalone');
    w1 = await coreClient('standalone');
    w2 = await coreClient('standalone');
  });
  afterAll(async () => {
    for (const p of prefixes) await deleteKeysWithPrefix(admin, p);
    await closeRedis(w1);
    await closeRedis(w2);
    await closeRedis(admin);
  });

  it('the final state of each job is its last acknowledged write, in every layout that must hold it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 6, maxLength: 16 }), async (steps) => {
        const keys = new Keyspace(uniquePrefix('prop'));
        prefixes.push(keys.prefix);
        const ctx = opContext(admin, keys);
        const writers = [
          await RedisJobQueue.create(w1, { keys, register: false, phase: { subscribe: false } }),
          await RedisJobQueue.create(w2, { keys, register: false, phase: { subscribe: false } }),
        ];
        /** The last acknowledged write of each job (the highest rev: the scripts serialise writes per job). */
        const ledger = new Map<string, Job>();
        const unexpected: string[] = [];
        const ack = (job: Job): void => {
          const prev = ledger.get(job.jobId);
          if (!prev || job.rev > prev.rev) ledger.set(job.jobId, job);
        };

        const write = async (a: WriterAction): Promise<void> => {
          const q = writers[a.writer]!;
          const { workspaceId, jobId } = JOBS[a.job]!;
          try {
            if (a.create) ack(await q.enqueue({ workspaceId, jobId, action: 'prop', params: { n: a.n } }));
            else ack(await q.updateStatus(workspaceId, jobId, { status: a.status, result: { n: a.n } }));
          } catch (err) {
            // Refusals that the contract allows: the job exists already, or does not exist yet.
            if (err instanceof JobExistsError || err instanceof JobNotFoundError) return;
            unexpected.push(`write ${JSON.stringify(a)}: ${String(err)}`);
          }
        };

        /** One operator step, as an operator would run it: gates may refuse (that is part of the game). */
        const operate = async (o: OperatorAction): Promise<void> => {
          const phase = (await readState(admin, keys)).phase;
          const mirrored = phase === Phase.DualWrite || phase === Phase.ReadNew;
          try {
            if (o.t === 'copy' && mirrored) await backfill(ctx, {});
            else if (o.t === 'repair' && mirrored) await verify(ctx, { ...QUIET, repair: true });
            else if (o.t === 'back' && phase !== Phase.Legacy) await rollback(ctx, { execute: true, reason: 'property' });
            else if (o.t === 'forward') {
              if (phase === Phase.Legacy) await enableDualWrite(ctx, { settleMs: 10, reason: 'property' });
              else if (phase === Phase.DualWrite) {
                await backfill(ctx, {});
                await verify(ctx, { ...QUIET, repair: true });
                await flipRead(ctx, { reason: 'property' });
              } else if (phase === Phase.ReadNew) {
                await verify(ctx, { ...QUIET, repair: true });
                await cleanup(ctx, { execute: true, minSoakMs: 0, reason: 'property' });
              }
            }
          } catch (err) {
            // A closed gate is an answer, not a failure (e.g. a verify that saw a live write's mismatch).
            if (err instanceof GateError) return;
            unexpected.push(`${o.t} in ${phase}: ${String(err)}`);
          }
        };

        try {
          for (const s of steps) await Promise.all([...s.writes.map(write), s.operator ? operate(s.operator) : Promise.resolve()]);

          // Settle: in the mirrored phases, copy and repair once more with the writers quiet.
          const final = await readState(admin, keys);
          const both = final.phase === Phase.DualWrite || final.phase === Phase.ReadNew;
          if (both) {
            await backfill(ctx, {});
            const v = await verify(ctx, { ...QUIET, repair: true });
            expect(v.remaining, JSON.stringify(v.listed)).toBe(0);
            const again = await verify(ctx, QUIET);
            expect(again.ok, JSON.stringify(again.listed)).toBe(true);
          }

          expect(unexpected).toEqual([]);
          const primary = routeFor(final.phase).primary;
          for (const [jobId, acked] of ledger) {
            const layouts = both ? [Layout.Legacy, Layout.V2] : [primary];
            for (const layout of layouts) {
              const key = layout === Layout.Legacy ? keys.legacyJob(jobId) : keys.v2Job(acked.workspaceId, jobId);
              const hash = await admin.hgetall(key);
              expect(Object.keys(hash).length > 0 ? jobFromHash(hash) : null, `${jobId} in ${layout} (final phase ${final.phase})`).toEqual(acked);
            }
          }
        } finally {
          for (const q of writers) await q.close();
          await deleteKeysWithPrefix(admin, keys.prefix);
        }
      }),
      { numRuns: 30, endOnFailure: true },
    );
  });
});
