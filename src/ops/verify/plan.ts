/** A verify's settings, decided once from its options and the state record. */
import { assertWorkspaceId } from '../../core/ids.js';
import type { Phase } from '../../core/phase.js';
import { phaseOf, type MigrationState } from '../../core/state.js';
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
  /** Only these workspaces (a canary check); null = all. */
  workspaces?: readonly string[] | null;
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
  /** Only these workspaces, or null for all. */
  readonly workspaces: ReadonlySet<string> | null;
  readonly sample: number | null;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly maxSuspects: number;
  /** `full` only when neither a workspace nor a sample narrows it: only a full verify opens gates. */
  readonly scope: 'full' | 'partial';
  private readonly state: MigrationState;

  private constructor(opts: VerifyPlanOptions, state: MigrationState) {
    this.rounds = Math.max(1, opts.rounds ?? DEFAULT_ROUNDS);
    this.roundDelayMs = opts.roundDelayMs ?? DEFAULT_ROUND_DELAY_MS;
    this.toleranceMs = opts.ttlToleranceMs ?? DEFAULT_TTL_TOLERANCE_MS;
    this.workspaces = opts.workspaces && opts.workspaces.length > 0 ? new Set(opts.workspaces) : null;
    this.sample = opts.sample ?? null;
    this.batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
    this.concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    this.maxSuspects = opts.maxSuspects ?? DEFAULT_MAX_SUSPECTS;
    this.scope = this.workspaces === null && this.sample === null ? 'full' : 'partial';
    this.state = state;
  }

  /** Validates the options (a bad workspace id is exit 2) and decides. */
  static from(opts: VerifyPlanOptions, state: MigrationState): VerifyPlan {
    for (const ws of opts.workspaces ?? []) assertWorkspaceId(ws);
    return new VerifyPlan(opts, state);
  }

  /** Whether to look at this key (always, unless --sample). */
  sampled(): boolean {
    return this.sample === null || Math.random() < this.sample;
  }

  /** The phase a workspace's records follow (a canary's may be ahead of the global one). */
  phaseOf(ws: string): Phase {
    return phaseOf(this.state, ws);
  }

  /** Whether a record of workspace `ws` is in scope. */
  inScope(ws: string): boolean {
    return this.workspaces === null || this.workspaces.has(ws);
  }
}
