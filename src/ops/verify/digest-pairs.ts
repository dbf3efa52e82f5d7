/**
 * Pairs compared by digest, for a cluster: a job's legacy key and its v2 key
 * hash to different slots, so no script sees both. Each side is reduced on
 * its own master (src/core/lua/record-facts.lua: declared keys only, one key
 * per call, pipelined per master by the client) and the digests are compared
 * here. Equal DUMP digests prove equal content; when they differ (another
 * encoding or field order) the content digests decide. Only a pair that still
 * differs is read whole and classified (PairChecker), in the spirit of
 * data-diff's checksums.
 */
import { createdAtScore } from '../../core/job.js';
import type { Keyspace } from '../../core/keys.js';
import type { RedisClient } from '../../core/redis.js';
import { expiryDiffers } from '../record-compare.js';
import type { PairChecker } from './pair-check.js';
import type { VerifyPlan } from './plan.js';
import { DigestMode, factsOf, type RecordFacts } from './record-facts.js';

/** What the digests decided for one pair. */
export const DigestVerdict = {
  /** Same content (by DUMP digest), expiry within tolerance, index entry right. */
  Equal: 'equal',
  /** DUMP digests differed but the content digests are equal (and the rest is right). */
  EqualByContent: 'equal-by-content',
  /** Something differs: the pair is read whole and classified. */
  Suspect: 'suspect',
} as const;
export type DigestVerdict = (typeof DigestVerdict)[keyof typeof DigestVerdict];

/** Counts of what the digests decided (for the bench and the tests). */
export type DigestTally = Record<DigestVerdict, number>;

/** Compares pairs by server-side digests; reads only suspects whole. */
export class DigestPairs {
  readonly tally: DigestTally = { [DigestVerdict.Equal]: 0, [DigestVerdict.EqualByContent]: 0, [DigestVerdict.Suspect]: 0 };

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keyspace,
    private readonly plan: VerifyPlan,
    private readonly checker: PairChecker,
  ) {}

  /**
   * Checks one pair whose legacy side was already reduced (DUMP digest, with
   * its created_at): the v2 side and the index entry are read as facts, and
   * a suspect is recorded through the pair checker.
   */
  async check(ws: string, jobId: string, legacy: RecordFacts, legacyCreatedAt: string | null): Promise<DigestVerdict> {
    const legacyKey = this.keys.legacyJob(jobId);
    const v2Key = this.keys.v2Job(ws, jobId);
    const [v2, score] = await Promise.all([factsOf(this.client, v2Key, DigestMode.Dump), this.checker.indexScore(ws, jobId)]);
    let verdict = decide(legacy, v2, score, legacyCreatedAt, this.plan.toleranceMs);
    if (verdict === 'content') {
      const [a, b] = await Promise.all([factsOf(this.client, legacyKey, DigestMode.Content), factsOf(this.client, v2Key, DigestMode.Content)]);
      verdict = a.type === 'hash' && b.type === 'hash' && a.digest === b.digest ? DigestVerdict.EqualByContent : DigestVerdict.Suspect;
    }
    this.tally[verdict]++;
    if (verdict === DigestVerdict.Suspect) await this.checker.record(ws, jobId);
    return verdict;
  }
}

/**
 * The decision from the facts of both sides: equal, a suspect, or 'content'
 * when only the DUMP digests differ (the content digests then decide).
 */
export function decide(
  legacy: RecordFacts,
  v2: RecordFacts,
  indexScore: number | null,
  createdAt: string | null,
  toleranceMs: number,
): DigestVerdict | 'content' {
  if (legacy.type !== 'hash' || v2.type !== 'hash') return DigestVerdict.Suspect;
  if (expiryDiffers(legacy.pexpireAt, v2.pexpireAt, toleranceMs)) return DigestVerdict.Suspect;
  // Equal content means an equal created_at, so the legacy side's names the index score.
  if (indexScore === null || indexScore !== createdAtScore(createdAt)) return DigestVerdict.Suspect;
  return legacy.digest === v2.digest ? DigestVerdict.Equal : 'content';
}
