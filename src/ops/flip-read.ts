/**
 * `flip-read`: dual-write → read-new. Reads move to v2; writers keep mirroring
 * into legacy, so `rollback` back to dual-write stays instant.
 *
 * Gate (docs/design.md "Gates"): a clean, full verify in the current epoch that started after
 * the last backfill finished and is no older than `maxVerifyAgeMs` (default 1h).
 * That verify is what proves v2 complete, so the flip records v2_complete=1;
 * a forced flip does not (the proof is missing) and leaves v2_complete as it was.
 */
import { Phase } from '../core/phase.js';
import { StateField } from '../core/state.js';
import type { OpContext } from './context.js';
import { runTransition, type TransitionOpResult } from './transition.js';

/** Options of {@link flipRead}. */
export interface FlipReadOptions {
  reason?: string;
  /** Gates to override by name (needs `reason`; recorded in the history). */
  force?: readonly string[];
  /** Bound of the wait for writer acknowledgements (default 10 s). */
  ackTimeoutMs?: number;
  /** Freshness the verify gate requires (default 1h). */
  maxVerifyAgeMs?: number;
  /** Check the gates and report; change nothing. */
  dryRun?: boolean;
}

/** Result of {@link flipRead} (`--json`: from, to, epoch, dryRun). */
export type FlipReadResult = TransitionOpResult;

/** dual-write → read-new, behind the verify gate. Throws GateError (exit 3) when refused. */
export function flipRead(ctx: OpContext, opts: FlipReadOptions = {}): Promise<FlipReadResult> {
  return runTransition(ctx, {
    command: 'flip-read',
    idempotent: true,
    to: () => Phase.ReadNew,
    ...(opts.reason === undefined ? {} : { reason: opts.reason }),
    force: opts.force ?? [],
    ...(opts.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: opts.ackTimeoutMs }),
    dryRun: opts.dryRun ?? false,
    gates: opts.maxVerifyAgeMs === undefined ? {} : { maxVerifyAgeMs: opts.maxVerifyAgeMs },
    extra: (_state, forced): Record<string, string> => (forced.includes('verify') ? {} : { [StateField.V2Complete]: '1' }),
  });
}
