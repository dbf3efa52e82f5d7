/**
 * What a mismatch is: the pure comparison rules verify applies (and the
 * digest that repair's compare-and-swap checks). Records are maps of bytes:
 * field names and values are compared as raw bytes, never decoded.
 */
import { createdAtScore, JobField } from '../core/job.js';
import { Layout, Phase, routeFor } from '../core/phase.js';
import { digestOf, type RawRecord } from '../core/protocol.js';

/** Kinds of mismatch verify reports (`byKind` keys). */
export const MismatchKind = {
  /** A legacy record without a v2 record. */
  Missing: 'missing',
  /** A v2 record without a legacy record (in its workspace). */
  Orphan: 'orphan',
  /**
   * A v2 record whose legacy key holds another workspace's job with the same
   * id: legacy keys are global, so both cannot be complete. Never repaired
   * (runbooks/incident-id-conflict.md).
   */
  IdConflict: 'id-conflict',
  /** A field with different bytes in the two layouts. */
  FieldDiff: 'field-diff',
  /** A field the legacy record has and the v2 record lacks. */
  MissingField: 'missing-field',
  /** A field the v2 record has and the legacy record lacks. */
  ExtraField: 'extra-field',
  /** Expiries differ beyond the tolerance (or only one side expires). */
  Ttl: 'ttl',
  /** A v2 record that is not in its workspace index. */
  IndexMissing: 'index-missing',
  /** An index entry whose score is not the record's created_at. */
  IndexScore: 'index-score',
  /** An index entry whose v2 record does not exist. */
  IndexDangling: 'index-dangling',
  /** A key of another type under a record pattern (or an index that is not a sorted set). */
  NonHash: 'non-hash',
  /** A legacy record that cannot be migrated (bad job id, workspace or rev) or a malformed v2 key. */
  Unmigratable: 'unmigratable',
} as const;
export type MismatchKind = (typeof MismatchKind)[keyof typeof MismatchKind];

/** Kinds that concern the record pair's content or existence (repairable by copying the primary). */
export const RECORD_KINDS: ReadonlySet<MismatchKind> = new Set<MismatchKind>([
  MismatchKind.Missing,
  MismatchKind.Orphan,
  MismatchKind.FieldDiff,
  MismatchKind.MissingField,
  MismatchKind.ExtraField,
  MismatchKind.Ttl,
]);

/** A record as read for comparison. */
export interface RecordView {
  /** Redis TYPE: 'hash', 'none', or another type. */
  type: string;
  /** Field → value, field names as latin1 strings (a byte-exact bijection). Empty unless a hash. */
  fields: Map<string, Buffer>;
  /** PEXPIRETIME: absolute ms, -1 persistent, -2 absent. */
  pexpireAt: number;
}

/** A view of an absent key. */
export const ABSENT: RecordView = { type: 'none', fields: new Map(), pexpireAt: -2 };

export { readRecord, type RawRecord } from '../core/protocol.js';

/** A {@link RecordView} of a raw record. */
export function viewOf(raw: RawRecord): RecordView {
  return { type: raw.type, fields: fieldMap(raw.fields), pexpireAt: raw.pexpireAt };
}

/** Builds a field map from HGETALL's flat byte array. */
export function fieldMap(flat: Buffer[]): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (let i = 0; i + 1 < flat.length; i += 2) m.set(flat[i]!.toString('latin1'), flat[i + 1]!);
  return m;
}

/** A field name for humans (UTF-8 when it decodes cleanly). */
export function displayField(latin1Name: string): string {
  const buf = Buffer.from(latin1Name, 'latin1');
  const text = buf.toString('utf8');
  return Buffer.from(text, 'utf8').equals(buf) ? text : `base64:${buf.toString('base64')}`;
}

/** The value of a field as a string (for small ASCII fields such as workspace_id). */
export function fieldText(view: RecordView, name: string): string | undefined {
  return view.fields.get(name)?.toString('utf8');
}

/**
 * Content digest identical to the Lua scripts' (apply-if-newer, repair-cas):
 * sha1 of the sorted sha1 hex digests of `<byte length of field>:<field><value>`.
 */
export function recordDigest(fields: Map<string, Buffer>): string {
  const flat: Buffer[] = [];
  for (const [name, value] of fields) flat.push(Buffer.from(name, 'latin1'), value);
  return digestOf(flat);
}

/** Field-level differences of two hashes. */
export interface FieldDiff {
  /** In both, different bytes. */
  changed: string[];
  /** In `a` (legacy) only. */
  missing: string[];
  /** In `b` (v2) only. */
  extra: string[];
}

/** Compares two field maps byte by byte. Names are latin1 strings. */
export function diffFields(a: Map<string, Buffer>, b: Map<string, Buffer>): FieldDiff {
  const changed: string[] = [];
  const missing: string[] = [];
  const extra: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined) missing.push(k);
    else if (!v.equals(w)) changed.push(k);
  }
  for (const k of b.keys()) if (!a.has(k)) extra.push(k);
  return { changed, missing, extra };
}

/** True when two PEXPIRETIME values differ beyond `toleranceMs` (or only one expires). */
export function expiryDiffers(a: number, b: number, toleranceMs: number): boolean {
  const pa = a < 0;
  const pb = b < 0;
  if (pa || pb) return pa !== pb;
  return Math.abs(a - b) > toleranceMs;
}

/** One finding of {@link classifyPair}. */
export interface PairIssue {
  kind: MismatchKind;
  /** Field names (latin1) for field-level kinds. */
  fields?: string[];
}

/** Inputs of {@link classifyPair}. */
export interface PairObservation {
  workspaceId: string;
  jobId: string;
  legacy: RecordView;
  v2: RecordView;
  /** ZSCORE of the job in its workspace index, or null when absent. */
  indexScore: number | null;
}

/**
 * The mismatches of one (legacy, v2) pair. A legacy record that names another
 * workspace does not back this v2 record: for this pair it counts as absent.
 */
export function classifyPair(o: PairObservation, toleranceMs: number, phase: Phase = Phase.DualWrite): PairIssue[] {
  const issues: PairIssue[] = [];
  const v2IsPrimary = routeFor(phase).primary === Layout.V2;
  if (phase === Phase.NewOnly) {
    // Legacy is no longer written for this workspace (cleanup deletes it): only v2 and its index count.
    if (o.v2.type !== 'hash' && o.v2.type !== 'none') issues.push({ kind: MismatchKind.NonHash });
    if (o.v2.type === 'hash') indexIssues(o, issues);
    return issues;
  }
  const legacyHere = o.legacy.type === 'hash' && fieldText(o.legacy, JobField.WorkspaceId) === o.workspaceId;
  const legacyElsewhere = o.legacy.type === 'hash' && !legacyHere;
  const v2Hash = o.v2.type === 'hash';
  if (o.v2.type !== 'hash' && o.v2.type !== 'none') issues.push({ kind: MismatchKind.NonHash });
  if (legacyHere && !v2Hash && o.v2.type === 'none') issues.push({ kind: MismatchKind.Missing });
  if (legacyElsewhere && v2Hash) issues.push({ kind: MismatchKind.IdConflict });
  else if (!legacyHere && v2Hash) issues.push({ kind: MismatchKind.Orphan });
  if (legacyHere && v2Hash) {
    const d = diffFields(o.legacy.fields, o.v2.fields);
    if (d.changed.length > 0) issues.push({ kind: MismatchKind.FieldDiff, fields: d.changed });
    if (d.missing.length > 0) issues.push({ kind: MismatchKind.MissingField, fields: d.missing });
    if (d.extra.length > 0) issues.push({ kind: MismatchKind.ExtraField, fields: d.extra });
    if (expiryDiffers(o.legacy.pexpireAt, o.v2.pexpireAt, toleranceMs)) issues.push({ kind: MismatchKind.Ttl });
  }
  // While legacy is the primary, an orphan's index entry is moot: repair deletes
  // the orphan and its entry together. With v2 primary the record is real and must be indexed.
  if (v2Hash && (legacyHere || v2IsPrimary)) indexIssues(o, issues);
  return issues;
}

/** A v2 record's index entry: present, with created_at as its score. */
function indexIssues(o: PairObservation, issues: PairIssue[]): void {
  const expected = createdAtScore(o.v2.fields.get(JobField.CreatedAt));
  if (o.indexScore === null) issues.push({ kind: MismatchKind.IndexMissing });
  else if (o.indexScore !== expected) issues.push({ kind: MismatchKind.IndexScore });
}
