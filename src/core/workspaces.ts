/**
 * Per-workspace phases (canaries): a few workspaces run ahead of the global
 * phase, each with its own gates. The phase a workspace's jobs follow is in
 * `<p>:migration:jobs:workspaces` (src/core/phase.ts effectivePhase); what its
 * gates need (when it moved, whether its legacy records are complete, its last
 * verify and cleanup) is in `<p>:migration:jobs:workspaces:state`, one JSON
 * value per workspace.
 */
import type { Keyspace } from './keys.js';
import type { RedisClient } from './redis.js';

/** A verify that covered a workspace (a full verify, or `verify --workspace`). */
export interface WorkspaceVerify {
  ok: boolean;
  epoch: number;
  startedAt: number;
  finishedAt: number;
  mismatches: number;
}

/** What the gates need of one canary workspace. */
export interface WorkspaceState {
  /** Server ms of its last move (its soak counts from here). */
  changedAt: number;
  /** The state record's epoch its last move created. */
  epoch: number;
  /** Whether its legacy records are complete (false once its cleanup starts, true after its reverse backfill). */
  legacyComplete: boolean;
  lastVerify: WorkspaceVerify | null;
  /** Its last cleanup: deleted and kept counts, complete or not. */
  lastCleanup: { epoch: number; complete: boolean; deleted: number; kept: number; finishedAt: number } | null;
}

/** The state of a workspace that never moved on its own. */
export function defaultWorkspaceState(): WorkspaceState {
  return { changedAt: 0, epoch: 0, legacyComplete: true, lastVerify: null, lastCleanup: null };
}

function decode(json: string | null | undefined): WorkspaceState {
  const d = defaultWorkspaceState();
  if (!json) return d;
  try {
    const v = JSON.parse(json) as Partial<WorkspaceState>;
    return {
      changedAt: Number(v.changedAt ?? 0),
      epoch: Number(v.epoch ?? 0),
      legacyComplete: v.legacyComplete !== false,
      lastVerify: v.lastVerify && typeof v.lastVerify === 'object' ? v.lastVerify : null,
      lastCleanup: v.lastCleanup && typeof v.lastCleanup === 'object' ? v.lastCleanup : null,
    };
  } catch {
    // Bookkeeping only (the routing is in the phases hash): a damaged entry reads as "never moved".
    return d;
  }
}

/** The state of each workspace in `ids` (a default for those never seen). */
export async function readWorkspaceStates(client: RedisClient, keys: Keyspace, ids: readonly string[]): Promise<Map<string, WorkspaceState>> {
  const out = new Map<string, WorkspaceState>();
  if (ids.length === 0) return out;
  const raw = await client.hmget(keys.workspaceState, ...ids);
  ids.forEach((id, i) => out.set(id, decode(raw[i])));
  return out;
}

/** Updates some workspaces' state records (bookkeeping between moves: a verify, a cleanup's progress). */
export async function writeWorkspaceStates(client: RedisClient, keys: Keyspace, states: Map<string, WorkspaceState>): Promise<void> {
  if (states.size === 0) return;
  const flat: string[] = [];
  for (const [id, st] of states) flat.push(id, JSON.stringify(st));
  await client.hset(keys.workspaceState, ...flat);
}

/** Encodes one workspace's state for a transition script. */
export function encodeWorkspaceState(st: WorkspaceState): string {
  return JSON.stringify(st);
}
