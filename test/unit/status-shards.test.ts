// The shard lines of `status` (src/cli/commands/status.ts) and the lock holder names (src/core/lock.ts).
import { describe, expect, it } from 'vitest';
import { shardLine, watchLine } from '../../src/cli/commands/status.js';
import { Output } from '../../src/cli/output.js';
import { holderOf, shardOfHolder, type LockInfo } from '../../src/core/lock.js';
import type { RunInFlight } from '../../src/ops/run-heartbeat.js';
import type { ShardStatus, StatusResult } from '../../src/ops/status.js';

const holder: LockInfo = {
  user: 'root',
  host: 'pod-1',
  pid: 7,
  command: 'backfill --shard 1/2',
  since: Date.UTC(2026, 0, 1),
  actor: 'orch-migrate-backfill-1-x2v',
  ttlMs: 30_000,
  remainingMs: 24_000,
  holder: 'shard:1/2',
  shard: '1/2',
};

const run = {
  id: 'pod-1:7:backfill',
  op: 'backfill',
  host: 'pod-1',
  pid: 7,
  at: 1_000_000,
  done: 500,
  total: 1000,
  totalIsEstimate: true,
  keysPerSecond: 250,
  etaMs: 2000,
  state: 'running',
} as RunInFlight;

const shard: ShardStatus = { shard: '1/2', holder, nodes: ['10.0.0.2:7000'], nodesDone: 0, scanned: 600, copied: 590, run };

describe('status: one line per live shard', () => {
  it("names the shard, its holder and lease, its masters' progress and its heartbeat", () => {
    const line = shardLine(shard, 1_000_500, new Output(false));
    expect(line).toMatch(/^1\/2 held by orch-migrate-backfill-1-x2v \(root@pod-1\) pid 7 running `backfill --shard 1\/2`/);
    expect(line).toContain('lease 24s');
    expect(line).toContain('0/1 master(s) done, 600 scanned, 590 copied');
    expect(line).toContain('250 keys/s');
  });

  it('a shard that stopped renewing says so, and when its lease frees itself', () => {
    const line = shardLine({ ...shard, holder: { ...holder, remainingMs: 4000 }, run: null }, 1_000_500, new Output(false));
    expect(line).toMatch(/probably dead, the lock frees itself in 4s/);
    expect(line).toContain('no heartbeat yet');
  });

  it('the watch line tags each run with its shard', () => {
    const r = { serverTime: 1_000_500, phase: 'dual-write', epoch: 1, control: null, lock: holder, runs: [run], shards: [shard] } as unknown as StatusResult;
    expect(watchLine(r)).toContain('backfill shard 1/2 500/~1,000 (50%)');
  });

  it('holder names: global unless a shard of more than one', () => {
    expect(holderOf(null)).toBe('global');
    expect(holderOf({ index: 0, count: 1 })).toBe('global');
    expect(holderOf({ index: 1, count: 3 })).toBe('shard:1/3');
    expect(shardOfHolder('shard:1/3')).toBe('1/3');
    expect(shardOfHolder('global')).toBeNull();
    expect(shardOfHolder('legacy')).toBeNull();
  });
});
