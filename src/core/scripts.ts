/**
 * Lua scripts: one per file in ./lua, each with a header documenting KEYS,
 * ARGV and returns, registered on every client with ioredis `defineCommand`
 * (EVALSHA with automatic fallback to EVAL). Typed wrappers live here so
 * callers never build ARGV by hand.
 */
import { readFileSync } from 'node:fs';
import type { Redis, Cluster } from 'ioredis';
import { FencedError } from './errors.js';
import { FENCED_LOCK, ScriptError, scriptErrorReply } from './script-replies.js';

/** Script names as registered with defineCommand. */
export const ScriptName = {
  ApplyIfNewer: 'orchApplyIfNewer',
  ApplyIfNewerIndexed: 'orchApplyIfNewerIndexed',
  WritePrimary: 'orchWritePrimary',
  WritePrimaryIndexed: 'orchWritePrimaryIndexed',
  ReadSnapshot: 'orchReadSnapshot',
  Transition: 'orchTransition',
  TransitionWithHistory: 'orchTransitionWithHistory',
  FencedHset: 'orchFencedHset',
  LockAcquire: 'orchLockAcquire',
  LockRenew: 'orchLockRenew',
  LockHolds: 'orchLockHolds',
  LockFence: 'orchLockFence',
  LockRelease: 'orchLockRelease',
  CleanupUnlink: 'orchCleanupUnlink',
  CleanupBatch: 'orchCleanupBatch',
  QueueConvert: 'orchQueueConvert',
  ReadFieldsBatch: 'orchReadFieldsBatch',
  BackfillBatch: 'orchBackfillBatch',
  VerifyBatch: 'orchVerifyBatch',
  VerifyV2Batch: 'orchVerifyV2Batch',
  RecordFactsOneKey: 'orchRecordFactsOneKey',
  RepairCas: 'orchRepairCas',
  IndexDropDangling: 'orchIndexDropDangling',
  RepairCasOneKey: 'orchRepairCasOneKey',
  WriteJob: 'orchWriteJob',
  WorkspaceTransition: 'orchWorkspaceTransition',
  WorkspaceTransitionStateOnly: 'orchWorkspaceTransitionStateOnly',
  WorkspaceOverridesCas: 'orchWorkspaceOverridesCas',
  MirrorCreate: 'orchMirrorCreate',
  BackfillCreate: 'orchBackfillCreate',
  IndexAdd: 'orchIndexAdd',
  WriterHeartbeat: 'orchWriterHeartbeat',
  XslotRead: 'orchXslotRead',
  XslotCreate: 'orchXslotCreate',
  XslotIndexAdd: 'orchXslotIndexAdd',
  XslotProbe: 'orchXslotProbe',
} as const;
export type ScriptName = (typeof ScriptName)[keyof typeof ScriptName];

/**
 * Registered script sources, by name: file name and key count. A fixed count
 * lets ioredis route the call on a cluster; `numberOfKeys: null` means the
 * caller passes numkeys first (batch scripts, and scripts whose optional keys
 * are named by an argument). Those are for a single node only: without a fixed
 * count the cluster client cannot tell the keys from the arguments to route the
 * call, so a script called on a cluster is registered with a fixed count
 * (RepairCasOneKey), or sent to a master's own connection (src/ops/cluster-batch.ts).
 */
const SCRIPTS: Record<ScriptName, { file: string; numberOfKeys: number | null }> = {
  [ScriptName.ApplyIfNewer]: { file: 'apply-if-newer.lua', numberOfKeys: 1 },
  [ScriptName.ApplyIfNewerIndexed]: { file: 'apply-if-newer.lua', numberOfKeys: 2 },
  [ScriptName.WritePrimary]: { file: 'write-primary.lua', numberOfKeys: 1 },
  [ScriptName.WritePrimaryIndexed]: { file: 'write-primary.lua', numberOfKeys: 2 },
  [ScriptName.ReadSnapshot]: { file: 'read-snapshot.lua', numberOfKeys: 1 },
  [ScriptName.Transition]: { file: 'transition.lua', numberOfKeys: 1 },
  [ScriptName.TransitionWithHistory]: { file: 'transition.lua', numberOfKeys: 2 },
  [ScriptName.FencedHset]: { file: 'fenced-hset.lua', numberOfKeys: 1 },
  [ScriptName.LockAcquire]: { file: 'lock-acquire.lua', numberOfKeys: 1 },
  [ScriptName.LockRenew]: { file: 'lock-renew.lua', numberOfKeys: 1 },
  [ScriptName.LockHolds]: { file: 'lock-holds.lua', numberOfKeys: 1 },
  [ScriptName.LockFence]: { file: 'lock-fence.lua', numberOfKeys: 1 },
  [ScriptName.LockRelease]: { file: 'lock-release.lua', numberOfKeys: 1 },
  [ScriptName.CleanupUnlink]: { file: 'cleanup-unlink.lua', numberOfKeys: 1 },
  [ScriptName.CleanupBatch]: { file: 'cleanup-batch.lua', numberOfKeys: null },
  [ScriptName.QueueConvert]: { file: 'queue-convert.lua', numberOfKeys: 1 },
  [ScriptName.ReadFieldsBatch]: { file: 'read-fields-batch.lua', numberOfKeys: null },
  [ScriptName.BackfillBatch]: { file: 'backfill-batch.lua', numberOfKeys: null },
  [ScriptName.VerifyBatch]: { file: 'verify-batch.lua', numberOfKeys: null },
  [ScriptName.VerifyV2Batch]: { file: 'verify-v2-batch.lua', numberOfKeys: null },
  [ScriptName.RecordFactsOneKey]: { file: 'record-facts.lua', numberOfKeys: 1 },
  [ScriptName.RepairCas]: { file: 'repair-cas.lua', numberOfKeys: null },
  [ScriptName.IndexDropDangling]: { file: 'index-drop-dangling.lua', numberOfKeys: 3 },
  [ScriptName.RepairCasOneKey]: { file: 'repair-cas.lua', numberOfKeys: 1 },
  [ScriptName.WriteJob]: { file: 'write-job.lua', numberOfKeys: 7 },
  [ScriptName.WorkspaceTransition]: { file: 'workspace-transition.lua', numberOfKeys: 4 },
  [ScriptName.WorkspaceTransitionStateOnly]: { file: 'workspace-transition.lua', numberOfKeys: 1 },
  [ScriptName.WorkspaceOverridesCas]: { file: 'workspace-overrides-cas.lua', numberOfKeys: 1 },
  [ScriptName.MirrorCreate]: { file: 'mirror-create.lua', numberOfKeys: 1 },
  [ScriptName.BackfillCreate]: { file: 'backfill-create.lua', numberOfKeys: 1 },
  [ScriptName.IndexAdd]: { file: 'index-add.lua', numberOfKeys: 1 },
  [ScriptName.WriterHeartbeat]: { file: 'writer-heartbeat.lua', numberOfKeys: 1 },
  // Cross-slot batch scripts (Redis 7+): keys in ARGV, numkeys 0, called on one master's own connection (src/ops/cluster-batch.ts).
  [ScriptName.XslotRead]: { file: 'xslot-read.lua', numberOfKeys: 0 },
  [ScriptName.XslotCreate]: { file: 'xslot-create.lua', numberOfKeys: 0 },
  [ScriptName.XslotIndexAdd]: { file: 'xslot-index-add.lua', numberOfKeys: 0 },
  [ScriptName.XslotProbe]: { file: 'xslot-probe.lua', numberOfKeys: 0 },
};

const sources = new Map<string, string>();
const INCLUDE = /^--- @include "([a-z0-9/-]+)"[ \t]*$/gm;

/**
 * Source text of a script file in ./lua (cached), with its
 * `--- @include "includes/<name>"` lines replaced by that file (one level: an
 * include does not include). Shared Lua lives once, as in BullMQ's loader.
 * Exported so other modules can register extra scripts the same way.
 */
export function luaSource(file: string): string {
  let src = sources.get(file);
  if (src === undefined) {
    const raw = readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
    src = raw.replace(INCLUDE, (_line, name: string) => readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8').trimEnd());
    sources.set(file, src);
  }
  return src;
}

type Registrable = Pick<Redis, 'defineCommand'> | Pick<Cluster, 'defineCommand'>;

/** Registers one script under `name` (idempotent per client). */
export function defineScript(client: Registrable, name: string, file: string, numberOfKeys?: number): void {
  client.defineCommand(name, numberOfKeys === undefined ? { lua: luaSource(file) } : { lua: luaSource(file), numberOfKeys });
  // Note: never use client.call() on a cluster client (ioredis may route it by the wrong argument).
}

/** Registers every core script on a client. */
export function registerScripts(client: Registrable): void {
  for (const [name, def] of Object.entries(SCRIPTS)) defineScript(client, name, def.file, def.numberOfKeys ?? undefined);
}

/**
 * Registers the core scripts unless this client already has them: a library
 * caller may hand the queue or the state store a plain `new Redis()` rather
 * than one from connectRedis (src/core/redis.ts).
 */
export function ensureScripts(client: Registrable): void {
  if (typeof (client as unknown as Record<string, unknown>)[ScriptName.WriteJob] !== 'function') registerScripts(client);
}

/** Anything a script call accepts. */
export type ScriptArg = string | Buffer | number;

/** Calls a registered script by name. `Buffer` variant returns raw bytes. */
export function callScript<T>(client: Redis | Cluster, name: string, args: ScriptArg[], buffers = false): Promise<T> {
  const fn = (client as unknown as Record<string, (a: ScriptArg[]) => Promise<T>>)[buffers ? `${name}Buffer` : name];
  if (typeof fn !== 'function') throw new Error(`Script ${name} is not registered on this client`);
  // One array argument (ioredis flattens it): spreading a 100k-field snapshot would overflow the JS stack.
  return fn.call(client, args).catch((err: unknown) => {
    throw lockLost(err) ?? err;
  });
}

/** A script's error reply as callScript throws it: a lost lock as FencedError (for replies read from a pipeline). */
export function asScriptError(err: unknown): unknown {
  return lockLost(err) ?? err;
}

/**
 * Every data script that checks the operator lock refuses with `FENCED lock`
 * (src/core/lua/includes/holds-lock.lua): mapped here, once, to FencedError
 * (exit 4), whichever script said it. State scripts refuse with
 * `FENCED <fence>`, mapped with the context of the change in src/core/state.ts.
 */
function lockLost(err: unknown): FencedError | null {
  const reply = scriptErrorReply(err);
  if (reply?.code !== ScriptError.Fenced || reply.args.join(' ') !== FENCED_LOCK) return null;
  return new FencedError(
    'This run no longer holds the migration lock (its lease expired, was deleted or was taken over): it stopped before changing anything more',
    {
      cause: err,
    },
  );
}
