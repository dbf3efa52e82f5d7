// Following the phase live (no restart), shadow reads, readiness and metrics on real Redis.
import { afterEach, describe, expect, it } from 'vitest';
import { Phase } from '../../src/core/phase.js';
import { parsePrometheus } from '../unit/api-prom-parser.js';
import { startRealApi, TOKENS, waitForReadPath, type RealApi } from './api-helpers.js';

const opened: RealApi[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((a) => a.close()));
});
async function open(opts: Parameters<typeof startRealApi>[0] = {}): Promise<RealApi> {
  const api = await startRealApi(opts);
  opened.push(api);
  return api;
}

async function metricValue(api: RealApi, name: string, labels: Record<string, string>): Promise<number> {
  const res = await api.inject('GET', '/metrics');
  expect(res.statusCode).toBe(200);
  const { samples } = parsePrometheus(res.body);
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

describe('following the phase (real Redis)', () => {
  it('switches x-read-path to v2 after read-new and back after the rollback, with no restart', async () => {
    const api = await open({ name: 'follow' });
    await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: 'f-0' });
    const first = await api.inject('GET', '/ai/jobs', TOKENS.a);
    expect(first.headers['x-read-path']).toBe('legacy');

    await api.moveTo(Phase.DualWrite);
    await waitForReadPath(api, TOKENS.a, 'legacy');
    for (let i = 1; i <= 5; i++) await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: `f-${i}` });
    // Backfill the one job written in legacy so v2 is complete (the CLI's job; done by hand here).
    const legacyOnly = await api.admin.hgetall(api.keys.legacyJob('f-0'));
    await api.admin.hset(api.keys.v2Job('ws-a', 'f-0'), legacyOnly);
    await api.admin.zadd(api.keys.index('ws-a'), Date.parse(legacyOnly.created_at!), 'f-0');

    const legacyPage = (await api.inject('GET', '/ai/jobs?limit=2', TOKENS.a)).json();
    await api.moveTo(Phase.ReadNew);
    await waitForReadPath(api, TOKENS.a, 'v2');
    for (const [method, url] of [
      ['GET', '/ai/jobs'],
      ['GET', '/ai/jobs/f-1'],
      ['GET', '/healthz'],
      ['GET', '/metrics'],
      ['GET', '/ai/jobs/none'],
    ] as const) {
      expect((await api.inject(method, url, TOKENS.a)).headers['x-read-path'], url).toBe('v2');
    }
    const v2ids = (await api.inject('GET', '/ai/jobs?limit=200', TOKENS.a)).json().jobs.map((j: { job_id: string }) => j.job_id);
    expect(v2ids.sort()).toEqual(['f-0', 'f-1', 'f-2', 'f-3', 'f-4', 'f-5']);

    // A cursor issued before the flip gets a clean 400 telling the client to restart paging.
    const stale = await api.inject('GET', `/ai/jobs?limit=2&cursor=${legacyPage.next_cursor}`, TOKENS.a);
    expect(stale.statusCode).toBe(400);
    expect(stale.json()).toMatchObject({ error: 'cursor_read_path_changed' });
    expect(stale.json().message).toMatch(/restart paging/);

    const health = await api.inject('GET', '/healthz');
    expect(health.statusCode).toBe(200);
    expect(health.json()).toMatchObject({ status: 'ok', phase: 'read-new', read_path: 'v2', checks: { redis: 'ok', phase: 'ok' } });
    expect(await metricValue(api, 'orch_migration_phase', { phase: 'read-new' })).toBe(1);
    expect(await metricValue(api, 'orch_migration_phase', { phase: 'legacy' })).toBe(0);
    expect(await metricValue(api, 'ai_job_list_queries_total', { read_path: 'v2' })).toBeGreaterThan(0);
    expect(await metricValue(api, 'orch_api_cursor_rejections_total', { reason: 'read_path_changed' })).toBe(1);

    // Writes in read-new go to v2 first and are mirrored to legacy.
    await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: 'f-6' });
    expect(await api.admin.exists(api.keys.legacyJob('f-6'), api.keys.v2Job('ws-a', 'f-6'))).toBe(2);

    // Rollback read-new → dual-write: reads go back to legacy.
    await api.moveTo(Phase.DualWrite);
    await waitForReadPath(api, TOKENS.a, 'legacy');
    const back = await api.inject('GET', '/ai/jobs?limit=200', TOKENS.a);
    expect(back.headers['x-read-path']).toBe('legacy');
    expect(back.json().count).toBe(7);
    expect(await metricValue(api, 'orch_migration_phase', { phase: 'dual-write' })).toBe(1);
  });

  it('healthz answers 503 when the state record is unreadable', async () => {
    const api = await open({ name: 'health' });
    expect((await api.inject('GET', '/healthz')).statusCode).toBe(200);
    await api.admin.hset(api.keys.state, 'phase', 'bogus');
    const res = await api.inject('GET', '/healthz');
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({ status: 'unavailable', checks: { redis: 'ok', phase: 'fail' } });
    expect(res.body).not.toContain('bogus');
  });

  it('counts mirror write failures and still acknowledges the write', async () => {
    const api = await open({ name: 'mirrorfail' });
    await api.moveTo(Phase.DualWrite);
    await api.service.queue.refreshPhase();
    // The v2 index of ws-a is the wrong type, so the mirror step fails after the legacy primary succeeded.
    await api.admin.set(api.keys.index('ws-a'), 'not-a-zset');
    const res = await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: 'm-1' });
    expect(res.statusCode).toBe(201);
    expect(await metricValue(api, 'orch_mirror_write_failures_total', { mirror: 'v2' })).toBe(1);
    expect(api.logs.text()).toContain('mirror write failed');
  });

  it('shadow reads in dual-write count agreement and disagreement, and the client gets the legacy answer', async () => {
    const api = await open({ name: 'shadow' });
    await api.moveTo(Phase.DualWrite);
    await api.service.queue.refreshPhase();
    for (let i = 0; i < 4; i++) await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: { i }, job_id: `s-${i}` });
    // Off by default.
    await api.inject('GET', '/ai/jobs', TOKENS.a);
    await api.service.shadow.drain();
    expect(await metricValue(api, 'orch_api_shadow_reads_total', {})).toBe(0);

    await api.state.setFields(null, { shadow_read_rate: '1' });
    await api.service.queue.refreshPhase();
    await api.inject('GET', '/ai/jobs', TOKENS.a);
    await api.service.shadow.drain();
    expect(await metricValue(api, 'orch_api_shadow_reads_total', { outcome: 'match' })).toBe(4);

    // Diverge v2: one record changed, one missing.
    await api.admin.hset(api.keys.v2Job('ws-a', 's-1'), 'status', 'succeeded');
    await api.admin.del(api.keys.v2Job('ws-a', 's-2'));
    const res = await api.inject('GET', '/ai/jobs', TOKENS.a);
    expect(res.json().jobs.every((j: { status: string }) => j.status === 'queued')).toBe(true);
    expect(res.json().count).toBe(4);
    const one = await api.inject('GET', '/ai/jobs/s-1', TOKENS.a);
    expect(one.json().status).toBe('queued');
    await api.service.shadow.drain();
    expect(await metricValue(api, 'orch_api_shadow_reads_total', { outcome: 'mismatch' })).toBe(2);
    expect(await metricValue(api, 'orch_api_shadow_reads_total', { outcome: 'missing' })).toBe(1);

    // Never in read-new.
    await api.moveTo(Phase.ReadNew);
    await waitForReadPath(api, TOKENS.a, 'v2');
    const before = await metricValue(api, 'orch_api_shadow_reads_total', {});
    await api.inject('GET', '/ai/jobs', TOKENS.a);
    await api.service.shadow.drain();
    expect(await metricValue(api, 'orch_api_shadow_reads_total', {})).toBe(before);
  });
});
