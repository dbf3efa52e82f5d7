/**
 * The sweep in src/cli/demo/redis-process.ts stops servers of dead sessions,
 * and nothing else: not a process that took over a recorded pid, not a server
 * of a session whose owner still runs, not a dir without its marker.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findFreePort, processAlive, PROC_TITLE_TAG, sweepLeftovers } from '../../src/cli/demo/redis-process.js';
import { processControlUnavailable } from '../helpers/fixtures.js';

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A pid that existed and is gone: a process that ran and was reaped. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

function session(tmp: string, name: string, ownerPid: number, tag: string, pids: Array<{ pid: number; port: number }>): string {
  const root = path.join(tmp, `orch-migrate-redis-${name}`);
  mkdirSync(root);
  writeFileSync(
    path.join(root, 'owner.json'),
    JSON.stringify({ marker: 'orch-migrate throwaway redis session v1', ownerPid, ownerStart: null, watchdogPid: null, tag, createdAt: Date.now() }),
  );
  for (const p of pids) writeFileSync(path.join(root, `pid-${p.pid}`), `${p.port}\n`);
  return root;
}

async function taggedRedis(tag: string): Promise<{ child: ChildProcess; port: number }> {
  const port = await findFreePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--proc-title-template', `{title} ${PROC_TITLE_TAG}${tag}`],
    { stdio: 'ignore' },
  );
  children.push(child);
  // The title is set once the server initialises; wait for it (bounded).
  for (let i = 0; i < 100; i++) {
    try {
      if (readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').includes(tag)) break;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, port };
}

describe('sweepLeftovers', () => {
  it('stops a tagged server of a dead owner, leaves a reused pid, a live owner and an unmarked dir alone', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    if (!existsSync('/proc/self/cmdline')) ctx.skip('needs /proc to wait for the process title');
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'sweep-test-'));
    dirs.push(tmp);
    const dead = deadPid();

    const ours = await taggedRedis('a1a1a1a1a1a1a1a1');
    const deadSession = session(tmp, 'dead', dead, 'a1a1a1a1a1a1a1a1', [{ pid: ours.child.pid!, port: ours.port }]);

    // The recorded pid now runs something else (here: a plain sleep): never killed.
    const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(stranger);
    const reusedSession = session(tmp, 'reused', dead, 'b2b2b2b2b2b2b2b2', [{ pid: stranger.pid!, port: 1 }]);

    // A tagged server whose owner (this process) is alive: not touched.
    const live = await taggedRedis('c3c3c3c3c3c3c3c3');
    const liveSession = session(tmp, 'live', process.pid, 'c3c3c3c3c3c3c3c3', [{ pid: live.child.pid!, port: live.port }]);

    // A dir with the prefix but no valid marker: not provably ours.
    const unmarked = path.join(tmp, 'orch-migrate-redis-unmarked');
    mkdirSync(unmarked);
    writeFileSync(path.join(unmarked, `pid-${live.child.pid!}`), '1\n');

    const report = await sweepLeftovers(tmp);
    expect(report).toEqual(
      expect.arrayContaining([
        { pid: ours.child.pid, port: ours.port, ownerPid: dead, action: 'stopped' },
        { pid: stranger.pid, port: 1, ownerPid: dead, action: 'not-ours' },
      ]),
    );
    expect(report).toHaveLength(2);
    expect(processAlive(ours.child.pid!)).toBe(false);
    expect(processAlive(stranger.pid!)).toBe(true);
    expect(processAlive(live.child.pid!)).toBe(true);
    expect(existsSync(deadSession)).toBe(false);
    expect(existsSync(reusedSession)).toBe(false);
    expect(existsSync(liveSession)).toBe(true);
    expect(existsSync(unmarked)).toBe(true);
  });
});
