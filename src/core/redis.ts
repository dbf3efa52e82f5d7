/**
 * Connections, in two profiles.
 *
 * - `cli` (the default): an operator's tool must fail fast with exit 5 and a
 *   message that names the address (never the password), so the client gives
 *   up after a couple of reconnects and every command has a timeout.
 * - `service`: a long-lived process (the API, a queue-core writer) must ride
 *   out a Redis restart by itself. It reconnects forever with capped, jittered
 *   exponential backoff; while Redis is away, commands fail within about one
 *   backoff step instead of queueing without bound (the API answers 503), and
 *   a command that was in flight when the connection dropped is failed, never
 *   resent (a resent enqueue could run a job twice). Clients made with
 *   `duplicate()` (the phase watcher's subscriber) inherit the profile, and
 *   ioredis resubscribes them on reconnect.
 *
 * ioredis' own default (retry forever, queue forever) suits neither.
 */
import { isIP } from 'node:net';
import { Redis, Cluster, type RedisOptions, type ClusterOptions } from 'ioredis';
import { ConfigError, isAuthReply, isOutOfMemoryReply, RedisAuthError, RedisOutOfMemoryError, RedisUnavailableError } from './errors.js';
import { redactUrlCredentials } from './redact.js';
import { registerScripts } from './scripts.js';

/** A standalone or cluster client with this package's scripts registered. */
export type RedisClient = Redis | Cluster;

/** How a client behaves when Redis goes away. */
export const ConnectionProfile = {
  /** Bounded: give up after `maxReconnects` (operator tools; exit 5). */
  Cli: 'cli',
  /** Reconnect forever with capped backoff; fail commands fast while down (services, writers). */
  Service: 'service',
} as const;
export type ConnectionProfile = (typeof ConnectionProfile)[keyof typeof ConnectionProfile];

/** How to reach Redis. */
export interface RedisConnectionOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://…` for TLS. */
  url: string;
  /** Treat the URL as a startup node of a Redis Cluster. */
  cluster?: boolean;
  /** `cli` (default) or `service`; see the module comment. */
  profile?: ConnectionProfile;
  /** Give up connecting after this long (default 5000 ms). */
  connectTimeoutMs?: number;
  /**
   * Fail any command that gets no answer within this long, so a frozen server
   * cannot hang a run or a request (default 15000 ms for `cli`, 5000 ms for `service`).
   */
  commandTimeoutMs?: number;
  /** `cli` only: reconnect attempts after a connection drops before failing (default 2). */
  maxReconnects?: number;
  /** `service` only: longest wait between two reconnect attempts (default 1000 ms). */
  maxBackoffMs?: number;
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

/** Decodes one percent-encoded credential of the URL; a bad escape is a config error that names the part, not its value. */
function decodeCredential(raw: string, what: 'password' | 'user name'): string {
  try {
    return decodeURIComponent(raw);
  } catch (cause) {
    throw new ConfigError(`The ${what} in the Redis URL is not valid percent-encoding`, {
      cause,
      suggestion: `A "%" in the ${what} must be written %25 (and other reserved characters percent-encoded, e.g. @ as %40).`,
    });
  }
}

/**
 * Parses a Redis URL; throws a {@link ConfigError} (exit 2) that never echoes
 * a password. Like redis-py, `?password=` and `?username=` are honoured as
 * credentials when the userinfo does not give them.
 */
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
  // URLSearchParams decodes leniently (a bad escape stays as typed), so it never throws here.
  const queryPassword = u.searchParams.get('password');
  const queryUser = u.searchParams.get('username');
  const username = u.username !== '' ? decodeCredential(u.username, 'user name') : queryUser !== null && queryUser !== '' ? queryUser : undefined;
  const password = u.password !== '' ? decodeCredential(u.password, 'password') : queryPassword !== null && queryPassword !== '' ? queryPassword : undefined;
  return {
    host,
    port,
    username,
    password,
    db: dbText === '' ? 0 : Number(dbText),
    tls: u.protocol === 'rediss:',
    address: `${u.hostname}:${port}`,
  };
}

/**
 * The URL with every credential masked: the userinfo password (a lone user
 * name too, which may be a password typed without its colon) and credential
 * query parameters (`password`, `pass`, `pwd`, `username`, `token`, ...).
 * Input that does not even look like a URL is not echoed at all.
 */
export function redactUrl(url: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return '<unparseable>';
  return redactUrlCredentials(url);
}

const CONNECTION_ERROR = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|Connection is closed|Command timed out|connect ETIMEDOUT|Stream isn't writeable|MaxRetriesPerRequest|None of startup nodes|Failed to refresh slots|ClusterAllFailed|CLUSTERDOWN|Connection in subscriber mode|ssl|tls|wrong version number|LOADING|socket hang up/i;

/** True when an error means "Redis is unreachable or went away". */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'MaxRetriesPerRequestError' || err.name === 'ClusterAllFailedError') return true;
  return CONNECTION_ERROR.test(err.message) || (err.cause !== undefined && isConnectionError(err.cause));
}

/** The reply behind an error: itself, its cause chain, or a cluster's last node error. */
function replyBehind(err: unknown, test: (e: unknown) => boolean): Error | null {
  let cur: unknown = err;
  for (let i = 0; i < 8 && cur instanceof Error; i++) {
    if (test(cur)) return cur;
    const lastNodeError = (cur as { lastNodeError?: unknown }).lastNodeError;
    if (lastNodeError !== undefined && test(lastNodeError)) return lastNodeError as Error;
    cur = cur.cause;
  }
  return null;
}

/**
 * Maps a Redis failure to the error class its meaning calls for, by error
 * class and reply code (never by loose message text where a code exists):
 * refused credentials → {@link RedisAuthError} (exit 2), OOM → {@link RedisOutOfMemoryError}
 * (exit 6), a lost or refused connection → {@link RedisUnavailableError} (exit 5).
 * Anything else is returned unchanged.
 */
export function classifyRedisError(err: unknown, address: string): unknown {
  if (err instanceof RedisUnavailableError || err instanceof RedisAuthError || err instanceof RedisOutOfMemoryError) return err;
  const auth = replyBehind(err, isAuthReply);
  if (auth) return new RedisAuthError(address, auth.message.split(/[\s.]/)[0] ?? 'refused', { cause: err });
  if (replyBehind(err, isOutOfMemoryReply)) return new RedisOutOfMemoryError(address, { cause: err });
  if (!isConnectionError(err)) return err;
  const msg = err instanceof Error ? err.message : String(err);
  // The message of a connection error can carry the URL; keep only the reason.
  const detail = msg.replace(/redis(s)?:\/\/\S+/gi, '<url>').split('\n')[0] ?? msg;
  return new RedisUnavailableError(address, detail, { cause: err });
}

/** True when the error is (or wraps) Redis' OOM refusal; see {@link classifyRedisError}. */
export function isOutOfMemoryError(err: unknown): boolean {
  return replyBehind(err, isOutOfMemoryReply) !== null;
}

/** True when the error is (or wraps) a refusal of our credentials. */
export function isAuthError(err: unknown): boolean {
  return err instanceof RedisAuthError || replyBehind(err, isAuthReply) !== null;
}

/**
 * Wraps a Redis failure for the CLI: connection failures become
 * {@link RedisUnavailableError}, refused credentials {@link RedisAuthError},
 * OOM {@link RedisOutOfMemoryError}; other errors pass through.
 */
export function asUnavailable(err: unknown, address: string): unknown {
  return classifyRedisError(err, address);
}

/** Capped exponential backoff with ±20 % jitter, so a fleet does not reconnect in lockstep. */
export function serviceBackoff(times: number, maxBackoffMs = 1000): number {
  const base = Math.min(maxBackoffMs, 50 * 2 ** Math.min(Math.max(times - 1, 0), 16));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

function baseOptions(parsed: ParsedRedisUrl, opts: RedisConnectionOptions): RedisOptions {
  const service = opts.profile === ConnectionProfile.Service;
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
    commandTimeout: opts.commandTimeoutMs ?? (service ? 5000 : 15000),
    lazyConnect: true,
    enableReadyCheck: true,
    connectionName: opts.connectionName ?? 'orch-migrate',
    reconnectOnError: () => false,
    ...(service
      ? {
          // 0: on every failed (re)connect attempt ioredis rejects what is queued, so a
          // command waits at most one backoff step while Redis is down.
          maxRetriesPerRequest: 0,
          // The offline queue stays on: a fresh duplicate() (the phase watcher's subscriber)
          // needs it to send its first SUBSCRIBE while it connects.
          enableOfflineQueue: true,
          autoResendUnfulfilledCommands: false,
          autoResubscribe: true,
          retryStrategy: (times: number) => serviceBackoff(times, opts.maxBackoffMs),
        }
      : {
          maxRetriesPerRequest: 1,
          retryStrategy: (times: number) => (times > maxReconnects ? null : Math.min(200 * times, 1000)),
        }),
  };
}

/**
 * Opens a connection and registers this package's Lua scripts. Rejects within
 * about connectTimeoutMs with {@link RedisUnavailableError} (exit 5) when
 * Redis cannot be reached, and with {@link RedisAuthError} (exit 2) when it
 * refuses the credentials. Both profiles need Redis at start: a service that
 * cannot reach it at boot exits and is restarted by its supervisor.
 */
export async function connectRedis(opts: RedisConnectionOptions): Promise<RedisClient> {
  const parsed = parseRedisUrl(opts.url);
  const base = baseOptions(parsed, opts);
  const service = opts.profile === ConnectionProfile.Service;
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
      clusterRetryStrategy: service
        ? (times: number) => serviceBackoff(times, opts.maxBackoffMs)
        : (times: number) => (times > (opts.maxReconnects ?? 2) ? null : Math.min(200 * times, 1000)),
    };
    client = new Cluster([{ host: parsed.host, port: parsed.port }], clusterOptions);
  } else {
    client = new Redis(base);
  }
  // Errors are surfaced through rejected commands; an unhandled 'error' event would crash the process.
  // The last one is kept: "ECONNREFUSED" says more than ioredis' final "Connection is closed".
  let lastError: Error | null = null;
  let refused: ((e: Error) => void) | null = null;
  client.on('error', (e: Error) => {
    lastError = e;
    // Wrong credentials never get better by retrying: stop at once.
    if (isAuthError(e)) refused?.(e);
  });
  registerScripts(client);
  const deadline = (opts.connectTimeoutMs ?? 5000) + 2000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('connect ETIMEDOUT')), deadline);
        refused = reject;
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
    const classified = classifyRedisError(best, parsed.address);
    if (classified instanceof RedisUnavailableError || classified instanceof RedisAuthError) throw classified;
    throw new RedisUnavailableError(parsed.address, best instanceof Error ? (best.message.split('\n')[0] ?? '') : String(best), { cause: best });
  } finally {
    if (timer) clearTimeout(timer);
    refused = null;
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
