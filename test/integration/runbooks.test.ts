/**
 * The runbooks are executable: every fenced ```sh block of runbooks/*.md runs
 * with bash against a real Redis, so a runbook cannot drift from the CLI.
 *
 * Conventions: test/helpers/markdown-blocks.ts (also in runbooks/README.md).
 *
 * The journey runs the step runbooks and the rollbacks in order on one key
 * prefix; each incident runbook runs in a scenario staged for it. Only the
 * production durations are replaced (SUBSTITUTIONS); REDIS_URL, ORCH_PREFIX
 * and ORCH_ACTOR come from the environment, and `orch-migrate` is on the PATH.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { StateStore } from '../../src/core/state.js';
import { runCli, target } from '../helpers/cli.js';
import { coreClient, topologyUrl } from '../helpers/core-clients.js';
import { waitForCheckpoint } from '../helpers/fault-helpers.js';
import { deleteKeysWithPrefix, uniquePrefix } from '../helpers/fixtures.js';
import { exited, scanAll, seedJobs, waitForLock } from '../helpers/lifecycle.js';
import { extractBlocks, runBlock, shimDir, type Block, type BlockRun } from '../helpers/markdown-blocks.js';

const RUNBOOKS = fileURLToPath(new URL('../../runbooks/', import.meta.url));

/** Production durations → CI durations. Nothing else in a block is changed. */
const SUBSTITUTIONS: Array<[RegExp, string]> = [
  [/--min-soak 1h\b/g, '--min-soak 0s'],
  [/--settle-ms 2000\b/g, '--settle-ms 200'],
];

/** The step runbooks and rollbacks, in journey order, with the phase each one leaves. */
const JOURNEY: Array<[string, string]> = [
  ['README.md', 'legacy'],
  ['01-enable-dual-write.md', 'dual-write'],
  ['02-backfill.md', 'dual-write'],
  ['03-verify.md', 'dual-write'],
  ['04-flip-read.md', 'read-new'],
  ['05-cleanup.md', 'new-only'],
  ['rollback-from-new-only.md', 'read-new'],
  ['rollback-from-read-new.md', 'dual-write'],
  ['rollback-from-dual-write.md', 'legacy'],
];

const INCIDENTS = [
  'incident-verify-mismatches.md',
  'incident-interrupted-backfill.md',
  'incident-stuck-lock.md',
  'incident-unmigratable.md',
  'incident-state-record.md',
  'incident-id-conflict.md',
  'incident-lost-lease.md',
];

/** Runbooks that are neither a journey step nor an incident, each run in a scenario of its own. */
const SCENARIOS = ['canary.md'];

function readRunbook(name: string): Block[] {
  return extractBlocks(name, readFileSync(path.join(RUNBOOKS, name), 'utf8'));
}

function substitute(code: string): string {
  return SUBSTITUTIONS.reduce((c, [re, to]) => c.replace(re, to), code);
}

class RunbookRunner {
  readonly keys: Keyspace;
  readonly env: NodeJS.ProcessEnv;
  readonly args: string[];
  private readonly dirs: string[] = [];

  constructor(
    readonly prefix: string,
    bin: string,
  ) {
    this.keys = new Keyspace(prefix);
    const t = topologyUrl('standalone');
    this.args = target(t.url, prefix, t.cluster);
    this.env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, REDIS_URL: t.url, ORCH_PREFIX: prefix, ORCH_ACTOR: 'runbook-test', NO_COLOR: '1' };
    delete this.env.ORCH_LOCK_TTL_MS;
  }

  /** Runs every executable block of a runbook in order, asserting each exit code. */
  async run(name: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<BlockRun[]> {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'orch-runbook-'));
    this.dirs.push(cwd);
    const runs: BlockRun[] = [];
    for (const block of readRunbook(name).filter((b) => b.run)) {
      const r = await runBlock(block, { ...this.env, ...extraEnv }, cwd, substitute);
      runs.push(r);
      expect(
        r.code,
        `${name}:${block.line} (expected exit ${block.expectExit})\n$ ${substitute(block.code)}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
      ).toBe(block.expectExit);
    }
    return runs;
  }

  cleanupDirs(): void {
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }
}

describe('runbook conventions', () => {
  const files = readdirSync(RUNBOOKS).filter((f) => f.endsWith('.md'));

  it('every runbook is exercised: in the journey or in an incident scenario', () => {
    expect([...JOURNEY.map(([f]) => f), ...INCIDENTS, ...SCENARIOS].sort()).toEqual(files.sort());
  });

  it('every fence is sh, sh norun or text; every runbook has executable blocks and the required sections', () => {
    for (const f of files) {
      const blocks = readRunbook(f);
      for (const b of blocks) expect(['sh', 'sh norun', 'text'], `${f}:${b.line}`).toContain(b.info);
      expect(blocks.filter((b) => b.run).length, f).toBeGreaterThan(0);
      if (f === 'README.md') continue;
      const text = readFileSync(path.join(RUNBOOKS, f), 'utf8');
      if (f.startsWith('incident-')) {
        expect(text, f).toMatch(/^## Symptom/m);
        expect(text, f).toMatch(/^## Steps/m);
      } else {
        for (const h of ['## Preconditions', '## Commands', '## Expected output', '## How to tell it worked', '## How to back out'])
          expect(text, `${f}: ${h}`).toContain(h);
      }
    }
  });

  it('the block extractor honours the conventions', () => {
    const blocks = extractBlocks('x.md', ['```sh', 'a', '# expect-exit: 3', '```', '```sh norun', 'b', '```', '```text', 'c', '```'].join('\n'));
    expect(blocks.map((b) => [b.run, b.expectExit, b.code])).toEqual([
      [true, 3, 'a\n# expect-exit: 3'],
      [false, 0, 'b'],
      [false, 0, 'c'],
    ]);
  });
});

describe('runbooks run against a real Redis', () => {
  let client: RedisClient;
  let bin: string;
  const runners: RunbookRunner[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    client = await coreClient('standalone');
    bin = shimDir();
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const r of runners) {
      r.cleanupDirs();
      await deleteKeysWithPrefix(client, r.prefix).catch(() => undefined);
    }
    rmSync(bin, { recursive: true, force: true });
    await closeRedis(client);
  });

  function runner(name: string): RunbookRunner {
    const r = new RunbookRunner(uniquePrefix(name), bin);
    runners.push(r);
    return r;
  }

  const phase = async (r: RunbookRunner): Promise<string> => (await new StateStore(client, r.keys).read()).phase;

  it('the journey: steps 1–5, then roll back from new-only, read-new and dual-write', async () => {
    const r = runner('rbjourney');
    await seedJobs(client, r.keys, 300);
    for (const [file, after] of JOURNEY) {
      await r.run(file);
      expect(await phase(r), `phase after ${file}`).toBe(after);
    }
    const st = await new StateStore(client, r.keys).read();
    expect(st).toMatchObject({ legacyComplete: true, v2Complete: false });
    expect(await client.exists(r.keys.legacyJob((await client.lrange(r.keys.queue, 0, 0))[0]!.split(':')[1]!))).toBe(1);
  });

  it('incident: verify found mismatches', async () => {
    const r = runner('rbmismatch');
    const jobs = await seedJobs(client, r.keys, 100);
    expect((await runCli([...r.args, 'enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    expect((await runCli([...r.args, 'backfill'])).code).toBe(0);
    // Damage v2 behind the protocol's back: a changed field, a lost field, a lost index entry.
    // (Not a deleted record: verify --repair races its own pair and dangling-index repairs on it;
    // reported to the verify owner.)
    const [a, b, c] = [jobs[0]!, jobs[1]!, jobs[2]!];
    await client.hset(r.keys.v2Job(a.workspaceId, a.jobId), 'status', 'tampered');
    await client.hdel(r.keys.v2Job(b.workspaceId, b.jobId), 'action');
    await client.zrem(r.keys.index(c.workspaceId), c.jobId);
    await r.run('incident-verify-mismatches.md');
    expect(await client.hget(r.keys.v2Job(a.workspaceId, a.jobId), 'status')).toBe('queued');
    expect(await client.hget(r.keys.v2Job(b.workspaceId, b.jobId), 'action')).toBe('seed');
    expect(await client.zscore(r.keys.index(c.workspaceId), c.jobId)).not.toBeNull();
  });

  it('incident: a backfill was interrupted', async () => {
    const r = runner('rbinterrupt');
    await seedJobs(client, r.keys, 400);
    expect((await runCli([...r.args, 'enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    let child: ChildProcess | undefined;
    const slow = runCli([...r.args, 'backfill', '--rate', '150', '--batch-size', '10'], { onSpawn: (c) => (child = c) });
    await waitForLock(client, r.keys);
    await new Promise((res) => setTimeout(res, 1200));
    child!.kill('SIGINT');
    expect((await slow).code).toBe(130);
    await r.run('incident-interrupted-backfill.md');
    expect((await new StateStore(client, r.keys).read()).lastBackfill).toMatchObject({ complete: true, resumed: true, copied: 400 });
  });

  it('incident: the lock is stuck (holder killed with kill -9)', async () => {
    const r = runner('rbstucklock');
    await seedJobs(client, r.keys, 300);
    expect((await runCli([...r.args, 'enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    let child: ChildProcess | undefined;
    void runCli([...r.args, '--lock-ttl', '5000', 'backfill', '--rate', '30'], {
      onSpawn: (c) => {
        child = c;
        children.push(c);
      },
    });
    await waitForLock(client, r.keys);
    child!.kill('SIGKILL');
    await exited(child!);
    const refused = await runCli([...r.args, 'backfill']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/runbooks\/incident-stuck-lock\.md/);
    await r.run('incident-stuck-lock.md');
    expect((await new StateStore(client, r.keys).read()).lastBackfill).toMatchObject({ complete: true });
  });

  it('incident: unmigratable records were found', async () => {
    const r = runner('rbunmig');
    await seedJobs(client, r.keys, 50);
    expect((await runCli([...r.args, 'enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    await client.hset(`${r.prefix}:jobs:job_77`, { job_id: 'job_77', workspace_id: 'Acme Corp', status: 'queued', rev: '1' });
    await client.hset(`${r.prefix}:jobs:job_78`, { job_id: 'job_78', status: 'queued', rev: '1' });
    const [dry] = await r.run('incident-unmigratable.md');
    expect(dry!.stdout).toMatch(/job_77\s+invalid-workspace/);
    expect(dry!.stdout).toMatch(/job_78\s+missing-workspace/);
  });

  /** Steps 1–5 by the CLI, as in the journey, into new-only. */
  async function toNewOnly(r: RunbookRunner): Promise<void> {
    await toReadNew(r);
    const c = await runCli([...r.args, 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'runbook test']);
    expect(c.code, c.stderr).toBe(0);
  }

  async function toReadNew(r: RunbookRunner): Promise<void> {
    for (const cmd of [
      ['enable-dual-write', '--settle-ms', '100'],
      ['backfill'],
      ['verify', '--round-delay', '50ms'],
      ['flip-read'],
      ['verify', '--round-delay', '50ms'],
    ]) {
      const res = await runCli([...r.args, ...cmd]);
      expect(res.code, `${cmd.join(' ')}\n${res.stderr}`).toBe(0);
    }
  }

  it('incident: one job id in two workspaces', async () => {
    const r = runner('rbidconflict');
    await seedJobs(client, r.keys, 20);
    await toNewOnly(r);
    // In new-only v2 keys are per workspace: two tenants create the same id, and both jobs finish.
    const q = await RedisJobQueue.create(client, { keys: r.keys, register: false, phase: { subscribe: false } });
    try {
      for (const ws of ['acme', 'globex']) {
        await q.enqueue({ workspaceId: ws, jobId: 'job_7f3a', action: 'report', params: { ws } });
        await q.updateStatus(ws, 'job_7f3a', { status: 'succeeded' });
      }
    } finally {
      await q.close();
    }
    const rb = await runCli([...r.args, 'rollback', '--execute']);
    expect(rb.code).toBe(1);
    expect(rb.stdout).toMatch(/id-conflict/);
    await r.run('incident-id-conflict.md');
    expect(await new StateStore(client, r.keys).read()).toMatchObject({ phase: 'read-new', legacyComplete: true });
    // Both jobs are whole: one under its id in both layouts, the other under its new id.
    const owner = (await client.hget(r.keys.legacyJob('job_7f3a'), 'workspace_id'))!;
    const other = owner === 'acme' ? 'globex' : 'acme';
    expect(await client.hget(r.keys.v2Job(owner, 'job_7f3a'), 'workspace_id')).toBe(owner);
    expect(await client.exists(r.keys.v2Job(other, 'job_7f3a'))).toBe(0);
    expect(await client.hgetall(r.keys.v2Job(other, `job_7f3a-${other}`))).toMatchObject({
      job_id: `job_7f3a-${other}`,
      workspace_id: other,
      status: 'succeeded',
      action: 'report',
    });
    expect(await client.hget(r.keys.legacyJob(`job_7f3a-${other}`), 'workspace_id')).toBe(other);
    expect(await client.zscore(r.keys.index(other), `job_7f3a-${other}`)).not.toBeNull();
  });

  it('incident: a run lost its lease (lock deleted under a running cleanup)', async () => {
    const r = runner('rblostlease');
    await seedJobs(client, r.keys, 300);
    await toReadNew(r);
    let fault: Promise<void> | undefined;
    const stale = await runCli([...r.args, 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'runbook test', '--rate', '100', '--batch-size', '10'], {
      onSpawn: (c) => {
        children.push(c);
        fault = waitForCheckpoint(client, r.keys, 'cleanup', 30).then(async () => void (await client.del(r.keys.lock)));
      },
    });
    await fault;
    expect(stale.code, stale.stderr).toBe(4);
    expect(stale.stderr).toMatch(/no longer holds the migration lock|lease was lost/);
    expect((await scanAll(client, r.keys.legacyPattern)).length).toBeGreaterThan(0);
    await r.run('incident-lost-lease.md');
    const st = await new StateStore(client, r.keys).read();
    expect(st).toMatchObject({ phase: 'new-only' });
    expect(st.lastCleanup).toMatchObject({ complete: true, kept: 0 });
    expect(await scanAll(client, r.keys.legacyPattern)).toEqual([]);
  });

  it('scenario: two canary workspaces flip, clean up and roll back on their own, with live writers', async () => {
    const r = runner('rbcanary');
    const jobs = await seedJobs(client, r.keys, 300);
    for (const cmd of [['enable-dual-write', '--settle-ms', '100'], ['backfill']]) {
      const res = await runCli([...r.args, ...cmd]);
      expect(res.code, `${cmd.join(' ')}\n${res.stderr}`).toBe(0);
    }
    const q = await RedisJobQueue.create(client, { keys: r.keys, register: { leaseMs: 3000, name: 'runbook-canary' } });
    let writing = true;
    let acked = 0;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const j = jobs[i % jobs.length]!;
        await q.updateStatus(j.workspaceId, j.jobId, { status: i % 2 ? 'running' : 'queued' });
        acked++;
        await new Promise((res) => setTimeout(res, 10));
      }
    })();
    try {
      const runs = await r.run('canary.md', { CANARIES: 'ws1,ws2' });
      const out = runs.map((x) => x.stdout).join('');
      expect(out).toMatch(/2 in read-new \(ahead of the global dual-write\)/);
      expect(out).toMatch(/deleted/);
    } finally {
      writing = false;
      await writer;
      await q.close();
    }
    expect(acked).toBeGreaterThan(0);
    const st = await new StateStore(client, r.keys).read();
    // Back where it started: global dual-write, no override left, legacy whole.
    expect(st).toMatchObject({ phase: 'dual-write', legacyComplete: true, overrides: {} });
    const legacy = await scanAll(client, r.keys.legacyPattern);
    expect(legacy.length).toBe(jobs.length);
  });

  it('incident: the state record is corrupt', async () => {
    const r = runner('rbstate');
    await seedJobs(client, r.keys, 20);
    expect((await runCli([...r.args, 'enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    // A preview lands in the history with "to":"legacy": the runbook must pick the transition, not this.
    expect((await runCli([...r.args, 'rollback'])).code).toBe(0);
    await client.hset(r.keys.state, 'phase', 'dual_write', 'epoch', 'one');
    const before = await runCli([...r.args, 'status']);
    expect(before.code).toBe(2);
    expect(before.stderr).toMatch(/runbooks\/incident-state-record\.md/);
    await r.run('incident-state-record.md');
    const st = await new StateStore(client, r.keys).read();
    expect(st).toMatchObject({ phase: 'dual-write', epoch: 1 });
    const h = await new StateStore(client, r.keys).history(5);
    expect(h.some((e) => e.type === 'note' && e.by === 'runbook-test')).toBe(true);
  });
});
