/**
 * What verify suspects, and the set it keeps them in. A suspect is a pair of
 * records (one job in both layouts), a single key (unmigratable, non-hash), or
 * an index entry without its record. Later rounds re-check pairs and entries;
 * only what persists counts.
 */
import { JobField } from '../../core/job.js';
import type { Counters } from '../checkpoint.js';
import { fieldText, MismatchKind, recordDigest, type PairIssue, type RecordView } from '../record-compare.js';

/** What the last check saw of one side of a pair: enough for a compare-and-swap. */
export interface SideState {
  type: string;
  /** The raw rev field ('' when absent). */
  rev: string;
  digest: string;
  pexpireAt: number;
  /** The record's workspace_id ('' when absent): a legacy record of another workspace is another tenant's job. */
  owner: string;
}

/** One job whose two layouts differ. */
export interface PairSuspect {
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

/** One key that is wrong in itself (it never resolves between rounds). */
export interface KeySuspect {
  t: 'key';
  key: string;
  kind: MismatchKind;
  detail: string;
}

/** An index entry whose v2 record does not exist. */
export interface DanglingSuspect {
  t: 'dangling';
  ws: string;
  member: string;
  repaired?: boolean;
}

export type Suspect = PairSuspect | KeySuspect | DanglingSuspect;

/** The side of a pair as a compare-and-swap must expect it. */
export function sideOf(view: RecordView): SideState {
  return {
    type: view.type,
    rev: view.fields.get(JobField.Rev)?.toString('latin1') ?? '',
    digest: view.type === 'hash' ? recordDigest(view.fields) : '',
    pexpireAt: view.pexpireAt,
    owner: fieldText(view, JobField.WorkspaceId) ?? '',
  };
}

/** The mismatch kinds a suspect stands for. */
export function kindsOf(s: Suspect): MismatchKind[] {
  return s.t === 'pair' ? s.issues.map((i) => i.kind) : s.t === 'key' ? [s.kind] : [MismatchKind.IndexDangling];
}

/**
 * The suspects of one verify, bounded: beyond `max` they are only counted
 * (unconfirmed, never re-checked). Keys accepted as unmigratable are set apart
 * as `accepted` and never become a mismatch; a new bad key still does.
 */
export class SuspectSet {
  private readonly map = new Map<string, Suspect>();
  private readonly unconfirmedByKind: Counters = {};
  private readonly acceptedSeen = new Set<string>();

  constructor(
    private readonly max: number,
    private readonly accepted: ReadonlySet<string>,
  ) {}

  static pairId(ws: string, jobId: string): string {
    return `p|${ws}|${jobId}`;
  }

  add(id: string, s: Suspect): void {
    if (s.t === 'key' && this.accepted.has(s.key)) {
      this.acceptedSeen.add(s.key);
      return;
    }
    if (this.map.has(id) || this.map.size < this.max) {
      this.map.set(id, s);
      return;
    }
    for (const k of kindsOf(s)) this.unconfirmedByKind[k] = (this.unconfirmedByKind[k] ?? 0) + 1;
  }

  /** A key that is bad in itself (`k|<key>`). */
  addKey(key: string, kind: MismatchKind, detail: string): void {
    this.add(`k|${key}`, { t: 'key', key, kind, detail });
  }

  get(id: string): Suspect | undefined {
    return this.map.get(id);
  }

  has(id: string): boolean {
    return this.map.has(id);
  }

  delete(id: string): void {
    this.map.delete(id);
  }

  get size(): number {
    return this.map.size;
  }

  entries(): Array<[string, Suspect]> {
    return [...this.map.entries()];
  }

  /** Ids of the suspects a later round can re-check (pairs and index entries; keys stay what they are). */
  recheckable(): string[] {
    return this.entries()
      .filter(([, s]) => s.t !== 'key')
      .map(([id]) => id);
  }

  /** Mismatches by kind (unconfirmed ones included) and their total. */
  count(): { byKind: Record<string, number>; total: number } {
    const byKind: Record<string, number> = {};
    let total = 0;
    for (const s of this.map.values()) {
      for (const k of kindsOf(s)) {
        byKind[k] = (byKind[k] ?? 0) + 1;
        total++;
      }
    }
    for (const [k, v] of Object.entries(this.unconfirmedByKind)) {
      byKind[k] = (byKind[k] ?? 0) + v;
      total += v;
    }
    return { byKind, total };
  }

  get unconfirmed(): number {
    return Object.values(this.unconfirmedByKind).reduce((a, b) => a + b, 0);
  }

  get acceptedCount(): number {
    return this.acceptedSeen.size;
  }
}
