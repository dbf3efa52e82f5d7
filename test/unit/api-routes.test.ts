import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Phase } from '../../src/core/phase.js';
import { MemoryJobQueue } from '../../src/core/memory-queue.js';
import { createRedactor } from '../../src/core/redact.js';
import { RedisUnavailableError } from '../../src/core/errors.js';
import { TokenTable } from '../../src/api/auth.js';
import { CursorSealer } from '../../src/api/cursor-envelope.js';
import { createLogger } from '../../src/api/logger.js';
import { ApiMetrics } from '../../src/api/metrics.js';
import { buildApp } from '../../src/api/server.js';
import { bearer, captureStream, memoryApi, tokenEntries, TOKENS, type MemoryApi } from './api-helpers.js';

let api: MemoryApi;
afterEach(async () => {
  await api?.app.close();
});

async function create(a: MemoryApi, token: string, body: Record<string, unknown>) {
  return a.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(token), payload: body });
}

async function pageAll(a: MemoryApi, token: string, limit: number): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 10000; i++) {
    const url: string = `/ai/jobs?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await a.app.inject({ method: 'GET', url, headers: bearer(token) });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ jobs: Array<{ job_id: string }>; count: number; next_cursor: string | null }>();
    expect(body.jobs.length).toBeLessThanOrEqual(limit);
    expect(body.count).toBe(body.jobs.length);
    ids.push(...body.jobs.map((j) => j.job_id));
    cursor = body.next_cursor;
    if (cursor === null) return ids;
  }
  throw new Error('paging did not end');
}

describe('routes over the memory queue', () => {
  it('creates, reads, lists and updates a job with the documented shapes', async () => {
    api = await memoryApi();
    const created = await create(api, TOKENS.a, { action: 'send_email', params: { to: 'x@y.z' }, job_id: 'job-1' });
    expect(created.statusCode).toBe(201);
    expect(created.headers.location).toBe('/ai/jobs/job-1');
    const job = created.json();
    expect(Object.keys(job).sort()).toEqual(['action', 'created_at', 'error', 'job_id', 'params', 'result', 'status', 'updated_at', 'workspace_id']);
    expect(job).toMatchObject({
      job_id: 'job-1',
      workspace_id: 'ws-a',
      status: 'queued',
      action: 'send_email',
      params: { to: 'x@y.z' },
      result: null,
      error: null,
    });

    const got = await api.app.inject({ method: 'GET', url: '/ai/jobs/job-1', headers: bearer(TOKENS.aRead) });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(job);

    const list = await api.app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.a) });
    expect(list.json()).toEqual({ workspace_id: 'ws-a', jobs: [job], count: 1, next_cursor: null });

    const patched = await api.app.inject({
      method: 'PATCH',
      url: '/ai/jobs/job-1',
      headers: bearer(TOKENS.a),
      payload: { status: 'succeeded', result: { sent: true, token: 'result-token-value' }, error: 'retried; password=hunter2-value' },
    });
    expect(patched.statusCode).toBe(200);
    // result and error go through the same redaction as params.
    expect(patched.json()).toMatchObject({ status: 'succeeded', result: { sent: true, token: '***REDACTED***' }, error: 'retried; password=***REDACTED***' });
    expect(patched.body).not.toMatch(/result-token-value|hunter2-value/);

    const gen = await create(api, TOKENS.a, { action: 'x', params: {} });
    expect(gen.statusCode).toBe(201);
    expect(gen.json().job_id).toMatch(/^job_/);
  });

  it('puts x-read-path and x-request-id on every response', async () => {
    api = await memoryApi();
    const urls: Array<[string, string, Record<string, string>]> = [
      ['GET', '/ai/jobs', bearer(TOKENS.a)],
      ['GET', '/ai/jobs', {}],
      ['GET', '/ai/jobs/nope', bearer(TOKENS.a)],
      ['GET', '/ai/jobs?limit=0', bearer(TOKENS.a)],
      ['GET', '/healthz', {}],
      ['GET', '/metrics', {}],
      ['GET', '/no/such/route', {}],
      ['DELETE', '/ai/jobs/x', bearer(TOKENS.a)],
    ];
    for (const [method, url, headers] of urls) {
      const res = await api.app.inject({ method: method as 'GET', url, headers });
      expect(res.headers['x-read-path'], `${method} ${url}`).toBe('legacy');
      expect(res.headers['x-request-id']).toBeTruthy();
    }
    api.setPhase(Phase.DualWrite);
    api.setPhase(Phase.ReadNew);
    const res = await api.app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.a) });
    expect(res.headers['x-read-path']).toBe('v2');
    // A safe incoming request id is kept; a hostile one is replaced.
    const kept = await api.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
    expect(kept.headers['x-request-id']).toBe('abc-123');
    const replaced = await api.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a\nb{}' } });
    expect(replaced.headers['x-request-id']).not.toContain('\n');
  });

  it('validates limit, cursor, query and bodies with 400', async () => {
    api = await memoryApi();
    const h = bearer(TOKENS.a);
    for (const q of [
      'limit=0',
      'limit=201',
      'limit=abc',
      'limit=1.5',
      'limit=-1',
      'limit=',
      'limit=050',
      'limit=1&limit=2',
      'cursor=',
      'cursor=%2A',
      'cursor=abc',
      'workspace_id=ws-b',
      'cursor=' + 'A'.repeat(5000),
    ]) {
      const res = await api.app.inject({ method: 'GET', url: `/ai/jobs?${q}`, headers: h });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().error).toMatch(/invalid_request|invalid_cursor/);
    }
    expect((await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=200', headers: h })).statusCode).toBe(200);
    expect((await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=1', headers: h })).statusCode).toBe(200);
    const bodies: unknown[] = [
      {},
      { action: 'a' },
      { action: '', params: {} },
      { action: 'a b', params: {} },
      { action: 'a', params: [] },
      { action: 'a', params: 'x' },
      { action: 'a', params: {}, job_id: 'ws-b:job' },
      { action: 'a', params: {}, job_id: '*' },
      { action: 'a', params: {}, workspace_id: 'ws-b' },
      { action: 'a'.repeat(129), params: {} },
    ];
    for (const payload of bodies) {
      const res = await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: h, payload: payload as Record<string, unknown> });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
    }
    const bad = await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: { ...h, 'content-type': 'application/json' }, payload: '{oops' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: 'invalid_request' });
    const text = await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: { ...h, 'content-type': 'text/plain' }, payload: 'x' });
    expect(text.statusCode).toBe(415);
    await create(api, TOKENS.a, { action: 'a', params: {}, job_id: 'p1' });
    for (const payload of [
      {},
      { status: 'done' },
      { status: 'running', result: [1] },
      { status: 'running', extra: 1 },
      { status: 'failed', error: 'e'.repeat(5000) },
    ]) {
      const res = await api.app.inject({ method: 'PATCH', url: '/ai/jobs/p1', headers: h, payload });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
    }
  });

  it('answers 409 for a duplicate job_id', async () => {
    api = await memoryApi();
    expect((await create(api, TOKENS.a, { action: 'a', params: {}, job_id: 'dup' })).statusCode).toBe(201);
    const again = await create(api, TOKENS.a, { action: 'a', params: {}, job_id: 'dup' });
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ error: 'conflict' });
  });

  it('isolates workspaces by id, list and update', async () => {
    api = await memoryApi();
    await create(api, TOKENS.b, { action: 'b-only', params: { k: 'b' }, job_id: 'b-job' });
    await create(api, TOKENS.a, { action: 'a-only', params: {}, job_id: 'a-job' });
    const byId = await api.app.inject({ method: 'GET', url: '/ai/jobs/b-job', headers: bearer(TOKENS.a) });
    const absent = await api.app.inject({ method: 'GET', url: '/ai/jobs/never-existed', headers: bearer(TOKENS.a) });
    expect(byId.statusCode).toBe(404);
    // Indistinguishable from a job that does not exist at all.
    expect({ ...byId.json(), request_id: 0 }).toEqual({ ...absent.json(), request_id: 0 });
    const patch = await api.app.inject({ method: 'PATCH', url: '/ai/jobs/b-job', headers: bearer(TOKENS.a), payload: { status: 'cancelled' } });
    expect(patch.statusCode).toBe(404);
    expect((await api.queue.getJob('ws-b', 'b-job'))?.status).toBe('queued');
    const list = await api.app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.a) });
    expect(list.json().jobs.map((j: { job_id: string }) => j.job_id)).toEqual(['a-job']);
    expect(list.body).not.toContain('b-only');
    for (const id of ['*', '..%2F', '..%2F..%2Fetc', 'ws-b:b-job', 'ws-b%3Ab-job', 'x'.repeat(129), '%00', 'a%20b']) {
      const res = await api.app.inject({ method: 'GET', url: `/ai/jobs/${id}`, headers: bearer(TOKENS.a) });
      expect([400, 404], id).toContain(res.statusCode);
      expect(res.body).not.toContain('b-only');
    }
  });

  it('pages every job exactly once at limits 1, 7, 50, 200 on both read paths', async () => {
    api = await memoryApi({ phase: Phase.DualWrite });
    const mine: string[] = [];
    for (let i = 0; i < 230; i++) {
      const res = await create(api, i % 3 === 0 ? TOKENS.b : TOKENS.a, { action: 'a', params: { i } });
      if (i % 3 !== 0) mine.push(res.json().job_id as string);
    }
    for (const phase of [Phase.DualWrite, Phase.ReadNew]) {
      if (phase === Phase.ReadNew) api.setPhase(Phase.ReadNew);
      for (const limit of [1, 7, 50, 200]) {
        const ids = await pageAll(api, TOKENS.a, limit);
        expect(new Set(ids).size).toBe(ids.length);
        expect([...ids].sort()).toEqual([...mine].sort());
      }
    }
  });

  it('refuses a cursor from another workspace, a tampered one, and one from before a flip', async () => {
    api = await memoryApi({ phase: Phase.DualWrite });
    for (let i = 0; i < 5; i++) {
      await create(api, TOKENS.a, { action: 'a', params: {} });
      await create(api, TOKENS.b, { action: 'b', params: {} });
    }
    const bPage = (await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=2', headers: bearer(TOKENS.b) })).json();
    const aPage = (await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=2', headers: bearer(TOKENS.a) })).json();
    const withB = await api.app.inject({ method: 'GET', url: `/ai/jobs?limit=2&cursor=${bPage.next_cursor}`, headers: bearer(TOKENS.a) });
    expect(withB.statusCode).toBe(400);
    expect(withB.json().error).toBe('invalid_cursor');
    const c: string = aPage.next_cursor;
    const tampered = c.slice(0, 10) + (c[10] === 'A' ? 'B' : 'A') + c.slice(11);
    expect((await api.app.inject({ method: 'GET', url: `/ai/jobs?cursor=${tampered}`, headers: bearer(TOKENS.a) })).statusCode).toBe(400);
    api.setPhase(Phase.ReadNew);
    const flipped = await api.app.inject({ method: 'GET', url: `/ai/jobs?limit=2&cursor=${c}`, headers: bearer(TOKENS.a) });
    expect(flipped.statusCode).toBe(400);
    expect(flipped.json()).toMatchObject({ error: 'cursor_read_path_changed' });
    expect(flipped.json().message).toMatch(/restart paging/);
  });

  it('redacts params in every response and keeps other params and results', async () => {
    api = await memoryApi();
    const params = {
      api_key: 'SECRET-api-key',
      Authorization: 'Bearer SECRET-authz',
      nested: { deeper: { PASSWORD: 'SECRET-password' } },
      list: [{ apiKey: 'SECRET-apikey-in-array' }, 'plain'],
      refresh_token: 'SECRET-refresh',
      visible: 'keep-me',
    };
    const res = await create(api, TOKENS.a, { action: 'a', params, job_id: 'r1' });
    const all = [
      res,
      await api.app.inject({ method: 'GET', url: '/ai/jobs/r1', headers: bearer(TOKENS.a) }),
      await api.app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.a) }),
      await api.app.inject({ method: 'PATCH', url: '/ai/jobs/r1', headers: bearer(TOKENS.a), payload: { status: 'running' } }),
    ];
    for (const r of all) {
      expect(r.body).not.toContain('SECRET');
      expect(r.body).toContain('keep-me');
    }
    expect(all[1]!.json().params).toEqual({
      api_key: '***REDACTED***',
      Authorization: '***REDACTED***',
      nested: { deeper: { PASSWORD: '***REDACTED***' } },
      list: [{ apiKey: '***REDACTED***' }, 'plain'],
      refresh_token: '***REDACTED***',
      visible: 'keep-me',
    });
    expect(api.logs.text()).not.toContain('SECRET');
    expect(api.logs.text()).not.toContain(TOKENS.a);
  });

  it('answers generic errors and logs the cause chain with the request id', async () => {
    const logs = captureStream();
    const queue = new MemoryJobQueue();
    queue.listJobs = async () => {
      throw new Error('wrapper failed', { cause: new Error('ERR internal detail 10.0.0.9:6379') });
    };
    queue.getJob = async () => {
      throw new RedisUnavailableError('10.0.0.9:6379', 'ECONNREFUSED');
    };
    const redactor = createRedactor();
    const app = await buildApp({
      queue,
      phase: async () => ({ phase: Phase.Legacy, epoch: 0, shadowReadRate: 0 }),
      tokens: new TokenTable(tokenEntries()),
      cursor: new CursorSealer([randomBytes(32)]),
      metrics: new ApiMetrics({ workspaceLabel: false, allowlist: [] }),
      redactor,
      logger: createLogger('info', redactor, logs),
    });
    const res = await app.inject({ method: 'GET', url: '/ai/jobs', headers: { ...bearer(TOKENS.a), 'x-request-id': 'req-500' } });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: 'internal', message: 'Internal error', request_id: 'req-500' });
    expect(res.body).not.toContain('10.0.0.9');
    const line = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request failed');
    expect(line).toMatchObject({ request_id: 'req-500', level: 50 });
    expect(JSON.stringify(line)).toContain('internal detail');
    const down = await app.inject({ method: 'GET', url: '/ai/jobs/x1', headers: bearer(TOKENS.a) });
    expect(down.statusCode).toBe(503);
    expect(down.json().message).toBe('Service temporarily unavailable');
    expect(down.body).not.toContain('10.0.0.9');
    await app.close();
  });

  it('healthz reports readiness with 200/503', async () => {
    const redactor = createRedactor();
    let ok = true;
    const app = await buildApp({
      queue: new MemoryJobQueue(),
      phase: async () => ({ phase: Phase.ReadNew, epoch: 2, shadowReadRate: 0 }),
      tokens: new TokenTable(tokenEntries()),
      cursor: new CursorSealer([randomBytes(32)]),
      metrics: new ApiMetrics({ workspaceLabel: false, allowlist: [] }),
      redactor,
      logger: createLogger('silent', redactor),
      readiness: async () => ({ ok, checks: { redis: ok ? 'ok' : 'fail' }, phase: { phase: Phase.ReadNew, epoch: 2, shadowReadRate: 0 } }),
    });
    const up = await app.inject({ method: 'GET', url: '/healthz' });
    expect(up.statusCode).toBe(200);
    expect(up.json()).toMatchObject({ status: 'ok', phase: 'read-new', read_path: 'v2' });
    ok = false;
    const downRes = await app.inject({ method: 'GET', url: '/healthz' });
    expect(downRes.statusCode).toBe(503);
    expect(downRes.json()).toMatchObject({ status: 'unavailable', checks: { redis: 'fail' } });
    await app.close();
  });
});
