/**
 * Rounds 2..N of verify, and the confirmation after a repair: re-check only the
 * suspects. A difference a live write caused resolves between rounds; only what
 * persists in the last round counts.
 */
import pLimit from 'p-limit';
import { isJobId } from '../../core/ids.js';
import { sleep } from '../../core/state.js';
import type { OpContext } from '../context.js';
import type { PairChecker } from './pair-check.js';
import type { VerifyPlan } from './plan.js';
import type { SuspectSet } from './suspects.js';

/** Progress of a re-check: suspects done of those to re-check. */
export type RecheckProgress = (stage: string, done: number, total: number) => void;

/** Re-checks suspects against the current data. */
export class Rechecker {
  constructor(
    private readonly ctx: OpContext,
    private readonly plan: VerifyPlan,
    private readonly suspects: SuspectSet,
    private readonly checker: PairChecker,
  ) {}

  /** Re-reads each suspect: it stays (refreshed) while it still differs, and goes when it no longer does. */
  async recheck(ids: string[], stage: string, progress: RecheckProgress): Promise<void> {
    const { client, keys, signal } = this.ctx;
    let done = 0;
    await pLimit(Math.max(8, this.plan.concurrency * 16)).map(ids, async (id) => {
      if (signal.aborted) return;
      const s = this.suspects.get(id);
      if (!s || s.t === 'key') return;
      if (s.t === 'pair') {
        const again = await this.checker.check(s.ws, s.jobId);
        if (again) this.suspects.add(id, { ...again, ...(s.repaired === undefined ? {} : { repaired: s.repaired }) });
        else this.suspects.delete(id);
      } else {
        const [inIndex, exists] = await Promise.all([
          client.zscore(keys.index(s.ws), s.member),
          isJobId(s.member) ? client.exists(keys.v2Job(s.ws, s.member)) : Promise.resolve(0),
        ]);
        if (inIndex === null || exists === 1) this.suspects.delete(id);
      }
      done++;
      progress(stage, done, ids.length);
    });
    // An interrupt during the re-check ends the run with InterruptedError, like everywhere else.
    if (signal.aborted) await sleep(0, signal);
  }

  /** Rounds 2..N after `--round-delay`; returns the suspects left after each round (round 1 first). */
  async rounds(progress: RecheckProgress): Promise<number[]> {
    const perRound = [this.suspects.size];
    for (let round = 2; round <= this.plan.rounds; round++) {
      const pending = this.suspects.recheckable();
      if (pending.length > 0) {
        progress(`verify round ${round}/${this.plan.rounds}`, 0, pending.length);
        await sleep(this.plan.roundDelayMs, this.ctx.signal);
        await this.recheck(pending, `verify round ${round}/${this.plan.rounds}: re-checking suspects`, progress);
      }
      perRound.push(this.suspects.size);
    }
    return perRound;
  }
}
