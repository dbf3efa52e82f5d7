/**
 * A throwaway Redis for `orch-migrate demo` (and the benchmarks): a
 * `redis-server` child on a free loopback port with a temp dir, or a Docker
 * container through testcontainers when the binary is missing. Stopped on
 * exit, Ctrl-C included.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { ConfigError } from '../../core/errors.js';

/** A running throwaway server. */
export interface ThrowawayRedis {
  url: string;
  /** How it was started, for the demo's first line. */
  description: string;
  stop(): Promise<void>;
}

/** What to install when there is neither a binary nor Docker. */
export const INSTALL_HELP =
  'The demo needs Redis 7+. Install it (Debian/Ubuntu: `sudo apt-get install -y redis-server`; macOS: `brew install redis`), ' +
  'or start Docker (the demo then runs redis:7 through testcontainers), or point it at a server with REDIS_URL=redis://host:port ' +
  '(the demo only touches keys under its own prefix there).';

function onPath(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

function dockerRunning(): boolean {
  return onPath('docker') && spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 }).status === 0;
}

/** A free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForPing(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.setTimeout(500);
      s.on('connect', () => s.write('PING\r\n'));
      s.on('data', (d) => {
        s.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
      s.on('error', () => resolve(false));
      s.on('timeout', () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not answer on port ${port} within ${timeoutMs} ms`);
}

/** Spawns `redis-server` on a free port; `extraArgs` e.g. ['--maxmemory', '8gb']. */
export async function spawnRedisServer(extraArgs: string[] = []): Promise<ThrowawayRedis> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'orch-migrate-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], {
    stdio: 'ignore',
  });
  const kill = (): void => {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  // A crashed or interrupted parent must not leave the server running.
  process.once('exit', kill);
  await waitForPing(port, child, 10_000);
  return {
    url: `redis://127.0.0.1:${port}`,
    description: `throwaway redis-server on 127.0.0.1:${port} (pid ${child.pid ?? '?'})`,
    stop: async () => {
      process.off('exit', kill);
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, 3000);
          child.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts a Redis by the best means available, or throws a ConfigError naming what to install. */
export async function startThrowawayRedis(): Promise<ThrowawayRedis> {
  if (onPath('redis-server')) return spawnRedisServer();
  if (dockerRunning()) {
    try {
      // testcontainers is a development dependency: present in a checkout, absent in a slim install.
      const tc = (await import('testcontainers')) as typeof import('testcontainers');
      const container = await new tc.GenericContainer('redis:7').withExposedPorts(6379).start();
      return {
        url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
        description: `throwaway redis:7 container ${container.getId().slice(0, 12)}`,
        stop: async () => {
          await container.stop();
        },
      };
    } catch (cause) {
      throw new ConfigError('Docker is running but the redis:7 container could not be started', { cause, suggestion: INSTALL_HELP });
    }
  }
  throw new ConfigError('No redis-server on PATH and no Docker engine running', { suggestion: INSTALL_HELP });
}

/**
 * Deletes every key under a scratch prefix of the demo or a benchmark (standalone only),
 * so a run against a user's REDIS_URL leaves nothing behind. Never used on a job store prefix.
 */
export async function unlinkScratchPrefix(client: Pick<Redis, 'scan' | 'unlink'>, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000);
    cursor = next;
    if (found.length > 0) await client.unlink(...found);
  } while (cursor !== '0');
}
