/**
 * Reading the signals (src/ops/guards/signals.ts) and judging them
 * (src/ops/guards/guards.ts): INFO parsing, levels with `>` for throttle and
 * `≥` for critical, a replica that is not online, unreadable signals, p99.
 */
import { describe, expect, it } from 'vitest';
import { evaluateLatency, evaluateMemory, evaluateReplicas, fmtBytes } from '../../src/ops/guards/guards.js';
import { memoryFromInfo, parseInfo, percentile, replicationFromInfo } from '../../src/ops/guards/signals.js';
import { parseOutputBuffer } from '../../src/ops/preflight.js';

const MEM = parseInfo(
  '# Memory\r\nused_memory:900\r\nused_memory_human:900B\r\nmaxmemory:1000\r\nmaxmemory_policy:noeviction\r\ntotal_system_memory:100000\r\n',
);
const REPL = parseInfo(
  '# Replication\nrole:master\nconnected_slaves:2\nslave0:ip=10.0.0.2,port=6379,state=online,offset=1000,lag=0\nslave1:ip=10.0.0.3,port=6379,state=online,offset=400,lag=12\nmaster_repl_offset:1100\n',
);

describe('INFO parsing', () => {
  it('memory and replication fields', () => {
    expect(memoryFromInfo(MEM)).toEqual({ usedBytes: 900, maxmemoryBytes: 1000, totalSystemBytes: 100000, policy: 'noeviction' });
    expect(memoryFromInfo({})).toBeNull();
    expect(replicationFromInfo(REPL)).toEqual({
      role: 'master',
      masterOffset: 1100,
      replicas: [
        { addr: '10.0.0.2:6379', state: 'online', offset: 1000, lagSeconds: 0 },
        { addr: '10.0.0.3:6379', state: 'online', offset: 400, lagSeconds: 12 },
      ],
    });
  });

  it('client-output-buffer-limit, replica class under either name', () => {
    expect(parseOutputBuffer('normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60')).toEqual({
      hard: 268435456,
      soft: 67108864,
      softSeconds: 60,
    });
    expect(parseOutputBuffer('normal 0 0 0 replica 1 2 3')).toEqual({ hard: 1, soft: 2, softSeconds: 3 });
    expect(parseOutputBuffer('normal 0 0 0')).toBeInstanceOf(Error);
  });
});

describe('memory guard', () => {
  it('over the throttle level is over; at the critical level is critical', () => {
    expect(evaluateMemory('n:1', MEM, { throttlePct: 90, criticalPct: 95 }).level).toBe('ok');
    const over = evaluateMemory('n:1', MEM, { throttlePct: 85, criticalPct: 95 });
    expect(over).toMatchObject({ level: 'over', value: 90, pauses: false });
    expect(over.text).toBe('used_memory 90.0% of maxmemory (900 B of 1000 B) on n:1 > 85%');
    expect(evaluateMemory('n:1', MEM, { throttlePct: 80, criticalPct: 90 }).level).toBe('critical');
  });

  it('without maxmemory it measures against system memory and says so', () => {
    const r = evaluateMemory('n:1', { ...MEM, maxmemory: '0' }, { throttlePct: 90, criticalPct: 95 });
    expect(r.text).toContain('of system memory (no maxmemory set)');
    expect(r.value).toBeCloseTo(0.9);
  });

  it('an INFO that fails is unreadable and pauses (fail closed)', () => {
    const r = evaluateMemory('n:1', new Error("NOPERM User u has no permissions to run the 'info' command"), { throttlePct: 90, criticalPct: 95 });
    expect(r).toMatchObject({ level: 'unreadable', pauses: true, value: null });
    expect(r.text).toBe("cannot read INFO memory on n:1: NOPERM User u has no permissions to run the 'info' command");
  });
});

describe('replica-lag guard', () => {
  it('the worst replica decides, in seconds or in bytes', () => {
    const s = evaluateReplicas('m:1', REPL, { throttle: { value: 10, unit: 's' }, critical: null });
    expect(s.level).toBe('over');
    expect(s.text).toBe('replica 10.0.0.3:6379 of m:1: last ACK 12s ago, 700 B behind > 10s');
    expect(evaluateReplicas('m:1', REPL, { throttle: { value: 1000, unit: 'bytes' }, critical: null }).level).toBe('ok');
    expect(evaluateReplicas('m:1', REPL, { throttle: { value: 500, unit: 'bytes' }, critical: { value: 700, unit: 'bytes' } }).level).toBe('critical');
  });

  it('a replica that is not online (a full sync) is over; no replica is ok', () => {
    const syncing = { ...REPL, slave0: 'ip=10.0.0.2,port=6379,state=wait_bgsave,offset=0,lag=0' };
    expect(evaluateReplicas('m:1', syncing, { throttle: { value: 100, unit: 's' }, critical: null }).text).toContain('is not online (state=wait_bgsave)');
    expect(
      evaluateReplicas('m:1', parseInfo('role:master\nconnected_slaves:0\nmaster_repl_offset:5\n'), { throttle: { value: 1, unit: 's' }, critical: null }),
    ).toMatchObject({ level: 'ok', text: 'm:1 has no replica' });
  });
});

describe('latency guard', () => {
  it('p99 of the probe against the levels; no answer yet is unreadable', () => {
    expect(evaluateLatency('n:1', { p99: 12, samples: 60, error: null }, { throttleMs: 10, criticalMs: 50 }).level).toBe('over');
    expect(evaluateLatency('n:1', { p99: 50, samples: 60, error: null }, { throttleMs: 10, criticalMs: 50 }).level).toBe('critical');
    expect(evaluateLatency('n:1', { p99: null, samples: 0, error: 'Connection is closed.' }, { throttleMs: 10, criticalMs: null })).toMatchObject({
      level: 'unreadable',
      text: 'no latency probe answer from n:1 yet: Connection is closed.',
    });
  });

  it('percentile by nearest rank', () => {
    const v = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(v, 99)).toBe(99);
    expect(percentile(v, 50)).toBe(50);
    expect(percentile([], 99)).toBeNull();
    expect(fmtBytes(64 * 1024 * 1024)).toBe('64.0 MB');
  });
});
