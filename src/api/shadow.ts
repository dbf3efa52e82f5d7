/**
 * Shadow reads (dual-write only). When the state record's `shadow_read_rate`
 * is above 0, a sample of the reads served from legacy is re-read from v2
 * (the record by its v2 key, and its index entry) and compared. The client
 * always gets the legacy answer: the comparison runs after the response is
 * built, fire-and-forget, bounded in concurrency, and every error is counted,
 * never thrown.
 *
 * For a list page only the direction legacy → v2 is checked (v2 pages are in
 * another order, so a page cannot be compared as a whole); verify covers the
 * other direction.
 */
import type { FastifyBaseLogger } from 'fastify';
import { JobField, jobFromHash, type Job } from '../core/job.js';
import type { Keyspace } from '../core/keys.js';
import { Phase } from '../core/phase.js';
import type { RedisClient } from '../core/redis.js';
import type { ApiMetrics, ShadowOutcome } from './metrics.js';

/** Options of {@link ShadowReader}. */
export interface ShadowReaderOptions {
  client: RedisClient;
  keys: Keyspace;
  metrics: ApiMetrics;
  /** Most shadow comparisons in flight at once; more are dropped (counted). Default 16. */
  maxInFlight?: number;
  /** Random source (tests). */
  random?: () => number;
}

/** Compares the legacy answer with v2 for a sample of dual-write reads. */
export class ShadowReader {
  private inFlight = 0;
  private readonly maxInFlight: number;
  private readonly random: () => number;
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly opts: ShadowReaderOptions) {
    this.maxInFlight = opts.maxInFlight ?? 16;
    this.random = opts.random ?? Math.random;
  }

  /** True when this read should be shadowed. */
  sampled(phase: Phase, rate: number): boolean {
    return phase === Phase.DualWrite && rate > 0 && this.random() < rate;
  }

  /** Schedules a comparison of `jobs` (the legacy answer) with v2; returns at once. */
  shadow(workspaceId: string, jobs: readonly Job[], log: FastifyBaseLogger): void {
    if (jobs.length === 0) return;
    if (this.inFlight >= this.maxInFlight) {
      this.opts.metrics.shadow('dropped');
      return;
    }
    this.inFlight += 1;
    const p = this.compare(workspaceId, jobs)
      .then((outcomes) => {
        for (const [outcome, n] of outcomes) this.opts.metrics.shadow(outcome, n);
        const disagreements = [...outcomes].filter(([o]) => o !== 'match').reduce((a, [, n]) => a + n, 0);
        if (disagreements > 0) log.warn({ shadow: Object.fromEntries(outcomes) }, 'shadow read: v2 disagrees with legacy');
      })
      .catch((err: unknown) => {
        this.opts.metrics.shadow('error');
        log.warn({ err }, 'shadow read failed');
      })
      .finally(() => {
        this.inFlight -= 1;
        this.pending.delete(p);
      });
    this.pending.add(p);
  }

  private async compare(workspaceId: string, jobs: readonly Job[]): Promise<Map<ShadowOutcome, number>> {
    const { client, keys } = this.opts;
    const indexKey = keys.index(workspaceId);
    const [hashes, scores] = await Promise.all([
      Promise.all(jobs.map((j) => client.hgetall(keys.v2Job(workspaceId, j.jobId)))),
      Promise.all(jobs.map((j) => client.zscore(indexKey, j.jobId))),
    ]);
    const out = new Map<ShadowOutcome, number>();
    const add = (o: ShadowOutcome): void => void out.set(o, (out.get(o) ?? 0) + 1);
    jobs.forEach((legacy, i) => {
      const h = hashes[i]!;
      if (h[JobField.JobId] === undefined) return add('missing');
      const v2 = jobFromHash(h);
      // The mirror is written after the primary: a lower rev is a write in flight, not a bug.
      if (v2.rev < legacy.rev) return add('stale');
      if (v2.rev > legacy.rev || JSON.stringify(v2) !== JSON.stringify(legacy)) return add('mismatch');
      if (scores[i] === null) return add('index_missing');
      return add('match');
    });
    return out;
  }

  /** Waits for the comparisons in flight (shutdown, tests). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
