/**
 * Issue 4, acceptance (1): the whole journey through the real binary, with live
 * writers running throughout:
 *
 *   legacy → enable-dual-write → backfill → verify → flip-read → verify →
 *   cleanup --execute → rollback --execute (new-only → read-new, legacy
 *   restored by the reverse backfill) → verify clean.
 *
 * Writers are RedisJobQueue instances creating and updating jobs in a loop;
 * every acknowledged write goes into a ledger. Half of them do not subscribe to
 * transition events and cache the phase for the whole settle window: the
 * stalest writer the protocol allows. After each step the writers pause and
 * the ledger is compared with the store, layout by layout: nothing lost or
 * changed. A worker dequeues throughout, so the pending-list conversion is
 * exercised against concurrent pops.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { Layout, Phase, routeFor } from '../../src/core/phase.js';
import type { RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue, parseQueueRef } from '../../src/core/redis-queue.js';
import { StateStore } from '../../src/core/state.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { cleanupClient, coreClient, topologyUrl } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { scanAll, seedJobs } from '../helpers/lifecycle.js';

const SEED = 2000;
const MAX_JOBS = 3500;
const WRITERS = 4;
const SETTLE_MS = 200;
const STATUSES = ['running', 'succeeded', 'failed', 'queued'] as const;

interface Entry {
  workspaceId: string;
  status: string;
  result: string;
  rev: number;
  writer: number;
}

class Journey {
  readonly ledger = new Map<string, Entry>();
  private readonly queues: RedisJobQueue[] = [];
  private paused = false;
  private stopped = false;
  private readonly idle = new Set<number>();
  private loops: Array<Promise<void>> = [];
  writes = 0;
  errors: unknown[] = [];
  dequeued = 0;
  enqueued = 0;
  private readonly mine: string[][] = Array.from({ length: WRITERS + 1 }, () => []);

  constructor(
    readonly client: RedisClient,
    readonly keys: Keyspace,
  ) {}

  async start(seeded: Array<{ workspaceId: string; jobId: string }>): Promise<void> {
    for (const [i, s] of seeded.entries()) {
      // Each job has exactly one writer, so the ledger's last entry is the store's truth.
      const w = i % WRITERS;
      this.ledger.set(s.jobId, { workspaceId: s.workspaceId, status: 'queued', result: '', rev: 1, writer: w });
      this.mine[w]!.push(s.jobId);
    }
    this.enqueued = seeded.length;
    for (let w = 0; w < WRITERS; w++) {
      const stale = w % 2 === 1;
      this.queues.push(
        await RedisJobQueue.create(this.client, {
          keys: this.keys,
          // The stalest allowed writer: no events, phase cached for the whole settle window.
          phase: stale ? { subscribe: false, maxCacheMs: SETTLE_MS } : {},
          onMirrorFailure: (f) => this.errors.push(f.error),
        }),
      );
    }
    this.loops = this.queues.map((q, w) => this.writer(q, w));
    this.loops.push(this.worker());
  }

  private async gate(id: number): Promise<boolean> {
    while (this.paused && !this.stopped) {
      this.idle.add(id);
      await new Promise((r) => setTimeout(r, 5));
    }
    this.idle.delete(id);
    return !this.stopped;
  }

  private async writer(q: RedisJobQueue, w: number): Promise<void> {
    let n = 0;
    while (await this.gate(w)) {
      n++;
      try {
        const ids = this.mine[w]!;
        if (this.ledger.size < MAX_JOBS && n % 5 === 0) {
          const job = await q.enqueue({ workspaceId: `ws${n % 7}`, action: 'journey', params: { n, token: 'secret' } });
          this.enqueued++;
          this.ledger.set(job.jobId, { workspaceId: job.workspaceId, status: job.status, result: '', rev: job.rev, writer: w });
          ids.push(job.jobId);
        } else {
          const jobId = ids[Math.floor(Math.random() * ids.length)]!;
          const e = this.ledger.get(jobId)!;
          const status = STATUSES[n % STATUSES.length]!;
          const job = await q.updateStatus(e.workspaceId, jobId, { status, result: { n, w } });
          this.ledger.set(jobId, { ...e, status: job.status, result: JSON.stringify({ n, w }), rev: job.rev });
        }
        this.writes++;
      } catch (err) {
        this.errors.push(err);
      }
      await new Promise((r) => setTimeout(r, 4));
    }
  }

  /** Pops references slowly; every pop must resolve to a job. */
  private async worker(): Promise<void> {
    const q = await RedisJobQueue.create(this.client, { keys: this.keys });
    this.queues.push(q);
    const id = WRITERS;
    while (await this.gate(id)) {
      try {
        const before = await this.client.llen(this.keys.queue);
        if (before > 0) {
          const job = await q.dequeue();
          if (job === null) this.errors.push(new Error('dequeue returned null with a non-empty list'));
          else this.dequeued++;
        }
      } catch (err) {
        this.errors.push(err);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops every loop at a write boundary. */
  async pause(): Promise<void> {
    this.paused = true;
    while (this.idle.size < WRITERS + 1) await new Promise((r) => setTimeout(r, 5));
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    await Promise.all(this.queues.map((q) => q.close()));
  }

  /** Every ledger entry, read from one layout: [missing, changed] job ids. */
  async compare(layout: Layout): Promise<{ missing: string[]; changed: string[] }> {
    const missing: string[] = [];
    const changed: string[] = [];
    const ids = [...this.ledger.keys()];
    const CHUNK = 500;
    for (let i = 0; i < ids.length; i += CHUNK) {
      const chunk = ids.slice(i, i + CHUNK);
      const hashes = await Promise.all(
        chunk.map((id) => {
          const e = this.ledger.get(id)!;
          return this.client.hgetall(layout === Layout.Legacy ? this.keys.legacyJob(id) : this.keys.v2Job(e.workspaceId, id));
        }),
      );
      chunk.forEach((id, j) => {
        const h = hashes[j]!;
        const e = this.ledger.get(id)!;
        if (h.job_id === undefined) missing.push(id);
        else if (h.status !== e.status || (h.result ?? '') !== e.result || Number(h.rev) !== e.rev || h.workspace_id !== e.workspaceId) changed.push(id);
      });
    }
    return { missing, changed };
  }
}

describe('the whole journey with live writers (standalone)', () => {
  let client: RedisClient;
  const prefix = uniquePrefix('journey');
  const keys = new Keyspace(prefix);
  let args: string[];
  let journey: Journey;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    client = await coreClient('standalone');
    const t = topologyUrl('standalone');
    args = [...target(t.url, prefix, t.cluster), '--actor', 'journey-test'];
    const seeded = await seedJobs(client, keys, SEED, 7);
    journey = new Journey(client, keys);
    await journey.start(seeded);
  });
  afterAll(async () => {
    await journey?.stop();
    await cleanupClient(client, prefix);
  });

  async function step(name: string, argv: string[], expectCode = 0): Promise<CliResult> {
    const r = await runCli([...args, '--json', ...argv], { timeoutMs: 90_000 });
    timings[name] = r.durationMs;
    expect(r.code, `${name}: ${r.stderr}`).toBe(expectCode);
    return r;
  }

  /** Pauses the writers, checks the layouts the phase makes complete, resumes. */
  async function check(layouts: Layout[]): Promise<void> {
    await journey.pause();
    try {
      const phase = (await new StateStore(client, keys).read()).phase;
      expect(layouts).toContain(routeFor(phase).primary);
      for (const layout of layouts) {
        const { missing, changed } = await journey.compare(layout);
        expect({ layout, missing: missing.slice(0, 5), changed: changed.slice(0, 5), nMissing: missing.length, nChanged: changed.length }).toEqual({
          layout,
          missing: [],
          changed: [],
          nMissing: 0,
          nChanged: 0,
        });
      }
      expect(journey.errors).toEqual([]);
      // Every reference ever pushed was either popped (and resolved) or is still on the list.
      expect(journey.dequeued + (await client.llen(keys.queue))).toBe(journey.enqueued);
    } finally {
      journey.resume();
    }
  }

  it('legacy → dual-write → backfill → verify → read-new → new-only (cleanup) → rollback → verify: nothing lost or changed', async () => {
    await check([Layout.Legacy]);

    await step('enable-dual-write', ['enable-dual-write', '--settle-ms', String(SETTLE_MS), '--reason', 'journey']);
    await check([Layout.Legacy]);

    const bf = await step('backfill', ['backfill']);
    expect(bf.json).toMatchObject({ unmigratable: 0, complete: true });
    await check([Layout.Legacy, Layout.V2]);

    const v1 = await step('verify (dual-write)', ['verify']);
    expect(v1.json).toMatchObject({ ok: true, mismatches: 0 });
    await check([Layout.Legacy, Layout.V2]);

    const flip = await step('flip-read', ['flip-read', '--reason', 'journey: verify clean']);
    expect(flip.json).toMatchObject({ from: 'dual-write', to: 'read-new', dryRun: false });
    await check([Layout.V2, Layout.Legacy]);

    const v2 = await step('verify (read-new)', ['verify']);
    expect(v2.json).toMatchObject({ ok: true, mismatches: 0 });

    const dry = await step('cleanup (dry run)', ['cleanup', '--min-soak', '0s']);
    expect(dry.json).toMatchObject({ dryRun: true, kept: 0, phase: 'read-new', blockedBy: null });
    const clean = await step('cleanup --execute', ['cleanup', '--execute', '--min-soak', '0s', '--reason', 'journey']);
    expect(clean.json).toMatchObject({ dryRun: false, kept: 0, phase: 'new-only', complete: true, transitioned: true });
    expect(clean.json!.deleted).toBeGreaterThanOrEqual(SEED);
    await check([Layout.V2]);
    await journey.pause();
    expect(await scanAll(client, keys.legacyPattern)).toEqual([]);
    expect((await client.lrange(keys.queue, 0, -1)).every((r) => parseQueueRef(r)?.workspaceId)).toBe(true);
    journey.resume();

    const preview = await step('rollback (preview)', ['rollback']);
    expect(preview.json).toMatchObject({ from: 'new-only', to: 'read-new', dryRun: true, action: 'transition+reverse-backfill' });
    const rb = await step('rollback --execute', ['rollback', '--execute', '--reason', 'journey: roll back after cleanup']);
    expect(rb.json).toMatchObject({
      from: 'new-only',
      to: 'read-new',
      dryRun: false,
      legacyComplete: true,
      reverseBackfill: { complete: true, unmigratable: 0 },
    });
    await check([Layout.V2, Layout.Legacy]);

    const v3 = await step('verify (after rollback)', ['verify']);
    expect(v3.json).toMatchObject({ ok: true, mismatches: 0 });
    await check([Layout.V2, Layout.Legacy]);

    const st = await new StateStore(client, keys).read();
    expect(st).toMatchObject({ phase: Phase.ReadNew, legacyComplete: true });
    const status = await step('status', ['status']);
    expect((status.json!.next as { command: string }).command).toMatch(/^orch-migrate (cleanup|verify)/);
    expect(journey.writes).toBeGreaterThan(500);
    console.log(
      `journey: ${journey.ledger.size} jobs, ${journey.writes} acknowledged writes, ${journey.dequeued} dequeued; step ms ${JSON.stringify(timings)}`,
    );
  });
});
