/**
 * Lua scripts: one per file in ./lua, each with a header documenting KEYS,
 * ARGV and returns, registered on every client with ioredis `defineCommand`
 * (EVALSHA with automatic fallback to EVAL). Typed wrappers live here so
 * callers never build ARGV by hand.
 */
import { readFileSync } from 'node:fs';
import type { Redis, Cluster } from 'ioredis';

/** Script names as registered with defineCommand. */
export const ScriptName = {
  ApplyIfNewer: 'orchApplyIfNewer',
  WritePrimary: 'orchWritePrimary',
  Transition: 'orchTransition',
  FencedHset: 'orchFencedHset',
  LockRenew: 'orchLockRenew',
  LockRelease: 'orchLockRelease',
} as const;
export type ScriptName = (typeof ScriptName)[keyof typeof ScriptName];

/** Registered script sources, by name: file name and key count (undefined = caller passes numkeys). */
const SCRIPTS: Record<ScriptName, { file: string; numberOfKeys?: number }> = {
  [ScriptName.ApplyIfNewer]: { file: 'apply-if-newer.lua' },
  [ScriptName.WritePrimary]: { file: 'write-primary.lua' },
  [ScriptName.Transition]: { file: 'transition.lua', numberOfKeys: 1 },
  [ScriptName.FencedHset]: { file: 'fenced-hset.lua', numberOfKeys: 1 },
  [ScriptName.LockRenew]: { file: 'lock-renew.lua', numberOfKeys: 1 },
  [ScriptName.LockRelease]: { file: 'lock-release.lua', numberOfKeys: 1 },
};

const sources = new Map<string, string>();

/** Source text of a script file in ./lua (cached). Exported so other modules can register extra scripts the same way. */
export function luaSource(file: string): string {
  let src = sources.get(file);
  if (src === undefined) {
    src = readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
    sources.set(file, src);
  }
  return src;
}

type Registrable = Pick<Redis, 'defineCommand'> | Pick<Cluster, 'defineCommand'>;

/** Registers one script under `name` (idempotent per client). */
export function defineScript(client: Registrable, name: string, file: string, numberOfKeys?: number): void {
  client.defineCommand(name, numberOfKeys === undefined ? { lua: luaSource(file) } : { lua: luaSource(file), numberOfKeys });
}

/** Registers every core script on a client. */
export function registerScripts(client: Registrable): void {
  for (const [name, def] of Object.entries(SCRIPTS)) defineScript(client, name, def.file, def.numberOfKeys);
}

/** Anything a script call accepts. */
export type ScriptArg = string | Buffer | number;

/** Calls a registered script by name. `Buffer` variant returns raw bytes. */
export function callScript<T>(client: Redis | Cluster, name: string, args: ScriptArg[], buffers = false): Promise<T> {
  const fn = (client as unknown as Record<string, (...a: ScriptArg[]) => Promise<T>>)[buffers ? `${name}Buffer` : name];
  if (typeof fn !== 'function') throw new Error(`Script ${name} is not registered on this client`);
  return fn.apply(client, args);
}
