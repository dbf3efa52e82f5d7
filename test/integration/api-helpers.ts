// Shared helpers of the API integration tests: the real service (createApiService)
// over the shared Redis from the globalSetup, isolated by a unique key prefix.
import { expect } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { Keyspace } from '../../src/core/keys.js';
import { Phase, PHASE_ORDER } from '../../src/core/phase.js';
import { StateStore } from '../../src/core/state.js';
import { loadApiConfig, type ApiConfig } from '../../src/api/config.js';
import { createApiService, type ApiService, type ApiServiceOptions } from '../../src/api/server.js';
import {
  closeClient,
  connectCluster,
  connectStandalone,
  deleteKeysWithPrefix,
  sharedClusterNodes,
  sharedStandaloneUrl,
  uniquePrefix,
  type AnyRedis,
} from '../helpers/fixtures.js';
import { bearer, captureStream, tokenEntries } from '../unit/api-helpers.js';

export { bearer, TOKENS } from '../unit/api-helpers.js';

export interface RealApi {
  service: ApiService;
  config: ApiConfig;
  keys: Keyspace;
  prefix: string;
  /** A separate client for test set-up and inspection. */
  admin: AnyRedis;
  state: StateStore;
  logs: ReturnType<typeof captureStream>;
  /** Moves the phase forward/back one step at a time (fence null) until `to`. */
  moveTo(to: Phase): Promise<void>;
  inject(method: 'GET' | 'POST' | 'PATCH', url: string, token?: string, payload?: Record<string, unknown>): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/** Starts the API on the shared standalone server (or the shared cluster) with a fresh prefix. */
export async function startRealApi(
  opts: { name?: string; env?: Record<string, string>; cluster?: boolean; redisUrl?: string; service?: Omit<ApiServiceOptions, 'logStream' | 'logger'> } = {},
): Promise<RealApi> {
  const prefix = uniquePrefix(opts.name ?? 'api');
  const clusterNode = opts.cluster ? sharedClusterNodes()[0]! : null;
  const env: NodeJS.ProcessEnv = {
    REDIS_URL: clusterNode ? `redis://${clusterNode.host}:${clusterNode.port}` : (opts.redisUrl ?? sharedStandaloneUrl()),
    ORCH_REDIS_CLUSTER: opts.cluster ? 'on' : 'off',
    ORCH_PREFIX: prefix,
    ORCH_API_TOKENS: JSON.stringify(tokenEntries()),
    LOG_LEVEL: 'debug',
    ...opts.env,
  };
  const config = loadApiConfig(env);
  const logs = captureStream();
  const service = await createApiService(config, { ...opts.service, logStream: logs });
  const admin = opts.cluster ? connectCluster() : connectStandalone(opts.redisUrl);
  // Tests that restart Redis under the API restart it under this client too.
  admin.on('error', () => undefined);
  const keys = config.keys;
  const state = new StateStore(service.client, keys);
  const moveTo = async (to: Phase): Promise<void> => {
    for (;;) {
      const s = await state.read();
      if (s.phase === to) return;
      const dir = PHASE_ORDER.indexOf(to) > PHASE_ORDER.indexOf(s.phase) ? 1 : -1;
      const next = PHASE_ORDER[PHASE_ORDER.indexOf(s.phase) + dir]!;
      await state.transition({ from: s.phase, to: next, expectedEpoch: s.epoch, fence: null, reason: 'api test' });
    }
  };
  return {
    service,
    config,
    keys,
    prefix,
    admin,
    state,
    logs,
    moveTo,
    inject: (method, url, token, payload) => service.app.inject({ method, url, headers: token ? bearer(token) : {}, ...(payload ? { payload } : {}) }),
    close: async () => {
      await service.close();
      await deleteKeysWithPrefix(admin, prefix);
      await closeClient(admin);
    },
  };
}

/** Polls (bounded) until the API answers with the wanted x-read-path; returns the number of tries. */
export async function waitForReadPath(api: RealApi, token: string, want: 'legacy' | 'v2', maxTries = 200): Promise<number> {
  for (let i = 1; i <= maxTries; i++) {
    const res = await api.inject('GET', '/ai/jobs?limit=1', token);
    if (res.headers['x-read-path'] === want) return i;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`x-read-path never became ${want}`);
}

/** Pages through every job of the token's workspace, checking the page invariants. */
export async function pageAll(api: RealApi, token: string, limit: number, expectPath?: 'legacy' | 'v2'): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 100000; i++) {
    const res = await api.inject('GET', `/ai/jobs?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, token);
    expect(res.statusCode, res.body).toBe(200);
    if (expectPath) expect(res.headers['x-read-path']).toBe(expectPath);
    const body = res.json<{ workspace_id: string; jobs: Array<{ job_id: string; workspace_id: string }>; count: number; next_cursor: string | null }>();
    expect(body.jobs.length).toBeLessThanOrEqual(limit);
    expect(body.count).toBe(body.jobs.length);
    for (const j of body.jobs) expect(j.workspace_id).toBe(body.workspace_id);
    ids.push(...body.jobs.map((j) => j.job_id));
    cursor = body.next_cursor;
    if (cursor === null) return ids;
  }
  throw new Error('paging did not end');
}
