/**
 * Round 1 of verify: one walk of the keyspace on the scan engine (every master
 * in parallel), in three passes that share it:
 *  - legacy → v2: each legacy record against its v2 record; unmigratable and
 *    non-hash keys. On a single node a batch script (verify-batch.lua) answers
 *    "identical" or "suspect" server-side, and only suspects are read here;
 *  - v2 → legacy: orphans and id conflicts (a v2 record its legacy key does not
 *    back), and non-hash keys;
 *  - the indexes: entries whose v2 record does not exist.
 * Each pass records suspects; the pair checker decides what a pair's difference is.
 */
import type { Cluster, Redis } from 'ioredis';
import { isReplyError, replyMessage } from '../../core/errors.js';
import { describeInput, isJobId } from '../../core/ids.js';
import { createdAtScore, JobField } from '../../core/job.js';
import { isCluster } from '../../core/redis.js';
import { decodeFieldsAt, VerifyBatchReply, VerifyV2BatchReply } from '../../core/script-replies.js';
import { callScript, ScriptName } from '../../core/scripts.js';
import { readFieldsBatch } from '../backfill.js';
import type { Counters } from '../checkpoint.js';
import type { OpContext } from '../context.js';
import { checkSource, isUnmigratable, UnmigratableReason } from '../migratable.js';
import { MismatchKind } from '../record-compare.js';
import { mapLimit, PER_KEY_CONCURRENCY, runScan, type ScanBatch, type ScanPacer, type ScanProgress } from '../scan-engine.js';
import { crossSlotBatches } from '../cluster-batch.js';
import { DigestPairs, existsBatch, legacyFactsBatch, v2KindsBatch } from './digest-pairs.js';
import type { PairChecker } from './pair-check.js';
import type { VerifyPlan } from './plan.js';
import { DEFAULT_PROVEN_CAP, PairTable } from './proven-pairs.js';
import { DigestMode, factsOf, type RecordFacts } from './record-facts.js';
import { SuspectSet } from './suspects.js';

/** An index of fewer entries than this is read whole in one command (about 0.3 ms of Redis time at this size); a larger one is walked. */
export const INDEX_WHOLE_READ = 10_000;

/** Index entries per ZSCAN page and per existence read. */
const INDEX_PAGE = 1000;

/** What round 1 examined. */
export interface FirstRound {
  /** Records examined (legacy and v2). */
  scanned: number;
  /** Index entries examined. */
  indexEntries: number;
}

/** Progress of round 1: keys scanned so far, against an estimate. */
export type FirstRoundProgress = (stage: string, p: ScanProgress, total: number | null) => void;

/** A v2 key of the walk: its name and what the name says. */
type V2Item = { key: string; ws: string; jobId: string };

/** A legacy key that parses and reads as migratable, with its workspace; or why it is not. */
type LegacyVerdict = { ok: true; ws: string } | { ok: false; kind: MismatchKind; detail: string } | null;

/** The three passes of round 1 over one context. */
export class Passes {
  private readonly cluster: boolean;
  /** Pairs compared by digest (a cluster). */
  readonly digests: DigestPairs;
  /**
   * Whole keyspace: pairs proven identical (verify-batch.lua on a single
   * node; both sides' facts on a cluster), so the v2 → legacy and index
   * passes skip them; null for a `--workspace` run, which walks the layouts
   * one after the other, where the v2 pass sees changes made after the legacy
   * pass, which a proof from that pass would hide.
   */
  private readonly proven: PairTable | null;
  /** v2 keys the walk met before their pair was proven: checked after the walk unless proven by then (bounded like `proven`). */
  private readonly deferredV2: PairTable | null;
  /** Index keys met by the walk: read after it, when every pair is proven or not. */
  private readonly deferredIndexes: string[] = [];

  constructor(
    private readonly ctx: OpContext,
    private readonly plan: VerifyPlan,
    private readonly suspects: SuspectSet,
    private readonly checker: PairChecker,
    /** The guards' pacer (src/ops/guards/controller.ts), or null. */
    private readonly pacer: ScanPacer | null = null,
    /** Bound on the proven pairs kept (and on the v2 keys deferred); 0 = always the per-key checks. */
    provenCap: number = DEFAULT_PROVEN_CAP,
  ) {
    this.cluster = isCluster(ctx.client);
    this.digests = new DigestPairs(ctx.client, ctx.keys, plan, checker);
    const shortcut = plan.workspaces === null && provenCap > 0;
    this.proven = shortcut ? new PairTable(provenCap) : null;
    this.deferredV2 = shortcut ? new PairTable(provenCap) : null;
    // On a cluster a pair is proven by its two sides' facts, read on their masters a moment apart (docs/design.md, "Verify").
    const proven = this.proven;
    if (proven !== null) this.digests.onEqual = (ws, jobId) => void proven.add(ws, jobId);
  }

  /** Pairs proven so far this round (0 when the shortcut is off). */
  get provenCount(): number {
    return this.proven?.size ?? 0;
  }

  /** Runs round 1: one walk of the `<p>:job*` family, or, for one workspace, the legacy layout, its v2 keys and its index. */
  async run(estimate: { legacy: number; v2: number } | null, progress: FirstRoundProgress): Promise<FirstRound> {
    const { keys, signal } = this.ctx;
    const base = { op: null, batchSize: this.plan.batchSize, concurrency: this.plan.concurrency, signal, pacer: this.pacer };
    const label = `verify round 1/${this.plan.rounds}`;
    if (this.plan.workspaces === null) {
      const total = estimate === null ? null : estimate.legacy + estimate.v2;
      const r = await runScan(this.ctx.client, keys, {
        ...base,
        // One walk of the keyspace: legacy, v2 and index keys share the `<p>:job` stem.
        match: keys.jobFamilyPattern,
        process: (batch) => this.familyBatch(batch),
        onProgress: (p) => progress(`${label}: both layouts and the indexes`, p, total),
      });
      const late = await this.afterWalk();
      return { scanned: (r.counters.checked ?? 0) + late.checked, indexEntries: (r.counters.entries ?? 0) + late.entries };
    }
    // Some workspaces: legacy records name their workspace inside, so the legacy
    // layout is walked whole (once); v2 and the indexes are narrowed by name.
    const r1 = await runScan(this.ctx.client, keys, {
      ...base,
      match: keys.legacyPattern,
      process: (batch) => this.legacyBatch(batch),
      onProgress: (p) => progress(`${label}: legacy → v2`, p, estimate?.legacy ?? null),
    });
    let scanned = r1.counters.checked ?? 0;
    let entries = 0;
    for (const ws of this.plan.workspaces) {
      const r2 = await runScan(this.ctx.client, keys, {
        ...base,
        match: keys.v2Pattern(ws),
        process: (batch) => this.v2Batch(batch),
        onProgress: (p) => progress(`${label}: v2 → legacy (${ws})`, p, null),
      });
      scanned += r2.counters.checked ?? 0;
      // One index: no scan (the cluster client routes it to its master).
      entries += await this.indexKey(this.ctx.client, keys.index(ws));
    }
    return { scanned, indexEntries: entries };
  }

  /**
   * Whole keyspace: what the walk left for its end. The v2 keys
   * met before their pair was proven, now without those proven since; then the
   * indexes, whose entries of proven pairs need no EXISTS.
   */
  private async afterWalk(): Promise<{ checked: number; entries: number }> {
    if (this.proven === null || this.deferredV2 === null) return { checked: 0, entries: 0 };
    const node = this.ctx.client as Redis;
    const proven = this.proven;
    const deferred = async (table: PairTable): Promise<number> => {
      let checked = 0;
      let items: V2Item[] = [];
      for (const pair of table.entriesUnless(proven)) {
        // A key whose pair was proven since it was set aside needs no read: counted, as v2Items counts it.
        if (pair === null) {
          checked++;
          continue;
        }
        const { ws, jobId } = pair;
        items.push({ key: this.ctx.keys.v2Job(ws, jobId), ws, jobId });
        if (items.length < this.plan.batchSize) continue;
        if (!(await this.paced())) return checked;
        checked += await this.v2Items(node, items, false);
        items = [];
      }
      if (items.length > 0 && (await this.paced())) checked += await this.v2Items(node, items, false);
      return checked;
    };
    // The set-aside v2 keys and the indexes side by side, as the walk's batches were.
    const [checked, counts] = await Promise.all([
      deferred(this.deferredV2),
      mapLimit(this.deferredIndexes.splice(0), this.plan.concurrency, async (key) => ((await this.paced()) ? this.indexKey(node, key) : 0)),
    ]);
    return { checked, entries: counts.reduce((a, b) => a + b, 0) };
  }

  /**
   * Before a read after the walk: false once interrupted. The walk's pacer
   * already counted these keys, so nothing is booked, but a guard's pause or
   * refusal (src/ops/guards/controller.ts) holds or fails these reads as it
   * does the walk's batches.
   */
  private async paced(): Promise<boolean> {
    if (this.ctx.signal.aborted) return false;
    if (this.pacer === null) return true;
    try {
      await this.pacer.acquire(0, this.ctx.signal);
      return true;
    } catch (err) {
      if (this.ctx.signal.aborted) return false;
      throw err;
    }
  }

  /** Splits one batch of the `<p>:job*` walk into its three passes. */
  private async familyBatch(batch: ScanBatch): Promise<Counters> {
    const parts: Record<'legacy' | 'v2' | 'index', string[]> = { legacy: [], v2: [], index: [] };
    for (const key of batch.keys) {
      const layout = this.ctx.keys.layoutOf(key);
      if (layout !== null) parts[layout].push(key);
    }
    const sub = (list: string[]): ScanBatch => ({ node: batch.node, nodeAddr: batch.nodeAddr, keys: list });
    const none: Counters = {};
    const [a, b, c] = await Promise.all([
      parts.legacy.length > 0 ? this.legacyBatch(sub(parts.legacy)) : none,
      parts.v2.length > 0 ? this.v2Batch(sub(parts.v2)) : none,
      parts.index.length > 0 ? this.indexBatch(sub(parts.index)) : none,
    ]);
    return { checked: (a.checked ?? 0) + (b.checked ?? 0), entries: c.entries ?? 0 };
  }

  /** The same rules as backfill (src/ops/migratable.ts), so both call a record by one name. */
  private legacyVerdict(key: string, jobId: string, kind: string, ws: string | null, rev: string | null): LegacyVerdict {
    if (kind === 'none') return null;
    if (kind !== 'hash') return { ok: false, kind: MismatchKind.NonHash, detail: `type ${kind}` };
    const checked = checkSource(this.ctx.keys, 'forward', { key, jobId, keyWorkspace: null }, ws, null, rev);
    if (!isUnmigratable(checked)) return { ok: true, ws: checked.workspaceId };
    return { ok: false, kind: MismatchKind.Unmigratable, detail: `${checked.reason}${checked.detail ? ` ${checked.detail}` : ''}` };
  }

  /** Legacy → v2 for one batch. */
  private async legacyBatch(batch: ScanBatch): Promise<Counters> {
    const { keys } = this.ctx;
    const candidates: Array<{ key: string; jobId: string }> = [];
    for (const key of batch.keys) {
      if (!this.plan.sampled()) continue;
      const jobId = keys.parseLegacy(key);
      if (jobId === null) {
        if (this.plan.workspaces === null)
          this.suspects.addKey(key, MismatchKind.Unmigratable, `${UnmigratableReason.InvalidJobId} ${describeInput(keys.legacySuffix(key) ?? key)}`);
        continue;
      }
      candidates.push({ key, jobId });
    }
    if (candidates.length === 0) return { checked: 0 };
    return this.cluster ? this.legacyPerKey(candidates) : this.legacyScripted(batch, candidates);
  }

  /**
   * Cluster: each legacy key reduced on its master (type, DUMP digest, expiry,
   * the fields the verdict needs), then its pair compared by digest; only
   * suspects are read whole.
   */
  private async legacyPerKey(candidates: Array<{ key: string; jobId: string }>): Promise<Counters> {
    if (await crossSlotBatches(this.ctx.client as Cluster)) return this.legacyCrossSlot(candidates);
    let checked = 0;
    await mapLimit(candidates, PER_KEY_CONCURRENCY, async (c) => {
      const facts = await factsOf(this.ctx.client, c.key, DigestMode.Dump, [JobField.WorkspaceId, JobField.Rev, JobField.CreatedAt]);
      const [ws, rev, createdAt] = facts.fields;
      const verdict = this.legacyVerdict(c.key, c.jobId, facts.type, ws ?? null, rev ?? null);
      if (!this.keep(c.key, verdict)) return;
      checked++;
      await this.digests.check(verdict.ws, c.jobId, facts, createdAt ?? null);
    });
    return { checked };
  }

  /** {@link legacyPerKey} on Redis 7+: the legacy facts, then the v2 sides and index entries, each one cross-slot script per master. */
  private async legacyCrossSlot(candidates: Array<{ key: string; jobId: string }>): Promise<Counters> {
    const facts = await legacyFactsBatch(
      this.ctx.client as Cluster,
      candidates.map((c) => c.key),
    );
    const pairs: Array<{ ws: string; jobId: string; legacy: RecordFacts; createdAt: string | null }> = [];
    candidates.forEach((c, i) => {
      const f = facts[i]!;
      const [ws, rev, createdAt] = f.fields;
      const verdict = this.legacyVerdict(c.key, c.jobId, f.type, ws ?? null, rev ?? null);
      if (this.keep(c.key, verdict)) pairs.push({ ws: verdict.ws, jobId: c.jobId, legacy: f, createdAt: createdAt ?? null });
    });
    await this.digests.checkBatch(pairs);
    return { checked: pairs.length };
  }

  /** Records a bad key (whole-keyspace runs only); true when the record is in scope for a pair check. */
  private keep(key: string, verdict: LegacyVerdict): verdict is { ok: true; ws: string } {
    if (verdict === null) return false;
    if (!verdict.ok) {
      if (this.plan.workspaces === null) this.suspects.addKey(key, verdict.kind, verdict.detail);
      return false;
    }
    return this.plan.inScope(verdict.ws);
  }

  /**
   * Single node: one script reads each legacy record's fields and compares it
   * with the v2 record and index entry they name (verify-batch.lua); the
   * verdict and the index score are decided here, and only pairs not proven
   * are read whole.
   */
  private async legacyScripted(batch: ScanBatch, candidates: Array<{ key: string; jobId: string }>): Promise<Counters> {
    const { keys } = this.ctx;
    const heads = keys.heads;
    const scope = this.plan.workspaces === null ? [] : [...this.plan.workspaces];
    const reply = await callScript<Buffer[]>(
      batch.node,
      ScriptName.VerifyBatch,
      [
        candidates.length,
        ...candidates.map((c) => c.key),
        this.plan.toleranceMs,
        heads.legacy,
        heads.v2,
        heads.index,
        JobField.WorkspaceId,
        JobField.Rev,
        JobField.CreatedAt,
        ...scope,
      ],
      true,
    );
    let checked = 0;
    const suspects: Array<Promise<void>> = [];
    candidates.forEach((c, i) => {
      const row = decodeVerifyRow(reply[i]!);
      const verdict = this.legacyVerdict(c.key, c.jobId, row.kind, row.ws, row.rev);
      if (!this.keep(c.key, verdict)) return;
      checked++;
      // The script compared the pair its own read of workspace_id named: proven only when that is the verdict's
      // workspace, content and expiry were equal, and the index holds the job at created_at's score.
      const proven = row.indexScore !== null && verdict.ws === row.ws && Number(row.indexScore) === createdAtScore(row.createdAt);
      if (proven) this.proven?.add(verdict.ws, c.jobId);
      else suspects.push(this.checker.record(verdict.ws, c.jobId));
    });
    await Promise.all(suspects);
    return { checked };
  }

  /** v2 → legacy for one batch: content and index were compared from the legacy side; this finds what only it can. */
  private async v2Batch(batch: ScanBatch): Promise<Counters> {
    const { keys } = this.ctx;
    const items: V2Item[] = [];
    for (const key of batch.keys) {
      if (!this.plan.sampled()) continue;
      const parts = keys.parseV2(key);
      if (parts === null) {
        this.suspects.addKey(key, MismatchKind.Unmigratable, 'not a valid v2 key (<prefix>:job:<workspace_id>:<job_id>)');
        continue;
      }
      items.push({ key, ws: parts.workspaceId, jobId: parts.jobId });
    }
    return { checked: await this.v2Items(batch.node, items, true) };
  }

  /**
   * The v2 → legacy facts of some v2 keys; the number that exist. A key whose
   * pair this round proved needs none (it existed, backed, at the proof); one
   * not proven yet is left for the end of the walk when `defer` and the bound
   * allows, since its legacy key may still come.
   */
  private async v2Items(node: Redis, all: V2Item[], defer: boolean): Promise<number> {
    let checked = 0;
    let items = all;
    if (this.proven !== null) {
      items = [];
      for (const it of all) {
        if (this.proven.has(it.ws, it.jobId)) checked++;
        // Only a key that reads back from its parts is kept by its parts (the table holds no key names).
        else if (!(defer && it.key === this.ctx.keys.v2Job(it.ws, it.jobId) && this.deferredV2?.add(it.ws, it.jobId))) items.push(it);
      }
    }
    if (items.length === 0) return checked;
    const kinds = await this.v2Kinds(node, items);
    const flagged: Array<{ ws: string; jobId: string }> = [];
    items.forEach((it, i) => {
      const kind = kinds[i]!;
      if (kind === VerifyV2BatchReply.absent) return;
      checked++;
      if (kind === VerifyV2BatchReply.backed) return;
      if (kind !== VerifyV2BatchReply.unbacked) return this.suspects.addKey(it.key, MismatchKind.NonHash, `type ${kind}`);
      if (!this.suspects.has(SuspectSet.pairId(it.ws, it.jobId))) flagged.push(it);
    });
    await Promise.all(flagged.map((f) => this.checker.record(f.ws, f.jobId)));
    return checked;
  }

  /**
   * Per v2 key: backed (its legacy record names its workspace: the legacy →
   * v2 pass compares that pair whole), absent, an unbacked hash, or its type.
   */
  private async v2Kinds(node: Redis, items: V2Item[]): Promise<string[]> {
    const { keys } = this.ctx;
    if (!this.cluster) {
      const keyArgs: string[] = [];
      for (const it of items) keyArgs.push(it.key, keys.legacyJob(it.jobId));
      return callScript<string[]>(node, ScriptName.VerifyV2Batch, [keyArgs.length, ...keyArgs, ...items.map((it) => it.ws)]);
    }
    // Cluster: the two keys live on different masters; one field of the legacy record decides, the type only when unbacked.
    if (await crossSlotBatches(this.ctx.client as Cluster)) return v2KindsBatch(this.ctx.client as Cluster, keys, items);
    return mapLimit(items, PER_KEY_CONCURRENCY, async (it) => {
      if ((await this.legacyWorkspace(keys.legacyJob(it.jobId))) === it.ws) return VerifyV2BatchReply.backed;
      const type = await this.ctx.client.type(it.key);
      return type === 'none' ? VerifyV2BatchReply.absent : type === 'hash' ? VerifyV2BatchReply.unbacked : type;
    });
  }

  /** The workspace a legacy record names, or null when absent or not a hash. */
  private async legacyWorkspace(key: string): Promise<string | null> {
    try {
      return await this.ctx.client.hget(key, JobField.WorkspaceId);
    } catch (err) {
      if (isReplyError(err) && replyMessage(err).startsWith('WRONGTYPE')) return null;
      throw err;
    }
  }

  /** Cluster: 'hash' or 'none' per v2 key (one cross-slot script per master on Redis 7+, else EXISTS per key). */
  private async clusterKinds(v2Keys: string[], client: Cluster): Promise<string[]> {
    if (await crossSlotBatches(client)) return (await existsBatch(client, v2Keys)).map((e) => (e ? 'hash' : 'none'));
    return Promise.all(v2Keys.map((k) => client.exists(k).then((n) => (n === 1 ? 'hash' : 'none'))));
  }

  private async indexBatch(batch: ScanBatch): Promise<Counters> {
    // Whole keyspace, single node: read after the walk, so every proven pair spares its entry an EXISTS.
    if (this.proven !== null) {
      this.deferredIndexes.push(...batch.keys);
      return { entries: 0 };
    }
    let entries = 0;
    for (const key of batch.keys) entries += await this.indexKey(batch.node, key);
    return { entries };
  }

  /** One index: entries whose v2 record does not exist; an index that is not a sorted set. */
  private async indexKey(node: Redis | Cluster, key: string): Promise<number> {
    const { keys, signal } = this.ctx;
    const ws = keys.parseIndex(key);
    if (ws === null) {
      this.suspects.addKey(key, MismatchKind.Unmigratable, 'index key with an invalid workspace id');
      return 0;
    }
    // On a cluster the index is read through the cluster client: the walk found it on one master, but its slot may
    // be migrating and the key already on the importing master, which only a client that follows ASK/MOVED reaches.
    const reader = this.cluster ? (this.ctx.client as Cluster) : node;
    const type = await reader.type(key);
    if (type === 'none') return 0;
    if (type !== 'zset') {
      this.suspects.addKey(key, MismatchKind.NonHash, `index is a ${type}, not a sorted set`);
      return 0;
    }
    // A small index is read whole by one command: an atomic snapshot (what ZSCAN guarantees, and more) without the
    // scores ZSCAN formats, at a few percent of its Redis CPU. A larger one is walked, so no single call blocks long.
    const whole = await reader.zrange(key, 0, INDEX_WHOLE_READ - 1);
    let cursor = whole.length < INDEX_WHOLE_READ ? null : '0';
    let seen = 0;
    do {
      if (signal.aborted) return seen;
      let page = whole;
      if (cursor !== null) {
        const [next, flat] = await reader.zscan(key, cursor, 'COUNT', INDEX_PAGE);
        cursor = next === '0' ? null : next;
        page = [];
        for (let i = 0; i < flat.length; i += 2) page.push(flat[i]!);
      }
      const members = this.plan.sample === null ? page : page.filter(() => this.plan.sampled());
      seen += members.length;
      // An entry of a pair proven this round pointed at an existing v2 record at the proof.
      const unproven = members.filter((m) => isJobId(m) && !(this.proven?.has(ws, m) ?? false));
      for (const m of members) if (!isJobId(m)) this.suspects.add(`d|${ws}|${m}`, { t: 'dangling', ws, member: m });
      // The rest in reads of at most a ZSCAN page's size, as before the whole read.
      for (let at = 0; at < unproven.length; at += INDEX_PAGE) await this.danglingOf(node, ws, unproven.slice(at, at + INDEX_PAGE));
    } while (cursor !== null);
    return seen;
  }

  /** Records the members whose v2 record does not exist as dangling index entries. */
  private async danglingOf(node: Redis | Cluster, ws: string, valid: string[]): Promise<void> {
    const { keys, client } = this.ctx;
    const kinds = this.cluster
      ? await this.clusterKinds(
          valid.map((m) => keys.v2Job(ws, m)),
          client as Cluster,
        )
      : (
          await readFieldsBatch(
            node as Redis,
            valid.map((m) => keys.v2Job(ws, m)),
            [],
          )
        ).map((r) => r[0] ?? 'none');
    valid.forEach((m, i) => {
      if (kinds[i] === 'none') this.suspects.add(`d|${ws}|${m}`, { t: 'dangling', ws, member: m });
    });
  }
}

/** One key of verify-batch.lua's reply: its kind, the verdict's fields, and the index score when content and expiry were equal. */
interface VerifyRow {
  kind: string;
  ws: string | null;
  rev: string | null;
  createdAt: string | null;
  /** The job's score in its index, when the script found the pair equal and the entry there; else null. */
  indexScore: string | null;
}

/** Decodes one string of verify-batch.lua's reply (see the script header). */
function decodeVerifyRow(buf: Buffer): VerifyRow {
  const tag = buf[0];
  if (tag !== 0x68 /* h */) return { kind: tag === 0x74 /* t */ ? buf.toString('utf8', 1) : 'none', ws: null, rev: null, createdAt: null, indexScore: null };
  const end = { pos: 0 };
  const [ws = null, rev = null, createdAt = null] = decodeFieldsAt(buf, 1, 3, end);
  const equal = buf[end.pos] === VerifyBatchReply.equal && end.pos + 1 < buf.length;
  return { kind: 'hash', ws, rev, createdAt, indexScore: equal ? buf.toString('latin1', end.pos + 1) : null };
}
