// The API's edges over the memory queue: hostile JSON, liveness vs readiness,
// timestamps in one form, one 409 for a taken id, the OpenAPI document.
import { afterEach, describe, expect, it } from 'vitest';
import { Phase } from '../../src/core/phase.js';
import { MAX_BODY_DEPTH } from '../../src/api/server.js';
import { isoTimestamp, ListQuerySchema } from '../../src/api/schemas.js';
import { bearer, memoryApi, TOKENS, type MemoryApi } from './api-helpers.js';

let api: MemoryApi;
afterEach(async () => {
  await api?.app.close();
});

function nested(depth: number, leaf = '1'): string {
  return `${'{"a":'.repeat(depth)}${leaf}${'}'.repeat(depth)}`;
}

describe('hostile JSON', () => {
  it('answers 400 with a clear message to a body nested ~4,200 levels, logged below error level without a stack', async () => {
    api = await memoryApi();
    for (const [method, url] of [
      ['POST', '/ai/jobs'],
      ['PATCH', '/ai/jobs/j-1'],
    ] as const) {
      const body = `{"action":"a","status":"running","params":${nested(4200)},"result":${nested(4200)}}`;
      expect(body.length).toBeLessThan(256 * 1024);
      const res = await api.app.inject({ method, url, headers: { ...bearer(TOKENS.a), 'content-type': 'application/json' }, payload: body });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_request', message: `Invalid body: JSON nested deeper than ${MAX_BODY_DEPTH} levels` });
    }
    const lines = api.logs.lines.map((l) => JSON.parse(l) as { level: number; msg: string; err?: { stack?: string } });
    expect(lines.some((l) => l.msg === 'request rejected')).toBe(true);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(api.logs.text()).not.toContain('Maximum call stack');
    // Arrays count as nesting too; a body at the limit is accepted.
    const arrays = await api.app.inject({
      method: 'POST',
      url: '/ai/jobs',
      headers: { ...bearer(TOKENS.a), 'content-type': 'application/json' },
      payload: `{"action":"a","params":{"x":${'['.repeat(5000)}${']'.repeat(5000)}}}`,
    });
    expect(arrays.statusCode).toBe(400);
    const ok = await api.app.inject({
      method: 'POST',
      url: '/ai/jobs',
      headers: { ...bearer(TOKENS.a), 'content-type': 'application/json' },
      payload: `{"action":"a","params":${nested(MAX_BODY_DEPTH - 1)}}`,
    });
    expect(ok.statusCode, ok.body).toBe(201);
  });

  it('serves a stored record whose result nests 20,000 levels as redacted raw text, on GET and LIST', async () => {
    api = await memoryApi();
    await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.a), payload: { action: 'a', params: { fine: true }, job_id: 'deep-1' } });
    await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.a), payload: { action: 'a', params: {}, job_id: 'plain-1' } });
    const deep = `${'['.repeat(20000)}{"password":"deep-secret-1","ok":1}${']'.repeat(20000)}`;
    // A record written by another program (the API never accepts this depth).
    api.queue.legacy.get('deep-1')!.result = deep;
    api.queue.legacy.get('deep-1')!.params = `{"x":${deep}}`;
    const one = await api.app.inject({ method: 'GET', url: '/ai/jobs/deep-1', headers: bearer(TOKENS.a) });
    expect(one.statusCode, one.body.slice(0, 300)).toBe(200);
    const job = one.json();
    expect(job).toMatchObject({ job_id: 'deep-1', result_raw: true, params_raw: true });
    expect(typeof job.result).toBe('string');
    expect(job.result.length).toBeGreaterThan(40000);
    expect(one.body).not.toContain('deep-secret-1');
    const list = await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=10', headers: bearer(TOKENS.a) });
    expect(list.statusCode).toBe(200);
    const ids = list
      .json()
      .jobs.map((j: { job_id: string }) => j.job_id)
      .sort();
    expect(ids).toEqual(['deep-1', 'plain-1']);
    expect(list.json().jobs.find((j: { job_id: string }) => j.job_id === 'plain-1').result_raw).toBeUndefined();
    expect(list.body).not.toContain('deep-secret-1');
  });
});

describe('timestamps', () => {
  it('are ISO-8601 in responses whatever the stored form', async () => {
    expect(isoTimestamp('1700000000')).toBe('2023-11-14T22:13:20.000Z');
    expect(isoTimestamp('1700000000123')).toBe('2023-11-14T22:13:20.123Z');
    expect(isoTimestamp('1700000000.5')).toBe('2023-11-14T22:13:20.500Z');
    expect(isoTimestamp('2024-03-01T10:00:00+02:00')).toBe('2024-03-01T08:00:00.000Z');
    expect(isoTimestamp('')).toBeNull();
    expect(isoTimestamp('yesterday')).toBeNull();
    expect(isoTimestamp('99999999999999999')).toBeNull();
    api = await memoryApi();
    await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.a), payload: { action: 'a', params: {}, job_id: 'old-1' } });
    api.queue.legacy.get('old-1')!.created_at = '1700000000';
    api.queue.legacy.get('old-1')!.updated_at = '1700000000999';
    const res = (await api.app.inject({ method: 'GET', url: '/ai/jobs/old-1', headers: bearer(TOKENS.a) })).json();
    expect(res.created_at).toBe('2023-11-14T22:13:20.000Z');
    expect(res.updated_at).toBe('2023-11-14T22:13:20.999Z');
  });
});

describe('a taken job id', () => {
  it('answers the same 409, with the same body, whether the caller or another workspace holds it', async () => {
    api = await memoryApi({ phase: Phase.DualWrite });
    expect(
      (await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.a), payload: { action: 'a', params: {}, job_id: 'taken-1' } }))
        .statusCode,
    ).toBe(201);
    const own = await api.app.inject({
      method: 'POST',
      url: '/ai/jobs',
      headers: { ...bearer(TOKENS.a), 'x-request-id': 'same' },
      payload: { action: 'a', params: {}, job_id: 'taken-1' },
    });
    const other = await api.app.inject({
      method: 'POST',
      url: '/ai/jobs',
      headers: { ...bearer(TOKENS.b), 'x-request-id': 'same' },
      payload: { action: 'a', params: {}, job_id: 'taken-1' },
    });
    expect(own.statusCode).toBe(409);
    expect(other.statusCode).toBe(409);
    expect(other.body).toBe(own.body);
    const strip = (h: Record<string, unknown>): Record<string, unknown> => {
      const { date: _d, ...rest } = h;
      return rest;
    };
    expect(strip(other.headers)).toEqual(strip(own.headers));
  });
});

describe('liveness and readiness', () => {
  it('/livez answers 200 while readiness fails, and neither needs a token', async () => {
    api = await memoryApi();
    const live = await api.app.inject({ method: 'GET', url: '/livez' });
    expect(live.statusCode).toBe(200);
    expect(live.json()).toEqual({ status: 'ok' });
    expect(live.headers['x-read-path']).toBeDefined();
  });
});

/** `method path` of every route in fastify's printed route tree, with `:param` as `{param}`. */
function registeredRoutes(a: MemoryApi): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of a.app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const path = stack.join('').replace(/:([A-Za-z_]+)/g, '{$1}');
    for (const method of (m[3] ?? '').split(', ').filter((x) => x !== '' && x !== 'HEAD')) out.push(`${method.toLowerCase()} ${path}`);
  }
  return out;
}

describe('OpenAPI document', () => {
  it('describes every registered route and every query parameter, in OpenAPI 3.1', async () => {
    api = await memoryApi();
    const res = await api.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('application/json');
    const doc = res.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
    // Every route fastify knows (its own HEAD twins aside), read from its route tree, is in the document.
    expect(registeredRoutes(api).sort()).toEqual([...documented].sort());
    expect(documented).toContain('get /ai/jobs/{job_id}');
    expect(documented).toContain('get /livez');
    const list = doc.paths['/ai/jobs'].get;
    const names = list.parameters
      .filter((p: { in: string }) => p.in === 'query')
      .map((p: { name: string }) => p.name)
      .sort();
    expect(names).toEqual(Object.keys(ListQuerySchema.shape).sort());
    const limit = list.parameters.find((p: { name: string }) => p.name === 'limit');
    expect(limit).toMatchObject({ in: 'query', required: false, schema: { type: 'string' } });
    expect(limit.schema.pattern).toBeDefined();
    expect(list['x-required-scope']).toBe('actions:preview');
    expect(list.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/ai/jobs'].post['x-required-scope']).toBe('actions:write');
    expect(doc.paths['/ai/jobs'].post.requestBody.content['application/json'].schema.required).toEqual(['action', 'params']);
    expect(doc.paths['/ai/jobs/{job_id}'].get.parameters[0]).toMatchObject({ name: 'job_id', in: 'path', required: true });
    expect(Object.keys(list.responses)).toEqual(expect.arrayContaining(['200', '400', '401', '403', '503']));
    expect(list.responses['200'].content['application/json'].schema.properties.next_cursor).toBeDefined();
    expect(doc.paths['/livez'].get.security).toEqual([]);
  });
});
