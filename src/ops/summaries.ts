/**
 * Summaries that operations store in the state record (as JSON fields) and
 * that the gates read. Field names are part of the state record contract.
 */

/** `last_backfill`. */
export interface BackfillSummary {
  /** `backfill` or `reverse-backfill` (v2 → legacy during rollback). */
  direction: 'forward' | 'reverse';
  epoch: number;
  startedAt: number;
  finishedAt: number;
  /** True when every node was scanned to the end (not interrupted, not a shard, not a dry run). */
  complete: boolean;
  scanned: number;
  copied: number;
  skipped: number;
  unmigratable: number;
  durationMs: number;
  keysPerSecond: number;
  resumed: boolean;
  shard?: string | null;
}

/** `last_verify`. */
export interface VerifySummary {
  ok: boolean;
  epoch: number;
  startedAt: number;
  finishedAt: number;
  /** `full` only when neither --workspace nor --sample narrowed it; gates accept only full verifies. */
  scope: 'full' | 'partial';
  scanned: number;
  mismatches: number;
  byKind: Record<string, number>;
  rounds: number;
  durationMs: number;
  repaired?: number;
}

/** `last_cleanup` (written only by `cleanup --execute`; dry runs go to the history only). */
export interface CleanupSummary {
  epoch: number;
  startedAt: number;
  finishedAt: number;
  dryRun: boolean;
  /** Every node was scanned to the end. */
  complete: boolean;
  scanned: number;
  deleted: number;
  kept: number;
  /** Kept keys by reason (unmigratable, foreign-type, v2-missing, ...). */
  keptByReason: Record<string, number>;
  /** Pending-list references rewritten to `<workspace_id>:<job_id>`. */
  queueConverted: number;
  queueUnresolved: number;
  durationMs: number;
  resumed: boolean;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Reads a stored backfill summary defensively (hand-edited records must not crash status). */
export function asBackfillSummary(raw: Record<string, unknown> | null): BackfillSummary | null {
  if (!raw) return null;
  return {
    direction: raw.direction === 'reverse' ? 'reverse' : 'forward',
    epoch: num(raw.epoch),
    startedAt: num(raw.startedAt),
    finishedAt: num(raw.finishedAt),
    complete: raw.complete === true,
    scanned: num(raw.scanned),
    copied: num(raw.copied),
    skipped: num(raw.skipped),
    unmigratable: num(raw.unmigratable),
    durationMs: num(raw.durationMs),
    keysPerSecond: num(raw.keysPerSecond),
    resumed: raw.resumed === true,
    shard: typeof raw.shard === 'string' ? raw.shard : null,
  };
}

/** Reads a stored verify summary defensively. */
export function asVerifySummary(raw: Record<string, unknown> | null): VerifySummary | null {
  if (!raw) return null;
  const byKind: Record<string, number> = {};
  if (raw.byKind && typeof raw.byKind === 'object') {
    for (const [k, v] of Object.entries(raw.byKind as Record<string, unknown>)) byKind[k] = num(v);
  }
  return {
    ok: raw.ok === true,
    epoch: num(raw.epoch),
    startedAt: num(raw.startedAt),
    finishedAt: num(raw.finishedAt),
    scope: raw.scope === 'full' ? 'full' : 'partial',
    scanned: num(raw.scanned),
    mismatches: num(raw.mismatches),
    byKind,
    rounds: num(raw.rounds),
    durationMs: num(raw.durationMs),
  };
}

/** Reads a stored cleanup summary defensively. */
export function asCleanupSummary(raw: Record<string, unknown> | null): CleanupSummary | null {
  if (!raw) return null;
  const keptByReason: Record<string, number> = {};
  if (raw.keptByReason && typeof raw.keptByReason === 'object') {
    for (const [k, v] of Object.entries(raw.keptByReason as Record<string, unknown>)) keptByReason[k] = num(v);
  }
  return {
    epoch: num(raw.epoch),
    startedAt: num(raw.startedAt),
    finishedAt: num(raw.finishedAt),
    dryRun: raw.dryRun === true,
    complete: raw.complete === true,
    scanned: num(raw.scanned),
    deleted: num(raw.deleted),
    kept: num(raw.kept),
    keptByReason,
    queueConverted: num(raw.queueConverted),
    queueUnresolved: num(raw.queueUnresolved),
    durationMs: num(raw.durationMs),
    resumed: raw.resumed === true,
  };
}
