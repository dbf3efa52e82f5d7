/** Reads one job in both layouts (and its index entry) and classifies the differences. */
import pLimit, { type LimitFunction } from 'p-limit';
import { isReplyError, replyMessage } from '../../core/errors.js';
import type { Keyspace } from '../../core/keys.js';
import { readRecord } from '../../core/protocol.js';
import type { RedisClient } from '../../core/redis.js';
import { classifyPair, viewOf } from '../record-compare.js';
import type { VerifyPlan } from './plan.js';
import { sideOf, SuspectSet, type PairSuspect } from './suspects.js';

/** Values of at most this many differing fields are kept for the report. */
const MAX_REPORTED_VALUE_FIELDS = 32;

/** Pair checks, bounded in flight. */
export class PairChecker {
  private readonly limit: LimitFunction;

  constructor(
    private readonly client: RedisClient,
    private readonly keys: Keyspace,
    private readonly plan: VerifyPlan,
    private readonly suspects: SuspectSet,
  ) {
    this.limit = pLimit(Math.max(8, plan.concurrency * 16));
  }

  /** The job's index score, or null when it has none. An index that is not a sorted set is reported by the index pass. */
  async indexScore(ws: string, jobId: string): Promise<number | null> {
    try {
      const score = await this.client.zscore(this.keys.index(ws), jobId);
      return score === null ? null : Number(score);
    } catch (err) {
      // Only this reply means "no entry can be there"; any other error is a failure, never evidence.
      if (isReplyError(err) && replyMessage(err).startsWith('WRONGTYPE')) return null;
      throw err;
    }
  }

  /** Reads and classifies one pair; the suspect, or null when both layouts agree. */
  async check(ws: string, jobId: string): Promise<PairSuspect | null> {
    const [legacyRaw, v2Raw, indexScore] = await Promise.all([
      readRecord(this.client, this.keys.legacyJob(jobId)),
      readRecord(this.client, this.keys.v2Job(ws, jobId)),
      this.indexScore(ws, jobId),
    ]);
    const legacy = viewOf(legacyRaw);
    const v2 = viewOf(v2Raw);
    const issues = classifyPair({ workspaceId: ws, jobId, legacy, v2, indexScore }, this.plan.toleranceMs, this.plan.phaseOf(ws));
    if (issues.length === 0) return null;
    const values = { legacy: new Map<string, Buffer>(), v2: new Map<string, Buffer>() };
    for (const i of issues) {
      for (const f of (i.fields ?? []).slice(0, MAX_REPORTED_VALUE_FIELDS)) {
        const a = legacy.fields.get(f);
        const b = v2.fields.get(f);
        if (a) values.legacy.set(f, a);
        if (b) values.v2.set(f, b);
      }
    }
    return { t: 'pair', ws, jobId, issues, legacy: sideOf(legacy), v2: sideOf(v2), values };
  }

  /** Checks one pair and records it as a suspect when it differs. */
  async record(ws: string, jobId: string): Promise<void> {
    const s = await this.limit(() => this.check(ws, jobId));
    if (s) this.suspects.add(SuspectSet.pairId(ws, jobId), s);
  }
}
