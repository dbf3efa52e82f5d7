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
 *
 * Production connectivity (docs/connectivity.md):
 * - TLS: `rediss://` plus a private CA, a client certificate and a server name
 *   (./tls.ts). A certificate problem is a config error (exit 2) naming the
 *   option that fixes it, never "unreachable".
 * - Sentinel: the master (or a replica) is found through the sentinels
 *   (./sentinel.ts), and a `+switch-master` from any of them drops the
 *   connection at once so the reconnect finds the new master.
 * - ACL: a NOPERM refusal becomes an {@link AclPermissionError} (exit 2) that
 *   names the `ACL SETUSER` rule to add.
 */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Redis, Cluster, type RedisOptions, type ClusterOptions, type SentinelAddress as IoSentinelAddress } from 'ioredis';
import {
  AclPermissionError,
  ConfigError,
  isAuthReply,
  isOutOfMemoryReply,
  isReplyError,
  OrchError,
  RedisAuthError,
  RedisOutOfMemoryError,
  RedisUnavailableError,
} from './errors.js';
import { Keyspace } from './keys.js';
import { redactUrlCredentials } from './redact.js';
import { luaSource, registerScripts } from './scripts.js';
import { describeSentinelTarget, sentinelSettingLabel, sentinelSettings, SENTINEL_SETTING_NAMES, type SentinelSettings } from './sentinel.js';
import { classifyTlsError, firstTlsSetting, hasTlsSettings, loadTlsOptions, tlsSettingLabel, TLS_SETTING_NAMES, type TlsSettings } from './tls.js';

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
  /**
   * TLS files and server name (./tls.ts). TLS is on with a `rediss://` URL; with
   * `sentinel`, any TLS setting also turns it on (the URL's host is not used then).
   */
  tls?: TlsSettings | null;
  /**
   * Find the server through Redis Sentinel instead of the URL's host:port; the
   * URL still gives the user, password, database and (rediss) TLS.
   */
  sentinel?: SentinelSettings | null;
  /** `replica`: with `sentinel`, connect to a replica the sentinels list (read-only work). Default `master`. */
  role?: 'master' | 'replica';
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

/**
 * What the options point at, safe to print: `host:port`, or
 * `mymaster via sentinel h1:26379,h2:26379` (never a credential).
 */
export function connectionTarget(opts: Pick<RedisConnectionOptions, 'url' | 'sentinel'>): string {
  return opts.sentinel ? describeSentinelTarget(opts.sentinel) : parseRedisUrl(opts.url).address;
}

/**
 * The TLS and Sentinel settings from the environment, under the names the CLI
 * options also read (ORCH_TLS_CA_FILE, ORCH_SENTINELS, ...): the API and any
 * queue-core process connect the same way as the operator's CLI. Throws a
 * {@link ConfigError} naming the variable when a value is invalid.
 */
export function connectionSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): { tls: TlsSettings | null; sentinel: SentinelSettings | null } {
  const v = (name: string): string | null => {
    const raw = env[name];
    return raw === undefined || raw.trim() === '' ? null : raw.trim();
  };
  const tls: TlsSettings = {
    caFile: v(TLS_SETTING_NAMES.caFile.env),
    certFile: v(TLS_SETTING_NAMES.certFile.env),
    keyFile: v(TLS_SETTING_NAMES.keyFile.env),
    servername: v(TLS_SETTING_NAMES.servername.env),
  };
  const sentinel = sentinelSettings({
    sentinels: v(SENTINEL_SETTING_NAMES.sentinels.env),
    masterName: v(SENTINEL_SETTING_NAMES.masterName.env),
    username: v(SENTINEL_SETTING_NAMES.username.env),
    // A password is taken as given (spaces may be part of it).
    password: env[SENTINEL_SETTING_NAMES.password.env] ?? null,
  });
  return { tls: hasTlsSettings(tls) ? tls : null, sentinel };
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

const CONNECTION_ERROR =
  /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|Connection is closed|Command timed out|connect ETIMEDOUT|Stream isn't writeable|MaxRetriesPerRequest|None of startup nodes|Failed to refresh slots|ClusterAllFailed|CLUSTERDOWN|Connection in subscriber mode|ssl|tls|wrong version number|LOADING|socket hang up/i;

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

/** What a classification may use to name the fix. */
export interface ClassifyContext {
  /** The ACL user the connection authenticates as (`default` when the URL names none). */
  user?: string;
  /** The connection's TLS settings, so a certificate error names the right option. */
  tls?: TlsSettings | null;
  /** The connection is a cluster client: a MOVED/ASK that still surfaces is slots moving, not a missing --cluster. */
  cluster?: boolean;
}

/** The command an ioredis reply error answers (ioredis attaches it). */
function failedCommand(err: Error): { name: string; args: unknown[] } | null {
  const c = (err as { command?: { name?: unknown; args?: unknown } }).command;
  return c && typeof c.name === 'string' && Array.isArray(c.args) ? { name: c.name.toLowerCase(), args: c.args } : null;
}

/** One Lua script of this package: its file and the commands it runs (from its source). */
interface ScriptFacts {
  file: string;
  commands: string[];
}

let scriptIndex: Map<string, ScriptFacts> | null = null;

/**
 * The package's scripts by SHA1 (what EVALSHA carries), with the commands each
 * one calls, read from the Lua source itself so the list cannot drift.
 */
export function scriptsBySha(): Map<string, ScriptFacts> {
  if (scriptIndex) return scriptIndex;
  const index = new Map<string, ScriptFacts>();
  for (const file of readdirSync(new URL('./lua/', import.meta.url))
    .filter((f) => f.endsWith('.lua'))
    .sort()) {
    const src = luaSource(file);
    const commands = [...new Set([...src.matchAll(/redis\.p?call\(\s*'([A-Za-z]+)'/g)].map((m) => m[1]!.toLowerCase()))].sort();
    index.set(createHash('sha1').update(src).digest('hex'), { file, commands });
  }
  scriptIndex = index;
  return index;
}

/** The script an EVALSHA/EVAL names, or null. */
function scriptOf(cmd: { name: string; args: unknown[] }): ScriptFacts | null {
  const first = cmd.args[0];
  const text = Buffer.isBuffer(first) ? first.toString('utf8') : typeof first === 'string' ? first : null;
  if (text === null) return null;
  const sha = cmd.name === 'eval' || cmd.name === 'eval_ro' ? createHash('sha1').update(text).digest('hex') : text.toLowerCase();
  return scriptsBySha().get(sha) ?? null;
}

/** The keys a command names: the declared KEYS of a script, else the arguments that are keys for our commands. */
function keysOf(cmd: { name: string; args: unknown[] }): string[] {
  const str = (a: unknown): string | null => (typeof a === 'string' ? a : Buffer.isBuffer(a) ? a.toString('utf8') : null);
  if (cmd.name.startsWith('eval')) {
    const n = Number(str(cmd.args[1]));
    return Number.isInteger(n) && n > 0
      ? (cmd.args
          .slice(2, 2 + n)
          .map(str)
          .filter((k) => k !== null) as string[])
      : [];
  }
  // Multi-key commands this package sends; every other one has its key first.
  if (['del', 'unlink', 'exists', 'mget', 'touch'].includes(cmd.name)) return cmd.args.map(str).filter((k) => k !== null) as string[];
  if (cmd.name === 'copy' || cmd.name === 'rename')
    return cmd.args
      .slice(0, 2)
      .map(str)
      .filter((k) => k !== null) as string[];
  const k = str(cmd.args[0]);
  return k === null ? [] : [k];
}

/** The ACL key rule that covers `key`: its family's pattern (src/core/keys.ts), else the key itself. */
export function aclKeyPattern(key: string): string {
  return `~${Keyspace.familyPattern(key) ?? key}`;
}

/** A denial's rules, deduplicated, in a stable order. */
function uniq(rules: string[]): string[] {
  return [...new Set(rules)];
}

/**
 * Redis refused something for the ACL user: NOPERM for a command, a key or a
 * channel, or the same refusal raised inside one of our scripts (which names
 * neither the command nor the key: the script's commands and declared KEYS do).
 */
function aclDenial(err: unknown, address: string, user: string): AclPermissionError | null {
  if (!isReplyError(err)) return null;
  const msg = err.message.split('\n')[0] ?? err.message;
  const scriptDenial = /^ERR The user executing the script can't/.test(msg);
  if (!/^NOPERM\b/.test(msg) && !scriptDenial) return null;
  const cmd = failedCommand(err);
  const script = cmd ? scriptOf(cmd) : null;
  const what = cmd ? `${cmd.name.toUpperCase()}${script ? ` (script ${script.file})` : ''}` : 'a command';
  let rules: string[];
  let why: string;
  const denied = /run the '([^']+)' command/.exec(msg);
  if (denied) {
    rules = [`+${denied[1]!.toLowerCase()}`];
    why = `it may not run ${denied[1]!.toUpperCase()}`;
  } else if (/can't run this command/.test(msg)) {
    rules = script ? script.commands.map((c) => `+${c}`) : ['+<the command>'];
    why = script
      ? `the script calls a command it may not run (${script.file} runs ${script.commands.map((c) => c.toUpperCase()).join(', ')}; adding one it already has is harmless)`
      : 'a script called a command it may not run';
  } else if (/channel/.test(msg)) {
    const channels = cmd
      ? (cmd.args.filter((a) => typeof a === 'string' && /:migration:jobs:events$/.test(a)) as string[]).concat(
          ['subscribe', 'publish', 'psubscribe'].includes(cmd.name) && typeof cmd.args[0] === 'string' ? [cmd.args[0]] : [],
        )
      : [];
    rules = channels.length > 0 ? channels.map((c) => `&${c}`) : ['&<prefix>:migration:jobs:events'];
    why = `it may not use the channel${channels.length === 1 ? ` ${channels[0]}` : 's'}`;
  } else {
    const keys = cmd ? keysOf(cmd) : [];
    rules = keys.length > 0 ? keys.map(aclKeyPattern) : ['~<the key>'];
    why = `it may not access ${keys.length === 1 ? `the key ${keys[0]}` : 'one of the keys'}`;
  }
  const rule = `ACL SETUSER ${user} ${uniq(rules).join(' ')}`;
  return new AclPermissionError(address, user, `Redis at ${address} refused ${what} for ACL user "${user}": ${why} (${msg.slice(0, 160)})`, rule, {
    cause: err,
  });
}

/** True when the error is (or wraps) an ACL refusal (NOPERM, or one raised inside a script). */
export function isAclDenial(err: unknown): boolean {
  return err instanceof AclPermissionError || replyBehind(err, (e) => aclDenial(e, '', 'default') !== null) !== null;
}

/**
 * Maps a Redis failure to the error class its meaning calls for, by error
 * class and reply code (never by loose message text where a code exists):
 * a certificate problem → {@link TlsCertificateError} (exit 2, naming the option),
 * refused credentials → {@link RedisAuthError} (exit 2), a missing ACL
 * permission → {@link AclPermissionError} (exit 2, naming the rule), OOM →
 * {@link RedisOutOfMemoryError} (exit 6), a lost or refused connection (or a
 * replica answering READONLY mid-failover) → {@link RedisUnavailableError}
 * (exit 5). Errors already classified, and anything else, are returned unchanged.
 */
export function classifyRedisError(err: unknown, address: string, ctx: ClassifyContext = {}): unknown {
  // Already classified: its message may mention TLS or a reply code, which must not re-classify it.
  if (err instanceof OrchError) return err;
  const tls = classifyTlsError(err, { address, settings: ctx.tls });
  if (tls) return tls;
  const auth = replyBehind(err, isAuthReply);
  if (auth) return new RedisAuthError(address, auth.message.split(/[\s.]/)[0] ?? 'refused', { cause: err });
  const user = ctx.user ?? 'default';
  const denied = replyBehind(err, (e) => aclDenial(e, address, user) !== null);
  if (denied) return aclDenial(denied, address, user);
  if (replyBehind(err, isOutOfMemoryReply)) return new RedisOutOfMemoryError(address, { cause: err });
  // A cluster node addressed as a single server redirects (MOVED/ASK): the target is
  // misconfigured, not down, and following the redirect by hand would bypass the slot map.
  const moved = replyBehind(err, (e) => isReplyError(e) && /^(MOVED|ASK) \d+ /.test(e.message));
  // Through the cluster client it means the slot map changed faster than the client followed it (a resharding
  // or failover in progress): transient, and the run resumes from its checkpoint.
  if (moved && ctx.cluster === true)
    return new RedisUnavailableError(address, `${moved.message.split('\n')[0]} (the cluster's slots moved while the command ran)`, { cause: err });
  if (moved) {
    return new ConfigError(`Redis at ${address} is a Redis Cluster node: it redirected a command (${moved.message.split('\n')[0]})`, {
      code: 'ERR_CLUSTER_MODE',
      suggestion: 'Add --cluster (ORCH_REDIS_CLUSTER=on for orch-api and queue-core processes); any master of the cluster will do as the seed URL.',
      cause: err,
    });
  }
  // A master turned replica (Sentinel demotes the old master), a replica cut off from its
  // master, or a master refusing writes until its replicas are back (min-replicas-to-write):
  // a failover is in progress, which an operator meets as an outage that ends by itself.
  const failover = replyBehind(err, (e) => isReplyError(e) && /^(READONLY|MASTERDOWN|NOREPLICAS)\b/.test(e.message));
  if (failover) {
    const why = /^NOREPLICAS/.test(failover.message)
      ? 'the master refuses writes until enough replicas are connected (min-replicas-to-write)'
      : 'a failover is in progress';
    return new RedisUnavailableError(address, `${failover.message.split('\n')[0]} (${why})`, { cause: err });
  }
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
export function asUnavailable(err: unknown, address: string, ctx: ClassifyContext = {}): unknown {
  return classifyRedisError(err, address, ctx);
}

/** Capped exponential backoff with ±20 % jitter, so a fleet does not reconnect in lockstep. */
export function serviceBackoff(times: number, maxBackoffMs = 1000): number {
  const base = Math.min(maxBackoffMs, 50 * 2 ** Math.min(Math.max(times - 1, 0), 16));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

function baseOptions(parsed: ParsedRedisUrl, opts: RedisConnectionOptions, tls: ConnectionOptions | null): RedisOptions {
  const service = opts.profile === ConnectionProfile.Service;
  const maxReconnects = opts.maxReconnects ?? 2;
  return {
    host: parsed.host,
    port: parsed.port,
    username: parsed.username,
    password: parsed.password,
    db: parsed.db,
    ...(tls ? { tls } : {}),
    connectTimeout: opts.connectTimeoutMs ?? 5000,
    commandTimeout: opts.commandTimeoutMs ?? (service ? 5000 : 15000),
    lazyConnect: true,
    enableReadyCheck: true,
    connectionName: opts.connectionName ?? 'orch-migrate',
    // CLIENT SETINFO exists from Redis 7.2 only, and would be one more command every ACL user needs.
    disableClientInfo: true,
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

/** TLS options for a direct connection: SNI and the identity check use the URL's host name unless --tls-servername says otherwise. */
function directTls(host: string, tls: ConnectionOptions): ConnectionOptions {
  // SNI carries host names only: Node warns (DEP0123) on an IP address as servername.
  return tls.servername === undefined && isIP(host) === 0 ? { ...tls, servername: host } : tls;
}

/**
 * Sentinel mode: ioredis asks the sentinels for the master (or a replica) and,
 * with the failover detector, subscribes to `+switch-master` on them, so a
 * failover drops the connection at once and the reconnect finds the new master
 * (instead of writing to a demoted master until Sentinel kills its clients).
 */
function sentinelOptions(base: RedisOptions, s: SentinelSettings, opts: RedisConnectionOptions, tls: ConnectionOptions | null): RedisOptions {
  const service = opts.profile === ConnectionProfile.Service;
  const maxReconnects = opts.maxReconnects ?? 2;
  const { host: _h, port: _p, ...rest } = base;
  // The sentinels are reached by their own names: only the data nodes get --tls-servername.
  const { servername: _sn, ...sentinelTls } = tls ?? {};
  const sentinels: Array<Partial<IoSentinelAddress>> = s.sentinels.map((a) => ({ host: a.host, port: a.port }));
  return {
    ...rest,
    sentinels,
    name: s.masterName,
    role: opts.role === 'replica' ? 'slave' : 'master',
    ...(s.username ? { sentinelUsername: s.username } : {}),
    ...(s.password ? { sentinelPassword: s.password } : {}),
    // A TLS deployment runs its sentinels on TLS too: the same CA and client certificate serve both.
    ...(tls ? { tls, enableTLSForSentinelMode: true, sentinelTLS: sentinelTls } : {}),
    failoverDetector: true,
    updateSentinels: true,
    sentinelCommandTimeout: opts.connectTimeoutMs ?? 5000,
    // All sentinels unreachable: the CLI gives up like it does for a server; a service keeps asking.
    sentinelRetryStrategy: service
      ? (times: number) => serviceBackoff(times, opts.maxBackoffMs)
      : (times: number) => (times > maxReconnects ? null : Math.min(200 * times, 1000)),
    // The failover detector's own connections to the sentinels (a sentinel restarted).
    sentinelReconnectStrategy: () => 2000,
  };
}

/** A sentinel problem that configuration must fix, or that has a clearer name than "unreachable". */
function sentinelProblem(s: SentinelSettings, role: RedisConnectionOptions['role'], address: string, errors: string[]): OrchError | null {
  // Sentinels answer an unknown name with an error (Redis 7) or a null reply (older ones).
  if (errors.length > 0 && errors.every((m) => /got an invalid reply: null|No such master with that name/.test(m))) {
    if (role === 'replica')
      return new RedisUnavailableError(address, `no sentinel lists a usable replica of ${s.masterName} (all are down, disconnected or none exists)`);
    return new ConfigError(
      `No sentinel knows a master named ${JSON.stringify(s.masterName)} (asked ${describeSentinelTarget(s).replace(/^.* via sentinel /, '')})`,
      {
        code: 'ERR_SENTINEL_MASTER',
        suggestion: `Check ${sentinelSettingLabel('masterName')}: \`SENTINEL MASTERS\` on a sentinel lists the names it monitors.`,
      },
    );
  }
  const auth = errors.find((m) => /WRONGPASS|NOAUTH|invalid (username-)?password/i.test(m));
  if (auth) {
    return new ConfigError(`The sentinels refused our credentials (${auth.replace(/^.*because /, '').slice(0, 120)})`, {
      code: 'ERR_SENTINEL_AUTH',
      suggestion: `Set ${SENTINEL_SETTING_NAMES.password.env} (and ${SENTINEL_SETTING_NAMES.username.env} for an ACL user) to the sentinels' own credentials; the Redis URL's password is for the data nodes.`,
    });
  }
  const noperm = errors.find((m) => /NOPERM/.test(m));
  if (noperm) {
    return new ConfigError(`A sentinel refused a command for our sentinel user (${noperm.replace(/^.*because /, '').slice(0, 160)})`, {
      code: 'ERR_SENTINEL_NOPERM',
      suggestion:
        'On each sentinel, the user needs: +sentinel|get-master-addr-by-name +sentinel|sentinels +sentinel|slaves +subscribe +ping &+switch-master (docs/connectivity.md).',
    });
  }
  return null;
}

/** How to open one client: the parsed URL (possibly pointing at a replica), TLS and the printable target. */
interface OpenPlan {
  parsed: ParsedRedisUrl;
  tls: ConnectionOptions | null;
  address: string;
}

/** Validates the combination of options and reads the TLS files (config errors, exit 2, before any connection). */
function plan(opts: RedisConnectionOptions): OpenPlan {
  const parsed = parseRedisUrl(opts.url);
  const sentinel = opts.sentinel ?? null;
  if (sentinel && opts.cluster) {
    throw new ConfigError(`${sentinelSettingLabel('sentinels')} and --cluster (ORCH_REDIS_CLUSTER) exclude each other`, {
      suggestion: 'A Redis Cluster fails over by itself: drop the sentinel settings for a cluster, or --cluster for a Sentinel-managed master.',
    });
  }
  const tlsOn = parsed.tls || (sentinel !== null && hasTlsSettings(opts.tls));
  if (!tlsOn && hasTlsSettings(opts.tls)) {
    const first = firstTlsSetting(opts.tls)!;
    throw new ConfigError(`${tlsSettingLabel(first)} is set, but the Redis URL uses redis:// (no TLS)`, {
      code: 'ERR_TLS_CONFIG',
      suggestion: 'Use a rediss:// URL to connect with TLS (the TLS options then apply), or drop the TLS options.',
    });
  }
  return { parsed, tls: tlsOn ? loadTlsOptions(opts.tls) : null, address: connectionTarget(opts) };
}

/**
 * Opens a connection and registers this package's Lua scripts. Rejects within
 * about connectTimeoutMs with {@link RedisUnavailableError} (exit 5) when
 * Redis (or every sentinel) cannot be reached; with a config error (exit 2)
 * when configuration must change: refused credentials ({@link RedisAuthError}),
 * a certificate problem ({@link TlsCertificateError}), a missing ACL
 * permission ({@link AclPermissionError}), a master name no sentinel knows.
 * Both profiles need Redis at start: a service that cannot reach it at boot
 * exits and is restarted by its supervisor.
 */
export async function connectRedis(opts: RedisConnectionOptions): Promise<RedisClient> {
  if (opts.role === 'replica' && !opts.sentinel) throw new Error('connectRedis: role replica needs sentinel settings; use connectReplica()');
  return openClient(plan(opts), opts);
}

async function openClient(p: OpenPlan, opts: RedisConnectionOptions): Promise<RedisClient> {
  const { parsed, tls, address } = p;
  const sentinel = opts.sentinel ?? null;
  // A cluster's nodes are reached by the addresses CLUSTER SLOTS gives: each is checked against its own
  // name, so the startup node's host is no default server name there (--tls-servername still applies).
  const base = baseOptions(parsed, opts, tls && !sentinel ? (opts.cluster ? tls : directTls(parsed.host, tls)) : null);
  const service = opts.profile === ConnectionProfile.Service;
  let client: RedisClient;
  if (opts.cluster) {
    const { host: _h, port: _p, db: _db, ...redisOptions } = base;
    const clusterOptions: ClusterOptions = {
      redisOptions,
      // No auto-pipelining on a cluster: ioredis resends a redirected pipeline only when every error in it is the
      // same and every command that succeeded is read-only, so a script call batched with others could surface a raw
      // MOVED/ASK while a slot changes hands. The batch paths pipeline per master themselves (src/ops/cluster-batch.ts).
      enableAutoPipelining: false,
      scaleReads: 'master',
      lazyConnect: true,
      enableOfflineQueue: true,
      slotsRefreshTimeout: opts.connectTimeoutMs ?? 5000,
      // While a slot changes hands the masters disagree for a moment and bounce a command between them (ioredis
      // documents this ping-pong); waiting before each MOVED retry lets their views converge within the 16 redirects.
      retryDelayOnMoved: 50,
      clusterRetryStrategy: service
        ? (times: number) => serviceBackoff(times, opts.maxBackoffMs)
        : (times: number) => (times > (opts.maxReconnects ?? 2) ? null : Math.min(200 * times, 1000)),
    };
    client = new Cluster([{ host: parsed.host, port: parsed.port }], clusterOptions);
  } else if (sentinel) {
    client = new Redis(sentinelOptions(base, sentinel, opts, tls));
  } else {
    client = new Redis(base);
  }
  const tlsContext = { address, settings: opts.tls ?? null };
  // Errors are surfaced through rejected commands; an unhandled 'error' event would crash the process.
  // The last one is kept: "ECONNREFUSED" says more than ioredis' final "Connection is closed".
  let lastError: Error | null = null;
  let refused: ((e: Error) => void) | null = null;
  // 'connect' comes after the TLS handshake: a reset right after it is the server refusing us, not the network.
  let handshakes = 0;
  let resetsAfterHandshake = 0;
  const sentinelErrors: string[] = [];
  client.on('connect', () => {
    handshakes += 1;
  });
  client.on('error', (e: Error) => {
    lastError = e;
    if (tls && handshakes > 0 && !opts.tls?.certFile && /ECONNRESET/.test(e.message)) resetsAfterHandshake += 1;
    // Wrong credentials, a missing permission and a bad certificate never get better by retrying: stop at once.
    if (isAuthError(e) || isAclDenial(e) || (tls && classifyTlsError(e, tlsContext) !== null) || resetsAfterHandshake >= 2) refused?.(e);
  });
  if (sentinel) client.on('sentinelError', (e: Error) => sentinelErrors.push(e.message));
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
    const best = (lastError as Error | null) ?? (err as Error);
    if (tls) {
      const t = classifyTlsError(best, { ...tlsContext, handshakeCompleted: handshakes > 0 });
      if (t) throw t;
    }
    if (sentinel) {
      const problem = sentinelProblem(sentinel, opts.role, address, sentinelErrors);
      if (problem) throw problem;
    }
    if (best instanceof Error && !(best instanceof OrchError)) {
      if (tls && !/tls|ssl|certificate/i.test(best.message)) {
        // A plain server never answers a TLS handshake: say so rather than a bare timeout.
        best.message = `${best.message} (TLS handshake did not complete; if the server does not speak TLS, use the redis scheme, not rediss)`;
      } else if (!tls && /ECONNRESET/.test(best.message)) {
        // A TLS-only port resets a plain client at its first command.
        best.message = `${best.message} (if the server only speaks TLS on this port, use a rediss:// URL and --tls-ca-file)`;
      }
    }
    const classified = classifyRedisError(best, address, { user: parsed.username ?? 'default', tls: opts.tls ?? null });
    if (classified instanceof OrchError) throw classified;
    throw new RedisUnavailableError(address, best instanceof Error ? (best.message.split('\n')[0] ?? '') : String(best), { cause: best });
  } finally {
    if (timer) clearTimeout(timer);
    refused = null;
  }
  return client;
}

/** Parses `INFO` text into `key → value`. */
function infoFields(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/**
 * Connects to a replica of `master` for read-only work (`verify
 * --read-from-replica`): through the sentinels when configured, else the
 * online replica with the least lag that the master's INFO replication lists
 * (same credentials and TLS settings). A cluster is refused.
 */
export async function connectReplica(opts: RedisConnectionOptions, master: RedisClient): Promise<Redis> {
  if (opts.cluster || isCluster(master)) {
    throw new ConfigError('Reading from a replica is not supported with --cluster', {
      suggestion: 'Drop --read-from-replica (on a cluster every master is read), or use it with a standalone or Sentinel-managed master.',
    });
  }
  if (opts.sentinel) return (await openClient(plan({ ...opts, role: 'replica' }), { ...opts, role: 'replica' })) as Redis;
  const p = plan(opts);
  const info = infoFields(await master.info('replication'));
  const replicas = Object.entries(info)
    .filter(([k]) => /^slave[0-9]+$/.test(k))
    .map(([, v]) => Object.fromEntries(v.split(',').map((kv) => kv.split('=') as [string, string])))
    .filter((r) => r.state === 'online' && r.ip && /^[0-9]{1,5}$/.test(r.port ?? ''))
    .sort((a, b) => Number(a.lag ?? 0) - Number(b.lag ?? 0) || Number(b.offset ?? 0) - Number(a.offset ?? 0));
  const best = replicas[0];
  if (!best) {
    throw new ConfigError(
      `--read-from-replica: the master at ${p.address} has no online replica (INFO replication: connected_slaves:${info.connected_slaves ?? '0'})`,
      {
        code: 'ERR_NO_REPLICA',
        suggestion: 'Verify from the master (drop --read-from-replica), or wait until a replica is online.',
      },
    );
  }
  const host = best.ip!;
  const port = Number(best.port);
  const address = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  return (await openClient({ ...p, parsed: { ...p.parsed, host, port, address }, address }, opts)) as Redis;
}

/** How far a replica is behind its master, as INFO replication states it. */
export interface ReplicaLag {
  /** Where the replica is, `host:port` (what the connection reached). */
  address: string;
  /** The replica's `master_link_status` (`up` or `down`). */
  linkStatus: string;
  /** Master replication offset minus the replica's: bytes of writes not yet applied (null when unknown). */
  lagBytes: number | null;
  /** Seconds since the replica last heard from its master (`master_last_io_seconds_ago`). */
  lastIoSecondsAgo: number | null;
}

/** Reads both sides' INFO replication at once and states the replica's lag. */
export async function replicaLag(master: Redis, replica: Redis): Promise<ReplicaLag> {
  const [m, r] = (await Promise.all([master.info('replication'), replica.info('replication')])).map(infoFields) as [
    Record<string, string>,
    Record<string, string>,
  ];
  const num = (v: string | undefined): number | null => (v !== undefined && /^-?[0-9]+$/.test(v) ? Number(v) : null);
  const masterOffset = num(m.master_repl_offset);
  const replicaOffset = num(r.slave_repl_offset);
  return {
    address: connectedAddress(replica) ?? nodeAddress(replica),
    linkStatus: r.master_link_status ?? 'unknown',
    lagBytes: masterOffset !== null && replicaOffset !== null ? Math.max(0, masterOffset - replicaOffset) : null,
    lastIoSecondsAgo: num(r.master_last_io_seconds_ago),
  };
}

/** The master nodes of a client: itself when standalone. */
export function masterNodes(client: RedisClient): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client];
}

/**
 * A node's identity for checkpoints, cursors and messages: `host:port`, or for a
 * Sentinel-managed master `sentinel:<name>`. The latter stays the same across a
 * failover, so a checkpoint keeps its entry and the changed run_id is what
 * tells the scan engine that the cursor is void (docs/design.md "The scan engine and checkpoints": rescan from 0).
 */
export function nodeAddress(node: Redis): string {
  const o = node.options;
  if (o.sentinels && o.sentinels.length > 0 && o.name) return `sentinel:${o.name}${o.role === 'slave' ? ':replica' : ''}`;
  return `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`;
}

/** `host:port` of the server a standalone client is connected to right now (a sentinel client's current master), or null. */
export function connectedAddress(node: Redis): string | null {
  const stream = (node as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream;
  if (!stream?.remoteAddress || !stream.remotePort) return null;
  return `${isIP(stream.remoteAddress) === 6 ? `[${stream.remoteAddress}]` : stream.remoteAddress}:${stream.remotePort}`;
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
