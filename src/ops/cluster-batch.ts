/**
 * Per-master pipelines for the batch paths on Redis Cluster (backfill, reverse
 * backfill, cleanup): the commands of a whole batch are grouped by the master
 * that owns each key's slot and sent as one pipeline on that master's own
 * connection, so a batch costs one awaited round trip per step, not one per
 * key, and no per-command slot lookup or autopipeline bookkeeping of the
 * cluster client.
 *
 * The slot map is the cluster client's (`cluster.slots`). A key whose master
 * answers MOVED or ASK (a slot migrating or migrated, a failover) is never
 * skipped: its commands go again as a pipeline of their own through the
 * cluster client, which follows the redirect (a pipeline whose commands all
 * get the same redirect is resent whole; a pipeline mixing keys, with a
 * write in it, is not resent, which is why src/core/redis.ts turns the
 * cluster client's auto-pipelining off) and
 * refreshes its slot map for the next batch.
 *
 * On Redis 7+ the batch paths go further ({@link perMasterScript}): one
 * cross-slot script per master per step (flagged allow-cross-slot-keys, the
 * keys undeclared in ARGV: src/core/lua/xslot-*.lua), so a batch costs a few
 * commands instead of several per key. A key the master does not serve any
 * more is answered "not here" by the script and goes through the per-key path
 * above, which follows its redirect. ORCH_CLUSTER_PER_KEY=1 keeps every key on
 * the per-key path (tests and the bench compare the two).
 */
import calculateSlot from 'cluster-key-slot';
import type { ChainableCommander, Cluster, Redis } from 'ioredis';
import { ensureScripts, asScriptError } from '../core/scripts.js';

/** One reply of a pipeline: [error, value]. */
export type Reply = [Error | null, unknown];

/** The Redis Cluster hash slot of a key: ioredis' own calculation, so a batch routes as the client does. */
export function keySlot(key: string): number {
  return calculateSlot(key);
}

/** A reply that tells the key is served elsewhere (the cluster client follows it). */
export function isRedirect(err: Error | null): boolean {
  return err !== null && /^(MOVED|ASK) /.test(err.message);
}

/**
 * The masters of a cluster by slot, from the client's slot map at the time of
 * the call (a batch builds one; a map refreshed after a redirect applies to
 * the next batch).
 */
export class MasterRouter {
  private readonly byAddr = new Map<string, Redis>();

  constructor(private readonly cluster: Cluster) {
    for (const node of cluster.nodes('master')) this.byAddr.set(`${node.options.host ?? '127.0.0.1'}:${node.options.port ?? 6379}`, node);
  }

  /** The master connection owning `key`'s slot, or null when the map does not name a known master. */
  nodeFor(key: string): Redis | null {
    const owner = this.cluster.slots[keySlot(key)]?.[0];
    return owner === undefined ? null : (this.byAddr.get(owner) ?? null);
  }
}

/** Item positions by the master that serves each item's key in the client's slot map; `unrouted`: no known master. */
function groupByMaster<T>(cluster: Cluster, items: readonly T[], keyOf: (item: T) => string): { groups: Map<Redis, number[]>; unrouted: number[] } {
  const router = new MasterRouter(cluster);
  const groups = new Map<Redis, number[]>();
  const unrouted: number[] = [];
  items.forEach((item, i) => {
    const node = router.nodeFor(keyOf(item));
    if (node === null) return void unrouted.push(i);
    let g = groups.get(node);
    if (!g) groups.set(node, (g = []));
    g.push(i);
  });
  return { groups, unrouted };
}

/**
 * Runs `n` commands per item (all on that item's key, or keys of its slot),
 * grouped into one pipeline per master; returns each item's `n` replies in
 * order. Items whose master answered MOVED/ASK, or whose slot has no known
 * master, run again, each as a pipeline of its own on the cluster client
 * (which follows redirects). Every other error is left in the replies for
 * the caller.
 */
export async function perMaster<T>(
  cluster: Cluster,
  items: readonly T[],
  keyOf: (item: T) => string,
  n: number,
  queue: (pipe: ChainableCommander, item: T) => void,
): Promise<Reply[][]> {
  const out: Reply[][] = new Array<Reply[]>(items.length);
  if (items.length === 0) return out;
  const { groups, unrouted: stray } = groupByMaster(cluster, items, keyOf);
  await Promise.all(
    [...groups].map(async ([node, idx]) => {
      ensureScripts(node);
      const pipe = node.pipeline();
      for (const i of idx) queue(pipe, items[i]!);
      const replies = ((await pipe.exec()) ?? []) as Reply[];
      idx.forEach((i, k) => {
        const mine = replies.slice(k * n, k * n + n);
        while (mine.length < n) mine.push([new Error('no reply'), null]);
        if (mine.some(([err]) => isRedirect(err))) stray.push(i);
        else out[i] = mine;
      });
    }),
  );
  if (stray.length > 0) {
    const again = await Promise.all(stray.map((i) => redirected(cluster, items[i]!, keyOf, n, queue)));
    stray.forEach((i, k) => (out[i] = again[k]!));
  }
  return out;
}

/** Set to 1 to send every key of the cluster batch paths through the per-key path (the cross-slot scripts' fallback). */
export const PER_KEY_ENV = 'ORCH_CLUSTER_PER_KEY';

const crossSlot = new WeakMap<Cluster, Promise<boolean>>();

/**
 * Whether the batch paths may use the cross-slot scripts: every master runs
 * Redis 7 or later (script flags) and {@link PER_KEY_ENV} is not 1. Asked once
 * per client (INFO server of each master).
 */
export function crossSlotBatches(cluster: Cluster): Promise<boolean> {
  if (process.env[PER_KEY_ENV] === '1') return Promise.resolve(false);
  let known = crossSlot.get(cluster);
  if (known === undefined) {
    known = Promise.all(cluster.nodes('master').map((n) => n.info('server'))).then(
      (infos) => infos.length > 0 && infos.every((info) => Number(/^redis_version:(\d+)/m.exec(info)?.[1] ?? 0) >= 7),
    );
    // A failed probe is asked again by the next batch rather than remembered.
    known.catch(() => crossSlot.delete(cluster));
    crossSlot.set(cluster, known);
  }
  return known;
}

/**
 * Cross-slot batches: the items grouped by the master that serves their key,
 * one `call` per master (a cross-slot script with the keys in ARGV, on that
 * master's own connection). `call` answers one value per item of its group,
 * or null for an item the master does not serve (any more). Returns the
 * answers by item, and the positions of the items left for the per-key path
 * (answered null, or no known master for their slot): the caller sends those
 * through it, so no key is ever skipped.
 */
export async function perMasterScript<T, R>(
  cluster: Cluster,
  items: readonly T[],
  keyOf: (item: T) => string,
  call: (node: Redis, group: T[]) => Promise<Array<R | null>>,
): Promise<{ replies: Array<R | undefined>; rest: number[] }> {
  const replies = new Array<R | undefined>(items.length);
  const rest: number[] = [];
  if (items.length === 0) return { replies, rest };
  const { groups, unrouted } = groupByMaster(cluster, items, keyOf);
  rest.push(...unrouted);
  await Promise.all(
    [...groups].map(async ([node, idx]) => {
      ensureScripts(node);
      const answers = await call(
        node,
        idx.map((i) => items[i]!),
      );
      idx.forEach((i, k) => {
        const a = answers[k];
        if (a === null || a === undefined) rest.push(i);
        else replies[i] = a;
      });
    }),
  );
  rest.sort((a, b) => a - b);
  return { replies, rest };
}

/** Redirects one item may follow before the run fails (checkpoint kept). */
const MAX_REDIRECTS = 16;

/**
 * One item whose master answered MOVED or ASK: its commands follow the
 * redirect themselves, on the named node's connection (ASK: each command
 * preceded by ASKING, as the cluster spec asks); a MOVED also refreshes the
 * cluster client's slot map for the next batch. Followed by hand because the
 * cluster client resends a pipeline only when no command in it succeeded
 * with a write.
 */
async function redirected<T>(
  cluster: Cluster,
  item: T,
  keyOf: (item: T) => string,
  n: number,
  queue: (pipe: ChainableCommander, item: T) => void,
): Promise<Reply[]> {
  let node = new MasterRouter(cluster).nodeFor(keyOf(item));
  let asking = false;
  const hops: string[] = [];
  for (let hop = 0; hop < MAX_REDIRECTS; hop++) {
    // Two nodes may disagree for a moment while a slot changes hands (MOVED back and forth): back off.
    if (hop > 1) await new Promise((resolve) => setTimeout(resolve, Math.min(25 * hop, 250)));
    if (node === null) throw new Error(`no known master serves the slot of ${keyOf(item)}`);
    ensureScripts(node);
    const pipe = node.pipeline();
    queue(asking ? askingPipe(pipe) : pipe, item);
    const replies = ((await pipe.exec()) ?? []) as Reply[];
    const mine: Reply[] = asking ? replies.filter((_, i) => i % 2 === 1) : replies;
    const redirect: Error | null | undefined = mine.find(([err]) => isRedirect(err))?.[0];
    if (!redirect) return mine.slice(0, n);
    const [kind, , addr]: string[] = redirect.message.split(' ');
    hops.push(redirect.message);
    if (kind === 'MOVED') cluster.refreshSlotsCache();
    asking = kind === 'ASK';
    node = cluster.nodes('all').find((x) => `${x.options.host ?? '127.0.0.1'}:${x.options.port ?? 6379}` === addr) ?? null;
  }
  throw new Error(`too many cluster redirects for ${keyOf(item)}: ${hops.join(', ')}`);
}

/** A pipeline in which every command is preceded by ASKING (the replies alternate: OK, the command's). */
function askingPipe(pipe: ChainableCommander): ChainableCommander {
  const proxy: ChainableCommander = new Proxy(pipe, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function' || prop === 'exec' || prop === 'asking') return value;
      return (...args: unknown[]) => {
        target.asking();
        (value as (...a: unknown[]) => unknown).apply(target, args);
        return proxy;
      };
    },
  });
  return proxy;
}

/** The value of a reply, or its error thrown (a lost lease as FencedError). */
export function valueOf<T>(reply: Reply): T {
  if (reply[0]) throw asScriptError(reply[0]);
  return reply[1] as T;
}
