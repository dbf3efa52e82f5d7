// Hostile and odd input on real Redis: deep JSON in requests and in stored
// records, taken job ids across workspaces, old timestamp forms, and the
// migration gauges read from the state record.
import { afterEach, describe, expect, it } from 'vitest';
import { Phase } from '../../src/core/phase.js';
import { MAX_BODY_DEPTH } from '../../src/api/server.js';
import { parsePrometheus } from '../unit/api-prom-parser.js';
import { startRealApi, TOKENS, waitForReadPath, type RealApi } from './api-helpers.js';

const opened: RealApi[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((a) => a.close()));
});
async function open(name: string): Promise<RealApi> {
  const api = await startRealApi({ name });
  opened.push(api);
  return api;
}

describe('deep JSON (real Redis)', () => {
  it('answers 400 to a body nested ~4,200 levels, with nothing logged at error level', async () => {
    const api = await open('deepbody');
    const deep = `${'{"a":'.repeat(4200)}1${'}'.repeat(4200)}`;
    const res = await api.service.app.inject({
      method: 'POST',
      url: '/ai/jobs',
      headers: { authorization: `Bearer ${TOKENS.a}`, 'content-type': 'application/json' },
      payload: `{"action":"a","params":${deep}}`,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toBe(`Invalid body: JSON nested deeper than ${MAX_BODY_DEPTH} levels`);
    const lines = api.logs.lines.map((l) => JSON.parse(l) as { level: number });
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(await api.admin.exists(api.keys.queue)).toBe(0);
  });

  it('serves a stored record whose result nests 20,000 levels (raw text, flagged) on GET and LIST of both read paths', async () => {
    const api = await open('deepstored');
    await api.moveTo(Phase.DualWrite);
    await api.service.queue.refreshPhase();
    for (const id of ['ok-1', 'deep-1', 'ok-2']) {
      expect((await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: { id }, job_id: id })).statusCode).toBe(201);
    }
    const deep = `${'['.repeat(20000)}{"token":"deep-stored-secret"}${']'.repeat(20000)}`;
    // Written by some other program, in both layouts.
    await api.admin.hset(api.keys.legacyJob('deep-1'), 'result', deep);
    await api.admin.hset(api.keys.v2Job('ws-a', 'deep-1'), 'result', deep);
    for (const path of ['legacy', 'v2'] as const) {
      if (path === 'v2') {
        await api.moveTo(Phase.ReadNew);
        await waitForReadPath(api, TOKENS.a, 'v2');
      }
      const one = await api.inject('GET', '/ai/jobs/deep-1', TOKENS.a);
      expect(one.statusCode, path).toBe(200);
      expect(one.json()).toMatchObject({ job_id: 'deep-1', result_raw: true });
      expect(one.json().result.startsWith('[[[')).toBe(true);
      expect(one.body).not.toContain('deep-stored-secret');
      const list = await api.inject('GET', '/ai/jobs?limit=200', TOKENS.a);
      expect(list.statusCode, path).toBe(200);
      expect(
        list
          .json()
          .jobs.map((j: { job_id: string }) => j.job_id)
          .sort(),
      ).toEqual(['deep-1', 'ok-1', 'ok-2']);
      expect(list.body).not.toContain('deep-stored-secret');
    }
  });
});

describe('a taken job id (real Redis)', () => {
  it('answers one 409 with one body whether the caller or another workspace holds the id, in every phase where ids are global', async () => {
    const api = await open('taken');
    let n = 0;
    for (const phase of [Phase.Legacy, Phase.DualWrite, Phase.ReadNew]) {
      await api.moveTo(phase);
      await api.service.queue.refreshPhase();
      const id = `taken-${n++}`;
      expect((await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {}, job_id: id })).statusCode).toBe(201);
      const post = (token: string) =>
        api.service.app.inject({
          method: 'POST',
          url: '/ai/jobs',
          headers: { authorization: `Bearer ${token}`, 'x-request-id': 'fixed-id' },
          payload: { action: 'a', params: {}, job_id: id },
        });
      const own = await post(TOKENS.a);
      const other = await post(TOKENS.b);
      expect(own.statusCode, phase).toBe(409);
      expect(other.statusCode, phase).toBe(409);
      expect(other.body, phase).toBe(own.body);
      expect(other.headers['www-authenticate']).toBeUndefined();
      // And the other workspace cannot read it.
      expect((await api.inject('GET', `/ai/jobs/${id}`, TOKENS.b)).statusCode).toBe(404);
    }
  });
});

describe('timestamps (real Redis)', () => {
  it('serves epoch seconds and milliseconds of old records as ISO-8601', async () => {
    const api = await open('isots');
    await api.admin.hset(api.keys.legacyJob('old-1'), {
      job_id: 'old-1',
      workspace_id: 'ws-a',
      action: 'a',
      params: '{}',
      status: 'succeeded',
      created_at: '1700000000',
      updated_at: '1700000000250',
    });
    const job = (await api.inject('GET', '/ai/jobs/old-1', TOKENS.a)).json();
    expect(job.created_at).toBe('2023-11-14T22:13:20.000Z');
    expect(job.updated_at).toBe('2023-11-14T22:13:20.250Z');
    const listed = (await api.inject('GET', '/ai/jobs', TOKENS.a)).json().jobs[0];
    expect(listed.created_at).toBe('2023-11-14T22:13:20.000Z');
  });
});

describe('migration gauges (real Redis)', () => {
  it('exports checkpoint progress and the last verify read from the state record', async () => {
    const api = await open('gauges');
    const scrape = async () => parsePrometheus((await api.inject('GET', '/metrics')).body).samples;
    let samples = await scrape();
    expect(samples).toContainEqual({ name: 'orch_migration_checkpoint_nodes', labels: { op: 'backfill' }, value: 0 });
    expect(samples.some((s) => s.name === 'orch_migration_last_verify_ok')).toBe(false);

    await api.moveTo(Phase.DualWrite);
    const cp = api.keys.checkpoint('backfill');
    await api.admin.hset(cp, {
      '127.0.0.1:7000': JSON.stringify({ run_id: 'r1', cursor: '0', done: true, counters: { scanned: 1500, copied: 1500 }, updated_at: 1 }),
      '127.0.0.1:7001': JSON.stringify({ run_id: 'r2', cursor: '88', done: false, counters: { scanned: 700 }, updated_at: 1 }),
      _meta: JSON.stringify({ startedAt: 1, epoch: 1 }),
    });
    await api.state.setFields(null, { last_verify: JSON.stringify({ ok: false, mismatches: 3, finishedAt: 1_760_000_000_000, epoch: 1 }) });
    // The snapshot is cached for a few seconds: wait for a fresh one rather than assume its age.
    for (let i = 0; i < 200; i++) {
      samples = await scrape();
      if (samples.some((s) => s.name === 'orch_migration_last_verify_ok')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(samples).toContainEqual({ name: 'orch_migration_checkpoint_scanned_keys', labels: { op: 'backfill' }, value: 2200 });
    expect(samples).toContainEqual({ name: 'orch_migration_checkpoint_nodes_done', labels: { op: 'backfill' }, value: 1 });
    expect(samples).toContainEqual({ name: 'orch_migration_checkpoint_nodes', labels: { op: 'backfill' }, value: 2 });
    expect(samples).toContainEqual({ name: 'orch_migration_last_verify_ok', labels: {}, value: 0 });
    expect(samples).toContainEqual({ name: 'orch_migration_last_verify_mismatches', labels: {}, value: 3 });
    expect(samples).toContainEqual({ name: 'orch_migration_last_verify_finished_timestamp_seconds', labels: {}, value: 1_760_000_000 });
    expect(samples.find((s) => s.name === 'orch_migration_phase' && s.value === 1)?.labels.phase).toBe('dual-write');
    expect(samples.find((s) => s.name === 'orch_migration_epoch')?.value).toBe(1);
  });
});
