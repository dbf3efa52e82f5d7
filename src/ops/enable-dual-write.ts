/**
 * `enable-dual-write`: legacy → dual-write. From here writers mirror every
 * write into v2; backfill copies the history once the settle window is over.
 */
import { Phase } from '../core/phase.js';
import { StateField } from '../core/state.js';
import type { OpContext } from './context.js';
import { runTransition, type TransitionOpResult } from './transition.js';

/** Options of {@link enableDualWrite}. */
export interface EnableDualWriteOptions {
  reason?: string;
  /** settle_ms to record if the state record has none (default 2000). */
  settleMs?: number;
  dryRun?: boolean;
  /** Gates to override by name (needs `reason`). */
  force?: readonly string[];
  /** Bound of the wait for writer acknowledgements (default 10 s). */
  ackTimeoutMs?: number;
}

/** Result of {@link enableDualWrite}. */
export type EnableDualWriteResult = TransitionOpResult;

/** legacy → dual-write. v2 is marked incomplete until a clean verify proves otherwise. */
export function enableDualWrite(ctx: OpContext, opts: EnableDualWriteOptions): Promise<EnableDualWriteResult> {
  return runTransition(ctx, {
    command: 'enable-dual-write',
    idempotent: true,
    to: () => Phase.DualWrite,
    ...(opts.reason === undefined ? {} : { reason: opts.reason }),
    ...(opts.settleMs === undefined ? {} : { settleMs: opts.settleMs }),
    dryRun: opts.dryRun ?? false,
    force: opts.force ?? [],
    ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
    extra: () => ({ [StateField.LegacyComplete]: '1', [StateField.V2Complete]: '0' }),
  });
}
