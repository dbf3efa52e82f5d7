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
 * get the same redirect is resent whole; autopipelined single commands
 * would mix keys, and a mixed pipeline with a write in it is not resent) and
 * refreshes its slot map for the next batch.
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
  const router = new MasterRouter(cluster);
  const groups = new Map<Redis, number[]>();
  const stray: number[] = [];
  items.forEach((item, i) => {
    const node = router.nodeFor(keyOf(item));
    if (node === null) return void stray.push(i);
    let g = groups.get(node);
    if (!g) groups.set(node, (g = []));
    g.push(i);
  });
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
