/**
 * Waiting until no writer can still act on the previous phase, before a step
 * whose safety depends on it (backfill after enable-dual-write, the deletes
 * after new-only, the reverse backfill after new-only → read-new):
 *  - registered writers: until each live one has acknowledged the current
 *    epoch (bounded by the ack timeout; exit 3 naming the laggards);
 *  - unregistered writers (other services that only read the record): the
 *    settle window, changed_at + settle_ms on the server clock.
 */
import type { MigrationState } from '../core/state.js';
import { describeWriter, waitForAcks } from '../core/writers.js';
import type { OpContext } from './context.js';

/** Options of {@link waitForWriters}. */
export interface WaitForWritersOptions {
  /** Bound of the wait for acknowledgements (default 10 s). */
  ackTimeoutMs?: number;
  /** A human line about what is being waited for. */
  onWait?: (message: string) => void;
}

/** Waits out both; resolves with the milliseconds waited. Throws WritersLaggingError (exit 3). */
export async function waitForWriters(ctx: OpContext, state: MigrationState, opts: WaitForWritersOptions = {}): Promise<number> {
  const started = Date.now();
  await waitForAcks(ctx.client, ctx.keys, state.epoch, {
    ...(opts.ackTimeoutMs === undefined ? {} : { timeoutMs: opts.ackTimeoutMs }),
    signal: ctx.signal,
    serverTime: () => ctx.state.serverTime(),
    onWait: (lagging) =>
      opts.onWait?.(`waiting for ${lagging.length} writer(s) to acknowledge epoch ${state.epoch}: ${lagging.slice(0, 3).map(describeWriter).join('; ')}`),
  });
  await ctx.state.waitForSettle(state, {
    signal: ctx.signal,
    onWait: (ms) =>
      opts.onWait?.(`waiting ${(ms / 1000).toFixed(1)}s for the settle window (writers that do not register may still act on the previous phase)`),
  });
  return Date.now() - started;
}
