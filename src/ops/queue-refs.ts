/**
 * Pending-list conversion (docs/design.md "The pending list"), run by cleanup before any legacy key is
 * deleted: bare legacy references `<job_id>` become `<workspace_id>:<job_id>`,
 * the workspace read from the job's legacy record. The rewrite itself is one
 * atomic script over the list (queue-convert.lua), so concurrent workers never
 * see a half-converted list and the order is kept.
 *
 * The list is read in pages while workers pop from its head, so a page can miss
 * an element that shifted; the passes repeat until one finds nothing left to
 * convert. New bare references cannot appear: writers push the v2 form from
 * dual-write on.
 */
import { isJobId, isWorkspaceId } from '../core/ids.js';
import { JobField } from '../core/job.js';
import type { Keyspace } from '../core/keys.js';
import type { RedisClient } from '../core/redis.js';
import { isScriptError, ScriptError } from '../core/script-replies.js';
import { callScript, ScriptName } from '../core/scripts.js';

/** Outcome of {@link convertQueueRefs}. */
export interface QueueConversion {
  /** Elements on the list when first read. */
  length: number;
  /** Bare references found (distinct job ids). */
  bare: number;
  /** Elements rewritten to `<workspace_id>:<job_id>` (would be, on a dry run). */
  converted: number;
  /** Bare references whose legacy record is missing, not a hash, or names no valid workspace: left as they are. */
  unresolved: number;
  /** A few unresolved references, for the report. */
  unresolvedSamples: string[];
}

const PAGE = 5000;
const PAIRS_PER_CALL = 2000;
const MAX_PASSES = 5;

/** Distinct bare references on the list (paged LRANGE). */
async function bareRefs(client: RedisClient, keys: Keyspace): Promise<{ length: number; refs: Map<string, number> }> {
  const refs = new Map<string, number>();
  const length = await client.llen(keys.queue);
  for (let start = 0; start < length; start += PAGE) {
    const page = await client.lrange(keys.queue, start, start + PAGE - 1);
    for (const ref of page) if (!ref.includes(':') && isJobId(ref)) refs.set(ref, (refs.get(ref) ?? 0) + 1);
    if (page.length < PAGE) break;
  }
  return { length, refs };
}

/** Workspace of each bare reference, from its legacy record (null when unresolvable). */
async function resolve(client: RedisClient, keys: Keyspace, refs: string[]): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  const CHUNK = 500;
  for (let i = 0; i < refs.length; i += CHUNK) {
    const chunk = refs.slice(i, i + CHUNK);
    const owners = await Promise.all(
      chunk.map(async (id) => {
        const key = keys.legacyJob(id);
        try {
          return (await client.type(key)) === 'hash' ? await client.hget(key, JobField.WorkspaceId) : null;
        } catch (err) {
          // Only a key that changed type between TYPE and HGET has no owner; any other error
          // (a timeout, a lost connection) fails the run: an unresolved reference outlives its record.
          if (isScriptError(err, ScriptError.WrongType)) return null;
          throw err;
        }
      }),
    );
    chunk.forEach((id, j) => {
      const ws = owners[j];
      out.set(id, typeof ws === 'string' && isWorkspaceId(ws) ? ws : null);
    });
  }
  return out;
}

/**
 * Converts the bare references on the pending list. With `dryRun` nothing is
 * written and `converted` counts what would be rewritten.
 */
export async function convertQueueRefs(
  client: RedisClient,
  keys: Keyspace,
  opts: { dryRun: boolean; workspaces?: ReadonlySet<string> },
): Promise<QueueConversion> {
  const first = await bareRefs(client, keys);
  const result: QueueConversion = { length: first.length, bare: first.refs.size, converted: 0, unresolved: 0, unresolvedSamples: [] };
  const unresolved = new Set<string>();
  let pending = new Set(first.refs.keys());
  for (let pass = 0; pass < MAX_PASSES && pending.size > 0; pass++) {
    const ids = [...pending].filter((id) => !unresolved.has(id));
    const owners = await resolve(client, keys, ids);
    const pairs: string[] = [];
    for (const [id, ws] of owners) {
      if (ws === null) unresolved.add(id);
      // A canary cleanup converts only its workspaces' references (their legacy records are about to go).
      else if (!opts.workspaces || opts.workspaces.has(ws)) pairs.push(id, `${ws}:${id}`);
    }
    if (opts.dryRun) {
      for (let i = 0; i < pairs.length; i += 2) result.converted += first.refs.get(pairs[i]!) ?? 0;
      break;
    }
    for (let i = 0; i < pairs.length; i += PAIRS_PER_CALL * 2) {
      result.converted += await callScript<number>(client, ScriptName.QueueConvert, [keys.queue, ...pairs.slice(i, i + PAIRS_PER_CALL * 2)]);
    }
    const again = await bareRefs(client, keys);
    pending = new Set([...again.refs.keys()].filter((id) => !unresolved.has(id)));
  }
  result.unresolved = unresolved.size;
  result.unresolvedSamples = [...unresolved].slice(0, 10);
  return result;
}

/** True for a reference cleanup may leave on the list: the v2 form, or a bare one it could not resolve. */
export function isConvertedRef(ref: string): boolean {
  const colon = ref.indexOf(':');
  return colon > 0 && isWorkspaceId(ref.slice(0, colon)) && isJobId(ref.slice(colon + 1));
}
