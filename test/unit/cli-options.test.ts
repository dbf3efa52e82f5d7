import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from 'commander';
import { durationOption, fractionOption, intOption, rateOption, shardOption } from '../../src/cli/options.js';

describe('option parsers', () => {
  it('durations', () => {
    expect(durationOption('500ms')).toBe(500);
    expect(durationOption('30s')).toBe(30_000);
    expect(durationOption('15m')).toBe(900_000);
    expect(durationOption('1h')).toBe(3_600_000);
    expect(durationOption('0s')).toBe(0);
    for (const bad of ['', '1x', '-1s', '1.5h', 'h']) expect(() => durationOption(bad)).toThrow(InvalidArgumentError);
  });
  it('fractions for --sample', () => {
    expect(fractionOption('0.25')).toBe(0.25);
    expect(fractionOption('1')).toBe(1);
    for (const bad of ['0', '2', '-0.1', 'abc', '1.5', '']) expect(() => fractionOption(bad)).toThrow(InvalidArgumentError);
  });
  it('rates for --rate', () => {
    expect(rateOption('5000')).toBe(5000);
    for (const bad of ['-1', '0', 'fast', '']) expect(() => rateOption(bad)).toThrow(/positive number/);
  });
  it('shards for --shard', () => {
    expect(shardOption('1/2')).toEqual({ index: 1, count: 2 });
    for (const bad of ['5/2', '2/2', '0/0', '1', 'a/b', '-1/2']) expect(() => shardOption(bad)).toThrow(InvalidArgumentError);
  });
  it('bounded integers', () => {
    const p = intOption(1, 10);
    expect(p('10')).toBe(10);
    for (const bad of ['0', '11', '1.5', 'x', '']) expect(() => p(bad)).toThrow(InvalidArgumentError);
  });
});
