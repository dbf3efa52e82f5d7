/** A verify's settings, decided once from its options and the state record. */
import { assertWorkspaceId } from '../../core/ids.js';
import { Layout, routeFor } from '../../core/phase.js';
import type { MigrationState } from '../../core/state.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY } from '../scan-engine.js';

/** Default rounds: one full scan plus two re-checks of the suspects. */
export const DEFAULT_ROUNDS = 3;
/** Default pause between rounds. */
export const DEFAULT_ROUND_DELAY_MS = 1000;
/** Default expiry tolerance. */
export const DEFAULT_TTL_TOLERANCE_MS = 1000;
/** Suspects tracked individually; beyond this they are counted as unconfirmed. */
export const DEFAULT_MAX_SUSPECTS = 200_000;

/** What shapes a verify. */
export interface VerifyPlanOptions {
  rounds?: number;
  roundDelayMs?: number;
  ttlToleranceMs?: number;
  workspace?: string | null;
  sample?: number | null;
  batchSize?: number;
  concurrency?: number;
  maxSuspects?: number;
}

/** The decided settings. */
export class VerifyPlan {
  readonly rounds: number;
  readonly roundDelayMs: number;
  readonly toleranceMs: number;
  readonly workspace: string | null;
  readonly sample: number | null;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly maxSuspects: number;
  /** `full` only when neither a workspace nor a sample narrows it: only a full verify opens gates. */
  readonly scope: 'full' | 'partial';
  /** v2 is the primary (read-new, new-only): its records must be indexed even without a legacy twin. */
  readonly v2IsPrimary: boolean;

  private constructor(opts: VerifyPlanOptions, state: MigrationState) {
    this.rounds = Math.max(1, opts.rounds ?? DEFAULT_ROUNDS);
    this.roundDelayMs = opts.roundDelayMs ?? DEFAULT_ROUND_DELAY_MS;
    this.toleranceMs = opts.ttlToleranceMs ?? DEFAULT_TTL_TOLERANCE_MS;
    this.workspace = opts.workspace ?? null;
    this.sample = opts.sample ?? null;
    this.batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
    this.concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    this.maxSuspects = opts.maxSuspects ?? DEFAULT_MAX_SUSPECTS;
    this.scope = this.workspace === null && this.sample === null ? 'full' : 'partial';
    this.v2IsPrimary = routeFor(state.phase).primary === Layout.V2;
  }

  /** Validates the options (a bad workspace id is exit 2) and decides. */
  static from(opts: VerifyPlanOptions, state: MigrationState): VerifyPlan {
    if (opts.workspace !== undefined && opts.workspace !== null) assertWorkspaceId(opts.workspace);
    return new VerifyPlan(opts, state);
  }

  /** Whether to look at this key (always, unless --sample). */
  sampled(): boolean {
    return this.sample === null || Math.random() < this.sample;
  }

  /** Whether a record of workspace `ws` is in scope. */
  inScope(ws: string): boolean {
    return this.workspace === null || ws === this.workspace;
  }
}
