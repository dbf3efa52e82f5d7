/**
 * Connections. ioredis retries forever by default; an operator's tool must
 * instead fail fast with exit 5 and a message that names the address (never
 * the password), so every client made here has bounded retries and timeouts.
 */
import { isIP } from 'node:net';
import { Redis, Cluster, type RedisOptions, type ClusterOptions } from 'ioredis';
import { ConfigError, RedisUnavailableError } from './errors.js';
import { registerScripts } from './scripts.js';

/** A standalone or cluster client with this package's scripts registered. */
export type RedisClient = Redis | Cluster;

/** How to reach Redis. */
export interface RedisConnectionOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…` for TLS. */
  url: string;
  /** Treat the URL as a startup node of a Redis Cluster. */
  cluster?: boolean;
  /** Give up connecting after this long (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Fail any command that gets no answer within this long (default 15000 ms), so a frozen server cannot hang a run. */
  commandTimeoutMs?: number;
  /** Reconnect attempts after a connection drops before failing (default 2). */
  maxReconnects?: number;
  /** Client name shown in CLIENT LIST. */
  connectionName?: string;
}

/** Parsed, validated Redis URL. */
export interface ParsedRedisUrl {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  db: number;
  tls: boolean;
  /** `host:port`, safe to print. */
  address: string;
}

/** Default URL when neither `--redis-url` nor `REDIS_URL` is set. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Parses a Redis URL; throws a {@link ConfigError} (exit 2) that never echoes a password. */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch (cause) {
    throw new ConfigError(`Invalid Redis URL ${JSON.stringify(redactUrl(url))}`, {
      cause,
      suggestion: 'Use the form redis://[user:password@]host:port[/db] or rediss:// for TLS.',
    });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(`Unsupported Redis URL scheme "${u.protocol}"`, {
      suggestion: 'Use redis:// or rediss:// (TLS).',
    });
  }
  const port = u.port === '' ? 6379 : Number(u.port);
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText !== '' && !/^[0-9]{1,2}$/.test(dbText)) {
    throw new ConfigError(`Invalid Redis database "${dbText}" in URL`, { suggestion: 'Use a database number, e.g. redis://host:6379/0.' });
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (host === '') throw new ConfigError('Redis URL has no host', { suggestion: 'Use redis://host:port.' });
  return {
    host,
    port,
    username: u.username === '' ? undefined : decodeURIComponent(u.username),
    password: u.password === '' ? undefined : decodeURIComponent(u.password),
    db: dbText === '' ? 0 : Number(dbText),
    tls: u.protocol === 'rediss:',
    address: `${u.hostname}:${port}`,
  };
}

/** The URL with any password replaced by `***`; unparseable input is reduced to its scheme. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    // Never echo something we could not parse: it may hold a password in an odd place.
    const m = /^([a-z]+:\/\/)/i.exec(url);
    return m ? `${m[1]}…` : '<unparseable>';
  }
}

const CONNECTION_ERROR = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|Connection is closed|Command timed out|connect ETIMEDOUT|Stream isn't writeable|MaxRetriesPerRequest|None of startup nodes|Failed to refresh slots|ClusterAllFailed|CLUSTERDOWN|Connection in subscriber mode|ssl|tls|wrong version number|LOADING|socket hang up/i;

/** True when an error means "Redis is unreachable or went away". */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'MaxRetriesPerRequestError' || err.name === 'ClusterAllFailedError') return true;
  return CONNECTION_ERROR.test(err.message) || (err.cause !== undefined && isConnectionError(err.cause));
}

/** Wraps a connection failure as {@link RedisUnavailableError}; other errors pass through. */
export function asUnavailable(err: unknown, address: string): unknown {
  if (err instanceof RedisUnavailableError) return err;
  if (!isConnectionError(err)) return err;
  const msg = err instanceof Error ? err.message : String(err);
  // The message of a connection error can carry the URL; keep only the reason.
  const detail = msg.replace(/redis(s)?:\/\/\S+/gi, '<url>').split('\n')[0] ?? msg;
  return new RedisUnavailableError(address, detail, { cause: err });
}

function baseOptions(parsed: ParsedRedisUrl, opts: RedisConnectionOptions): RedisOptions {
  const maxReconnects = opts.maxReconnects ?? 2;
  return {
    host: parsed.host,
    port: parsed.port,
    username: parsed.username,
    password: parsed.password,
    db: parsed.db,
    // SNI carries host names only: Node warns (DEP0123) on an IP address as servername.
    ...(parsed.tls ? { tls: isIP(parsed.host) === 0 ? { servername: parsed.host } : {} } : {}),
    connectTimeout: opts.connectTimeoutMs ?? 5000,
    commandTimeout: opts.commandTimeoutMs ?? 15000,
    maxRetriesPerRequest: 1,
    lazyConnect: true,
    enableReadyCheck: true,
    connectionName: opts.connectionName ?? 'orch-migrate',
    retryStrategy: (times: number) => (times > maxReconnects ? null : Math.min(200 * times, 1000)),
    reconnectOnError: () => false,
  };
}

/**
 * Opens a connection and registers this package's Lua scripts. Rejects with
 * {@link RedisUnavailableError} (exit 5) within about connectTimeoutMs when
 * Redis cannot be reached.
 */
export async function connectRedis(opts: RedisConnectionOptions): Promise<RedisClient> {
  const parsed = parseRedisUrl(opts.url);
  const base = baseOptions(parsed, opts);
  let client: RedisClient;
  if (opts.cluster) {
    const { host: _h, port: _p, db: _db, ...redisOptions } = base;
    const clusterOptions: ClusterOptions = {
      redisOptions,
      enableAutoPipelining: true,
      scaleReads: 'master',
      lazyConnect: true,
      enableOfflineQueue: true,
      slotsRefreshTimeout: opts.connectTimeoutMs ?? 5000,
      clusterRetryStrategy: (times: number) => (times > (opts.maxReconnects ?? 2) ? null : Math.min(200 * times, 1000)),
    };
    client = new Cluster([{ host: parsed.host, port: parsed.port }], clusterOptions);
  } else {
    client = new Redis(base);
  }
  // Errors are surfaced through rejected commands; an unhandled 'error' event would crash the process.
  // The last one is kept: "ECONNREFUSED" says more than ioredis' final "Connection is closed".
  let lastError: Error | null = null;
  client.on('error', (e: Error) => {
    lastError = e;
  });
  registerScripts(client);
  const deadline = (opts.connectTimeoutMs ?? 5000) + 2000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('connect ETIMEDOUT')), deadline);
      }),
    ]);
    await client.ping();
  } catch (err) {
    client.disconnect();
    const best = (lastError as Error | null) ?? err;
    if (parsed.tls && best instanceof Error && !/tls|ssl|certificate/i.test(best.message)) {
      // A plain server never answers a TLS handshake: say so rather than a bare timeout.
      best.message = `${best.message} (TLS handshake did not complete; if the server does not speak TLS, use the redis scheme, not rediss)`;
    }
    const wrapped = asUnavailable(best, parsed.address);
    if (wrapped instanceof RedisUnavailableError) throw wrapped;
    throw new RedisUnavailableError(parsed.address, best instanceof Error ? (best.message.split('\n')[0] ?? '') : String(best), { cause: best });
  } finally {
    if (timer) clearTimeout(timer);
  }
  return client;
}

/** The master nodes of a client: itself when standalone. */
export function masterNodes(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client];
}

/** `host:port` of a node, for checkpoints and messages. */
export function nodeAddress(node: Redis): string {
  return `${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`;
}

/** True for a cluster client. */
export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/** Closes a client, waiting for QUIT where possible, never throwing. */
export async function closeRedis(client: RedisClient): Promise<void> {
  try {
    await Promise.race([client.quit(), new Promise((resolve) => setTimeout(resolve, 1000))]);
  } catch {
    // Already closed or unreachable: nothing left to release.
  } finally {
    client.disconnect();
  }
}
