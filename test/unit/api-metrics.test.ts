import { describe, expect, it } from 'vitest';
import { Layout, Phase } from '../../src/core/phase.js';
import { ApiMetrics, UNSCOPED, type MigrationSnapshot } from '../../src/api/metrics.js';
import { bearer, memoryApi, TOKENS } from './api-helpers.js';
import { parsePrometheus } from './api-prom-parser.js';

describe('metrics', () => {
  it('has no workspace label by default', async () => {
    const m = new ApiMetrics({ workspaceLabel: false, allowlist: ['acme'] });
    m.observeList('acme', Layout.Legacy, 3, 0.01);
    const { samples, types } = parsePrometheus((await m.render()).body);
    expect(types.get('ai_job_list_queries_total')).toBe('counter');
    expect(types.get('ai_job_list_duration_seconds')).toBe('histogram');
    const q = samples.filter((s) => s.name === 'ai_job_list_queries_total');
    expect(q).toEqual([{ name: 'ai_job_list_queries_total', labels: { read_path: 'legacy' }, value: 1 }]);
    expect(samples.some((s) => 'workspace_id' in s.labels)).toBe(false);
    expect(samples.find((s) => s.name === 'ai_job_list_results_total')?.value).toBe(3);
  });

  it('labels allowlisted workspaces only when enabled; others are unscoped', async () => {
    const m = new ApiMetrics({ workspaceLabel: true, allowlist: ['acme'] });
    m.observeList('acme', Layout.V2, 2, 0.01);
    m.observeList('other', Layout.V2, 5, 0.01);
    m.observeList('third', Layout.V2, 1, 0.01);
    const { samples } = parsePrometheus((await m.render()).body);
    const results = samples.filter((s) => s.name === 'ai_job_list_results_total');
    expect(results).toContainEqual({ name: 'ai_job_list_results_total', labels: { read_path: 'v2', workspace_id: 'acme' }, value: 2 });
    expect(results).toContainEqual({ name: 'ai_job_list_results_total', labels: { read_path: 'v2', workspace_id: UNSCOPED }, value: 6 });
    expect(samples.some((s) => s.labels.workspace_id === 'other' || s.labels.workspace_id === 'third')).toBe(false);
    expect(new ApiMetrics({ workspaceLabel: true, allowlist: [] }).workspaceLabel('acme')).toBe(UNSCOPED);
  });

  it('exports the phase as a gauge, mirror failures and shadow outcomes', async () => {
    let phase: Phase = Phase.DualWrite;
    const m = new ApiMetrics({ workspaceLabel: false, allowlist: [], phaseSource: async () => ({ phase, epoch: 7 }) });
    m.mirrorFailure(Layout.V2);
    m.shadow('mismatch');
    let { samples } = parsePrometheus((await m.render()).body);
    const phases = samples.filter((s) => s.name === 'orch_migration_phase');
    expect(phases).toHaveLength(4);
    expect(phases.find((s) => s.value === 1)?.labels.phase).toBe('dual-write');
    expect(samples.find((s) => s.name === 'orch_migration_epoch')?.value).toBe(7);
    expect(samples.find((s) => s.name === 'orch_mirror_write_failures_total')).toMatchObject({ labels: { mirror: 'v2' }, value: 1 });
    expect(samples.find((s) => s.name === 'orch_api_shadow_reads_total')).toMatchObject({ labels: { outcome: 'mismatch' }, value: 1 });
    phase = Phase.ReadNew;
    ({ samples } = parsePrometheus((await m.render()).body));
    expect(samples.find((s) => s.name === 'orch_migration_phase' && s.value === 1)?.labels.phase).toBe('read-new');
  });

  it('keeps the last phase when the source fails at scrape time', async () => {
    let fail = false;
    const m = new ApiMetrics({
      workspaceLabel: false,
      allowlist: [],
      phaseSource: async () => {
        if (fail) throw new Error('down');
        return { phase: Phase.ReadNew, epoch: 2 };
      },
    });
    await m.render();
    fail = true;
    const { samples } = parsePrometheus((await m.render()).body);
    expect(samples.find((s) => s.name === 'orch_migration_phase' && s.value === 1)?.labels.phase).toBe('read-new');
  });

  it('GET /metrics serves parseable text with the request counters and read path', async () => {
    const api = await memoryApi({ workspaceLabel: true, allowlist: ['ws-a'] });
    await api.app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.a) });
    await api.app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.b) });
    const res = await api.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    const { samples } = parsePrometheus(res.body);
    expect(samples).toContainEqual({ name: 'ai_job_list_queries_total', labels: { read_path: 'legacy', workspace_id: 'ws-a' }, value: 1 });
    expect(samples).toContainEqual({ name: 'ai_job_list_queries_total', labels: { read_path: 'legacy', workspace_id: 'unscoped' }, value: 1 });
    expect(samples).toContainEqual({
      name: 'orch_api_requests_total',
      labels: { method: 'GET', route: '/ai/jobs', status_code: '200', read_path: 'legacy' },
      value: 2,
    });
    await api.app.close();
  });

  it('exports checkpoint progress and the last verify from a lazily read, cached snapshot', async () => {
    let reads = 0;
    let clock = 1_000_000;
    let snap: MigrationSnapshot = {
      checkpoints: [
        { op: 'backfill', scannedKeys: 1200, nodesDone: 1, nodes: 3 },
        { op: 'cleanup', scannedKeys: 0, nodesDone: 0, nodes: 0 },
      ],
      lastVerify: null,
    };
    const m = new ApiMetrics({
      workspaceLabel: false,
      allowlist: [],
      now: () => clock,
      migrationSource: async () => {
        reads += 1;
        return snap;
      },
    });
    expect(reads).toBe(0);
    let { samples } = parsePrometheus((await m.render()).body);
    expect(reads).toBe(1);
    expect(samples).toContainEqual({ name: 'orch_migration_checkpoint_scanned_keys', labels: { op: 'backfill' }, value: 1200 });
    expect(samples).toContainEqual({ name: 'orch_migration_checkpoint_nodes_done', labels: { op: 'backfill' }, value: 1 });
    expect(samples).toContainEqual({ name: 'orch_migration_checkpoint_nodes', labels: { op: 'backfill' }, value: 3 });
    // Before the first verify there is no sample (a 0 would read as a failed verify).
    expect(samples.some((s) => s.name.startsWith('orch_migration_last_verify'))).toBe(false);

    snap = { ...snap, lastVerify: { ok: false, mismatches: 4, finishedAtMs: 1_700_000_000_500 } };
    clock += 1000;
    await m.render();
    expect(reads).toBe(1); // still cached
    clock += 5000;
    ({ samples } = parsePrometheus((await m.render()).body));
    expect(reads).toBe(2);
    expect(samples).toContainEqual({ name: 'orch_migration_last_verify_ok', labels: {}, value: 0 });
    expect(samples).toContainEqual({ name: 'orch_migration_last_verify_mismatches', labels: {}, value: 4 });
    expect(samples).toContainEqual({ name: 'orch_migration_last_verify_finished_timestamp_seconds', labels: {}, value: 1_700_000_000.5 });
  });
});
