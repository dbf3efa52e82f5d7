// Large records under parallel load, against the real `bin/orch-api` process:
// 200 jobs of ~255 KB. One GET ?limit=200 returns a page bounded by bytes (not
// 48 MB), paging returns every job exactly once on both read paths, and 16
// parallel clients finish with bounded RSS while /healthz keeps answering.
// Bounds are generous (CI shares two cores); the measured figures are printed.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { DEFAULT_PAGE_MAX_BYTES } from '../../src/core/listing.js';
import { Phase } from '../../src/core/phase.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { StateStore } from '../../src/core/state.js';
import { processControlUnavailable } from '../helpers/fixtures.js';
import { findFreePort, startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { TOKENS, tokenEntries } from '../unit/api-helpers.js';

const API_BIN = fileURLToPath(new URL('../../bin/orch-api', import.meta.url));
const JOBS = 200;
const JOB_BYTES = 255 * 1024;
const CLIENTS = 16;
const MiB = 1024 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
function figure(name: string, value: string): void {
  process.stdout.write(`[figures] ${name}: ${value}\n`);
}

/** Resident and peak resident memory of a process, from /proc (Linux). */
function rss(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

const skip = processControlUnavailable() ?? (process.platform !== 'linux' ? 'reads RSS from /proc' : undefined);

describe.skipIf(skip !== undefined)('large records under parallel load (bin/orch-api)', () => {
  let server: RedisServerHandle;
  let admin: RedisClient;
  let child: ChildProcess;
  let base = '';
  const keys = new Keyspace('tload');
  const ids: string[] = [];

  beforeAll(async () => {
    server = await startRedisServer();
    admin = await connectRedis({ url: server.url, commandTimeoutMs: 30_000 });
    // Both layouts and the index, so both read paths serve the same 200 jobs.
    const blob = 'x'.repeat(JOB_BYTES - 200);
    for (let i = 0; i < JOBS; i += 20) {
      const p = admin.pipeline();
      for (let j = i; j < i + 20; j++) {
        const id = `big-${String(j).padStart(3, '0')}`;
        ids.push(id);
        const created = new Date(Date.UTC(2026, 0, 1, 0, 0, j)).toISOString();
        const fields = {
          job_id: id,
          workspace_id: 'ws-a',
          action: 'render',
          params: JSON.stringify({ n: j, blob }),
          status: 'succeeded',
          result: '',
          error: '',
          created_at: created,
          updated_at: created,
          rev: '1',
        };
        p.hset(keys.legacyJob(id), fields);
        p.hset(keys.v2Job('ws-a', id), fields);
        p.zadd(keys.index('ws-a'), Date.parse(created), id);
      }
      await p.exec();
    }
    const port = await findFreePort();
    child = spawn(process.execPath, [API_BIN], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        REDIS_URL: server.url,
        ORCH_PREFIX: keys.prefix,
        ORCH_API_TOKENS: JSON.stringify(tokenEntries()),
        ORCH_API_CURSOR_SECRET: 'c'.repeat(32),
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      const ok = await fetch(`${base}/livez`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (i > 400) throw new Error('bin/orch-api did not start');
      await sleep(50);
    }
  });

  afterAll(async () => {
    child?.kill('SIGTERM');
    await new Promise((r) => child?.once('exit', r));
    if (admin) await closeRedis(admin);
    await server?.stop();
  });

  async function page(cursor: string | null, limit = 200): Promise<{ ids: string[]; next: string | null; bytes: number; status: number }> {
    const res = await fetch(`${base}/ai/jobs?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, {
      headers: { authorization: `Bearer ${TOKENS.a}` },
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    if (res.status !== 200) return { ids: [], next: null, bytes: text.length, status: res.status };
    const body = JSON.parse(text) as { jobs: Array<{ job_id: string }>; next_cursor: string | null };
    return { ids: body.jobs.map((j) => j.job_id), next: body.next_cursor, bytes: Buffer.byteLength(text), status: res.status };
  }

  async function pageAll(): Promise<{ ids: string[]; pages: number; maxBytes: number }> {
    const out: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    let maxBytes = 0;
    do {
      const p = await page(cursor);
      expect(p.status).toBe(200);
      out.push(...p.ids);
      pages += 1;
      maxBytes = Math.max(maxBytes, p.bytes);
      cursor = p.next;
    } while (cursor !== null && pages < 1000);
    return { ids: out, pages, maxBytes };
  }

  it('bounds one ?limit=200 page by bytes and pages through every job exactly once, on both read paths', async () => {
    for (const path of ['legacy', 'v2'] as const) {
      if (path === 'v2') {
        const state = new StateStore(admin, keys);
        await state.transition({ from: Phase.Legacy, to: Phase.DualWrite, expectedEpoch: 0, fence: null, reason: 'test', settleMs: 100 });
        await state.transition({ from: Phase.DualWrite, to: Phase.ReadNew, expectedEpoch: 1, fence: null, reason: 'test', settleMs: 100 });
        for (let i = 0; ; i++) {
          const r = await fetch(`${base}/ai/jobs?limit=1`, { headers: { authorization: `Bearer ${TOKENS.a}` } });
          await r.arrayBuffer();
          if (r.headers.get('x-read-path') === 'v2') break;
          if (i > 200) throw new Error('the API never moved to v2');
          await sleep(50);
        }
      }
      const first = await page(null);
      expect(first.status).toBe(200);
      expect(first.ids.length).toBeGreaterThan(0);
      expect(first.ids.length).toBeLessThan(JOBS);
      expect(first.next).not.toBeNull();
      // The budget counts stored bytes; the JSON answer adds little on top. Before: 48 MB.
      expect(first.bytes).toBeLessThan(DEFAULT_PAGE_MAX_BYTES + JOB_BYTES + 64 * 1024);
      const all = await pageAll();
      expect(all.ids.length).toBe(JOBS);
      expect(new Set(all.ids).size).toBe(JOBS);
      expect([...all.ids].sort()).toEqual([...ids].sort());
      if (path === 'v2') expect(all.ids).toEqual([...ids]); // created_at order
      figure(
        `load: ${path} path, ?limit=200 first page`,
        `${first.ids.length} jobs, ${(first.bytes / MiB).toFixed(2)} MiB; ${all.pages} pages for ${JOBS} jobs, largest ${(all.maxBytes / MiB).toFixed(2)} MiB`,
      );
    }
  });

  it(`serves ${CLIENTS} parallel clients with bounded RSS while /healthz keeps answering`, async () => {
    const pid = child.pid!;
    const before = rss(pid);
    const health: number[] = [];
    const healthStatus: number[] = [];
    let loading = true;
    const poller = (async () => {
      while (loading) {
        const started = Date.now();
        const r = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(30_000) });
        await r.arrayBuffer();
        health.push(Date.now() - started);
        healthStatus.push(r.status);
        await sleep(100);
      }
    })();
    let peakSeen = before.rss;
    const sampler = setInterval(() => {
      peakSeen = Math.max(peakSeen, rss(pid).rss);
    }, 50);
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: CLIENTS }, () => pageAll()));
    const elapsed = Date.now() - started;
    loading = false;
    clearInterval(sampler);
    await poller;
    const after = rss(pid);
    for (const r of results) {
      expect(r.ids.length).toBe(JOBS);
      expect(new Set(r.ids).size).toBe(JOBS);
    }
    expect(healthStatus.length).toBeGreaterThan(3);
    expect(healthStatus.every((s) => s === 200)).toBe(true);
    const sorted = [...health].sort((a, b) => a - b);
    const p50 = sorted[Math.floor(sorted.length / 2)]!;
    const max = sorted[sorted.length - 1]!;
    figure(
      `load: ${CLIENTS} clients × ${JOBS} jobs of ${JOB_BYTES / 1024} KB`,
      `${elapsed} ms; API RSS ${(before.rss / MiB).toFixed(0)} MiB before, peak ${(Math.max(after.peak, peakSeen) / MiB).toFixed(0)} MiB (VmHWM), ${(after.rss / MiB).toFixed(0)} MiB after; /healthz p50 ${p50} ms, max ${max} ms over ${health.length} probes`,
    );
    // Generous (measured: 150-190 MiB of growth): 800 MiB of records moved, and one unbounded 48 MB page
    // alone grew the process by ~240 MB before pages were bounded; 16 of them in parallel need gigabytes.
    expect(Math.max(after.peak, peakSeen) - before.rss).toBeLessThan(320 * MiB);
    expect(max).toBeLessThan(5000);
  });
});
