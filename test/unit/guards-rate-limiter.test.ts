/**
 * `--rate` as a true ceiling (src/ops/scan-engine.ts RateLimiter): after a
 * slow stretch no budget has piled up, so there is no catch-up burst; over
 * any window the keys taken stay within rate × window plus one batch.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { pacedBatch, RateLimiter } from '../../src/ops/scan-engine.js';

let clock = 0;
afterEach(() => vi.restoreAllMocks());

function fakeClock(): void {
  clock = 0;
  vi.spyOn(performance, 'now').mockImplementation(() => clock);
}

/** Drives a limiter the way scanners do: each asks for `batch` keys and retries after the wait it is told. */
function drive(l: RateLimiter, batch: number, fromMs: number, toMs: number): number[] {
  const grants: number[] = [];
  clock = fromMs;
  while (clock < toMs) {
    const wait = l.reserve(batch);
    if (wait <= 0) grants.push(clock);
    else clock += Math.min(wait, 100);
  }
  return grants;
}

describe('RateLimiter', () => {
  it('after a slow stretch grants one batch at once, then keeps the pace: no catch-up burst', () => {
    fakeClock();
    const rate = 1000;
    const batch = 100;
    const l = new RateLimiter(rate);
    const before = drive(l, batch, 0, 2000);
    expect(before.length).toBe(20); // 2 s at 1000 keys/s in batches of 100
    // Nothing asks for 5 s (the batches were slow, Redis was busy...), then the scan goes on.
    const after = drive(l, batch, 7000, 9000);
    // The old limiter owed 5 s of budget here and let 5,000 keys through at once.
    expect(after.filter((t) => t < 7100).length).toBe(1);
    for (let start = 7000; start <= 8000; start += 50) {
      const inWindow = after.filter((t) => t >= start && t < start + 1000).length * batch;
      expect(inWindow, `window at ${start} ms`).toBeLessThanOrEqual(rate + batch);
    }
    expect(after.length * batch).toBeLessThanOrEqual(2 * rate + batch);
  });

  it('applies a lowered ceiling to the slot already booked, and a raised one at once', () => {
    fakeClock();
    const l = new RateLimiter(100);
    expect(l.reserve(100)).toBe(0); // books the next second
    clock = 500;
    expect(l.reserve(10)).toBe(500);
    l.setRate(50); // the remaining 500 ms at 100/s are 1000 ms at 50/s
    expect(l.reserve(10)).toBe(1000);
    l.setRate(null);
    expect(l.reserve(10)).toBe(0);
    expect(l.ceiling).toBeNull();
  });

  it('asks for batches of a tenth of a second at its rate, within [10, configured]', () => {
    expect(new RateLimiter(null).batchSize(1000)).toBe(1000);
    expect(new RateLimiter(500).batchSize(1000)).toBe(50);
    expect(new RateLimiter(20).batchSize(1000)).toBe(10);
    expect(pacedBatch(5, 20)).toBe(5);
    expect(pacedBatch(1000, 1_000_000)).toBe(1000);
  });

  it('acquire waits for its slot and stops when aborted', async () => {
    const l = new RateLimiter(20); // 10 keys = 0.5 s
    const ac = new AbortController();
    await l.acquire(10, ac.signal);
    const started = performance.now();
    await l.acquire(10, ac.signal);
    expect(performance.now() - started).toBeGreaterThan(300);
    const pending = l.acquire(10, ac.signal);
    ac.abort();
    await expect(pending).rejects.toThrow(/Interrupted/);
  });
});
