import { describe, expect, it } from 'vitest';
import { createRedactor, redactRecord, redactUrlCredentials, REDACTED, sensitiveKeysFromEnv } from '../../src/core/redact.js';

const redact = createRedactor();

/** Every value of the issue's list (#10.3) came back in clear before this redactor. */
const ISSUE_KEYS = [
  'client_secret',
  'db_password',
  'passwd',
  'pwd',
  'private_key',
  'aws_secret_access_key',
  'api-key',
  'x-api-key',
  'accessToken',
  'session_token',
  'pass',
  'Cookie',
];

describe('central redaction: keys', () => {
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
  });

  it('masks every key of the issue list, and the families around them', () => {
    const more = [
      'set-cookie',
      'sessionid',
      'SESSION ID',
      'secretKey',
      'accessKey',
      'signing_key',
      'Proxy-Authorization',
      'x_auth_token',
      'auth',
      'bearer',
      'signature',
      'passphrase',
      'pass_hash',
      'smtpPass',
      'dbpass',
      'stripe_key',
      'openai_key',
      'tls-key',
      'webhook_url',
      'connection_string',
      'card_pin',
      'otp',
      'mfa_code',
      'github_pat',
      'jwt',
      'credentials',
      'encryption-key',
      'hmacSecret',
      'seed_phrase',
      'mnemonic',
    ];
    for (const key of [...ISSUE_KEYS, ...more]) {
      const out = redact({ [key]: 'value-that-must-go', nested: [{ [key]: { deep: 'value-that-must-go' } }] });
      expect(JSON.stringify(out), key).not.toContain('value-that-must-go');
    }
  });

  it('keeps obviously safe keys visible (and says which ones in docs/api.md)', () => {
    const safe = {
      author: 'Ada',
      authorName: 'Ada',
      authority: 'example.org',
      passenger_count: 3,
      passport_country: 'FR',
      bypass_cache: true,
      compass: 'N',
      key: 'report.pdf',
      keyword: 'invoice',
      idempotency_key: 'idem-1',
      cache_key: 'c-1',
      sort_key: 'created',
      public_key: 'ssh-ed25519 AAAA',
      max_tokens: 256,
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
      monkey: 'business',
    };
    expect(redact(safe)).toEqual(safe);
    // A counter name holding something that is not a number is still masked.
    expect(redact({ max_tokens: 'abc-secret' })).toEqual({ max_tokens: REDACTED });
  });

  it('is extensible by configuration (normalised, matched as a fragment)', () => {
    expect(sensitiveKeysFromEnv({ ORCH_SENSITIVE_KEYS: ' SSN, card_number ,' })).toEqual(['ssn', 'card_number']);
    const r = createRedactor(['ssn', 'card_number']);
    expect(r({ SSN: '1', customer_ssn: '2', 'Card-Number': '3', other: '4' })).toEqual({
      SSN: REDACTED,
      customer_ssn: REDACTED,
      'Card-Number': REDACTED,
      other: '4',
    });
    expect(redact({ SSN: '1' })).toEqual({ SSN: '1' });
  });
});

describe('central redaction: values', () => {
  it('redacts JSON held in a string, at any depth, keeping its formatting', () => {
    const inner = JSON.stringify({ user: 'u', password: 'pw-in-json', deeper: JSON.stringify({ token: 'tok-in-json-in-json' }) });
    const out = redact({ payload: inner, list: [`${inner}`] });
    const text = JSON.stringify(out);
    expect(text).not.toMatch(/pw-in-json|tok-in-json-in-json/);
    expect(JSON.parse(out.payload)).toMatchObject({ user: 'u', password: REDACTED });
  });

  it('masks credentials inside URLs anywhere in a string', () => {
    const cases: Array<[string, string]> = [
      ['see redis://:pw1-secret@cache:6379/0 now', 'pw1-secret'],
      ['postgres://app:pw2-secret@db.internal/app?sslmode=require', 'pw2-secret'],
      ['https://api.example.com/v1?a=1&access_token=tok3-secret&b=2', 'tok3-secret'],
      ['redis://cache:6379?password=pw4-secret', 'pw4-secret'],
      ['https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/org/repo.git', 'ghp_abcdefghijklmnopqrstuvwxyz0123'],
      ['https://app.example.com/cb#access_token=tok5-secret&state=x', 'tok5-secret'],
      ['https://maps.example.com/api?key=AIzaSyA-key6-secret', 'key6-secret'],
      ['redis://:p@ss/word-7-secret@host:6379', 'word-7-secret'],
      ['amqp://user:pw8%zz-secret@mq', 'pw8%zz-secret'],
    ];
    for (const [value, secret] of cases) {
      const out = redact({ note: value });
      expect(out.note, value).not.toContain(secret);
    }
    expect(redactUrlCredentials('redis://user:s3cret@h:6380/2')).toBe('redis://user:***@h:6380/2');
    expect(redactUrlCredentials('https://h/x?a=1&b=2')).toBe('https://h/x?a=1&b=2');
  });

  it('masks Bearer/Basic credentials, key=value pairs, PEM keys, JWTs and known token formats in free text', () => {
    const texts: Array<[string, string]> = [
      ['upstream said: Authorization: Bearer abcDEF123456789xyz', 'abcDEF123456789xyz'],
      ['sent Basic dXNlcjpwYXNzd29yZA== to proxy', 'dXNlcjpwYXNzd29yZA=='],
      ['login failed for user=bob password=hunter2-x host=db', 'hunter2-x'],
      ['config: {"api_key": "k-in-text-1", "half": ', 'k-in-text-1'],
      ["client_secret: 'cs-quoted-2'", 'cs-quoted-2'],
      ['-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----', 'MIIEabc'],
      ['token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-part-3 used', 'eyJzdWIiOiIxIn0'],
      ['key sk_live_abcdefghij0123456789 leaked', 'sk_live_abcdefghij0123456789'],
      ['aws AKIAABCDEFGHIJKLMNOP there', 'AKIAABCDEFGHIJKLMNOP'],
    ];
    for (const [value, secret] of texts) expect(redact({ error: value }).error, value).not.toContain(secret);
    expect(redact({ message: 'plain words stay: 3 jobs, state=ok' })).toEqual({ message: 'plain words stay: 3 jobs, state=ok' });
  });

  it('never throws and stays bounded on hostile input', () => {
    let deep: Record<string, unknown> = { password: 'x-deep' };
    for (let i = 0; i < 5000; i++) deep = { d: deep };
    expect(JSON.stringify(redact(deep))).not.toContain('x-deep');
    const deepText = `${'['.repeat(20000)}{"password":"deep-text-secret"}${']'.repeat(20000)}`;
    const out = redact.text(deepText);
    expect(out).not.toContain('deep-text-secret');
    expect(out.length).toBeLessThan(deepText.length + 100);
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(() => redact(cyclic)).not.toThrow();
    for (const s of ['{"a":', '[[[', '"\\', 'a'.repeat(100000) + '=', `${'k='.repeat(50000)}`]) expect(() => redact.text(s)).not.toThrow();
  });
});

describe('redactRecord (verify reports)', () => {
  it('redacts stored fields: params, result and error in depth, sensitive fields, non-UTF-8 as base64', () => {
    const out = redactRecord({
      params: Buffer.from(JSON.stringify({ api_key: 'sk', q: 'visible' })),
      result: Buffer.from(JSON.stringify({ db: { password: 'res-pw' }, ok: true })),
      error: Buffer.from('connect redis://:err-pw@h failed'),
      token: Buffer.from('tok'),
      status: Buffer.from('done'),
      blob: Buffer.from([0xff, 0x00]),
    });
    expect(out.params).toBe(JSON.stringify({ api_key: REDACTED, q: 'visible' }));
    expect(JSON.stringify(out)).not.toMatch(/res-pw|err-pw|"sk"|"tok"/);
    expect(out.token).toBe(REDACTED);
    expect(out.status).toBe('done');
    expect(out.blob).toEqual({ base64: Buffer.from([0xff, 0x00]).toString('base64') });
    expect(redactRecord({ params: Buffer.from('not json password=1') }).params).toBe(REDACTED);
    expect(redactRecord(new Map([['params', Buffer.from('{}')]]))).toEqual({ params: '{}' });
  });
});
