/**
 * What verify found, as mismatches: the first few for the result, every one as
 * NDJSON in `--report`. Values are redacted (src/core/redact.ts); field names
 * that are not UTF-8 are shown as base64.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { describeInput } from '../../core/ids.js';
import type { Keyspace } from '../../core/keys.js';
import { redactRecord } from '../../core/redact.js';
import { displayField, MismatchKind } from '../record-compare.js';
import type { PairSuspect, Suspect } from './suspects.js';

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

/** Options of {@link MismatchReport}. */
export interface MismatchReportOptions {
  /** NDJSON file of every mismatch, or null. */
  path: string | null;
  /** Mismatches kept for the result. */
  maxListed: number;
  /** A repair ran: each mismatch says whether it was fixed. */
  repair: boolean;
}

/** Turns persistent suspects into mismatches, listed and written. */
export class MismatchReport {
  readonly listed: VerifyMismatch[] = [];
  private readonly out: WriteStream | null;

  constructor(
    private readonly keys: Keyspace,
    private readonly opts: MismatchReportOptions,
  ) {
    this.out = opts.path ? createWriteStream(opts.path, { flags: 'w' }) : null;
  }

  private emit(m: VerifyMismatch, extra: Record<string, unknown> = {}): void {
    if (this.listed.length < this.opts.maxListed) this.listed.push(m);
    this.out?.write(`${JSON.stringify({ ...m, ...extra })}\n`);
  }

  /** Adds one suspect found persistent; `fixed` says whether a repair made it go away. */
  add(s: Suspect, fixed: boolean): void {
    const repaired = this.opts.repair ? { repaired: fixed } : {};
    if (s.t === 'key') return this.emit({ kind: s.kind, key: s.key, detail: s.detail });
    if (s.t === 'dangling') {
      return this.emit({
        kind: MismatchKind.IndexDangling,
        key: this.keys.index(s.ws),
        workspaceId: s.ws,
        jobId: s.member,
        detail: `member ${describeInput(s.member)} has no v2 record`,
        ...repaired,
      });
    }
    this.addPair(s, repaired);
  }

  private addPair(s: PairSuspect, repaired: { repaired?: boolean }): void {
    const legacyKey = this.keys.legacyJob(s.jobId);
    const v2Key = this.keys.v2Job(s.ws, s.jobId);
    for (const issue of s.issues) {
      const names = issue.fields ?? [];
      const key =
        issue.kind === MismatchKind.Missing
          ? legacyKey
          : issue.kind === MismatchKind.IndexMissing || issue.kind === MismatchKind.IndexScore
            ? this.keys.index(s.ws)
            : v2Key;
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
      this.emit(
        {
          kind: issue.kind,
          key,
          workspaceId: s.ws,
          jobId: s.jobId,
          legacyKey,
          v2Key,
          ...(names.length > 0 ? { fields: names.map(displayField) } : {}),
          ...repaired,
        },
        extra,
      );
    }
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    const out = this.out;
    if (!out) return;
    await new Promise<void>((resolve, reject) => {
      out.once('error', reject);
      out.end(() => resolve());
    });
  }
}
