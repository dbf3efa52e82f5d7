import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ValidationError } from '../../src/core/errors.js';
import {
  durationFlag,
  fmtDuration,
  forceFlag,
  fractionFlag,
  intFlag,
  orNull,
  parseFlags,
  rateFlag,
  shardFlag,
  switchFlag,
  withDefault,
} from '../../src/cli/options.js';

/** Parses one flag value through a one-field schema, as a command does. */
function flag<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const parsed = parseFlags(z.object({ someFlag: schema }), { someFlag: value }) as { someFlag: z.output<T> };
  return parsed.someFlag;
}

describe('flag parsers (one schema per command; a failure names the flag, exit 2)', () => {
  it('durations', () => {
    expect(flag(durationFlag(), '500ms')).toBe(500);
    expect(flag(durationFlag(), '30s')).toBe(30_000);
    expect(flag(durationFlag(), '15m')).toBe(900_000);
    expect(flag(durationFlag(), '1h')).toBe(3_600_000);
    expect(flag(durationFlag(), '0s')).toBe(0);
    for (const bad of ['', '1x', '-1s', '1.5h', 'h']) expect(() => flag(durationFlag(), bad)).toThrow(ValidationError);
    expect(fmtDuration(3_600_000)).toBe('1h');
    expect(fmtDuration(1500)).toBe('1500ms');
  });
  it('fractions for --sample', () => {
    expect(flag(fractionFlag(), '0.25')).toBe(0.25);
    expect(flag(fractionFlag(), '1')).toBe(1);
    for (const bad of ['0', '2', '-0.1', 'abc', '1.5', '']) expect(() => flag(fractionFlag(), bad)).toThrow(ValidationError);
  });
  it('rates for --rate', () => {
    expect(flag(rateFlag(), '5000')).toBe(5000);
    for (const bad of ['-1', '0', 'fast', '']) expect(() => flag(rateFlag(), bad)).toThrow(/^--some-flag: expected a positive number/);
  });
  it('shards for --shard', () => {
    expect(flag(shardFlag(), '1/2')).toEqual({ index: 1, count: 2 });
    for (const bad of ['5/2', '2/2', '0/0', '1', 'a/b', '-1/2']) expect(() => flag(shardFlag(), bad)).toThrow(ValidationError);
  });
  it('bounded integers, defaults and absent flags', () => {
    expect(flag(intFlag(1, 10), '10')).toBe(10);
    for (const bad of ['0', '11', '1.5', 'x', '']) expect(() => flag(intFlag(1, 10), bad)).toThrow(/--some-flag: expected an integer from 1 to 10/);
    expect(flag(withDefault(intFlag(1, 10), 7), undefined)).toBe(7);
    expect(flag(orNull(intFlag(1, 10)), undefined)).toBeNull();
    expect(flag(switchFlag, undefined)).toBe(false);
    expect(flag(switchFlag, true)).toBe(true);
  });
  it('--force names gates: bare or unknown names are usage errors that list them', () => {
    expect(flag(forceFlag, undefined)).toEqual([]);
    expect(flag(forceFlag, 'verify,soak,verify')).toEqual(['verify', 'soak']);
    expect(() => flag(forceFlag, true)).toThrow(/verify, soak, legacy-complete, writers/);
    expect(() => flag(forceFlag, 'everything')).toThrow(/Unknown gate "everything"/);
  });
});
