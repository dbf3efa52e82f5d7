import { describe, expect, it } from 'vitest';
import { createRedactor, redactRecord, REDACTED, sensitiveKeysFromEnv } from '../../src/core/redact.js';

describe('central redaction', () => {
  const redact = createRedactor();
  it('masks the seed keys in any case, at any depth, inside arrays, and keeps the rest', () => {
    const input = {
      api_key: 'sk_live_1',
      Authorization: 'Bearer x',
      nested: { deeper: { PASSWORD: 'p' }, list: [{ apiKey: 'k' }, { ok: 1 }] },
      refresh_token: 'r',
      query: 'visible',
      n: 3,
    };
    const out = redact(input);
    expect(out).toEqual({
      api_key: REDACTED,
      Authorization: REDACTED,
      nested: { deeper: { PASSWORD: REDACTED }, list: [{ apiKey: REDACTED }, { ok: 1 }] },
      refresh_token: REDACTED,
      query: 'visible',
      n: 3,
    });
    expect(input.api_key).toBe('sk_live_1');
    expect(JSON.stringify(out)).not.toMatch(/sk_live|Bearer x|"p"|"k"|"r"/);
  });
  it('is extensible by configuration', () => {
    expect(sensitiveKeysFromEnv({ ORCH_SENSITIVE_KEYS: ' SSN, card_number ,' })).toEqual(['ssn', 'card_number']);
    expect(createRedactor(['ssn'])({ SSN: '1', other: '2' })).toEqual({ SSN: REDACTED, other: '2' });
  });
  it('survives hostile depth', () => {
    let deep: Record<string, unknown> = { password: 'x' };
    for (let i = 0; i < 500; i++) deep = { d: deep };
    expect(JSON.stringify(redact(deep))).not.toMatch(/"x"/);
  });
  it('redacts stored records for reports: params in depth, sensitive fields, non-UTF-8 as base64', () => {
    const out = redactRecord({
      params: Buffer.from(JSON.stringify({ api_key: 'sk', q: 'visible' })),
      token: Buffer.from('tok'),
      status: Buffer.from('done'),
      blob: Buffer.from([0xff, 0x00]),
    });
    expect(out.params).toBe(JSON.stringify({ api_key: REDACTED, q: 'visible' }));
    expect(out.token).toBe(REDACTED);
    expect(out.status).toBe('done');
    expect(out.blob).toEqual({ base64: Buffer.from([0xff, 0x00]).toString('base64') });
    expect(redactRecord({ params: Buffer.from('not json password=1') }).params).toBe(REDACTED);
  });
});
