/**
 * Resumable scan positions (docs/design.md "The scan engine and checkpoints"): hash `<p>:migration:jobs:checkpoint:<op>`
 * with one field per master node (`host:port`) holding JSON `{run_id, cursor,
 * done, counters}`. A SCAN cursor means nothing after a restart or a failover,
 * so an entry whose run_id differs from the node's current run_id is discarded
 * and that node is rescanned from 0 (copies are idempotent).
 */
import type { Keyspace } from '../core/keys.js';
import type { RedisClient } from '../core/redis.js';

/** Counters carried in a node's checkpoint. */
export type Counters = Record<string, number>;

/** One node's position. */
export interface NodeCheckpoint {
  /** Node address `host:port`. */
  node: string;
  /** The node's INFO run_id when the cursor was taken. */
  runId: string;
  /** SCAN cursor to continue from ('0' with done=false = not started). */
  cursor: string;
  /** The node was scanned to the end. */
  done: boolean;
  counters: Counters;
  updatedAt: number;
}

/** Metadata field of a checkpoint. */
export interface CheckpointMeta {
  startedAt: number;
  epoch: number;
  /** State record lineage when the pass started (a forward checkpoint dies with a move back to legacy). */
  lineage?: number;
  /** Free-form options of the run that created it (shown by status). */
  options?: Record<string, unknown>;
}

/** A loaded checkpoint. */
export interface Checkpoint {
  meta: CheckpointMeta | null;
  nodes: NodeCheckpoint[];
}

const META_FIELD = '_meta';

/** Loads a checkpoint (empty when none). */
export async function loadCheckpoint(client: RedisClient, keys: Keyspace, op: string): Promise<Checkpoint> {
  const raw = await client.hgetall(keys.checkpoint(op));
  let meta: CheckpointMeta | null = null;
  const nodes: NodeCheckpoint[] = [];
  for (const [field, value] of Object.entries(raw)) {
    try {
      const v = JSON.parse(value) as Record<string, unknown>;
      if (field === META_FIELD) {
        meta = {
          startedAt: Number(v.startedAt ?? 0),
          epoch: Number(v.epoch ?? 0),
          ...(v.lineage === undefined ? {} : { lineage: Number(v.lineage) }),
          options: (v.options as Record<string, unknown>) ?? {},
        };
        continue;
      }
      nodes.push({
        node: field,
        runId: String(v.run_id ?? ''),
        cursor: String(v.cursor ?? '0'),
        done: v.done === true,
        counters: (v.counters as Counters) ?? {},
        updatedAt: Number(v.updated_at ?? 0),
      });
    } catch {
      // A corrupt entry is ignored: that node is rescanned, which is safe.
    }
  }
  return { meta, nodes };
}

/** Writes one node's position. */
export async function saveNodeCheckpoint(client: RedisClient, keys: Keyspace, op: string, cp: NodeCheckpoint): Promise<void> {
  await client.hset(
    keys.checkpoint(op),
    cp.node,
    JSON.stringify({ run_id: cp.runId, cursor: cp.cursor, done: cp.done, counters: cp.counters, updated_at: cp.updatedAt }),
  );
}

/** Writes the metadata field. */
export async function saveCheckpointMeta(client: RedisClient, keys: Keyspace, op: string, meta: CheckpointMeta): Promise<void> {
  await client.hset(keys.checkpoint(op), META_FIELD, JSON.stringify(meta));
}

/** Deletes a checkpoint and its findings (a move back to legacy voids a forward pass). */
export async function clearCheckpoint(client: RedisClient, keys: Keyspace, op: string): Promise<void> {
  // One DEL per key: on a cluster they hash to different slots.
  await Promise.all([client.del(keys.checkpoint(op)), client.del(keys.findings(op))]);
}

/** Sums a counter across nodes. */
export function sumCounter(cp: Checkpoint, name: string): number {
  return cp.nodes.reduce((acc, n) => acc + (n.counters[name] ?? 0), 0);
}
