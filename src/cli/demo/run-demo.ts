/**
 * `orch-migrate demo`: the whole migration on a throwaway Redis, with live
 * writers, walking every phase through the real CLI (the same binary and flags
 * an SRE uses), and proving at the end that every acknowledged write survived.
 *
 * It acts on a server it started itself. A server named by --redis-url or
 * REDIS_URL may be somebody's real data, so the demo refuses it (exit 2) unless
 * --yes is given; even then it writes only under a fresh key prefix and deletes
 * that prefix's keys at the end, whatever way the run ends.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { Keyspace } from '../../core/keys.js';
import type { Job } from '../../core/job.js';
import { readSnapshot, snapshotToHash } from '../../core/protocol.js';
import { closeRedis, connectRedis, parseRedisUrl, type RedisClient } from '../../core/redis.js';
import { RedisJobQueue } from '../../core/redis-queue.js';
import { sleep } from '../../core/state.js';
import { ConfigError, InterruptedError } from '../../core/errors.js';
import { fmtInt, type Output } from '../output.js';
import { parseInfo, sweepLeftovers, type LeftoverServer } from './redis-process.js';
import { startThrowawayRedis, unlinkScratchPrefix, type ThrowawayRedis } from './throwaway-redis.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  jobs: number;
  workspaces: number;
  writers: number;
  /** A server the user named (--redis-url / REDIS_URL) instead of a throwaway one. */
  redisUrl?: string;
  /** The user's consent to run on `redisUrl` (--yes). */
  yes?: boolean;
  signal: AbortSignal;
}

/** Where the demo ran; never a password. */
export interface DemoTarget {
  host: string;
  port: number;
  db: number;
  /** True when the demo started the server itself. */
  throwaway: boolean;
  /** redis-server pid, for a throwaway server. */
  pid: number | null;
  /** Keys the server held before the demo wrote anything (null: INFO was not allowed). */
  keysBefore: number | null;
}

/** What the demo proved. */
export interface DemoResult {
  /** One-line description of the server, safe to print. */
  server: string;
  target: DemoTarget;
  prefix: string;
  /** Servers of earlier runs found by the sweep at start. */
  leftovers: LeftoverServer[];
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
/** The demo's workspace names, as {@link loadLegacyJobs} fills them. */
function demoWorkspace(i: number): string {
  return `ws-${String(i).padStart(3, '0')}`;
}

/** The demo's canaries: the last two workspaces it fills (one when there is one). */
function demoCanaries(workspaces: number): string {
  return [...new Set([Math.max(0, workspaces - 2), workspaces - 1].map(demoWorkspace))].join(',');
}

async function loadLegacyJobs(client: RedisClient, keys: Keyspace, n: number, workspaces: number, signal: AbortSignal): Promise<Map<string, string>> {
  const owners = new Map<string, string>();
  const now = Date.now();
  for (let start = 0; start < n; start += 500) {
    if (signal.aborted) throw new InterruptedError('Demo interrupted');
    const p = (client as Redis).pipeline();
    for (let i = start; i < Math.min(n, start + 500); i++) {
      const id = `job_${String(i).padStart(6, '0')}`;
      const ws = demoWorkspace(i % workspaces);
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

/**
 * Runs one CLI step. The URL goes through the environment, not argv, so a
 * password in it never shows in `ps`. The step's stdout goes to our stderr: the
 * demo's own stdout holds only its --json object.
 */
function runStep(args: string[], url: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 2, 'inherit'], env: { ...process.env, REDIS_URL: url } });
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

/** Total keys over every database, from INFO keyspace; null when the server does not allow INFO. */
async function countKeys(client: Redis): Promise<{ total: number; perDb: string[] } | null> {
  let info: Record<string, string>;
  try {
    info = parseInfo(await client.info('keyspace'));
  } catch {
    return null;
  }
  let total = 0;
  const perDb: string[] = [];
  for (const [db, value] of Object.entries(info)) {
    const n = Number(/(?:^|,)keys=([0-9]+)/.exec(value)?.[1] ?? 0);
    total += n;
    if (n > 0) perDb.push(`${db} ${fmtInt(n)}`);
  }
  return { total, perDb };
}

/** A prefix no earlier run used: time plus randomness, letters and digits only (safe in SCAN MATCH). */
function freshPrefix(): string {
  return `demo${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

/** Describes the target in one line; never prints the password (only host, port, db). */
function describeTarget(t: DemoTarget): string {
  const where = `${t.host}:${t.port} db ${t.db}`;
  if (t.throwaway) return `throwaway redis-server on ${where} (pid ${t.pid ?? '?'}), started by this demo`;
  return `${where}, a server the demo did not start (--yes)`;
}

/** Runs the demo; narration goes to `out` (stderr). */
export async function runDemo(opts: DemoOptions, out: Output): Promise<DemoResult> {
  const c = out.color;
  // Servers of earlier runs whose demo is gone (a closed terminal, kill -9): stop them first.
  const leftovers = await sweepLeftovers();
  for (const l of leftovers) {
    const where = l.port === null ? '' : ` on 127.0.0.1:${l.port}`;
    if (l.action === 'stopped') out.line(`stopped redis-server pid ${l.pid}${where}, left running by an earlier demo (pid ${l.ownerPid}, gone)`);
    else
      out.warn(
        `left pid ${l.pid} alone: an earlier demo recorded it, but ${l.action === 'not-ours' ? 'it now runs another program' : 'its command line cannot be read'}`,
      );
  }

  let server: ThrowawayRedis | null = null;
  let url = opts.redisUrl;
  if (url === undefined) {
    server = await startThrowawayRedis();
    url = server.url;
  }
  const parsed = parseRedisUrl(url);
  const prefix = freshPrefix();
  const keys = new Keyspace(prefix);
  let client: RedisClient | null = null;
  const queues: RedisJobQueue[] = [];
  let writers: LiveWriters | null = null;
  let wrote = false;
  try {
    client = await connectRedis({ url, connectionName: 'orch-migrate-demo' });
    const before = await countKeys(client as Redis);
    const target: DemoTarget = {
      host: parsed.host,
      port: parsed.port,
      db: parsed.db,
      throwaway: server !== null,
      pid: server?.pid ?? null,
      keysBefore: before?.total ?? null,
    };
    if (!target.throwaway && !opts.yes) {
      const holds =
        before === null
          ? 'what it holds could not be read (INFO is not allowed)'
          : before.total === 0
            ? 'it holds no keys right now'
            : `it holds ${fmtInt(before.total)} key(s) (${before.perDb.join(', ')})`;
      throw new ConfigError(
        `The demo did not start the server at ${target.host}:${target.port} db ${target.db} (from --redis-url or REDIS_URL), and ${holds}; refusing to write there`,
        {
          code: 'ERR_DEMO_TARGET',
          suggestion:
            'The demo loads jobs and runs live writers on its server. Unset REDIS_URL (and drop --redis-url) to let it start a throwaway redis-server, ' +
            "or add --yes to run it on this server under a fresh key prefix; it deletes only that prefix's keys at the end.",
        },
      );
    }
    const result: DemoResult = {
      server: describeTarget(target),
      target,
      prefix,
      leftovers,
      steps: [],
      jobsLoaded: 0,
      liveWrites: 0,
      jobsChecked: 0,
      lost: 0,
      ok: false,
    };
    out.line(c.bold(`orch-migrate demo — target ${target.host}:${target.port} db ${target.db}, key prefix "${prefix}"`));
    out.line(
      target.throwaway
        ? `  ${result.server}; it is stopped when the demo ends, Ctrl-C, SIGTERM and SIGHUP included`
        : `  ${result.server}: ${target.keysBefore === null ? 'its other keys' : `its ${fmtInt(target.keysBefore)} other key(s)`} are never touched; every "${prefix}:*" key is deleted at the end`,
    );
    wrote = true;
    const owners = await loadLegacyJobs(client, keys, opts.jobs, opts.workspaces, opts.signal);
    result.jobsLoaded = owners.size;
    out.line(`loaded ${owners.size} legacy jobs (ai:jobs:<id> layout, no rev, secrets in params, 10% with TTLs) over ${opts.workspaces} workspaces`);
    for (let i = 0; i < opts.writers; i++) queues.push(await RedisJobQueue.create(client, { keys }));
    writers = new LiveWriters(queues, owners);
    writers.start();
    out.line(`${opts.writers} live writers are creating and updating jobs through the queue core for the whole demo\n`);

    const g = ['--prefix', prefix];
    const canaries = demoCanaries(opts.workspaces);
    const steps: Array<{ title: string; args: string[]; expected: number[] }> = [
      { title: 'Where are we?', args: ['status'], expected: [0] },
      { title: 'Phase 1: writers mirror every write into v2', args: ['enable-dual-write', '--reason', 'demo: start', '--settle-ms', '500'], expected: [0] },
      { title: 'Copy the history (resumable, throttle-able, byte-exact)', args: ['backfill'], expected: [0] },
      { title: 'Prove both layouts agree, field by field, in both directions', args: ['verify', '--rounds', '2', '--round-delay', '300ms'], expected: [0] },
      {
        title: 'Canary: two workspaces read from v2 first, each gated on a verify that covered it',
        args: ['flip-read', '--workspace', canaries, '--reason', 'demo: canary'],
        expected: [0],
      },
      {
        title: 'Verify again: the canaries are checked against their own primary (v2 now)',
        args: ['verify', '--rounds', '2', '--round-delay', '300ms'],
        expected: [0],
      },
      {
        title: 'The canaries clean up ahead of everyone (exactly their legacy keys)',
        args: ['cleanup', '--workspace', canaries, '--execute', '--min-soak', '0s', '--reason', 'demo: canary cleanup'],
        expected: [0],
      },
      { title: 'Status shows the canaries ahead of the global phase', args: ['status'], expected: [0] },
      {
        title: 'Every move changes the epoch: verify once more before the global flip',
        args: ['verify', '--rounds', '2', '--round-delay', '300ms'],
        expected: [0],
      },
      { title: 'Phase 2: reads move to v2 for everyone (gated on that clean verify)', args: ['flip-read', '--reason', 'demo: verify clean'], expected: [0] },
      { title: 'Soak, and verify again in the new epoch', args: ['verify', '--rounds', '2', '--round-delay', '300ms'], expected: [0] },
      { title: 'Cleanup is a dry run by default', args: ['cleanup', '--min-soak', '0s'], expected: [0] },
      {
        title: 'Phase 3: delete legacy keys proven in v2',
        args: ['cleanup', '--execute', '--min-soak', '0s', '--reason', 'demo: no soak on a throwaway server'],
        expected: [0],
      },
      { title: 'Status after cleanup', args: ['status'], expected: [0] },
      { title: 'Rollback previews by default', args: ['rollback'], expected: [0] },
      { title: 'Roll back past cleanup: legacy is rebuilt from v2', args: ['rollback', '--execute', '--reason', 'demo: rollback drill'], expected: [0] },
      { title: 'Both layouts agree again', args: ['verify', '--rounds', '2', '--round-delay', '300ms'], expected: [0] },
      { title: 'Where are we now?', args: ['status'], expected: [0] },
    ];
    for (const step of steps) {
      if (opts.signal.aborted) throw new InterruptedError('Demo interrupted');
      out.line(c.cyan(`\n━━ ${step.title}\n$ orch-migrate ${step.args.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' ')}`));
      const code = await runStep([...g, ...step.args], url, opts.signal);
      result.steps.push({ command: step.args.join(' '), exitCode: code, expected: step.expected });
      // 130: the step was interrupted, by the same signal that stops the demo (a closed terminal's
      // SIGHUP reaches the whole process group, the step first, sometimes).
      if (opts.signal.aborted || code === 130) throw new InterruptedError('Demo interrupted');
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
    try {
      // On a user's server, leave nothing behind (a throwaway server goes as a whole).
      if (client && wrote && !server) await unlinkScratchPrefix(client as Redis, prefix);
    } finally {
      if (client) await closeRedis(client);
      await server?.stop();
    }
  }
}
