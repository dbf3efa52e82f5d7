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
const CursorSchema = z.discriminatedUnion('p', [LegacyCursorSchema, V2CursorSchema]);

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
  const res = CursorSchema.safeParse(parsed);
  if (!res.success) throw new CursorError('Malformed cursor', { cause: res.error });
  if (res.data.p !== path) {
    throw new CursorError(`Cursor belongs to the ${res.data.p} read path but reads now use ${path}; restart paging without a cursor`);
  }
  return res.data;
}
