// Property test of the central redaction (issue #10.3): secret-bearing keys from
// the families of the issue, spelled in every style, at random depths and
// positions (objects, arrays, JSON held in a string), and secrets inside
// values (URLs, Bearer/Basic, key=value text). No secret may survive in the
// redactor's output, in verify's redactRecord, in API responses or in logs;
// a visible marker beside the secret must survive (no blanket masking).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedactor, redactRecord } from '../../src/core/redact.js';
import { createLogger } from '../../src/api/logger.js';
import { bearer, captureStream, memoryApi, TOKENS, type MemoryApi } from './api-helpers.js';

interface Family {
  words: string[];
  /** May be written as one lower-case word with affixes glued on (`dbpassword`). */
  flat: boolean;
}

const FAMILIES: Family[] = [
  ...[
    ['password'],
    ['passwd'],
    ['pwd'],
    ['pass'],
    ['passphrase'],
    ['passcode'],
    ['secret'],
    ['client', 'secret'],
    ['token'],
    ['access', 'token'],
    ['refresh', 'token'],
    ['session', 'token'],
    ['id', 'token'],
    ['api', 'key'],
    ['x', 'api', 'key'],
    ['private', 'key'],
    ['secret', 'key'],
    ['access', 'key'],
    ['signing', 'key'],
    ['aws', 'secret', 'access', 'key'],
    ['encryption', 'key'],
    ['master', 'key'],
    ['credential'],
    ['credentials'],
    ['cookie'],
    ['set', 'cookie'],
    ['authorization'],
    ['proxy', 'authorization'],
    ['auth'],
    ['auth', 'header'],
    ['session'],
    ['session', 'id'],
    ['bearer'],
    ['signature'],
    ['webhook', 'url'],
    ['connection', 'string'],
    ['jwt'],
    ['hmac'],
  ].map((words) => ({ words, flat: true })),
  // Matched as words only: glued to other letters they could be anything (`spin`, `despot`).
  ...[['pin'], ['otp'], ['sig'], ['pw'], ['cvv'], ['stripe', 'key'], ['tls', 'key'], ['openai', 'key']].map((words) => ({ words, flat: false })),
];
const PREFIXES = ['', 'db', 'smtp', 'admin', 'my', 'svc', 'prod', 'user', 'new'];
const SUFFIXES = ['', 'value', 'v2', 'raw', 'b64'];
const STYLES = ['snake', 'kebab', 'camel', 'pascal', 'upper', 'spaced', 'dotted', 'flat'] as const;

function spell(words: string[], style: (typeof STYLES)[number]): string {
  const cap = (w: string): string => w.charAt(0).toUpperCase() + w.slice(1);
  switch (style) {
    case 'snake':
      return words.join('_');
    case 'kebab':
      return words.join('-');
    case 'camel':
      return words.map((w, i) => (i === 0 ? w : cap(w))).join('');
    case 'pascal':
      return words.map(cap).join('');
    case 'upper':
      return words.join('_').toUpperCase();
    case 'spaced':
      return words.join(' ');
    case 'dotted':
      return words.join('.');
    case 'flat':
      return words.join('');
  }
}

const sensitiveKey = fc
  .record({
    family: fc.constantFrom(...FAMILIES),
    prefix: fc.constantFrom(...PREFIXES),
    suffix: fc.constantFrom(...SUFFIXES),
    style: fc.constantFrom(...STYLES),
  })
  .filter(({ family, prefix, suffix, style }) => style !== 'flat' || family.flat || (prefix === '' && suffix === ''))
  // `stripe_key_value` is still a key word, but `stripekeyvalue` is no longer recognisable: no suffix glued to a …key name.
  .filter(
    ({ family, suffix, style }) =>
      !(
        style === 'flat' &&
        suffix !== '' &&
        family.words[family.words.length - 1] === 'key' &&
        !['api', 'private', 'secret', 'access', 'signing', 'encryption', 'master'].includes(family.words[family.words.length - 2] ?? '')
      ),
  )
  .map(({ family, prefix, suffix, style }) =>
    spell(
      [prefix, ...family.words, suffix].filter((w) => w !== ''),
      style,
    ),
  );

const secretValue = fc.stringMatching(/^[A-Za-z0-9]{12,24}$/).map((s) => `Zq7${s}`);

/** A secret inside a value under a harmless key. */
const inValue = fc.tuple(fc.integer({ min: 0, max: 9 }), secretValue).map(([kind, s]) => {
  const forms = [
    `redis://:${s}@cache.internal:6379/0`,
    `postgres://app:${s}@db.internal:5432/app?sslmode=require`,
    `https://api.example.com/v1/items?page=2&access_token=${s}`,
    `https://hooks.example.com/cb?password=${s}#frag`,
    `https://user:${s}@example.com/path`,
    `Authorization: Bearer ${s}`,
    `Basic ${s}`,
    `login failed: user=bob password=${s} host=db`,
    `{"note": "x", "client_secret": "${s}"}`,
    `api_key: '${s}'`,
  ];
  return { text: forms[kind]!, secret: s };
});

/** Harmless keys used to build the path down to the secret. */
const safeKey = fc.constantFrom('data', 'items', 'config', 'meta', 'options', 'payload', 'child', 'steps', 'author', 'passenger_count', 'context');

type Step = { kind: 'object'; key: string } | { kind: 'array'; before: number } | { kind: 'json' };
const step: fc.Arbitrary<Step> = fc.oneof(
  safeKey.map((key) => ({ kind: 'object' as const, key })),
  fc.integer({ min: 0, max: 2 }).map((before) => ({ kind: 'array' as const, before })),
  fc.constant({ kind: 'json' as const }),
);

interface Case {
  doc: Record<string, unknown>;
  secrets: string[];
  keep: string;
  key: string;
  text: string;
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    key: sensitiveKey,
    secret: secretValue,
    shape: fc.constantFrom('string', 'object', 'array'),
    valueSecret: inValue,
    path: fc.array(step, { maxLength: 7 }),
    keep: fc.stringMatching(/^[a-z]{8}$/).map((s) => `KEEP-${s}`),
  })
  .map(({ key, secret, shape, valueSecret, path, keep }) => {
    const held = shape === 'string' ? secret : shape === 'object' ? { inner: secret, more: [secret] } : [secret, { x: secret }];
    let node: unknown = { [key]: held, note: valueSecret.text, visible: keep };
    for (const s of [...path].reverse()) {
      if (s.kind === 'object') node = { [s.key]: node, n: 1 };
      else if (s.kind === 'array') node = [...Array.from({ length: s.before }, (_, i) => ({ filler: i })), node];
      else node = JSON.stringify(node);
    }
    const doc = typeof node === 'object' && node !== null && !Array.isArray(node) ? (node as Record<string, unknown>) : { root: node };
    return { doc, secrets: [secret, valueSecret.secret], keep, key, text: valueSecret.text };
  });

function expectClean(text: string, c: Case, where: string): void {
  for (const s of c.secrets)
    expect(text.includes(s), `${where}: secret ${s} survived (key ${JSON.stringify(c.key)}, value ${JSON.stringify(c.text)})`).toBe(false);
}

describe('redaction property (fast-check)', () => {
  const redact = createRedactor();

  it('no secret survives the redactor, and the visible marker does', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const out = JSON.stringify(redact(c.doc));
        expectClean(out, c, 'redactor');
        expect(out).toContain(c.keep);
      }),
      { numRuns: 400 },
    );
  });

  it('no secret survives redactRecord (verify reports)', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const out = redactRecord({ params: JSON.stringify(c.doc), result: JSON.stringify({ r: c.doc }), error: `failed: ${c.text}`, [c.key]: c.secrets[0]! });
        expectClean(JSON.stringify(out), c, 'redactRecord');
        expect(String(out.params)).toContain(c.keep);
      }),
      { numRuns: 300 },
    );
  });

  it('no secret survives in log lines: objects, messages, errors', () => {
    const logs = captureStream();
    const logger = createLogger('trace', redact, logs);
    fc.assert(
      fc.property(caseArb, (c) => {
        const from = logs.lines.length;
        logger.info({ job: c.doc, [c.key]: c.secrets[0] }, `processing ${c.text}`);
        logger.error({ err: new Error(`upstream failed: ${c.text}`) }, 'request failed');
        const text = logs.lines.slice(from).join('');
        expectClean(text, c, 'logs');
        expect(text).toContain(c.keep);
      }),
      { numRuns: 200 },
    );
  });

  describe('API responses and request logs', () => {
    let api: MemoryApi;
    beforeAll(async () => {
      api = await memoryApi();
    });
    afterAll(async () => {
      await api.app.close();
    });

    it('no secret comes back from POST, PATCH, GET or LIST, or reaches the logs through the query string', async () => {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          const id = `prop-${n++}`;
          const from = api.logs.lines.length;
          const bodies: string[] = [];
          const created = await api.app.inject({
            method: 'POST',
            url: '/ai/jobs',
            headers: bearer(TOKENS.a),
            payload: { action: 'sync', params: c.doc, job_id: id },
          });
          expect(created.statusCode, created.body).toBe(201);
          bodies.push(created.body);
          const patched = await api.app.inject({
            method: 'PATCH',
            url: `/ai/jobs/${id}`,
            headers: bearer(TOKENS.a),
            payload: { status: 'failed', result: { r: c.doc }, error: `failed: ${c.text}` },
          });
          expect(patched.statusCode, patched.body).toBe(200);
          bodies.push(patched.body);
          const got = await api.app.inject({ method: 'GET', url: `/ai/jobs/${id}`, headers: bearer(TOKENS.a) });
          bodies.push(got.body);
          const listed = await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=200', headers: bearer(TOKENS.a) });
          // Only this case's job: the list also holds the jobs of earlier cases (and of shrinking).
          const mine = listed.json<{ jobs: Array<{ job_id: string }> }>().jobs.find((j) => j.job_id === id);
          expect(mine).toBeDefined();
          bodies.push(JSON.stringify(mine));
          // A secret in the query string: refused (unknown parameter), and logged with its value masked.
          const q = await api.app.inject({
            method: 'GET',
            url: `/ai/jobs?${encodeURIComponent(c.key)}=${c.secrets[0]}&note=${encodeURIComponent(c.text)}`,
            headers: bearer(TOKENS.a),
          });
          expect(q.statusCode).toBe(400);
          bodies.push(q.body);
          const all = bodies.join('\n');
          expectClean(all, c, 'responses');
          expectClean(api.logs.lines.slice(from).join(''), c, 'request logs');
          expect(got.body).toContain(c.keep);
        }),
        { numRuns: 60 },
      );
    });
  });
});
