/**
 * Redis Sentinel settings: which sentinels to ask, for which master, and the
 * sentinels' own credentials. Parsing is strict (full match, every entry), so
 * a typo is a config error naming the option rather than a connection that
 * silently asks fewer sentinels.
 *
 * The connection itself is in ./redis.ts (ioredis' sentinel support, with its
 * failover detector: a `+switch-master` from any sentinel drops the connection
 * at once, and the reconnect asks the sentinels for the new master).
 */
import { isIP } from 'node:net';
import { ConfigError } from './errors.js';

/** One sentinel. */
export interface SentinelAddress {
  host: string;
  port: number;
}

/** How to find the master through Sentinel. */
export interface SentinelSettings {
  sentinels: SentinelAddress[];
  /** The name the sentinels monitor the master under (`sentinel monitor <name> …`). */
  masterName: string;
  /** ACL user of the sentinels themselves, when they require one (not the data user). */
  username?: string | null;
  /** Password of the sentinels (`requirepass` / ACL in sentinel.conf); never printed. */
  password?: string | null;
}

/** Option and environment names, for messages that fit the CLI and the API alike. */
export const SENTINEL_SETTING_NAMES = {
  sentinels: { flag: '--sentinel', env: 'ORCH_SENTINELS' },
  masterName: { flag: '--sentinel-master', env: 'ORCH_SENTINEL_MASTER' },
  username: { flag: null, env: 'ORCH_SENTINEL_USERNAME' },
  password: { flag: null, env: 'ORCH_SENTINEL_PASSWORD' },
} as const;

/** `--sentinel (ORCH_SENTINELS)`. */
export function sentinelSettingLabel(name: 'sentinels' | 'masterName'): string {
  const n = SENTINEL_SETTING_NAMES[name];
  return `${n.flag} (${n.env})`;
}

/** Most sentinels accepted in one list (a deployment has 3 or 5). */
export const MAX_SENTINELS = 16;

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}))*$/;
/** `host:port` or `[ipv6]:port`, full match. */
const ENTRY = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):([0-9]{1,5})$/;
/** Master names as redis.conf accepts them, restricted to characters that need no quoting anywhere. */
const MASTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True when `name` is a valid `--sentinel-master`. */
export function isMasterName(name: string): boolean {
  return MASTER_NAME.test(name);
}

function invalid(message: string): ConfigError {
  return new ConfigError(message, {
    code: 'ERR_SENTINEL_CONFIG',
    suggestion: `Use ${SENTINEL_SETTING_NAMES.sentinels.flag} host:port[,host:port…] (e.g. 10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379) and ${SENTINEL_SETTING_NAMES.masterName.flag} <name>.`,
  });
}

/**
 * Parses `host:port[,host:port…]` (IPv6 as `[addr]:port`). Every entry must be
 * valid; duplicates are refused (a list with one sentinel twice is a typo
 * that halves the redundancy).
 */
export function parseSentinelList(text: string): SentinelAddress[] {
  const label = sentinelSettingLabel('sentinels');
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) throw invalid(`${label} has an empty entry: ${JSON.stringify(text.slice(0, 200))}`);
  if (parts.length > MAX_SENTINELS) throw invalid(`${label} lists ${parts.length} sentinels; at most ${MAX_SENTINELS} are accepted`);
  const seen = new Set<string>();
  return parts.map((p) => {
    const m = ENTRY.exec(p);
    const host = m ? (m[1] ?? m[2]!) : '';
    const port = m ? Number(m[3]) : 0;
    const hostOk = m !== null && (m[1] !== undefined ? isIP(host) === 6 : isIP(host) === 4 || HOST_NAME.test(host));
    if (!hostOk || port < 1 || port > 65535) throw invalid(`${label} entry ${JSON.stringify(p.slice(0, 80))} is not host:port (port 1-65535)`);
    const key = `${host.toLowerCase()}:${port}`;
    if (seen.has(key)) throw invalid(`${label} lists ${key} twice`);
    seen.add(key);
    return { host, port };
  });
}

/** Raw settings as given (options or environment), each possibly absent. */
export interface RawSentinelSettings {
  sentinels?: string | null;
  masterName?: string | null;
  username?: string | null;
  password?: string | null;
}

/**
 * Validates raw settings: both the list and the master name, or neither
 * (null: no Sentinel). Throws a {@link ConfigError} naming what is missing.
 */
export function sentinelSettings(raw: RawSentinelSettings): SentinelSettings | null {
  const list = raw.sentinels?.trim() ?? '';
  const name = raw.masterName?.trim() ?? '';
  if (list === '' && name === '') return null;
  if (list === '') throw invalid(`${sentinelSettingLabel('masterName')} is set without ${sentinelSettingLabel('sentinels')}`);
  if (name === '')
    throw invalid(
      `${sentinelSettingLabel('sentinels')} is set without ${sentinelSettingLabel('masterName')} (the name the sentinels monitor the master under)`,
    );
  if (!isMasterName(name))
    throw invalid(`${sentinelSettingLabel('masterName')} must be 1-64 letters, digits, ".", "_" or "-", got ${JSON.stringify(name.slice(0, 64))}`);
  return {
    sentinels: parseSentinelList(list),
    masterName: name,
    username: raw.username && raw.username !== '' ? raw.username : null,
    password: raw.password && raw.password !== '' ? raw.password : null,
  };
}

/** `mymaster via sentinel 10.0.0.1:26379,10.0.0.2:26379`: safe to print (no credentials). */
export function describeSentinelTarget(s: SentinelSettings): string {
  const list = s.sentinels.map((a) => (isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`)).join(',');
  return `${s.masterName} via sentinel ${list}`;
}
