// Redaction acceptance on real Redis: secrets never appear in any response or
// any log line (pino output captured from a stream), other params stay visible.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Phase } from '../../src/core/phase.js';
import { startRealApi, TOKENS, waitForReadPath, type RealApi } from './api-helpers.js';

const SECRETS = ['S3CR3T-api-key', 'S3CR3T-authz', 'S3CR3T-nested-password', 'S3CR3T-apikey-in-array', 'S3CR3T-refresh', 'S3CR3T-ssn'];
const PARAMS = {
  api_key: SECRETS[0],
  Authorization: `Bearer ${SECRETS[1]}`,
  profile: { credentials: { PASSWORD: SECRETS[2] }, name: 'visible-name' },
  integrations: [{ kind: 'crm', apiKey: SECRETS[3] }, { kind: 'mail' }],
  refresh_token: SECRETS[4],
  customer: { ssn: SECRETS[5] },
  visible: 'keep-me',
};

let api: RealApi;
const responses: string[] = [];
beforeAll(async () => {
  // ORCH_SENSITIVE_KEYS extends the seed set; LOG_LEVEL=trace logs as much as possible.
  api = await startRealApi({ name: 'redact', env: { LOG_LEVEL: 'trace', ORCH_SENSITIVE_KEYS: 'ssn' } });
});
afterAll(async () => {
  await api?.close();
});

async function record(method: 'GET' | 'POST' | 'PATCH', url: string, token?: string, payload?: Record<string, unknown>) {
  const res = await api.inject(method, url, token, payload);
  responses.push(JSON.stringify(res.headers) + res.body);
  return res;
}

describe('redaction (real Redis)', () => {
  it('never returns or logs secrets, on both read paths, and keeps other params', async () => {
    const created = await record('POST', '/ai/jobs', TOKENS.a, { action: 'sync', params: PARAMS, job_id: 'r-1' });
    expect(created.statusCode).toBe(201);
    await api.moveTo(Phase.DualWrite);
    await api.service.queue.refreshPhase();
    await record('POST', '/ai/jobs', TOKENS.a, { action: 'sync', params: PARAMS, job_id: 'r-2' });
    await record('GET', '/ai/jobs/r-1', TOKENS.a);
    await record('GET', '/ai/jobs?limit=1', TOKENS.a);
    await record('PATCH', '/ai/jobs/r-2', TOKENS.a, { status: 'failed', error: 'upstream said no', result: { partial: true } });
    // Error paths: invalid bodies that carry secrets, a secret in the query string, a bad token.
    await record('POST', '/ai/jobs', TOKENS.a, { action: 'bad action', params: PARAMS });
    await record('POST', '/ai/jobs', TOKENS.a, { action: 'x', params: PARAMS, password: SECRETS[2] });
    await record('GET', `/ai/jobs?api_key=${SECRETS[0]}`, TOKENS.a);
    await record('GET', '/ai/jobs', SECRETS[1]);
    await record('PATCH', '/ai/jobs/r-1', TOKENS.a, { status: 'running', result: 'not-an-object', token: SECRETS[4] });
    await api.moveTo(Phase.ReadNew);
    await waitForReadPath(api, TOKENS.a, 'v2');
    const v2 = await record('GET', '/ai/jobs?limit=200', TOKENS.a);
    await record('GET', '/ai/jobs/r-2', TOKENS.a);
    await record('GET', '/metrics');

    // Secrets are stored (the queue keeps params as given) but never served or logged.
    expect(await api.admin.hget(api.keys.legacyJob('r-1'), 'params')).toContain(SECRETS[0]);
    const job = v2.json().jobs.find((j: { job_id: string }) => j.job_id === 'r-2');
    expect(job.params).toEqual({
      api_key: '***REDACTED***',
      Authorization: '***REDACTED***',
      // `credentials` is itself a sensitive name now: the whole object goes.
      profile: { credentials: '***REDACTED***', name: 'visible-name' },
      integrations: [{ kind: 'crm', apiKey: '***REDACTED***' }, { kind: 'mail' }],
      refresh_token: '***REDACTED***',
      customer: { ssn: '***REDACTED***' },
      visible: 'keep-me',
    });
    // Status and timestamps as stored (timestamps as ISO-8601); the result went through the same redaction.
    expect(job).toMatchObject({ status: 'failed', result: { partial: true } });
    expect(job.created_at).toMatch(/^\d{4}-\d\d-\d\dT/);

    const logText = api.logs.text();
    expect(api.logs.lines.length).toBeGreaterThan(20);
    for (const line of api.logs.lines) expect(() => JSON.parse(line)).not.toThrow();
    for (const secret of [...SECRETS, TOKENS.a]) {
      for (const r of responses) expect(r).not.toContain(secret);
      expect(logText).not.toContain(secret);
    }
    expect(responses.join('\n')).toContain('keep-me');
    // Every request line carries the request id.
    const reqLines = api.logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'incoming request');
    expect(reqLines.length).toBeGreaterThan(5);
    for (const l of reqLines) expect(l.request_id).toBeTruthy();
  });

  it('logs that a cursor secret was generated, never the secret', () => {
    expect(api.config.cursorSecretGenerated).toBe(true);
    const secret = api.config.cursorSecrets[0]!;
    const text = api.logs.text();
    expect(text).toContain('generated a random cursor secret');
    for (const enc of ['hex', 'base64', 'base64url', 'latin1'] as const) expect(text).not.toContain(secret.toString(enc));
  });
});
