/**
 * One conformance suite for every JobQueue implementation: it runs unchanged
 * against MemoryJobQueue (unit), RedisJobQueue on a standalone server and on a
 * 3-master cluster (integration).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CursorError, JobExistsError, JobNotFoundError, ValidationError } from '../../src/core/errors.js';
import { Phase, PHASE_ORDER } from '../../src/core/phase.js';
import type { JobQueue } from '../../src/core/queue.js';

/** What a conformance run needs from an implementation. */
export interface ConformanceTarget {
  queue: JobQueue;
  /** Moves the phase and makes the queue act on it now. */
  setPhase(phase: Phase): Promise<void>;
  close(): Promise<void>;
}

async function drain(queue: JobQueue, ws: string, limit: number): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 1000; pages++) {
    const page = await queue.listJobs(ws, { limit, cursor });
    expect(page.jobs.length).toBeLessThanOrEqual(limit);
    for (const j of page.jobs) {
      expect(j.workspaceId).toBe(ws);
      ids.push(j.jobId);
    }
    cursor = page.nextCursor;
    if (cursor === null) return ids;
  }
  throw new Error('paging did not end');
}

/** Registers the suite under `name`. */
export function runQueueConformance(name: string, make: () => Promise<ConformanceTarget>): void {
  describe(`JobQueue conformance: ${name}`, () => {
    let t: ConformanceTarget;
    beforeEach(async () => {
      t = await make();
    });
    afterEach(async () => {
      await t.close();
    });

    for (const phase of PHASE_ORDER) {
      describe(`in phase ${phase}`, () => {
        beforeEach(async () => {
          await t.setPhase(phase);
        });

        it('enqueue creates a queued job at rev 1 that getJob returns', async () => {
          const job = await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'job-1', action: 'plan', params: { q: 'x', n: 1 } });
          expect(job).toMatchObject({ jobId: 'job-1', workspaceId: 'ws-a', action: 'plan', status: 'queued', rev: 1, params: { q: 'x', n: 1 } });
          expect(Date.parse(job.createdAt)).not.toBeNaN();
          expect(await t.queue.getJob('ws-a', 'job-1')).toEqual(job);
        });

        it('a job is invisible from another workspace, by id and by update', async () => {
          await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'job-2', action: 'plan' });
          expect(await t.queue.getJob('ws-b', 'job-2')).toBeNull();
          await expect(t.queue.updateStatus('ws-b', 'job-2', { status: 'running' })).rejects.toBeInstanceOf(JobNotFoundError);
          expect((await t.queue.getJob('ws-a', 'job-2'))?.status).toBe('queued');
        });

        it('updateStatus bumps rev and stores status, result and error', async () => {
          await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'job-3', action: 'plan' });
          const u1 = await t.queue.updateStatus('ws-a', 'job-3', { status: 'running' });
          expect(u1.rev).toBe(2);
          const u2 = await t.queue.updateStatus('ws-a', 'job-3', { status: 'failed', result: { partial: [1, 2] }, error: 'boom' });
          expect(u2).toMatchObject({ rev: 3, status: 'failed', result: { partial: [1, 2] }, error: 'boom' });
          expect(await t.queue.getJob('ws-a', 'job-3')).toEqual(u2);
        });

        it('rejects a duplicate job id and a missing job', async () => {
          await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'job-4', action: 'plan' });
          await expect(t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'job-4', action: 'plan' })).rejects.toBeInstanceOf(JobExistsError);
          await expect(t.queue.updateStatus('ws-a', 'nope', { status: 'running' })).rejects.toBeInstanceOf(JobNotFoundError);
        });

        it('rejects invalid workspace and job ids at the boundary, saying what is allowed', async () => {
          for (const ws of ['', 'UPPER', 'a*', '..', 'ws:b', 'a'.repeat(33), 'acme\n']) {
            const err = await t.queue.enqueue({ workspaceId: ws, action: 'plan' }).catch((e: unknown) => e);
            expect(err).toBeInstanceOf(ValidationError);
            expect((err as Error).message).toMatch(/1-32 characters/);
            await expect(t.queue.getJob(ws, 'job-1')).rejects.toThrow(/workspace id/);
          }
          for (const id of ['', '*', '../x', 'ws-b:job', 'a'.repeat(129), '-lead']) {
            await expect(t.queue.enqueue({ workspaceId: 'ws-a', jobId: id, action: 'plan' })).rejects.toThrow(/1-128 characters/);
            await expect(t.queue.getJob('ws-a', id)).rejects.toBeInstanceOf(ValidationError);
          }
          await expect(t.queue.updateStatus('ws-a', 'job-1', { status: 'exploded' as never })).rejects.toBeInstanceOf(ValidationError);
        });

        it('lists every job of a workspace exactly once, at several page sizes, and none of another', async () => {
          const mine: string[] = [];
          for (let i = 0; i < 23; i++)
            mine.push((await t.queue.enqueue({ workspaceId: 'ws-list', jobId: `L${String(i).padStart(3, '0')}`, action: 'a' })).jobId);
          for (let i = 0; i < 6; i++) await t.queue.enqueue({ workspaceId: 'ws-other', jobId: `O${i}`, action: 'a' });
          for (const limit of [1, 7, 23, 200]) {
            const ids = await drain(t.queue, 'ws-list', limit);
            // None skipped, none of another workspace. On the legacy path SCAN may repeat a key while
            // Redis resizes its table (the shared server's keyspace changes all the time): a repeat is
            // allowed there, a skip never (docs/api.md, "Listing order").
            expect(new Set(ids)).toEqual(new Set(mine));
            if (phase === Phase.ReadNew || phase === Phase.NewOnly) expect(ids.length).toBe(mine.length);
            else expect(ids.length).toBeGreaterThanOrEqual(mine.length);
          }
          expect((await t.queue.listJobs('ws-empty', { limit: 5 })).jobs).toEqual([]);
          await expect(t.queue.listJobs('ws-list', { limit: 0 })).rejects.toBeInstanceOf(ValidationError);
          await expect(t.queue.listJobs('ws-list', { limit: 201 })).rejects.toBeInstanceOf(ValidationError);
          await expect(t.queue.listJobs('ws-list', { limit: 5, cursor: 'not*a*cursor' })).rejects.toBeInstanceOf(CursorError);
        });

        it('dequeues in FIFO order and returns the current record', async () => {
          await t.queue.enqueue({ workspaceId: 'ws-q', jobId: 'q1', action: 'a' });
          await t.queue.enqueue({ workspaceId: 'ws-r', jobId: 'q2', action: 'a' });
          await t.queue.updateStatus('ws-r', 'q2', { status: 'running' });
          expect((await t.queue.dequeue())?.jobId).toBe('q1');
          const second = await t.queue.dequeue();
          expect(second).toMatchObject({ jobId: 'q2', workspaceId: 'ws-r', status: 'running', rev: 2 });
          expect(await t.queue.dequeue()).toBeNull();
        });
      });
    }

    it('writes in dual-write reach v2, so they are read after the flip', async () => {
      await t.setPhase(Phase.DualWrite);
      await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'dw-1', action: 'plan' });
      await t.queue.updateStatus('ws-a', 'dw-1', { status: 'succeeded', result: { ok: true } });
      await t.setPhase(Phase.ReadNew);
      expect(await t.queue.getJob('ws-a', 'dw-1')).toMatchObject({ status: 'succeeded', rev: 2, result: { ok: true } });
      expect((await drain(t.queue, 'ws-a', 10)).includes('dw-1')).toBe(true);
    });

    it('writes in legacy do not reach v2 (that is what backfill is for)', async () => {
      await t.setPhase(Phase.Legacy);
      await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'lg-1', action: 'plan' });
      await t.setPhase(Phase.ReadNew);
      expect(await t.queue.getJob('ws-a', 'lg-1')).toBeNull();
    });

    it('writes in read-new are mirrored to legacy, so a rollback reads them', async () => {
      await t.setPhase(Phase.ReadNew);
      await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'rn-1', action: 'plan' });
      await t.queue.updateStatus('ws-a', 'rn-1', { status: 'running' });
      await t.setPhase(Phase.DualWrite);
      expect(await t.queue.getJob('ws-a', 'rn-1')).toMatchObject({ status: 'running', rev: 2 });
    });

    it('a cursor from one read path is refused on the other', async () => {
      await t.setPhase(Phase.DualWrite);
      for (let i = 0; i < 5; i++) await t.queue.enqueue({ workspaceId: 'ws-c', jobId: `c${i}`, action: 'a' });
      const page = await t.queue.listJobs('ws-c', { limit: 2 });
      expect(page.readPath).toBe('legacy');
      expect(page.nextCursor).not.toBeNull();
      await t.setPhase(Phase.ReadNew);
      await expect(t.queue.listJobs('ws-c', { limit: 2, cursor: page.nextCursor })).rejects.toThrow(/restart paging/);
    });

    it('bare legacy queue references still dequeue after dual-write starts', async () => {
      await t.setPhase(Phase.Legacy);
      await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'bare-1', action: 'plan' });
      await t.setPhase(Phase.DualWrite);
      await t.queue.enqueue({ workspaceId: 'ws-a', jobId: 'pref-1', action: 'plan' });
      expect((await t.queue.dequeue())?.jobId).toBe('bare-1');
      expect((await t.queue.dequeue())?.jobId).toBe('pref-1');
    });
  });
}
