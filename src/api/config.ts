/**
 * Configuration of the reference API, parsed from the environment with zod.
 * Every problem is a {@link ConfigError} (exit 2) that names the variable and
 * never echoes a secret value.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { isWorkspaceId } from '../core/ids.js';
import { Keyspace } from '../core/keys.js';
import { DEFAULT_PAGE_MAX_BYTES } from '../core/listing.js';
import { connectionSettingsFromEnv, DEFAULT_REDIS_URL, parseRedisUrl } from '../core/redis.js';
import type { SentinelSettings } from '../core/sentinel.js';
import { loadTlsOptions, type TlsSettings } from '../core/tls.js';
import { sensitiveKeysFromEnv } from '../core/redact.js';
import { parseTokenTable, type TokenEntry } from './auth.js';

/** Smallest accepted cursor secret, in bytes. */
export const MIN_CURSOR_SECRET_BYTES = 32;

/** Parsed configuration of the API service. */
export interface ApiConfig {
  host: string;
  port: number;
  redisUrl: string;
  redisCluster: boolean;
  /** TLS files and server name (ORCH_TLS_*), the same settings as the CLI's --tls-* options. */
  redisTls: TlsSettings | null;
  /** Find the master through Sentinel (ORCH_SENTINELS, ORCH_SENTINEL_MASTER) and follow its failovers. */
  redisSentinel: SentinelSettings | null;
  keys: Keyspace;
  tokens: TokenEntry[];
  /** HMAC secrets of the cursor envelope: the first signs, every one verifies (rotation). */
  cursorSecrets: Buffer[];
  /** True when no secret was configured and one was generated for this process. */
  cursorSecretGenerated: boolean;
  /** Extra sensitive keys on top of the seed's set (ORCH_SENSITIVE_KEYS). */
  sensitiveKeys: string[];
  metricsWorkspaceLabel: boolean;
  metricsWorkspaceAllowlist: string[];
  logLevel: LogLevel;
  /** SCAN COUNT of the legacy listing path. */
  legacyScanCount: number;
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  /** Byte budget of one GET /ai/jobs page (stored bytes). */
  maxPageBytes: number;
  /** GET /ai/jobs pages built at once; more requests wait their turn (bounds memory). */
  listConcurrency: number;
  /** A request (headers and body) that takes longer to arrive is answered 408. */
  requestTimeoutMs: number;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** One row of the README's configuration table. */
export interface EnvDoc {
  name: string;
  default: string;
  meaning: string;
}

/** Every variable the service reads (kept next to the parser so the README table cannot drift). */
export const API_ENV_DOCS: readonly EnvDoc[] = [
  { name: 'PORT', default: '8080', meaning: 'TCP port to listen on (0 = any free port).' },
  { name: 'HOST', default: '0.0.0.0', meaning: 'Address to bind.' },
  { name: 'REDIS_URL', default: DEFAULT_REDIS_URL, meaning: 'redis:// or rediss:// URL (the password is never logged).' },
  { name: 'ORCH_REDIS_CLUSTER', default: 'off', meaning: '`on`: REDIS_URL is a startup node of a Redis Cluster.' },
  {
    name: 'ORCH_TLS_CA_FILE',
    default: '(none)',
    meaning: 'PEM file of the CA that signed the Redis server certificate (a private CA); needs a rediss:// REDIS_URL.',
  },
  { name: 'ORCH_TLS_CERT_FILE', default: '(none)', meaning: 'PEM client certificate, for servers with tls-auth-clients yes (with ORCH_TLS_KEY_FILE).' },
  { name: 'ORCH_TLS_KEY_FILE', default: '(none)', meaning: 'PEM private key of the client certificate (unencrypted; never logged).' },
  {
    name: 'ORCH_TLS_SERVERNAME',
    default: '(the URL host)',
    meaning: 'Host name the server certificate must hold, when it differs from the host connected to.',
  },
  {
    name: 'ORCH_SENTINELS',
    default: '(none)',
    meaning:
      'host:port[,host:port…] of Redis Sentinels: the master is found through them and followed across failovers; REDIS_URL then gives only the user, password, db and rediss.',
  },
  { name: 'ORCH_SENTINEL_MASTER', default: '(none)', meaning: 'The master name the sentinels monitor (required with ORCH_SENTINELS).' },
  { name: 'ORCH_SENTINEL_USERNAME', default: '(none)', meaning: 'ACL user of the sentinels themselves, when they require one.' },
  { name: 'ORCH_SENTINEL_PASSWORD', default: '(none)', meaning: "Password of the sentinels themselves (not the data nodes'); never logged." },
  { name: 'ORCH_PREFIX', default: 'ai', meaning: 'Key prefix (`<prefix>:jobs:*`, `<prefix>:job:*`, `<prefix>:migration:jobs`, ...).' },
  {
    name: 'ORCH_API_TOKENS_FILE',
    default: '(none)',
    meaning: 'JSON file: array of {"sha256": hex sha256 of the token, "workspace_id", "scopes": [...]}. At least one of the two token sources is required.',
  },
  { name: 'ORCH_API_TOKENS', default: '(none)', meaning: 'The same JSON inline; entries of both sources are merged (a duplicate hash is an error).' },
  {
    name: 'ORCH_API_CURSOR_SECRET',
    default: '(generated per process)',
    meaning: `Cursor signing secret(s), comma-separated, each >= ${MIN_CURSOR_SECRET_BYTES} bytes; the first signs, all verify (rotation). Set it when running more than one replica or cursors must survive a restart.`,
  },
  {
    name: 'ORCH_SENSITIVE_KEYS',
    default: '(none)',
    meaning:
      'Comma-separated extra key fragments to redact, on top of the built-in rules (see docs/api.md, "Redaction"); matched after normalising (case, "-", "_" and spaces ignored).',
  },
  { name: 'METRICS_WORKSPACE_LABEL', default: 'off', meaning: '`on` adds a workspace_id label to the job-list metrics.' },
  {
    name: 'METRICS_WORKSPACE_ALLOWLIST',
    default: '(empty)',
    meaning: 'Comma-separated workspaces that get their own label value; every other workspace (all of them when empty) is `unscoped`.',
  },
  { name: 'LOG_LEVEL', default: 'info', meaning: 'pino level: fatal, error, warn, info, debug, trace, silent.' },
  { name: 'ORCH_LEGACY_SCAN_COUNT', default: '1000', meaning: 'SCAN COUNT used by the legacy read path.' },
  { name: 'ORCH_API_BODY_LIMIT_BYTES', default: '262144', meaning: 'Largest accepted request body.' },
  {
    name: 'ORCH_API_SHUTDOWN_TIMEOUT_MS',
    default: '10000',
    meaning: 'On SIGTERM/SIGINT, how long in-flight requests may finish before connections are dropped.',
  },
  {
    name: 'ORCH_API_MAX_PAGE_BYTES',
    default: String(DEFAULT_PAGE_MAX_BYTES),
    meaning:
      'Byte budget of one GET /ai/jobs page (stored bytes, 4 MiB by default): a page stops before the job that would exceed it (it always holds one job) and next_cursor continues after it.',
  },
  {
    name: 'ORCH_API_LIST_CONCURRENCY',
    default: '2',
    meaning: 'GET /ai/jobs pages read at once; further requests wait their turn, which bounds memory under parallel load.',
  },
  {
    name: 'ORCH_API_REQUEST_TIMEOUT_MS',
    default: '30000',
    meaning: 'A request whose headers and body take longer to arrive is answered 408 (slow clients cannot hold sockets).',
  },
];

const onOff = (name: string) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return false;
      const s = v.trim().toLowerCase();
      if (s === 'on' || s === 'true' || s === '1') return true;
      if (s === 'off' || s === 'false' || s === '0') return false;
      ctx.addIssue({ code: 'custom', message: `${name} must be on or off` });
      return z.NEVER;
    });

const intIn = (name: string, min: number, max: number, dflt: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return dflt;
      if (!/^[0-9]{1,10}$/.test(v.trim())) {
        ctx.addIssue({ code: 'custom', message: `${name} must be an integer from ${min} to ${max}` });
        return z.NEVER;
      }
      const n = Number(v.trim());
      if (n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `${name} must be an integer from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });

const EnvSchema = z.object({
  PORT: intIn('PORT', 0, 65535, 8080),
  HOST: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? '0.0.0.0' : v.trim()))
    .pipe(z.string().regex(/^[A-Za-z0-9.:[\]-]{1,255}$/, 'HOST must be a host name or an IP address')),
  REDIS_URL: z.string().optional(),
  ORCH_REDIS_CLUSTER: onOff('ORCH_REDIS_CLUSTER'),
  ORCH_PREFIX: z.string().optional(),
  ORCH_API_TOKENS_FILE: z.string().optional(),
  ORCH_API_TOKENS: z.string().optional(),
  ORCH_API_CURSOR_SECRET: z.string().optional(),
  METRICS_WORKSPACE_LABEL: onOff('METRICS_WORKSPACE_LABEL'),
  METRICS_WORKSPACE_ALLOWLIST: z.string().optional(),
  LOG_LEVEL: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? 'info' : v.trim().toLowerCase()))
    .pipe(z.enum(LOG_LEVELS, { message: `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}` })),
  ORCH_LEGACY_SCAN_COUNT: intIn('ORCH_LEGACY_SCAN_COUNT', 1, 100000, 1000),
  ORCH_API_BODY_LIMIT_BYTES: intIn('ORCH_API_BODY_LIMIT_BYTES', 1024, 64 * 1024 * 1024, 256 * 1024),
  ORCH_API_SHUTDOWN_TIMEOUT_MS: intIn('ORCH_API_SHUTDOWN_TIMEOUT_MS', 0, 600000, 10000),
  ORCH_API_MAX_PAGE_BYTES: intIn('ORCH_API_MAX_PAGE_BYTES', 1024, 1024 * 1024 * 1024, DEFAULT_PAGE_MAX_BYTES),
  ORCH_API_LIST_CONCURRENCY: intIn('ORCH_API_LIST_CONCURRENCY', 1, 256, 2),
  ORCH_API_REQUEST_TIMEOUT_MS: intIn('ORCH_API_REQUEST_TIMEOUT_MS', 1000, 600000, 30000),
});

/** Splits a comma list, trimming and dropping empties. */
export function commaList(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Parses the cursor secrets; never echoes a value. */
export function parseCursorSecrets(raw: string | undefined): { secrets: Buffer[]; generated: boolean } {
  const parts = commaList(raw);
  if (parts.length === 0) return { secrets: [randomBytes(32)], generated: true };
  const secrets = parts.map((p, i) => {
    const b = Buffer.from(p, 'utf8');
    if (b.length < MIN_CURSOR_SECRET_BYTES) {
      throw new ConfigError(`ORCH_API_CURSOR_SECRET entry ${i + 1} is shorter than ${MIN_CURSOR_SECRET_BYTES} bytes`, {
        suggestion: 'Generate one with `openssl rand -hex 32`.',
      });
    }
    return b;
  });
  return { secrets, generated: false };
}

/** Options of {@link loadApiConfig}. */
export interface LoadConfigOptions {
  /** Reads the token file (tests inject). */
  readFile?: (path: string) => string;
}

/** Parses the environment into an {@link ApiConfig}; throws {@link ConfigError}. */
export function loadApiConfig(env: NodeJS.ProcessEnv = process.env, opts: LoadConfigOptions = {}): ApiConfig {
  const res = EnvSchema.safeParse(env);
  if (!res.success) {
    const issues = res.error.issues
      .slice(0, 3)
      .map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message))
      .join('; ');
    throw new ConfigError(`Invalid API configuration: ${issues}`, { cause: res.error, suggestion: 'See the configuration table in README.md.' });
  }
  const e = res.data;
  const redisUrl = e.REDIS_URL && e.REDIS_URL.trim() !== '' ? e.REDIS_URL.trim() : DEFAULT_REDIS_URL;
  parseRedisUrl(redisUrl); // validates; its errors never echo the password
  // The same variables the CLI's options read; the TLS files are checked now, so a bad path is exit 2 at start.
  const connection = connectionSettingsFromEnv(env);
  if (connection.tls) loadTlsOptions(connection.tls);
  const keys = new Keyspace(e.ORCH_PREFIX && e.ORCH_PREFIX.trim() !== '' ? e.ORCH_PREFIX.trim() : 'ai');

  const tokens: TokenEntry[] = [];
  if (e.ORCH_API_TOKENS_FILE && e.ORCH_API_TOKENS_FILE.trim() !== '') {
    const path = e.ORCH_API_TOKENS_FILE.trim();
    let text: string;
    try {
      text = (opts.readFile ?? ((p: string) => readFileSync(p, 'utf8')))(path);
    } catch (cause) {
      throw new ConfigError(`Cannot read ORCH_API_TOKENS_FILE ${JSON.stringify(path)}`, {
        cause,
        suggestion: 'Point ORCH_API_TOKENS_FILE at a readable JSON file.',
      });
    }
    tokens.push(...parseTokenTable(text, 'ORCH_API_TOKENS_FILE'));
  }
  if (e.ORCH_API_TOKENS && e.ORCH_API_TOKENS.trim() !== '') tokens.push(...parseTokenTable(e.ORCH_API_TOKENS, 'ORCH_API_TOKENS'));
  if (tokens.length === 0) {
    throw new ConfigError('No API tokens configured', {
      suggestion: 'Set ORCH_API_TOKENS_FILE (or ORCH_API_TOKENS) to a JSON array of {"sha256", "workspace_id", "scopes"}.',
    });
  }
  const seen = new Set<string>();
  for (const t of tokens) {
    if (seen.has(t.sha256)) throw new ConfigError('The token table holds the same token hash twice', { suggestion: 'Remove the duplicate entry.' });
    seen.add(t.sha256);
  }

  const allowlist = commaList(e.METRICS_WORKSPACE_ALLOWLIST);
  const badAllow = allowlist.find((w): boolean => !isWorkspaceId(w));
  if (badAllow !== undefined) {
    throw new ConfigError(`METRICS_WORKSPACE_ALLOWLIST holds an invalid workspace id ${JSON.stringify(badAllow.slice(0, 40))}`, {
      suggestion: 'Workspace ids are 1-32 characters of a-z, 0-9, "_" or "-".',
    });
  }
  const cursor = parseCursorSecrets(e.ORCH_API_CURSOR_SECRET);

  return {
    host: e.HOST,
    port: e.PORT,
    redisUrl,
    redisCluster: e.ORCH_REDIS_CLUSTER,
    redisTls: connection.tls,
    redisSentinel: connection.sentinel,
    keys,
    tokens,
    cursorSecrets: cursor.secrets,
    cursorSecretGenerated: cursor.generated,
    sensitiveKeys: sensitiveKeysFromEnv(env),
    metricsWorkspaceLabel: e.METRICS_WORKSPACE_LABEL,
    metricsWorkspaceAllowlist: allowlist,
    logLevel: e.LOG_LEVEL,
    legacyScanCount: e.ORCH_LEGACY_SCAN_COUNT,
    bodyLimitBytes: e.ORCH_API_BODY_LIMIT_BYTES,
    shutdownTimeoutMs: e.ORCH_API_SHUTDOWN_TIMEOUT_MS,
    maxPageBytes: e.ORCH_API_MAX_PAGE_BYTES,
    listConcurrency: e.ORCH_API_LIST_CONCURRENCY,
    requestTimeoutMs: e.ORCH_API_REQUEST_TIMEOUT_MS,
  };
}
