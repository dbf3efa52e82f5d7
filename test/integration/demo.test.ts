/**
 * `orch-migrate demo` (the README quickstart): it walks every phase on its own
 * throwaway Redis and ends green; it refuses a server it did not start unless
 * --yes, and then touches only its own prefix; and its throwaway server never
 * outlives it, whatever signal ends it, even after kill -9.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { askRedis, processAlive, SESSION_DIR_PREFIX } from '../../src/cli/demo/redis-process.js';
import { CLI, runCli } from '../helpers/cli.js';
import { closeClient, connectStandalone, processControlUnavailable } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';

const SMALL = ['--jobs', '200', '--workspaces', '3', '--writers', '1'];
const BANNER =
  /orch-migrate demo — target 127\.0\.0\.1:(\d+) db 0, key prefix "(demo[a-z0-9]+)"\n {2}throwaway redis-server on 127\.0\.0\.1:\d+ db 0 \(pid (\d+)\)/;

/** A demo running in the background, with its output so far. */
interface RunningDemo {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first match of `re` in stderr (rejects if the demo ends first). */
  waitFor(re: RegExp): Promise<RegExpExecArray>;
  /** Its stdio closed too (a step it ran may hold stderr open a little longer). */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The demo process itself ended. */
  exited: Promise<void>;
}

function startDemo(args: string[], opts: { detached?: boolean } = {}): RunningDemo {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.REDIS_URL;
  const child = spawn(process.execPath, [CLI, 'demo', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached ?? false });
  let stderr = '';
  const waiters: Array<{ re: RegExp; resolve: (m: RegExpExecArray) => void; reject: (e: Error) => void }> = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      const m = w.re.exec(stderr);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout?.resume();
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
    check();
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      for (const w of waiters.splice(0)) w.reject(new Error(`demo ended (code ${code}, signal ${signal}) before ${w.re}:\n${stderr.slice(-3000)}`));
      resolve({ code, signal });
    });
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    exited,
    output: () => stderr,
    waitFor: (re) =>
      new Promise((resolve, reject) => {
        waiters.push({ re, resolve, reject });
        check();
      }),
    done,
  };
}

/** Session dirs in os.tmpdir() owned by `pid`. */
function sessionDirsOf(pid: number): string[] {
  return readdirSync(os.tmpdir())
    .filter((n) => n.startsWith(SESSION_DIR_PREFIX))
    .map((n) => path.join(os.tmpdir(), n))
    .filter((dir) => {
      try {
        return (JSON.parse(readFileSync(path.join(dir, 'owner.json'), 'utf8')) as { ownerPid: number }).ownerPid === pid;
      } catch {
        return false;
      }
    });
}

/** Waits (bounded) until `pid` is gone; the bound is for a hung process, not a speed requirement. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  return !processAlive(pid);
}

async function refusesConnections(port: number): Promise<boolean> {
  try {
    await askRedis(port, (c) => c.ping());
    return false;
  } catch {
    return true;
  }
}

describe('orch-migrate demo on its own throwaway server', () => {
  it('starts its own redis-server, migrates with live writers, rolls back after cleanup, loses nothing, and stops the server', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const r = await runCli(['--json', 'demo', '--jobs', '400', '--workspaces', '5', '--writers', '2'], { env: { REDIS_URL: undefined }, timeoutMs: 110_000 });
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ ok: true, lost: 0, target: { host: '127.0.0.1', db: 0, throwaway: true } });
    const steps = r.json!.steps as Array<{ command: string; exitCode: number }>;
    // The canaries (the last two workspaces) flip and clean up ahead of the global phase.
    expect(
      steps.map((s) =>
        s.command
          .split(' ')
          .slice(0, s.command.includes('--workspace') ? 3 : 1)
          .join(' '),
      ),
    ).toEqual([
      'status',
      'enable-dual-write',
      'backfill',
      'verify',
      'flip-read --workspace ws-003,ws-004',
      'verify',
      'cleanup --workspace ws-003,ws-004',
      'status',
      'verify',
      'flip-read',
      'verify',
      'cleanup',
      'cleanup',
      'status',
      'rollback',
      'rollback',
      'verify',
      'status',
    ]);
    expect(steps.every((s) => s.exitCode === 0)).toBe(true);
    expect(r.json!.jobsChecked as number).toBeGreaterThanOrEqual(400);
    expect(r.json!.liveWrites as number).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/every job survived/);
    // The banner names host, port and prefix; the server is gone afterwards.
    const m = BANNER.exec(r.stderr);
    expect(m, r.stderr.slice(0, 2000)).not.toBeNull();
    const [, port, prefix, pid] = m!;
    expect(Number(port)).toBe((r.json!.target as { port: number }).port);
    expect(prefix).toBe(r.json!.prefix);
    expect(await gone(Number(pid))).toBe(true);
    expect(await refusesConnections(Number(port))).toBe(true);
  });
});

describe('orch-migrate demo on a server it did not start', () => {
  const password = 'demo-pw-must-not-leak';
  let server: RedisServerHandle;
  let admin: Redis;
  let url: string;
  const otherData: Record<string, string> = { 'ai:jobs:prod-1': 'hash', 'ai:migration:jobs': 'hash', 'billing:invoice:7': 'string' };

  beforeAll(async () => {
    if (processControlUnavailable()) return;
    server = await startRedisServer();
    admin = connectStandalone(server.url);
    await admin.hset('ai:jobs:prod-1', { job_id: 'prod-1', workspace_id: 'acme', status: 'queued' });
    await admin.hset('ai:migration:jobs', { phase: 'legacy', epoch: '0' });
    await admin.set('billing:invoice:7', 'paid');
    await admin.config('SET', 'requirepass', password);
    await admin.auth(password);
    url = `redis://:${password}@127.0.0.1:${server.port}`;
  });
  afterAll(async () => {
    if (admin) await closeClient(admin);
    await server?.stop();
  });

  async function snapshot(): Promise<Record<string, string>> {
    const keys = (await admin.keys('*')).sort();
    const out: Record<string, string> = {};
    for (const k of keys) out[k] = JSON.stringify((await admin.type(k)) === 'hash' ? await admin.hgetall(k) : await admin.get(k));
    return out;
  }

  it('is refused without --yes (exit 2, the fix named, no password printed) and writes nothing', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const before = await snapshot();
    expect(Object.keys(before).sort()).toEqual(Object.keys(otherData).sort());
    // The server's dirty counter: every change to the dataset adds to it.
    const dirty = async (): Promise<number> => Number(/rdb_changes_since_last_save:(\d+)/.exec(await admin.info('persistence'))?.[1]);
    const dirtyBefore = await dirty();

    for (const how of [
      { env: { REDIS_URL: url }, args: [] as string[] },
      { env: { REDIS_URL: undefined }, args: ['--redis-url', url] },
    ]) {
      const r = await runCli([...how.args, 'demo', ...SMALL], { env: how.env });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`did not start the server at 127\\.0\\.0\\.1:${server.port} db 0 .*holds 3 key\\(s\\)`));
      expect(r.stderr).toMatch(/fix:.*--yes.*Unset REDIS_URL|fix:.*Unset REDIS_URL.*--yes/);
      expect(r.stderr + r.stdout).not.toContain(password);
      const json = await runCli([...how.args, '--json', 'demo', ...SMALL], { env: how.env });
      expect(json.code).toBe(2);
      expect(json.json).toMatchObject({ ok: false, exitCode: 2, error: { code: 'ERR_DEMO_TARGET' } });
      expect(json.stdout + json.stderr).not.toContain(password);
    }
    expect(await snapshot()).toEqual(before);
    // Not even a write that was undone: the dataset was not changed at all.
    expect(await dirty()).toBe(dirtyBefore);
  });

  it('with --yes runs under a fresh prefix and deletes only its own keys', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const before = await snapshot();
    const r = await runCli(['--json', 'demo', '--yes', ...SMALL], { env: { REDIS_URL: url }, timeoutMs: 110_000 });
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ ok: true, lost: 0, target: { host: '127.0.0.1', port: server.port, db: 0, throwaway: false, keysBefore: 3 } });
    const prefix = r.json!.prefix as string;
    expect(prefix).toMatch(/^demo[a-z0-9]+$/);
    expect(Object.keys(otherData).some((k) => k.startsWith(`${prefix}:`))).toBe(false);
    expect(r.stderr).toContain(`orch-migrate demo — target 127.0.0.1:${server.port} db 0, key prefix "${prefix}"`);
    expect(r.stderr + r.stdout).not.toContain(password);
    // It did run there (the jobs were loaded and migrated on this server)...
    expect(r.json!.jobsChecked as number).toBeGreaterThanOrEqual(200);
    expect(Number(/cmdstat_hset:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0)).toBeGreaterThanOrEqual(200);
    // ...and left exactly what was there before, byte for byte.
    expect(await snapshot()).toEqual(before);
  });
});

describe('the throwaway server never outlives the demo', () => {
  it.for([
    { name: 'SIGTERM to the demo', signal: 'SIGTERM', group: false },
    { name: 'SIGHUP to its whole process group (a closed terminal)', signal: 'SIGHUP', group: true },
    { name: 'SIGINT to the demo (Ctrl-C)', signal: 'SIGINT', group: false },
  ] as const)('$name: exit 130 and no redis-server left behind', async ({ signal, group }, ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const demo = startDemo(['--jobs', '3000', '--writers', '2'], { detached: group });
    const m = await demo.waitFor(BANNER);
    const port = Number(m[1]);
    const pid = Number(m[3]);
    // Mid-run: live writers going and a CLI step running.
    await demo.waitFor(/━━ Phase 1/);
    expect(processAlive(pid)).toBe(true);
    const demoPid = demo.child.pid!;
    if (group) process.kill(-demoPid, signal);
    else demo.child.kill(signal);
    const end = await demo.done;
    expect(end.code, demo.output().slice(-3000)).toBe(130);
    expect(await gone(pid)).toBe(true);
    expect(await refusesConnections(port)).toBe(true);
    expect(sessionDirsOf(demoPid)).toEqual([]);
  });

  it('a server left by a demo killed with SIGKILL (watchdog too) is stopped by the next demo', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const killed = startDemo(['--jobs', '3000', '--writers', '1']);
    const m = await killed.waitFor(BANNER);
    const port = Number(m[1]);
    const pid = Number(m[3]);
    const killedPid = killed.child.pid!;
    const [dir] = sessionDirsOf(killedPid);
    expect(dir).toBeDefined();
    const owner = JSON.parse(readFileSync(path.join(dir!, 'owner.json'), 'utf8')) as { watchdogPid: number | null };
    // Take out every guard that runs in or beside the demo: what is left is the sweep.
    if (owner.watchdogPid !== null) process.kill(owner.watchdogPid, 'SIGKILL');
    process.kill(killedPid, 'SIGKILL');
    await killed.exited;
    expect(processAlive(pid)).toBe(true);
    expect(await refusesConnections(port)).toBe(false);

    const next = await runCli(['demo', '--jobs', '10', '--workspaces', '1', '--writers', '0'], { env: { REDIS_URL: undefined }, timeoutMs: 110_000 });
    expect(next.code, next.stderr.slice(-3000)).toBe(0);
    expect(next.stderr).toContain(`stopped redis-server pid ${pid} on 127.0.0.1:${port}, left running by an earlier demo (pid ${killedPid}, gone)`);
    expect(await gone(pid)).toBe(true);
    expect(existsSync(dir!)).toBe(false);
  });
});
