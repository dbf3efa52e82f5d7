/**
 * `verify`: proves that both layouts agree, field by field, in both directions.
 *
 * Round 1 scans everything on the scan engine (every master in parallel):
 *  - legacy → v2: each legacy record against its v2 record (fields as maps of
 *    bytes, expiry within a tolerance); unmigratable and non-hash keys;
 *  - v2 → legacy: orphans (no legacy record in that workspace), index entries
 *    missing or with the wrong score; non-hash keys;
 *  - the indexes: dangling entries (no v2 record).
 * On a single node the comparisons run server-side in batch scripts and only
 * suspects travel to the client; on a cluster every pair is read (atomically
 * per key) and compared here.
 *
 * Later rounds re-check only the suspects after --round-delay; a difference a
 * live write caused resolves itself, and only what persists in the last round
 * counts. `--repair` then fixes persistent pairs from the primary with a
 * compare-and-swap on the mirror (repair-cas.lua) and re-checks them.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import pLimit from 'p-limit';
import { ExitCode } from '../core/errors.js';
import { isJobId, isWorkspaceId, describeInput, assertWorkspaceId } from '../core/ids.js';
import { createdAtScore, JobField, parseRev } from '../core/job.js';
import { Layout, Phase, routeFor } from '../core/phase.js';
import { isCluster } from '../core/redis.js';
import { redactRecord } from '../core/redact.js';
import { callScript, ScriptName } from '../core/scripts.js';
import { sleep, StateField, type MigrationState } from '../core/state.js';
import { readFieldsBatch } from './backfill.js';
import type { Counters } from './checkpoint.js';
import { loadAccepted } from './accept.js';
import { assertLockHeld, fenceOf, lockArgs, type OpContext, type ProgressFn } from './context.js';
import { countKeys } from './count.js';
import { enforceGates, phaseGate } from './gates.js';
import {
  classifyPair,
  displayField,
  fieldText,
  MismatchKind,
  readRecord,
  recordDigest,
  RECORD_KINDS,
  viewOf,
  type PairIssue,
  type RecordView,
} from './record-compare.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, mapLimit, PER_KEY_CONCURRENCY, runScan, type ScanBatch } from './scan-engine.js';
import type { VerifySummary } from './summaries.js';

/** Default rounds: one full scan plus two re-checks of the suspects. */
export const DEFAULT_ROUNDS = 3;
/** Default pause between rounds. */
export const DEFAULT_ROUND_DELAY_MS = 1000;
/** Default expiry tolerance. */
export const DEFAULT_TTL_TOLERANCE_MS = 1000;
/** Suspects tracked individually; beyond this they are counted as unconfirmed. */
export const DEFAULT_MAX_SUSPECTS = 200_000;
const MAX_REPORTED_VALUE_FIELDS = 32;

/** Options of {@link verify}. */
export interface VerifyOptions {
  rounds?: number;
  roundDelayMs?: number;
  ttlToleranceMs?: number;
  /** Only this workspace (scope partial). */
  workspace?: string | null;
  /** Check only this fraction of the keys, 0 < f ≤ 1 (scope partial). */
  sample?: number | null;
  /** NDJSON report of every persistent mismatch (values redacted). */
  reportPath?: string | null;
  /** Fix persistent mismatches from the primary with compare-and-swap. */
  repair?: boolean;
  batchSize?: number;
  concurrency?: number;
  maxSuspects?: number;
  /** Mismatches listed in the result (all are counted and reported to the file). Default 50. */
  maxListed?: number;
  onProgress?: ProgressFn;
}

/** One persistent mismatch. */
export interface VerifyMismatch {
  kind: MismatchKind;
  /** The key the mismatch is about. */
  key: string;
  workspaceId?: string;
  jobId?: string;
  legacyKey?: string;
  v2Key?: string;
  /** Field names involved (field-level kinds). */
  fields?: string[];
  detail?: string;
  /** Set with --repair: whether the compare-and-swap fixed it. */
  repaired?: boolean;
}

/** Result of {@link verify} (`--json`). */
export interface VerifyResult {
  ok: boolean;
  /** Records examined (legacy and v2). */
  scanned: number;
  /** Index entries examined. */
  indexEntries: number;
  /** Persistent mismatches found (before any repair). */
  mismatches: number;
  byKind: Record<string, number>;
  rounds: number;
  durationMs: number;
  /** Suspects left after each round. */
  suspectsPerRound: number[];
  repaired: number;
  /** Persistent mismatches that remain (after repair when --repair). */
  remaining: number;
  /** Suspects beyond --max-suspects, counted without re-checks. */
  unconfirmed: number;
  /** Unmigratable keys accepted with `orch-migrate accept`: excluded from mismatches, reported here. */
  accepted: number;
  scope: 'full' | 'partial';
  epoch: number;
  phase: Phase;
  /** The first persistent mismatches (see the report file for all). */
  listed: VerifyMismatch[];
  reportPath: string | null;
  startedAt: number;
  finishedAt: number;
}

/** What the last check saw of one side of a pair: enough for a compare-and-swap. */
interface SideState {
  type: string;
  rev: string;
  digest: string;
  pexpireAt: number;
  /** The record's workspace_id ('' when absent): a legacy record of another workspace is another tenant's job. */
  owner: string;
}

interface PairSuspect {
  t: 'pair';
  ws: string;
  jobId: string;
  issues: PairIssue[];
  legacy: SideState;
  v2: SideState;
  /** Values of the differing fields (latin1 names), for the report. */
  values: { legacy: Map<string, Buffer>; v2: Map<string, Buffer> };
  repaired?: boolean;
}
interface KeySuspect {
  t: 'key';
  key: string;
  kind: MismatchKind;
  detail: string;
}
interface DanglingSuspect {
  t: 'dangling';
  ws: string;
  member: string;
  repaired?: boolean;
}
type Suspect = PairSuspect | KeySuspect | DanglingSuspect;

function sideOf(view: RecordView): SideState {
  return {
    type: view.type,
    rev: view.fields.get(JobField.Rev)?.toString('latin1') ?? '',
    digest: view.type === 'hash' ? recordDigest(view.fields) : '',
    pexpireAt: view.pexpireAt,
    owner: fieldText(view, JobField.WorkspaceId) ?? '',
  };
}

/** Runs a verify. Exit 1 (via {@link verifyExitCode}) when anything persistent remains. */
export async function verify(ctx: OpContext, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const startedAt = Date.now();
  const rounds = Math.max(1, opts.rounds ?? DEFAULT_ROUNDS);
  const tolerance = opts.ttlToleranceMs ?? DEFAULT_TTL_TOLERANCE_MS;
  const sample = opts.sample ?? null;
  const workspace = opts.workspace ?? null;
  if (workspace !== null) assertWorkspaceId(workspace);
  const state = await ctx.state.read();
  if (opts.repair) enforceGates([phaseGate(state, [Phase.DualWrite, Phase.ReadNew], 'verify --repair')], {});
  const scope: 'full' | 'partial' = workspace === null && sample === null ? 'full' : 'partial';
  const maxSuspects = opts.maxSuspects ?? DEFAULT_MAX_SUSPECTS;
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const cluster = isCluster(ctx.client);
  const keys = ctx.keys;

  const v2IsPrimary = routeFor(state.phase).primary === Layout.V2;
  const suspects = new Map<string, Suspect>();
  const unconfirmedByKind: Counters = {};
  const acceptedKeys = await loadAccepted(ctx.client, keys);
  const acceptedSeen = new Set<string>();
  const addSuspect = (id: string, s: Suspect): void => {
    // A key accepted as unmigratable is reported as accepted, never as a mismatch; a new bad key still counts.
    if (s.t === 'key' && acceptedKeys.has(s.key)) {
      acceptedSeen.add(s.key);
      return;
    }
    if (suspects.has(id) || suspects.size < maxSuspects) {
      suspects.set(id, s);
      return;
    }
    const kinds = s.t === 'pair' ? s.issues.map((i) => i.kind) : s.t === 'key' ? [s.kind] : [MismatchKind.IndexDangling];
    for (const k of kinds) unconfirmedByKind[k] = (unconfirmedByKind[k] ?? 0) + 1;
  };
  const pairId = (ws: string, jobId: string): string => `p|${ws}|${jobId}`;
  const sampled = (): boolean => sample === null || Math.random() < sample;

  /** Reads and classifies one pair; returns the suspect or null when clean. */
  const checkPair = async (ws: string, jobId: string): Promise<PairSuspect | null> => {
    const [legacyRaw, v2Raw, score] = await Promise.all([
      readRecord(ctx.client, keys.legacyJob(jobId)),
      readRecord(ctx.client, keys.v2Job(ws, jobId)),
      ctx.client.zscore(keys.index(ws), jobId).catch(() => null),
    ]);
    const legacy = viewOf(legacyRaw);
    const v2 = viewOf(v2Raw);
    const issues = classifyPair({ workspaceId: ws, jobId, legacy, v2, indexScore: score === null ? null : Number(score) }, tolerance, v2IsPrimary);
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
  };
  const limitChecks = pLimit(Math.max(8, concurrency * 16));
  const checkAndRecord = async (ws: string, jobId: string): Promise<void> => {
    const s = await limitChecks(() => checkPair(ws, jobId));
    if (s) addSuspect(pairId(ws, jobId), s);
  };

  let scanned = 0;
  let indexEntries = 0;
  const estimate = await countKeys(ctx.client, keys).catch(() => null);
  let lastReport = 0;
  const report = (stage: string, done: number, total: number | null, force = false): void => {
    const now = Date.now();
    if (!force && now - lastReport < 200) return;
    lastReport = now;
    opts.onProgress?.({ stage, done, total: total === null ? null : Math.max(total, done), totalIsEstimate: true });
  };
  const engineBase = {
    op: null,
    batchSize: opts.batchSize ?? DEFAULT_BATCH_SIZE,
    concurrency,
    signal: ctx.signal,
  };
  const roundLabel = `verify round 1/${rounds}`;

  // ---- Pass 1: legacy → v2.
  const legacyBatch = async (batch: ScanBatch): Promise<Counters> => {
    let checked = 0;
    const pairs: Array<{ key: string; ws: string; jobId: string; score: number }> = [];
    const candidates: Array<{ key: string; jobId: string }> = [];
    for (const key of batch.keys) {
      if (!sampled()) continue;
      const jobId = keys.parseLegacy(key);
      if (jobId === null) {
        if (workspace === null) addSuspect(`k|${key}`, { t: 'key', key, kind: MismatchKind.Unmigratable, detail: `invalid job id ${describeInput(keys.legacySuffix(key) ?? key)}` });
        continue;
      }
      candidates.push({ key, jobId });
    }
    if (candidates.length === 0) return { checked };
    if (cluster) {
      // Reads are routed per key; compare each pair here.
      await mapLimit(candidates, PER_KEY_CONCURRENCY, async (c) => {
        const raw = await readRecord(ctx.client, c.key);
        const verdict = legacyVerdict(c.key, raw.type, fieldText(viewOf(raw), JobField.WorkspaceId) ?? null, raw.fields.length > 0 ? revOfFlat(raw.fields) : null);
        if (verdict === null) return;
        if (verdict.t === 'key') {
          if (workspace === null) addSuspect(`k|${c.key}`, verdict);
          return;
        }
        if (workspace !== null && verdict.ws !== workspace) return;
        checked++;
        await checkAndRecord(verdict.ws, c.jobId);
        });
      return { checked };
    }
    const rows = await readFieldsBatch(batch.node, candidates.map((c) => c.key), [JobField.WorkspaceId, JobField.Rev, JobField.CreatedAt]);
    candidates.forEach((c, i) => {
      const [kind, ws, rev, createdAt] = rows[i]!;
      const verdict = legacyVerdict(c.key, kind ?? 'none', ws ?? null, rev ?? null);
      if (verdict === null) return;
      if (verdict.t === 'key') {
        if (workspace === null) addSuspect(`k|${c.key}`, verdict);
        return;
      }
      if (workspace !== null && verdict.ws !== workspace) return;
      pairs.push({ key: c.key, ws: verdict.ws, jobId: c.jobId, score: createdAtScore(createdAt) });
    });
    checked += pairs.length;
    if (pairs.length === 0) return { checked };
    const keyArgs: string[] = [];
    const argv: Array<string | number> = [tolerance];
    for (const p of pairs) {
      keyArgs.push(p.key, keys.v2Job(p.ws, p.jobId), keys.index(p.ws));
      argv.push(p.jobId, p.score);
    }
    const codes = await callScript<number[]>(batch.node, ScriptName.VerifyBatch, [keyArgs.length, ...keyArgs, ...argv]);
    await Promise.all(pairs.filter((_, i) => Number(codes[i]) !== 0).map((p) => checkAndRecord(p.ws, p.jobId)));
    return { checked };
  };

  // ---- Pass 2: v2 → legacy (orphans) and index membership.
  const v2Batch = async (batch: ScanBatch): Promise<Counters> => {
    const items: Array<{ key: string; ws: string; jobId: string }> = [];
    for (const key of batch.keys) {
      if (!sampled()) continue;
      const parts = keys.parseV2(key);
      if (parts === null) {
        addSuspect(`k|${key}`, { t: 'key', key, kind: MismatchKind.Unmigratable, detail: 'not a valid v2 key (<prefix>:job:<workspace_id>:<job_id>)' });
        continue;
      }
      items.push({ key, ws: parts.workspaceId, jobId: parts.jobId });
    }
    if (items.length === 0) return { checked: 0 };
    // Content and index were compared from the legacy side; this pass finds orphans and foreign types.
    let facts: Array<[string, string | null]>;
    if (cluster) {
      facts = await mapLimit(items, PER_KEY_CONCURRENCY, async (it) => {
        const [type, legacyWs] = await Promise.all([
          ctx.client.type(it.key),
          ctx.client.hget(keys.legacyJob(it.jobId), JobField.WorkspaceId).catch(() => null),
        ]);
        return [type, legacyWs] as [string, string | null];
        });
    } else {
      const keyArgs: string[] = [];
      for (const it of items) keyArgs.push(it.key, keys.legacyJob(it.jobId));
      const flat = await callScript<Array<string | null>>(batch.node, ScriptName.VerifyV2Batch, [keyArgs.length, ...keyArgs]);
      facts = items.map((_, i) => [flat[i * 2] ?? 'none', flat[i * 2 + 1] ?? null]);
    }
    let checked = 0;
    const flagged: Array<{ ws: string; jobId: string }> = [];
    items.forEach((it, i) => {
      const [type, legacyWs] = facts[i]!;
      if (type === 'none') return;
      checked++;
      if (type !== 'hash') {
        addSuspect(`k|${it.key}`, { t: 'key', key: it.key, kind: MismatchKind.NonHash, detail: `type ${type}` });
        return;
      }
      if (suspects.has(pairId(it.ws, it.jobId))) return;
      if (legacyWs !== it.ws) flagged.push(it);
    });
    await Promise.all(flagged.map((f) => checkAndRecord(f.ws, f.jobId)));
    return { checked };
  };

  // ---- Pass 3: dangling index entries.
  const indexKey = async (node: Redis | Cluster, key: string): Promise<number> => {
    const ws = keys.parseIndex(key);
    if (ws === null) {
      addSuspect(`k|${key}`, { t: 'key', key, kind: MismatchKind.Unmigratable, detail: 'index key with an invalid workspace id' });
      return 0;
    }
    const type = await node.type(key);
    if (type === 'none') return 0;
    if (type !== 'zset') {
      addSuspect(`k|${key}`, { t: 'key', key, kind: MismatchKind.NonHash, detail: `index is a ${type}, not a sorted set` });
      return 0;
    }
    let cursor = '0';
    let seen = 0;
    do {
      if (ctx.signal.aborted) return seen;
      const [next, flat] = await node.zscan(key, cursor, 'COUNT', 1000);
      cursor = next;
      const members: string[] = [];
      for (let i = 0; i < flat.length; i += 2) if (sampled()) members.push(flat[i]!);
      seen += members.length;
      const valid = members.filter((m) => isJobId(m));
      for (const m of members) if (!isJobId(m)) addSuspect(`d|${ws}|${m}`, { t: 'dangling', ws, member: m });
      let kinds: Array<string | null>;
      if (cluster) kinds = await Promise.all(valid.map((m) => ctx.client.exists(keys.v2Job(ws, m)).then((n) => (n === 1 ? 'hash' : 'none'))));
      else kinds = (await readFieldsBatch(node as Redis, valid.map((m) => keys.v2Job(ws, m)), [])).map((r) => r[0] ?? 'none');
      valid.forEach((m, i) => {
        if (kinds[i] === 'none') addSuspect(`d|${ws}|${m}`, { t: 'dangling', ws, member: m });
      });
    } while (cursor !== '0');
    return seen;
  };
  const indexBatch = async (batch: ScanBatch): Promise<Counters> => {
    let entries = 0;
    for (const key of batch.keys) entries += await indexKey(batch.node, key);
    return { entries };
  };

  const legacyTotal = estimate === null ? null : estimate.legacy;
  const v2Total = estimate === null ? null : estimate.v2;
  if (workspace === null) {
    // One walk of the keyspace: legacy, v2 and index keys share the `<p>:job` stem.
    const total = legacyTotal === null || v2Total === null ? null : legacyTotal + v2Total;
    const r = await runScan(ctx.client, keys, {
      ...engineBase,
      match: keys.jobFamilyPattern,
      process: async (batch) => {
        const parts: Record<'legacy' | 'v2' | 'index', string[]> = { legacy: [], v2: [], index: [] };
        for (const key of batch.keys) {
          const layout = keys.layoutOf(key);
          if (layout !== null) parts[layout].push(key);
        }
        const sub = (list: string[]): ScanBatch => ({ node: batch.node, nodeAddr: batch.nodeAddr, keys: list });
        const none: Counters = {};
        const [a, b, c] = await Promise.all([
          parts.legacy.length > 0 ? legacyBatch(sub(parts.legacy)) : none,
          parts.v2.length > 0 ? v2Batch(sub(parts.v2)) : none,
          parts.index.length > 0 ? indexBatch(sub(parts.index)) : none,
        ]);
        return { checked: (a.checked ?? 0) + (b.checked ?? 0), entries: c.entries ?? 0 };
      },
      onProgress: (p) => report(`${roundLabel}: both layouts and the indexes`, p.scanned, total),
    });
    scanned += r.counters.checked ?? 0;
    indexEntries += r.counters.entries ?? 0;
  } else {
    // One workspace: legacy records name their workspace inside, so the legacy
    // layout is walked whole; v2 and the index are narrowed by name.
    const r1 = await runScan(ctx.client, keys, {
      ...engineBase,
      match: keys.legacyPattern,
      process: legacyBatch,
      onProgress: (p) => report(`${roundLabel}: legacy → v2`, p.scanned, legacyTotal),
    });
    const r2 = await runScan(ctx.client, keys, {
      ...engineBase,
      match: keys.v2Pattern(workspace),
      process: v2Batch,
      onProgress: (p) => report(`${roundLabel}: v2 → legacy`, p.scanned, null),
    });
    scanned += (r1.counters.checked ?? 0) + (r2.counters.checked ?? 0);
    // One index: no scan (the cluster client routes it to its master).
    indexEntries += await indexKey(ctx.client, keys.index(workspace));
  }

  // ---- Rounds 2..N: re-check only the suspects.
  const suspectsPerRound = [suspects.size];
  const recheck = async (ids: string[], stage: string): Promise<void> => {
    let done = 0;
    const limit = pLimit(Math.max(8, concurrency * 16));
    await Promise.all(
      ids.map((id) =>
        limit(async () => {
          if (ctx.signal.aborted) return;
          const s = suspects.get(id);
          if (!s || s.t === 'key') return;
          if (s.t === 'pair') {
            const again = await checkPair(s.ws, s.jobId);
            if (again) suspects.set(id, { ...again, repaired: s.repaired });
            else suspects.delete(id);
          } else {
            const [inIndex, exists] = await Promise.all([
              ctx.client.zscore(keys.index(s.ws), s.member),
              isJobId(s.member) ? ctx.client.exists(keys.v2Job(s.ws, s.member)) : Promise.resolve(0),
            ]);
            if (inIndex === null || exists === 1) suspects.delete(id);
          }
          done++;
          report(stage, done, ids.length);
        }),
      ),
    );
    if (ctx.signal.aborted) await sleep(0, ctx.signal);
  };
  for (let round = 2; round <= rounds; round++) {
    const pending = [...suspects.entries()].filter(([, s]) => s.t !== 'key').map(([id]) => id);
    if (pending.length === 0) {
      suspectsPerRound.push(suspects.size);
      continue;
    }
    report(`verify round ${round}/${rounds}`, 0, pending.length, true);
    await sleep(opts.roundDelayMs ?? DEFAULT_ROUND_DELAY_MS, ctx.signal);
    await recheck(pending, `verify round ${round}/${rounds}: re-checking suspects`);
    suspectsPerRound.push(suspects.size);
  }

  // ---- Persistent mismatches.
  const byKind: Record<string, number> = {};
  const countKinds = (into: Record<string, number>): number => {
    let n = 0;
    for (const s of suspects.values()) {
      const kinds = s.t === 'pair' ? s.issues.map((i) => i.kind) : s.t === 'key' ? [s.kind] : [MismatchKind.IndexDangling];
      for (const k of kinds) {
        into[k] = (into[k] ?? 0) + 1;
        n++;
      }
    }
    for (const [k, v] of Object.entries(unconfirmedByKind)) {
      into[k] = (into[k] ?? 0) + v;
      n += v;
    }
    return n;
  };
  const mismatches = countKinds(byKind);
  const unconfirmed = Object.values(unconfirmedByKind).reduce((a, b) => a + b, 0);

  // ---- Repair. The report lists what was found, repaired or not.
  const persistent = [...suspects.entries()];
  let repaired = 0;
  let remaining = mismatches;
  if (opts.repair && mismatches > 0) {
    const primary = routeFor(state.phase).primary;
    const repairer = new Repairer(ctx, state, primary, cluster);
    const ids = [...suspects.entries()].filter(([, s]) => s.t !== 'key').map(([id]) => id);
    const limit = pLimit(Math.max(8, concurrency * 8));
    await Promise.all(
      ids.map((id) =>
        limit(async () => {
          const s = suspects.get(id);
          if (!s || s.t === 'key') return;
          const ok = s.t === 'pair' ? await repairer.pair(s) : await repairer.dangling(s);
          s.repaired = ok;
          if (ok) repaired++;
        }),
      ),
    );
    // Confirm: re-check what was repaired; whatever still differs remains.
    const repairedIds = ids.filter((id) => {
      const s = suspects.get(id);
      return s !== undefined && s.t !== 'key' && s.repaired === true;
    });
    await recheck(repairedIds, 'verify: confirming repairs');
    remaining = countKinds({});
  }

  // ---- Report and result.
  const maxListed = opts.maxListed ?? 50;
  const listed: VerifyMismatch[] = [];
  let out: WriteStream | null = null;
  if (opts.reportPath) out = createWriteStream(opts.reportPath, { flags: 'w' });
  const emit = (m: VerifyMismatch, extra: Record<string, unknown> = {}): void => {
    if (listed.length < maxListed) listed.push(m);
    if (out) out.write(`${JSON.stringify({ ...m, ...extra })}\n`);
  };
  for (const [id, s] of persistent) {
    const fixed = s.t !== 'key' && s.repaired === true && !suspects.has(id);
    if (s.t === 'key') {
      emit({ kind: s.kind, key: s.key, detail: s.detail });
    } else if (s.t === 'dangling') {
      const idx = keys.index(s.ws);
      emit({ kind: MismatchKind.IndexDangling, key: idx, workspaceId: s.ws, jobId: s.member, detail: `member ${describeInput(s.member)} has no v2 record`, ...(opts.repair ? { repaired: fixed } : {}) });
    } else {
      const legacyKey = keys.legacyJob(s.jobId);
      const v2Key = keys.v2Job(s.ws, s.jobId);
      for (const issue of s.issues) {
        const names = issue.fields ?? [];
        const key = issue.kind === MismatchKind.Missing ? legacyKey : issue.kind === MismatchKind.IndexMissing || issue.kind === MismatchKind.IndexScore ? keys.index(s.ws) : v2Key;
        const m: VerifyMismatch = {
          kind: issue.kind,
          key,
          workspaceId: s.ws,
          jobId: s.jobId,
          legacyKey,
          v2Key,
          ...(names.length > 0 ? { fields: names.map(displayField) } : {}),
          ...(opts.repair ? { repaired: fixed } : {}),
        };
        const extra: Record<string, unknown> = {
          legacyExpireAt: s.legacy.pexpireAt,
          v2ExpireAt: s.v2.pexpireAt,
          legacyRev: s.legacy.rev || null,
          v2Rev: s.v2.rev || null,
        };
        if (names.length > 0) {
          const pick = (from: Map<string, Buffer>): Record<string, unknown> =>
            redactRecord(new Map(names.filter((n) => from.has(n)).map((n) => [displayField(n), from.get(n)!])));
          extra.legacy = pick(s.values.legacy);
          extra.v2 = pick(s.values.v2);
        }
        emit(m, extra);
      }
    }
  }
  if (out) {
    const o = out;
    await new Promise<void>((resolve, reject) => {
      o.end(() => resolve());
      o.once('error', reject);
    });
  }

  const finishedAt = Date.now();
  const ok = remaining === 0;
  const result: VerifyResult = {
    ok,
    scanned,
    indexEntries,
    mismatches,
    byKind,
    rounds,
    durationMs: finishedAt - startedAt,
    suspectsPerRound,
    repaired,
    remaining,
    unconfirmed,
    accepted: acceptedSeen.size,
    scope,
    epoch: state.epoch,
    phase: state.phase,
    listed,
    reportPath: opts.reportPath ?? null,
    startedAt,
    finishedAt,
  };
  const summary: VerifySummary = {
    ok,
    epoch: state.epoch,
    startedAt,
    finishedAt,
    scope,
    scanned,
    mismatches,
    byKind,
    rounds,
    durationMs: result.durationMs,
    repaired,
  };
  const fields: Record<string, string> = { [StateField.LastVerify]: JSON.stringify(summary) };
  if (ok && scope === 'full') fields[StateField.V2Complete] = '1';
  // While v2 is the mirror, a full verify that finds differences proves v2 is not (or no longer) complete.
  else if (!ok && scope === 'full' && state.phase === Phase.DualWrite) fields[StateField.V2Complete] = '0';
  await ctx.state.setFields(fenceOf(ctx), fields);
  return result;

  /** Classifies a legacy key from its kind, workspace_id and rev: null = gone; a key suspect; or its workspace. */
  function legacyVerdict(key: string, kind: string, ws: string | null, rev: string | null): KeySuspect | { t: 'ok'; ws: string } | null {
    if (kind === 'none') return null;
    if (kind !== 'hash') return { t: 'key', key, kind: MismatchKind.NonHash, detail: `type ${kind}` };
    if (ws === null) return { t: 'key', key, kind: MismatchKind.Unmigratable, detail: 'missing workspace_id' };
    if (!isWorkspaceId(ws)) return { t: 'key', key, kind: MismatchKind.Unmigratable, detail: `invalid workspace_id ${describeInput(ws)}` };
    if (parseRev(rev) === null) return { t: 'key', key, kind: MismatchKind.Unmigratable, detail: `invalid rev ${describeInput(rev ?? '')}` };
    return { t: 'ok', ws };
  }
}

function revOfFlat(flat: Buffer[]): string | null {
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i]!.toString() === JobField.Rev) return flat[i + 1]!.toString();
  return null;
}

/** Exit code of a finished verify: 1 when anything persistent remains. */
export function verifyExitCode(r: VerifyResult): number {
  return r.ok ? ExitCode.Ok : ExitCode.Problems;
}

/**
 * Compare-and-swap repairs from the primary. What it never does: overwrite or
 * delete a record that is the primary copy of its own workspace's job. Where
 * two workspaces hold one job id (an id conflict) nothing is repaired; an
 * orphan mirror is deleted only when the primary layout proves the job absent
 * (the primary key is absent and that layout is marked complete).
 */
class Repairer {
  constructor(
    private readonly ctx: OpContext,
    private readonly state: MigrationState,
    private readonly primary: Layout,
    private readonly cluster: boolean,
  ) {}

  /** repair-cas.lua on the mirror: the lock is checked inside on one node, before the call on a cluster. */
  private async cas(mirrorKey: string, indexKey: string | null, args: Array<string | number | Buffer>): Promise<number> {
    const lock = lockArgs(this.ctx);
    if (this.cluster) {
      await assertLockHeld(this.ctx);
      return callScript<number>(this.ctx.client, ScriptName.RepairCasOneKey, [mirrorKey, '', '', ...args]);
    }
    const roles = `${indexKey ? 'i' : ''}l`;
    const extra = indexKey ? [indexKey, lock.key] : [lock.key];
    return callScript<number>(this.ctx.client, ScriptName.RepairCas, [1 + extra.length, mirrorKey, ...extra, roles, lock.value, ...args]);
  }

  /** Fixes one pair: the mirror becomes the primary's snapshot (or goes, when the primary proves the job absent); the index follows. */
  async pair(s: PairSuspect): Promise<boolean> {
    const keys = this.ctx.keys;
    if (s.issues.some((i) => i.kind === MismatchKind.IdConflict)) return false;
    const legacyKey = keys.legacyJob(s.jobId);
    const v2Key = keys.v2Job(s.ws, s.jobId);
    const indexKey = keys.index(s.ws);
    const recordIssue = s.issues.some((i) => RECORD_KINDS.has(i.kind));
    const indexIssue = s.issues.some((i) => i.kind === MismatchKind.IndexMissing || i.kind === MismatchKind.IndexScore);
    const mirrorIsV2 = this.primary === Layout.Legacy;
    const primaryKey = mirrorIsV2 ? legacyKey : v2Key;
    const mirrorKey = mirrorIsV2 ? v2Key : legacyKey;
    const seen = mirrorIsV2 ? s.v2 : s.legacy;
    let ok = true;
    if (recordIssue) {
      if (seen.type !== 'hash' && seen.type !== 'none') return false;
      // A legacy mirror naming another workspace is that tenant's job: never overwritten.
      if (!mirrorIsV2 && seen.type === 'hash' && seen.owner !== s.ws) return false;
      const raw = await readRecord(this.ctx.client, primaryKey);
      const primaryView = viewOf(raw);
      if (primaryView.type !== 'hash' && primaryView.type !== 'none') return false;
      // A legacy primary naming another workspace does not prove this job absent: an id conflict.
      if (primaryView.type === 'hash' && fieldText(primaryView, JobField.WorkspaceId) !== s.ws) return false;
      const inlineIndex = mirrorIsV2 && !this.cluster ? indexKey : null;
      const expected = [seen.type === 'none' ? 'absent' : 'hash', seen.rev, seen.digest];
      let code: number;
      if (primaryView.type === 'none') {
        if (seen.type === 'none') return true;
        const complete = this.primary === Layout.Legacy ? this.state.legacyComplete : this.state.v2Complete;
        if (!complete) return false;
        code = await this.cas(mirrorKey, inlineIndex, ['delete', ...expected, 0, 0, s.jobId, '']);
        if (code === 1 && mirrorIsV2 && this.cluster) await this.ctx.client.zrem(indexKey, s.jobId);
      } else {
        const score = createdAtScore(primaryView.fields.get(JobField.CreatedAt));
        code = await this.cas(mirrorKey, inlineIndex, ['replace', ...expected, raw.pexpireAt > 0 ? raw.pexpireAt : 0, score, s.jobId, s.ws, ...raw.fields]);
        if (code === 1 && mirrorIsV2 && this.cluster) await this.ctx.client.zadd(indexKey, score, s.jobId);
      }
      ok = code === 1;
    }
    if (indexIssue && ok) {
      if (this.cluster) await assertLockHeld(this.ctx);
      // The index follows the v2 record as it is now (created_at never changes).
      const v2 = viewOf(await readRecord(this.ctx.client, v2Key));
      if (v2.type === 'hash') await this.ctx.client.zadd(indexKey, createdAtScore(v2.fields.get(JobField.CreatedAt)), s.jobId);
    }
    return ok;
  }

  /** Removes an index entry whose v2 record is (still) gone. */
  async dangling(s: DanglingSuspect): Promise<boolean> {
    const keys = this.ctx.keys;
    await assertLockHeld(this.ctx);
    // The record is back (e.g. repaired just now): the entry is no longer dangling.
    if (isJobId(s.member) && (await this.ctx.client.exists(keys.v2Job(s.ws, s.member))) === 1) return true;
    await this.ctx.client.zrem(keys.index(s.ws), s.member);
    return true;
  }
}
