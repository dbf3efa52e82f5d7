/**
 * Live control of running operations through Redis (gh-ost's interactive
 * commands, but reachable from any machine that reaches Redis):
 * `orch-migrate control pause|resume|rate <keys/s>` writes the hash
 * `<p>:migration:jobs:control`; every backfill, verify, cleanup and reverse
 * backfill polls it at least once a second (src/ops/guards/controller.ts) and
 * applies it before taking its next batch.
 *
 * The hash persists until changed: a pause also holds a run started later
 * (that run says so when it starts, and `status` shows it), and a rate set
 * here replaces the run's own `--rate` until `control rate unlimited`.
 *
 * | field       | value                                                   |
 * |-------------|---------------------------------------------------------|
 * | `paused`    | `1` while paused                                         |
 * | `rate`      | keys/s ceiling for every run, absent = each run's own   |
 * | `by`, `at`  | who changed it last (actor) and when (server ms)        |
 * | `reason`    | why (free text, optional)                               |
 */
import type { Keyspace } from '../core/keys.js';
import type { RedisClient } from '../core/redis.js';
import type { OpContext } from './context.js';

/** The control hash as read. */
export interface ControlState {
  paused: boolean;
  /** keys/s ceiling set live, or null. */
  rate: number | null;
  by: string | null;
  /** Server ms of the last change. */
  at: number | null;
  reason: string | null;
}

/** What `control` does. */
export type ControlAction = { action: 'pause' } | { action: 'resume' } | { action: 'rate'; rate: number | null };

const F = { Paused: 'paused', Rate: 'rate', By: 'by', At: 'at', Reason: 'reason' } as const;

/** Decodes the hash; a malformed rate is ignored (each run keeps its own), never guessed. */
export function decodeControl(raw: Record<string, string>): ControlState | null {
  if (Object.keys(raw).length === 0) return null;
  const rate = raw[F.Rate] !== undefined && /^[0-9]{1,9}(\.[0-9]+)?$/.test(raw[F.Rate]!) && Number(raw[F.Rate]) > 0 ? Number(raw[F.Rate]) : null;
  const at = Number(raw[F.At]);
  return { paused: raw[F.Paused] === '1', rate, by: raw[F.By] ?? null, at: Number.isFinite(at) && at > 0 ? at : null, reason: raw[F.Reason] ?? null };
}

/** Reads the control hash; null when nothing is set. */
export async function readControl(client: RedisClient, keys: Keyspace): Promise<ControlState | null> {
  return decodeControl(await client.hgetall(keys.control));
}

/**
 * Applies a control action and returns the new state. When nothing is left
 * set (not paused, no rate) the key is deleted, so a quiet system has no
 * control key at all.
 */
export async function setControl(
  ctx: Pick<OpContext, 'client' | 'keys' | 'actor' | 'state'>,
  a: ControlAction,
  reason: string | null,
): Promise<ControlState | null> {
  const { client, keys } = ctx;
  const at = await ctx.state.serverTime();
  const meta: Record<string, string> = { [F.By]: ctx.actor, [F.At]: String(at), [F.Reason]: reason ?? '' };
  if (a.action === 'pause') await client.hset(keys.control, { [F.Paused]: '1', ...meta });
  else if (a.action === 'resume') await client.hset(keys.control, { [F.Paused]: '0', ...meta });
  else if (a.rate === null) {
    await client.hdel(keys.control, F.Rate);
    await client.hset(keys.control, meta);
  } else await client.hset(keys.control, { [F.Rate]: String(a.rate), ...meta });
  const now = await readControl(client, keys);
  if (now && !now.paused && now.rate === null) {
    await client.del(keys.control);
    return null;
  }
  return now;
}

/** One line for people: what the control hash says. */
export function describeControl(c: ControlState | null): string {
  if (!c || (!c.paused && c.rate === null)) return 'none (runs use their own --rate and guards)';
  const parts: string[] = [];
  if (c.paused) parts.push('paused');
  if (c.rate !== null) parts.push(`rate ${c.rate} keys/s`);
  return `${parts.join(', ')}${c.by ? ` by ${c.by}` : ''}${c.reason ? ` — "${c.reason}"` : ''}`;
}
