/**
 * The guard flags (src/cli/guard-flags.ts): full-match values, `off`, per-op
 * defaults (memory and replica lag on, latency opt-in, cleanup's memory guard
 * off), and a critical level below its throttle level refused as a usage error.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ExitCode } from '../../src/core/errors.js';
import { guardFlagFields, guardSettings, parseLag, parseMs, parsePct } from '../../src/cli/guard-flags.js';
import { parseFlags } from '../../src/cli/options.js';

const schema = z.object(guardFlagFields);

describe('guard flag values', () => {
  it('percentages: (0, 100] or off, nothing else', () => {
    expect(parsePct('90')).toBe(90);
    expect(parsePct('97.5')).toBe(97.5);
    expect(parsePct('100')).toBe(100);
    expect(parsePct('off')).toBe('off');
    for (const bad of ['0', '101', '90%', ' 90', '90 ', '9e1', '-5', 'OFF', '', '1.234']) expect(parsePct(bad), bad).toBeNull();
  });

  it('milliseconds: positive, or off', () => {
    expect(parseMs('20')).toBe(20);
    expect(parseMs('2.5')).toBe(2.5);
    expect(parseMs('off')).toBe('off');
    for (const bad of ['0', '20ms', '1e3', '', '-1', '700000']) expect(parseMs(bad), bad).toBeNull();
  });

  it('replica lag: seconds (s, m) or bytes (b, kb, mb, gb), or off', () => {
    expect(parseLag('10s')).toEqual({ value: 10, unit: 's' });
    expect(parseLag('2m')).toEqual({ value: 120, unit: 's' });
    expect(parseLag('64mb')).toEqual({ value: 64 * 1024 * 1024, unit: 'bytes' });
    expect(parseLag('512kb')).toEqual({ value: 512 * 1024, unit: 'bytes' });
    expect(parseLag('1000b')).toEqual({ value: 1000, unit: 'bytes' });
    expect(parseLag('off')).toBe('off');
    for (const bad of ['10', '0s', '10 s', '10S', '1.5s', '64MB', '10sec', 'mb', '']) expect(parseLag(bad), bad).toBeNull();
  });

  it('a bad value is a usage error naming the flag and the forms', () => {
    const err = (() => {
      try {
        parseFlags(schema, { maxReplicaLag: '10 seconds' });
        return null;
      } catch (e) {
        return e as Error & { exitCode: number };
      }
    })();
    expect(err?.exitCode).toBe(ExitCode.Usage);
    expect(err?.message).toMatch(
      /^--max-replica-lag: expected seconds behind \(e\.g\. 10s, 2m\) or bytes behind \(e\.g\. 64mb, 512kb\), or off, got "10 seconds"/,
    );
    expect(() => parseFlags(schema, { metricsFile: '/nonexistent-dir-xyz/m.prom' })).toThrow(/--metrics-file: expected a file in an existing directory/);
  });
});

describe('guardSettings', () => {
  it('defaults: replica lag 10s on, latency off, memory 90/95 on for the runs that add memory only', () => {
    expect(guardSettings('backfill', {})).toEqual({
      memory: { throttlePct: 90, criticalPct: 95 },
      latency: { throttleMs: null, criticalMs: null },
      replicaLag: { throttle: { value: 10, unit: 's' }, critical: null },
    });
    expect(guardSettings('reverse-backfill', {}).memory).toEqual({ throttlePct: 90, criticalPct: 95 });
    expect(guardSettings('backfill', {}, false).memory).toEqual({ throttlePct: null, criticalPct: null }); // a dry run
    expect(guardSettings('verify', {}).memory).toEqual({ throttlePct: null, criticalPct: null });
    expect(guardSettings('verify', {}, true).memory).toEqual({ throttlePct: 90, criticalPct: 95 }); // --repair
    expect(guardSettings('cleanup', {}).memory).toEqual({ throttlePct: null, criticalPct: null });
    expect(guardSettings('cleanup', {}, true).memory).toEqual({ throttlePct: null, criticalPct: null });
    expect(guardSettings('cleanup', { maxMemoryPct: 80 }).memory).toEqual({ throttlePct: 80, criticalPct: null });
  });

  it('off turns a level off; flags set levels', () => {
    const s = guardSettings(
      'backfill',
      parseFlags(schema, { maxMemoryPct: 'off', criticalMemoryPct: '97', maxLatencyMs: '5', maxReplicaLag: '64mb', criticalReplicaLag: '1gb' }),
    );
    expect(s).toEqual({
      memory: { throttlePct: null, criticalPct: 97 },
      latency: { throttleMs: 5, criticalMs: null },
      replicaLag: { throttle: { value: 64 * 1024 ** 2, unit: 'bytes' }, critical: { value: 1024 ** 3, unit: 'bytes' } },
    });
  });

  it('a critical level below its throttle level is a usage error (exit 2)', () => {
    expect(() => guardSettings('backfill', { maxMemoryPct: 90, criticalMemoryPct: 80 })).toThrow(/--critical-memory-pct 80 is below --max-memory-pct 90/);
    expect(() => guardSettings('backfill', { maxLatencyMs: 20, criticalLatencyMs: 10 })).toThrow(/--critical-latency-ms 10 is below --max-latency-ms 20/);
    expect(() => guardSettings('backfill', { maxReplicaLag: { value: 30, unit: 's' }, criticalReplicaLag: { value: 10, unit: 's' } })).toThrow(
      /--critical-replica-lag 10s is below --max-replica-lag 30s/,
    );
    // Different units cannot be compared: both apply.
    expect(
      guardSettings('backfill', { maxReplicaLag: { value: 30, unit: 's' }, criticalReplicaLag: { value: 10, unit: 'bytes' } }).replicaLag.critical,
    ).toEqual({ value: 10, unit: 'bytes' });
  });
});
