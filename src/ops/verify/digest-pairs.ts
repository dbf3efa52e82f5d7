/**
 * Pairs compared by digest, for a cluster: a job's legacy key and its v2 key
 * hash to different slots, so no script sees both. Each side is reduced on
 * its own master and the digests are compared here: on Redis 7+ with one
 * cross-slot xslot-probe.lua per master per batch (legacy sides, then v2 sides
 * and index entries; {@link DigestPairs.checkBatch}), otherwise and for keys
 * that moved with record-facts.lua (one declared key per call, pipelined per
 * master by the client). Equal DUMP digests prove equal content; when they differ (another
 * encoding or field order) the content digests decide. Only a pair that still
 * differs is read whole and classified (PairChecker), in the spirit of
 * data-diff's checksums.
 */
import type { Cluster } from 'ioredis';
import { createdAtScore, JobField } from '../../core/job.js';
import type { Keyspace } from '../../core/keys.js';
import type { RedisClient } from '../../core/redis.js';
import { VerifyV2BatchReply } from '../../core/script-replies.js';
import { expiryDiffers } from '../record-compare.js';
import type { PairChecker } from './pair-check.js';
import type { VerifyPlan } from './plan.js';
import { decodeFacts, DigestMode, factsOf, probeAll, probeScore, probeValue, type Probe, type RecordFacts } from './record-facts.js';

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
  /** Told of every pair found equal (src/ops/verify/passes.ts keeps them as proven); null = nobody listens. */
  onEqual: ((ws: string, jobId: string) => void) | null = null;

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
    const v2Key = this.keys.v2Job(ws, jobId);
    const [v2, score] = await Promise.all([factsOf(this.client, v2Key, DigestMode.Dump), this.checker.indexScore(ws, jobId)]);
    return this.settle(ws, jobId, legacy, legacyCreatedAt, v2, score);
  }

  /**
   * {@link check} for many pairs at once on a cluster with Redis 7+: the v2
   * sides and the index entries are read with one xslot-probe.lua per master
   * (a key a master does not serve goes through the per-key path).
   */
  async checkBatch(pairs: ReadonlyArray<{ ws: string; jobId: string; legacy: RecordFacts; createdAt: string | null }>): Promise<void> {
    const probes: Probe[] = [];
    for (const p of pairs) probes.push({ op: 'd', key: this.keys.v2Job(p.ws, p.jobId), arg: '' }, { op: 'z', key: this.keys.index(p.ws), arg: p.jobId });
    const replies = await probeAll(this.client as Cluster, probes, DigestMode.Dump, []);
    await Promise.all(pairs.map((p, i) => this.settle(p.ws, p.jobId, p.legacy, p.createdAt, decodeFacts(replies[2 * i]!, 0), probeScore(replies[2 * i + 1]!))));
  }

  /** The verdict from both sides' facts; the content digests when only the DUMP digests differ; a suspect read whole. */
  private async settle(
    ws: string,
    jobId: string,
    legacy: RecordFacts,
    legacyCreatedAt: string | null,
    v2: RecordFacts,
    score: number | null,
  ): Promise<DigestVerdict> {
    const legacyKey = this.keys.legacyJob(jobId);
    const v2Key = this.keys.v2Job(ws, jobId);
    let verdict = decide(legacy, v2, score, legacyCreatedAt, this.plan.toleranceMs);
    if (verdict === 'content') {
      const [a, b] = await Promise.all([factsOf(this.client, legacyKey, DigestMode.Content), factsOf(this.client, v2Key, DigestMode.Content)]);
      verdict = a.type === 'hash' && b.type === 'hash' && a.digest === b.digest ? DigestVerdict.EqualByContent : DigestVerdict.Suspect;
    }
    this.tally[verdict]++;
    if (verdict === DigestVerdict.Suspect) await this.checker.record(ws, jobId);
    else this.onEqual?.(ws, jobId);
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

/** Fields of a legacy record the legacy → v2 pass needs (src/ops/verify/passes.ts). */
export const LEGACY_FACT_FIELDS = [JobField.WorkspaceId, JobField.Rev, JobField.CreatedAt];

/** The legacy records' facts with {@link LEGACY_FACT_FIELDS}, one xslot-probe.lua per master. */
export async function legacyFactsBatch(cluster: Cluster, keys: readonly string[]): Promise<RecordFacts[]> {
  const replies = await probeAll(
    cluster,
    keys.map((key) => ({ op: 'f', key, arg: '' })),
    DigestMode.Dump,
    LEGACY_FACT_FIELDS,
  );
  return replies.map((b) => decodeFacts(b, LEGACY_FACT_FIELDS.length));
}

/**
 * The v2 → legacy pass's kinds on a cluster with Redis 7+ (see
 * src/ops/verify/passes.ts v2Kinds): the legacy records' workspace_id, then
 * the type of each v2 key they do not back, one xslot-probe.lua per master
 * each.
 */
export async function v2KindsBatch(cluster: Cluster, keys: Keyspace, items: ReadonlyArray<{ key: string; ws: string; jobId: string }>): Promise<string[]> {
  const owners = await probeAll(
    cluster,
    items.map((it) => ({ op: 'g', key: keys.legacyJob(it.jobId), arg: JobField.WorkspaceId })),
    DigestMode.Dump,
    [],
  );
  const out: string[] = items.map((it, i) => (probeValue(owners[i]!) === it.ws ? VerifyV2BatchReply.backed : ''));
  const unbacked = items.flatMap((it, i) => (out[i] === '' ? [i] : []));
  const types = await probeAll(
    cluster,
    unbacked.map((i) => ({ op: 't', key: items[i]!.key, arg: '' })),
    DigestMode.Dump,
    [],
  );
  unbacked.forEach((i, k) => {
    const type = types[k]!.toString('latin1');
    out[i] = type === 'none' ? VerifyV2BatchReply.absent : type === 'hash' ? VerifyV2BatchReply.unbacked : type;
  });
  return out;
}

/** Whether each key exists, one xslot-probe.lua per master (the index pass's dangling entries). */
export async function existsBatch(cluster: Cluster, keys: readonly string[]): Promise<boolean[]> {
  const replies = await probeAll(
    cluster,
    keys.map((key) => ({ op: 'e', key, arg: '' })),
    DigestMode.Dump,
    [],
  );
  return replies.map((b) => b[0] === 0x65 /* e */);
}
