/**
 * `status --watch` (src/cli/commands/status.ts): on a terminal each frame
 * moves the cursor back over the previous one and clears below it, with lines
 * cut to the width (a wrapped line would throw the count off) and the frame to
 * the height; in a pipe, one plain line per refresh. And the run-in-flight lines.
 */
import { describe, expect, it } from 'vitest';
import { fitLine, runLines, watchFrame, watchLine } from '../../src/cli/commands/status.js';
import { Output } from '../../src/cli/output.js';
import type { RunInFlight } from '../../src/ops/run-heartbeat.js';
import type { StatusResult } from '../../src/ops/status.js';

const ESC = '\x1b';

const run: RunInFlight = {
  id: 'vm:42:backfill',
  op: 'backfill',
  command: 'backfill --rate 500',
  actor: 'alice@vm',
  host: 'vm',
  pid: 42,
  startedAt: 1_000_000,
  at: 1_030_000,
  ttlMs: 5000,
  stage: 'backfill',
  done: 12_345,
  total: 20_000,
  totalIsEstimate: true,
  keysPerSecond: 480,
  etaMs: 16_000,
  ceiling: 500,
  allowedRate: 250,
  state: 'paused',
  reason: 'paused: replica 10.0.0.2:6379 of 10.0.0.1:6379: last ACK 3s ago, 1.0 MB behind > 1s; resumes by itself',
  holding: ['replica-lag'],
  guards: [],
  throttle: { pausedMs: 4200, throttledMs: 800, pauses: 1, byGuard: { 'replica-lag': { pausedMs: 4200, throttledMs: 800, pauses: 1 } } },
};

describe('status --watch on a terminal', () => {
  it('the first frame clears below the cursor; the next goes back up over the previous one first', () => {
    const first = watchFrame(['a', 'b', 'c'], 0, 80, 24);
    expect(first).toEqual({ text: `\r${ESC}[Ja\nb\nc\n`, height: 3 });
    const next = watchFrame(['a', 'b'], first.height, 80, 24);
    expect(next.text.startsWith(`${ESC}[3A\r${ESC}[J`)).toBe(true);
    expect(next.height).toBe(2);
  });

  it('cuts lines to the width (dropping colours when it cuts) and the frame to the height', () => {
    expect(fitLine(`${ESC}[32mshort${ESC}[39m`, 10)).toBe(`${ESC}[32mshort${ESC}[39m`);
    expect(fitLine(`${ESC}[32m${'x'.repeat(20)}${ESC}[39m`, 10)).toBe(`${'x'.repeat(9)}…`);
    const f = watchFrame(
      Array.from({ length: 50 }, (_, i) => `line ${i}`),
      0,
      80,
      10,
    );
    expect(f.height).toBe(9);
    expect(f.text).toContain('… 42 more line(s)');
  });
});

describe('the run in flight', () => {
  it('status shows operation, holder, progress, rate with its ceiling, ETA, throttle state and why', () => {
    const out = new Output(false);
    const lines = runLines(run, 1_031_000, out);
    expect(lines[0]).toEqual([
      'run',
      'backfill by alice@vm pid 42@vm, started 31s ago: backfill 12,345/~20,000 (61%), 480 keys/s (ceiling 500), ETA -- (paused)',
    ]);
    expect(lines[1]![0]).toBe('throttle');
    expect(lines[1]![1]).toMatch(/paused.* — paused: replica 10\.0\.0\.2:6379 .*> 1s; resumes by itself \(held back 5\.0s so far, 1 pause\(s\)\)$/);
  });

  it('in a pipe, one plain line per refresh', () => {
    const st = {
      serverTime: Date.UTC(2026, 0, 1),
      phase: 'dual-write',
      epoch: 1,
      runs: [run],
      lock: null,
      control: { paused: false, rate: 500, by: 'bob', at: 1, reason: null },
    } as unknown as StatusResult;
    expect(watchLine(st)).toBe(
      '2026-01-01T00:00:00.000Z phase dual-write epoch 1; backfill 12,345/~20,000 (61%) 480 keys/s ETA -- paused (paused: replica 10.0.0.2:6379 of 10.0.0.1:6379: last ACK 3s ago, 1.0 MB behind > 1s; resumes by itself); control: rate 500 keys/s by bob',
    );
    expect(watchLine({ ...st, runs: [], control: null })).toBe('2026-01-01T00:00:00.000Z phase dual-write epoch 1; lock free; no run in flight');
  });
});
