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
  ApplyIfNewerIndexed: 'orchApplyIfNewerIndexed',
  WritePrimary: 'orchWritePrimary',
  WritePrimaryIndexed: 'orchWritePrimaryIndexed',
  ReadSnapshot: 'orchReadSnapshot',
  Transition: 'orchTransition',
  FencedHset: 'orchFencedHset',
  LockRenew: 'orchLockRenew',
  LockRelease: 'orchLockRelease',
  CleanupUnlink: 'orchCleanupUnlink',
  QueueConvert: 'orchQueueConvert',
  ReadFieldsBatch: 'orchReadFieldsBatch',
  BackfillBatch: 'orchBackfillBatch',
  VerifyBatch: 'orchVerifyBatch',
  VerifyV2Batch: 'orchVerifyV2Batch',
  RepairCas: 'orchRepairCas',
  RepairCasIndexed: 'orchRepairCasIndexed',
} as const;
export type ScriptName = (typeof ScriptName)[keyof typeof ScriptName];

/**
 * Registered script sources, by name: file name and key count. Key counts are
 * fixed per name (a script with an optional key is registered twice): ioredis'
 * cluster routing needs to know which arguments are keys. `numberOfKeys: null`
 * marks a single-node-only batch script whose caller passes numkeys first.
 */
const SCRIPTS: Record<ScriptName, { file: string; numberOfKeys: number | null }> = {
  [ScriptName.ApplyIfNewer]: { file: 'apply-if-newer.lua', numberOfKeys: 1 },
  [ScriptName.ApplyIfNewerIndexed]: { file: 'apply-if-newer.lua', numberOfKeys: 2 },
  [ScriptName.WritePrimary]: { file: 'write-primary.lua', numberOfKeys: 1 },
  [ScriptName.WritePrimaryIndexed]: { file: 'write-primary.lua', numberOfKeys: 2 },
  [ScriptName.ReadSnapshot]: { file: 'read-snapshot.lua', numberOfKeys: 1 },
  [ScriptName.Transition]: { file: 'transition.lua', numberOfKeys: 1 },
  [ScriptName.FencedHset]: { file: 'fenced-hset.lua', numberOfKeys: 1 },
  [ScriptName.LockRenew]: { file: 'lock-renew.lua', numberOfKeys: 1 },
  [ScriptName.LockRelease]: { file: 'lock-release.lua', numberOfKeys: 1 },
  [ScriptName.CleanupUnlink]: { file: 'cleanup-unlink.lua', numberOfKeys: 1 },
  [ScriptName.QueueConvert]: { file: 'queue-convert.lua', numberOfKeys: 1 },
  [ScriptName.ReadFieldsBatch]: { file: 'read-fields-batch.lua', numberOfKeys: null },
  [ScriptName.BackfillBatch]: { file: 'backfill-batch.lua', numberOfKeys: null },
  [ScriptName.VerifyBatch]: { file: 'verify-batch.lua', numberOfKeys: null },
  [ScriptName.VerifyV2Batch]: { file: 'verify-v2-batch.lua', numberOfKeys: null },
  [ScriptName.RepairCas]: { file: 'repair-cas.lua', numberOfKeys: 1 },
  [ScriptName.RepairCasIndexed]: { file: 'repair-cas.lua', numberOfKeys: 2 },
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
  // Note: never use client.call() on a cluster client with auto-pipelining (ioredis routes it by the wrong argument).
}

/** Registers every core script on a client. */
export function registerScripts(client: Registrable): void {
  for (const [name, def] of Object.entries(SCRIPTS)) defineScript(client, name, def.file, def.numberOfKeys ?? undefined);
}

/** Anything a script call accepts. */
export type ScriptArg = string | Buffer | number;

/** Calls a registered script by name. `Buffer` variant returns raw bytes. */
export function callScript<T>(client: Redis | Cluster, name: string, args: ScriptArg[], buffers = false): Promise<T> {
  const fn = (client as unknown as Record<string, (a: ScriptArg[]) => Promise<T>>)[buffers ? `${name}Buffer` : name];
  if (typeof fn !== 'function') throw new Error(`Script ${name} is not registered on this client`);
  // One array argument (ioredis flattens it): spreading a 100k-field snapshot would overflow the JS stack.
  return fn.call(client, args);
}
