import { describe, expect, it } from 'vitest';
import { safe } from '../../src/cli/output.js';
import { barLayout, fmtCount, fmtEta, shownTotal } from '../../src/cli/progress.js';

describe('safe(): untrusted text cannot drive the terminal', () => {
  it('escapes newlines, escape sequences, C1 controls and bidi overrides; keeps printable text', () => {
    expect(safe('ai:jobs:x\nbackfill complete: 0 scanned … OK')).toBe('ai:jobs:x\\x0abackfill complete: 0 scanned … OK');
    expect(safe('\u001b[2J\u001b[31mred')).toBe('\\x1b[2J\\x1b[31mred');
    expect(safe('a\u009bb\u007fc\rd')).toBe('a\\x9bb\\x7fc\\x0dd');
    expect(safe('name\u202egpj.exe')).toBe('name\\u202egpj.exe');
    expect(safe('café – 日本 ok')).toBe('café – 日本 ok');
    // Whatever the input, the output is one line without control characters.
    // eslint-disable-next-line no-control-regex -- checking that no control character is left is the point
    for (let c = 0; c < 0xa0; c++) expect(safe(String.fromCharCode(c))).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });
});

describe('progress numbers are honest', () => {
  it('never shows an estimate below the count done, and marks it as one', () => {
    expect(shownTotal({ done: 104_476, total: 91_008 })).toBe(104_476);
    expect(fmtCount({ done: 104_476, total: 91_008, totalIsEstimate: true })).toBe('104,476/~104,476');
    expect(fmtCount({ done: 5, total: 10, totalIsEstimate: false })).toBe('5/10');
    expect(fmtCount({ done: 5, total: null, totalIsEstimate: true })).toBe('5');
  });
  it('an ETA is "--" until it can be computed, never NaN or Infinity', () => {
    expect(fmtEta(null)).toBe('--');
    expect(fmtEta(Number.NaN)).toBe('--');
    expect(fmtEta(Number.POSITIVE_INFINITY)).toBe('--');
    expect(fmtEta(42)).toBe('42s');
    expect(fmtEta(185)).toBe('3m05s');
    expect(fmtEta(3720)).toBe('1h02m');
  });
  it('at 80 columns the numbers fit and the stage name gives way', () => {
    const tail = ' 42% 1,234,567/~2,939,445 45,123/s ETA 1h02m';
    const stage = 'verify round 1/3: both layouts and the indexes';
    const l = barLayout(stage, tail, 80);
    expect(l.stage.length + 1 + l.barsize + tail.length).toBeLessThanOrEqual(80);
    expect(l.barsize).toBeGreaterThanOrEqual(10);
    expect(l.stage.endsWith('…')).toBe(true);
    // A wide terminal keeps the whole name.
    expect(barLayout(stage, tail, 200).stage).toBe(stage);
  });
});
