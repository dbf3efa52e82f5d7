/**
 * Raw paging cursors of the queue core. They are bound to a read path so a
 * cursor issued before a flip is refused instead of returning a wrong page.
 * (The API wraps them again in an HMAC bound to the workspace.)
 */
import { z } from 'zod';
import { CursorError } from './errors.js';
import { Layout } from './phase.js';

/** Legacy path position: a node, a SCAN cursor, and the last key returned from that SCAN batch. */
const LegacyCursorSchema = z.object({
  p: z.literal(Layout.Legacy),
  n: z.string().max(128),
  c: z.string().regex(/^[0-9]{1,20}$/),
  k: z.number().int().min(1).max(100000),
  after: z.string().max(512).nullable(),
  /**
   * The next cursor SCAN returned for this batch when it was first read. A
   * different one on the re-read means Redis resized its table in between, so
   * the batch may hold keys that sort before `after` without having been served:
   * then `after` is not trusted (a job may repeat; none is skipped).
   */
  x: z
    .string()
    .regex(/^[0-9]{1,20}$/)
    .optional(),
});
/** v2 path position: the last (score, member) returned from the index. */
const V2CursorSchema = z.object({
  p: z.literal(Layout.V2),
  s: z.number().finite(),
  m: z.string().max(256),
});
export const CursorSchema = z.discriminatedUnion('p', [LegacyCursorSchema, V2CursorSchema]);

export type LegacyCursor = z.infer<typeof LegacyCursorSchema>;
export type V2Cursor = z.infer<typeof V2CursorSchema>;
export type RawCursor = z.infer<typeof CursorSchema>;

/** Encodes a cursor as base64url JSON. */
export function encodeCursor(c: RawCursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

/** Decodes a cursor and checks it belongs to `path`; throws {@link CursorError}. */
export function decodeCursor(raw: string, path: Layout): RawCursor {
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(raw)) throw new CursorError('Malformed cursor');
  const bytes = Buffer.from(raw, 'base64url');
  // Node's decoder ignores stray trailing characters: accept only the canonical spelling.
  if (bytes.toString('base64url') !== raw) throw new CursorError('Malformed cursor');
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new CursorError('Malformed cursor', { cause });
  }
  let cursor: RawCursor | null = v2CursorFast(parsed);
  if (cursor === null) {
    const res = CursorSchema.safeParse(parsed);
    if (!res.success) throw new CursorError('Malformed cursor', { cause: res.error });
    cursor = res.data;
  }
  if (cursor.p !== path) {
    throw new CursorError(`Cursor belongs to the ${cursor.p} read path but reads now use ${path}; restart paging without a cursor`);
  }
  return cursor;
}

/**
 * A v2 cursor checked by hand: what V2CursorSchema returns for it (the three fields, others dropped),
 * or null for anything else, which then goes through the schema. Every v2 page after the first
 * decodes one; inside the API server a zod parse of the list query cost ~11 µs, far more than in
 * isolation (docs/performance.md, "The API's page"), and this one is as small.
 */
export function v2CursorFast(value: unknown): V2Cursor | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const { p, s, m } = value as Record<string, unknown>;
  if (p !== Layout.V2 || typeof s !== 'number' || !Number.isFinite(s) || typeof m !== 'string' || m.length > 256) return null;
  return { p, s, m };
}
