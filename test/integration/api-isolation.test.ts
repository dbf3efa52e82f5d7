// Isolation acceptance on real Redis: a token for workspace A never sees or
// changes B's jobs, in the legacy layout (keys not scoped by workspace) and in v2.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Phase } from '../../src/core/phase.js';
import { startRealApi, TOKENS, waitForReadPath, type RealApi } from './api-helpers.js';

let api: RealApi;
beforeAll(async () => {
  api = await startRealApi({ name: 'isolation', env: { ORCH_LEGACY_SCAN_COUNT: '5' } });
  await api.moveTo(Phase.DualWrite);
  await api.service.queue.refreshPhase();
  for (let i = 0; i < 12; i++) {
    expect((await api.inject('POST', '/ai/jobs', TOKENS.b, { action: 'b-secret-action', params: { i }, job_id: `b-job-${i}` })).statusCode).toBe(201);
    expect((await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a-action', params: { i }, job_id: `a-job-${i}` })).statusCode).toBe(201);
  }
});
afterAll(async () => {
  await api?.close();
});

const CRAFTED = [
  '*',
  '..%2F',
  '..%2F..%2Fai%3Ajobs%3Ab-job-1',
  'ws-b:b-job-1',
  'ws-b%3Ab-job-1',
  'b-job-*',
  'b-job-%3F',
  'x'.repeat(129),
  'x'.repeat(300),
  '%00b-job-1',
  'B-JOB-1%0A',
];

async function checkIsolation(path: 'legacy' | 'v2'): Promise<void> {
  // By list: only A's jobs, whatever the page size.
  for (const limit of [1, 5, 200]) {
    let cursor: string | null = null;
    const seen: string[] = [];
    do {
      const res = await api.inject('GET', `/ai/jobs?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, TOKENS.a);
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-read-path']).toBe(path);
      expect(res.body).not.toContain('b-secret-action');
      const body = res.json();
      expect(body.workspace_id).toBe('ws-a');
      seen.push(...body.jobs.map((j: { job_id: string }) => j.job_id));
      cursor = body.next_cursor;
    } while (cursor !== null);
    // Every job of A, none of B (the legacy path may repeat one while the shared server resizes its table).
    expect([...new Set(seen)].sort()).toEqual(Array.from({ length: 12 }, (_, i) => `a-job-${i}`).sort());
    if (path === 'v2') expect(seen).toHaveLength(12);
  }
  // By id: 404, the same answer as for a job that exists nowhere.
  const b = await api.inject('GET', '/ai/jobs/b-job-1', TOKENS.a);
  const none = await api.inject('GET', '/ai/jobs/no-such-job', TOKENS.a);
  expect(b.statusCode).toBe(404);
  expect({ ...b.json(), request_id: null }).toEqual({ ...none.json(), request_id: null });
  expect(b.body).not.toContain('b-secret-action');
  // Cannot update it; B's job is unchanged.
  const before = await api.inject('GET', '/ai/jobs/b-job-1', TOKENS.b);
  const patch = await api.inject('PATCH', '/ai/jobs/b-job-1', TOKENS.a, { status: 'cancelled', result: { pwned: true } });
  expect(patch.statusCode).toBe(404);
  const after = await api.inject('GET', '/ai/jobs/b-job-1', TOKENS.b);
  expect(after.json()).toEqual(before.json());
  expect(after.json().status).toBe('queued');
  // Cannot create over it.
  const dup = await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'steal', params: {}, job_id: 'b-job-2' });
  expect(dup.statusCode).toBe(409);
  expect((await api.inject('GET', '/ai/jobs/b-job-2', TOKENS.b)).json().action).toBe('b-secret-action');
  expect(await api.admin.hget(api.keys.legacyJob('b-job-2'), 'workspace_id')).toBe('ws-b');
  // Crafted ids: 400 or 404, never B's data.
  for (const id of CRAFTED) {
    for (const method of ['GET', 'PATCH'] as const) {
      const res = await api.inject(method, `/ai/jobs/${id}`, TOKENS.a, method === 'PATCH' ? { status: 'cancelled' } : undefined);
      expect([400, 404], `${method} ${id}`).toContain(res.statusCode);
      expect(res.body).not.toContain('b-secret-action');
    }
  }
  // Cursors: B's, tampered, malformed → 400.
  const bPage = (await api.inject('GET', '/ai/jobs?limit=2', TOKENS.b)).json();
  expect(bPage.next_cursor).toBeTruthy();
  const withB = await api.inject('GET', `/ai/jobs?limit=2&cursor=${bPage.next_cursor}`, TOKENS.a);
  expect(withB.statusCode).toBe(400);
  expect(withB.body).not.toContain('b-secret-action');
  const aPage = (await api.inject('GET', '/ai/jobs?limit=2', TOKENS.a)).json();
  const c: string = aPage.next_cursor;
  for (let i = 0; i < c.length; i += Math.max(1, Math.floor(c.length / 12))) {
    const tampered = c.slice(0, i) + (c[i] === 'A' ? 'B' : 'A') + c.slice(i + 1);
    expect((await api.inject('GET', `/ai/jobs?cursor=${tampered}`, TOKENS.a)).statusCode).toBe(400);
  }
  const rawCoreCursor = Buffer.from(JSON.stringify({ p: 'v2', s: 0, m: 'b-job-1' })).toString('base64url');
  for (const bad of ['0', '12345', rawCoreCursor, 'bm90LWEtY3Vyc29y', `${c}x`, c.slice(0, 40), '%2A', 'a.b.c']) {
    expect((await api.inject('GET', `/ai/jobs?cursor=${bad}`, TOKENS.a)).statusCode, bad).toBe(400);
  }
  // Auth.
  expect((await api.inject('GET', '/ai/jobs')).statusCode).toBe(401);
  expect((await api.inject('GET', '/ai/jobs', 'tok-unknown')).statusCode).toBe(401);
  expect((await api.inject('GET', '/ai/jobs/b-job-1', 'tok-unknown')).statusCode).toBe(401);
  expect((await api.inject('GET', '/ai/jobs', TOKENS.none)).statusCode).toBe(403);
  expect((await api.inject('POST', '/ai/jobs', TOKENS.aRead, { action: 'x', params: {} })).statusCode).toBe(403);
  expect((await api.inject('PATCH', '/ai/jobs/a-job-1', TOKENS.aRead, { status: 'running' })).statusCode).toBe(403);
  expect((await api.inject('GET', '/ai/jobs', TOKENS.badWs)).statusCode).toBe(403);
}

describe('workspace isolation (real Redis)', () => {
  it('holds on the legacy read path (dual-write)', async () => {
    await checkIsolation('legacy');
  });

  it('holds on the v2 read path (read-new)', async () => {
    await api.moveTo(Phase.ReadNew);
    await waitForReadPath(api, TOKENS.a, 'v2');
    await checkIsolation('v2');
  });

  it('A can still update its own job', async () => {
    const res = await api.inject('PATCH', '/ai/jobs/a-job-3', TOKENS.a, { status: 'succeeded', result: { ok: 1 } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ job_id: 'a-job-3', workspace_id: 'ws-a', status: 'succeeded', result: { ok: 1 } });
  });
});
