/**
 * One poller for the tests: condition waits, never fixed sleeps. A check that
 * throws fails the wait at once, unless `retryErrors` (a server still starting,
 * a failover in progress), where the last error is named on timeout.
 */
export interface PollOptions {
  timeoutMs?: number;
  everyMs?: number;
  retryErrors?: boolean;
}

/** Polls `check` until it returns a truthy value, or throws naming `what` after `timeoutMs`. */
export async function poll<T>(
  what: string,
  check: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  opts: PollOptions = {},
): Promise<T> {
  const { timeoutMs = 60_000, everyMs = 100, retryErrors = false } = opts;
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      if (!retryErrors) throw err;
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
