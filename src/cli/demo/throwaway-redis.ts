/**
 * A throwaway Redis for `orch-migrate demo` (and the benchmarks): a
 * `redis-server` child on a free loopback port, started by the one launcher in
 * ./redis-process.ts, which also guarantees it never outlives this process.
 *
 * There is no Docker fallback: testcontainers is a development dependency, so a
 * shipped command must not import it, and a container started by a process that
 * is then killed outlives it unless a reaper container runs beside it. Without
 * the binary, the demo names the two ways out (install redis-server, or point it
 * at a server of your own with --yes); see INSTALL_HELP.
 */
import type { Redis } from 'ioredis';
import { ConfigError } from '../../core/errors.js';
import { binaryRuns, findFreePort, redisServerBin, startRedisProcess } from './redis-process.js';

/** A running throwaway server. */
export interface ThrowawayRedis {
  url: string;
  host: string;
  port: number;
  pid: number | undefined;
  /** How it was started, for the demo's banner (no secrets: it has none). */
  description: string;
  stop(): Promise<void>;
}

/** What to do when there is no redis-server binary. */
export const INSTALL_HELP =
  'Install redis-server 7+ (Debian/Ubuntu: `sudo apt-get install -y redis-server`; macOS: `brew install redis`), ' +
  'or run the demo on a Redis of your own with `--redis-url redis://host:port --yes` ' +
  '(for example one started with `docker run --rm -d -p 6390:6379 redis:7`); it writes only under a fresh key prefix there and deletes it afterwards.';

/** Spawns `redis-server` on a free loopback port; `extraArgs` e.g. ['--maxmemory', '8gb']. */
export async function spawnRedisServer(extraArgs: string[] = []): Promise<ThrowawayRedis> {
  const server = await startRedisProcess({ extraArgs });
  return {
    url: server.url,
    host: server.host,
    port: server.port,
    pid: server.pid,
    description: `throwaway redis-server on ${server.host}:${server.port} (pid ${server.pid ?? '?'})`,
    stop: () => server.stop(),
  };
}

/** Starts the demo's server, or throws a ConfigError (exit 2) naming what to install. */
export async function startThrowawayRedis(): Promise<ThrowawayRedis> {
  const bin = redisServerBin();
  if (!binaryRuns(bin))
    throw new ConfigError(`\`${bin}\` is not installed (or does not run), so the demo cannot start a throwaway Redis`, { suggestion: INSTALL_HELP });
  try {
    return await spawnRedisServer();
  } catch (cause) {
    const detail = cause instanceof Error ? (cause.message.split('\n')[0] ?? cause.message) : String(cause);
    throw new ConfigError(`The throwaway redis-server did not start: ${detail}`, { cause, suggestion: INSTALL_HELP });
  }
}

/** A free loopback port (bench/ spawns its own cluster nodes on it). */
export const freePort = findFreePort;

/**
 * Deletes every key under a scratch prefix of the demo or a benchmark (standalone only),
 * so a run against a user's server leaves nothing behind. Never used on a job store prefix.
 */
export async function unlinkScratchPrefix(client: Pick<Redis, 'scan' | 'unlink'>, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000);
    cursor = next;
    if (found.length > 0) await client.unlink(...found);
  } while (cursor !== '0');
}
