/**
 * `orch-migrate demo`: the whole migration on a throwaway Redis, with live
 * writers, walking every phase through the real CLI (the same binary and flags
 * an SRE uses), and proving at the end that every acknowledged write survived.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { Keyspace } from '../../core/keys.js';
import type { Job } from '../../core/job.js';
import { readSnapshot, snapshotToHash } from '../../core/protocol.js';
import { closeRedis, connectRedis, type RedisClient } from '../../core/redis.js';
import { RedisJobQueue } from '../../core/redis-queue.js';
import { sleep } from '../../core/state.js';
import { InterruptedError } from '../../core/errors.js';
import type { Output } from '../output.js';
import { startThrowawayRedis, unlinkScratchPrefix, type ThrowawayRedis } from './throwaway-redis.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  jobs: number;
  workspaces: number;
  writers: number;
  /** Use this server (REDIS_URL) instead of a throwaway one. */
  redisUrl?: string;
  signal: AbortSignal;
}

/** What the demo proved. */
export interface DemoResult {
  server: string;
  prefix: string;
  steps: Array<{ command: string; exitCode: number; expected: number[] }>;
  jobsLoaded: number;
  liveWrites: number;
  jobsChecked: number;
  lost: number;
  ok: boolean;
}

const BIN = fileURLToPath(new URL('../../../../bin/orch-migrate', import.meta.url));
const ACTIONS = ['plan', 'summarise', 'translate', 'classify'];

function sameFields(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/** Loads `n` legacy jobs the way the old service wrote them: no rev, JSON params with secrets, some TTLs. */
async function loadLegacyJobs(client: RedisClient, keys: Keyspace, n: number, workspaces: number): Promise<Map<string, string>> {
  const owners = new Map<string, string>();
  const now = Date.now();
  for (let start = 0; start < n; start += 500) {
    const p = (client as Redis).pipeline();
    for (let i = start; i < Math.min(n, start + 500); i++) {
      const id = `job_${String(i).padStart(6, '0')}`;
      const ws = `ws-${String(i % workspaces).padStart(3, '0')}`;
      owners.set(id, ws);
      const created = new Date(now - (n - i) * 1000).toISOString();
      const key = keys.legacyJob(id);
      p.hset(key, {
        job_id: id,
        workspace_id: ws,
        action: ACTIONS[i % ACTIONS.length]!,
        params: JSON.stringify({ prompt: `request ${i}`, api_key: `sk_live_${i}`, options: [{ apiKey: 'nested' }] }),
        status: i % 3 === 0 ? 'succeeded' : 'queued',
        result: i % 3 === 0 ? JSON.stringify({ tokens: i % 997 }) : '',
        error: '',
        created_at: created,
        updated_at: created,
      });
      if (i % 10 === 0) p.pexpire(key, 86_400_000);
    }
    await p.exec();
  }
  return owners;
}

/** Live writers through the queue core; every acknowledged write goes in the ledger. */
class LiveWriters {
  readonly ledger = new Map<string, Job>();
  writes = 0;
  errors = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];
  constructor(
    private readonly queues: RedisJobQueue[],
    private readonly owners: Map<string, string>,
  ) {}

  start(): void {
    const ids = [...this.owners.keys()];
    this.loops = this.queues.map(async (q, w) => {
      let n = 0;
      while (!this.stopped) {
        try {
          let job: Job;
          if (n % 4 === 0) {
            job = await q.enqueue({ workspaceId: `ws-${String(n % 7).padStart(3, '0')}`, action: 'plan', params: { writer: w, n, token: 'secret' } });
            this.owners.set(job.jobId, job.workspaceId);
            ids.push(job.jobId);
          } else {
            const id = ids[Math.floor(Math.random() * ids.length)]!;
            job = await q.updateStatus(this.owners.get(id)!, id, { status: n % 2 ? 'running' : 'succeeded', result: { writer: w, n } });
          }
          this.ledger.set(job.jobId, job);
          this.writes++;
        } catch {
          // A job that expired meanwhile (TTL) is a normal outcome, not a loss.
          this.errors++;
        }
        n++;
        await sleep(5);
      }
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
}

function runStep(args: string[], signal: AbortSignal): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    const onAbort = (): void => {
      child.kill('SIGINT');
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.on('close', (code) => {
      signal.removeEventListener('abort', onAbort);
      resolve(code ?? 130);
    });
  });
}

/** Runs the demo; narration goes to `out` (stderr). */
export async function runDemo(opts: DemoOptions, out: Output): Promise<DemoResult> {
  const c = out.color;
  let server: ThrowawayRedis | null = null;
  let url = opts.redisUrl;
  if (!url) {
    server = await startThrowawayRedis();
    url = server.url;
  }
  const prefix = `demo${Date.now().toString(36)}`;
  const keys = new Keyspace(prefix);
  const client = await connectRedis({ url });
  const queues: RedisJobQueue[] = [];
  const result: DemoResult = { server: server?.description ?? 'REDIS_URL', prefix, steps: [], jobsLoaded: 0, liveWrites: 0, jobsChecked: 0, lost: 0, ok: false };
  let writers: LiveWriters | null = null;
  try {
    out.line(c.bold(`orch-migrate demo — ${result.server}, key prefix "${prefix}"`));
    const owners = await loadLegacyJobs(client, keys, opts.jobs, opts.workspaces);
    result.jobsLoaded = owners.size;
    out.line(`loaded ${owners.size} legacy jobs (ai:jobs:<id> layout, no rev, secrets in params, 10% with TTLs) over ${opts.workspaces} workspaces`);
    for (let i = 0; i < opts.writers; i++) queues.push(await RedisJobQueue.create(client, { keys }));
    writers = new LiveWriters(queues, owners);
    writers.start();
    out.line(`${opts.writers} live writers are creating and updating jobs through the queue core for the whole demo\n`);

    const g = ['--redis-url', url, '--prefix', prefix];
    const steps: Array<{ title: string; args: string[]; expected: number[] }> = [
      { title: 'Where are we?', args: ['status'], expected: [0] },
      { title: 'Phase 1: writers mirror every write into v2', args: ['enable-dual-write', '--reason', 'demo: start', '--settle-ms', '500'], expected: [0] },
      { title: 'Copy the history (resumable, throttle-able, byte-exact)', args: ['backfill'], expected: [0] },
      { title: 'Prove both layouts agree, field by field, in both directions', args: ['verify', '--rounds', '2', '--round-delay', '300ms'], expected: [0] },
      { title: 'Phase 2: reads move to v2 (gated on that clean verify)', args: ['flip-read', '--reason', 'demo: verify clean'], expected: [0] },
      { title: 'Soak, and verify again in the new epoch', args: ['verify', '--rounds', '2', '--round-delay', '300ms'], expected: [0] },
      { title: 'Cleanup is a dry run by default', args: ['cleanup', '--min-soak', '0s'], expected: [0] },
      { title: 'Phase 3: delete legacy keys proven in v2', args: ['cleanup', '--execute', '--min-soak', '0s', '--reason', 'demo: no soak on a throwaway server'], expected: [0] },
      { title: 'Status after cleanup', args: ['status'], expected: [0] },
      { title: 'Rollback previews by default', args: ['rollback'], expected: [0] },
      { title: 'Roll back past cleanup: legacy is rebuilt from v2', args: ['rollback', '--execute', '--reason', 'demo: rollback drill'], expected: [0] },
      { title: 'Both layouts agree again', args: ['verify', '--rounds', '2', '--round-delay', '300ms'], expected: [0] },
      { title: 'Where are we now?', args: ['status'], expected: [0] },
    ];
    for (const step of steps) {
      if (opts.signal.aborted) throw new InterruptedError('Demo interrupted');
      out.line(c.cyan(`\n━━ ${step.title}\n$ orch-migrate ${step.args.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' ')}`));
      const code = await runStep([...g, ...step.args], opts.signal);
      result.steps.push({ command: step.args.join(' '), exitCode: code, expected: step.expected });
      if (opts.signal.aborted) throw new InterruptedError('Demo interrupted');
      if (!step.expected.includes(code)) {
        out.line(c.red(`step exited ${code}, expected ${step.expected.join(' or ')}; stopping the demo`));
        break;
      }
    }
    await writers.stop();
    result.liveWrites = writers.writes;

    // Ledger check: every job (loaded or written live) is in both layouts, identical,
    // and at least as new as its newest acknowledged write.
    for (const [id, ws] of owners) {
      const [v2, legacy] = await Promise.all([readSnapshot(client, keys.v2Job(ws, id)), readSnapshot(client, keys.legacyJob(id))]);
      result.jobsChecked++;
      const h2 = v2 ? snapshotToHash(v2) : null;
      const hl = legacy ? snapshotToHash(legacy) : null;
      const acked = writers.ledger.get(id);
      // Field order of a hash is not part of its value (COPY may reorder it): compare sorted.
      const ok = h2 !== null && hl !== null && sameFields(h2, hl) && v2!.pexpireAt === legacy!.pexpireAt && (!acked || Number(h2.rev ?? 0) >= acked.rev);
      if (!ok) result.lost++;
    }
    result.ok = result.lost === 0 && result.steps.every((s) => s.expected.includes(s.exitCode)) && result.steps.length > 0;
    out.line('');
    out.line(
      result.ok
        ? c.green(`every job survived: ${result.jobsChecked} jobs checked in both layouts (${result.liveWrites} live writes during the demo), 0 lost`)
        : c.red(`${result.lost} of ${result.jobsChecked} jobs differ or are missing`),
    );
    return result;
  } finally {
    await writers?.stop();
    await Promise.all(queues.map((q) => q.close()));
    if (!server) {
      // On a user's server, leave nothing behind.
      await unlinkScratchPrefix(client as Redis, prefix);
    }
    await closeRedis(client);
    await server?.stop();
  }
}
