/**
 * The API's paging cursor: the queue core's raw cursor (already bound to its
 * read path, see src/core/cursor.ts) sealed in an envelope that also binds the
 * workspace and the read path.
 *
 * Format (base64url, no padding):  0x01 | iv(16) | AES-256-CTR(payload) | HMAC-SHA256(0x01 | iv | ciphertext)
 *
 * The HMAC makes it tamper-proof (encrypt-then-MAC, checked in constant time
 * before anything is decrypted or parsed). The encryption makes it opaque: a
 * raw legacy cursor names a Redis node (host:port) and a SCAN position, which
 * are internals a tenant has no business reading. Both keys are derived from
 * the configured secret with HKDF; several secrets may be configured so a
 * secret can be rotated without breaking paging (the first signs, all verify).
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual, type Hash } from 'node:crypto';
import { z } from 'zod';
import { CursorError } from '../core/errors.js';
import { Layout } from '../core/phase.js';

const VERSION = 0x01;
const IV_BYTES = 16;
const TAG_BYTES = 32;
/** Longest envelope accepted (the core's raw cursors are at most 2048 characters). */
export const MAX_CURSOR_LENGTH = 4096;
/** Full-match shape of an envelope. */
export const CURSOR_PATTERN = /^[A-Za-z0-9_-]{67,4096}$/;

export const PayloadSchema = z.object({
  w: z.string().max(64),
  p: z.enum([Layout.Legacy, Layout.V2]),
  c: z.string().max(2048),
});

type Payload = z.output<typeof PayloadSchema>;

/**
 * The payload checked by hand: what PayloadSchema returns for it (the three fields, others dropped),
 * or null for anything else, which then goes through the schema (for the same reason as the list
 * query's hand check: zod's cost inside the server; docs/performance.md, "The API's page").
 */
export function payloadFast(value: unknown): Payload | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const { w, p, c } = value as Record<string, unknown>;
  if (typeof w !== 'string' || w.length > 64 || (p !== Layout.Legacy && p !== Layout.V2) || typeof c !== 'string' || c.length > 2048) return null;
  return { w, p, c };
}

/** Raised when a cursor was valid but issued on the other read path (a flip happened). */
export class CursorPathError extends CursorError {
  readonly issuedOn: Layout;
  readonly current: Layout;
  constructor(issuedOn: Layout, current: Layout) {
    super(`Cursor was issued on the ${issuedOn} read path but reads now use ${current}; restart paging without a cursor`);
    this.issuedOn = issuedOn;
    this.current = current;
  }
}

const SHA256_BLOCK = 64;

/**
 * HMAC-SHA256 with its key schedule done once (RFC 2104): the hash states after
 * (key ⊕ ipad) and (key ⊕ opad) are kept, and each tag copies them instead of
 * hashing the padded key again. The same bytes as createHmac('sha256', key)
 * (test/unit/api-cursor.test.ts checks it).
 */
export class CachedHmac {
  private readonly inner: Hash;
  private readonly outer: Hash;

  constructor(key: Buffer) {
    const k = Buffer.alloc(SHA256_BLOCK);
    (key.length > SHA256_BLOCK ? createHash('sha256').update(key).digest() : key).copy(k);
    const pad = (byte: number): Buffer => Buffer.from(k.map((b) => b ^ byte));
    this.inner = createHash('sha256').update(pad(0x36));
    this.outer = createHash('sha256').update(pad(0x5c));
  }

  /** The tag of `message`. */
  digest(message: Buffer): Buffer {
    const inner = this.inner.copy().update(message).digest();
    return this.outer.copy().update(inner).digest();
  }
}

interface KeyPair {
  enc: Buffer;
  mac: CachedHmac;
}

function derive(secret: Buffer): KeyPair {
  return {
    enc: Buffer.from(hkdfSync('sha256', secret, 'orch-api', 'cursor-enc-v1', 32)),
    mac: new CachedHmac(Buffer.from(hkdfSync('sha256', secret, 'orch-api', 'cursor-mac-v1', 32))),
  };
}

/** IVs drawn from the CSPRNG in one call (each is handed out once; one call per IV cost more than the rest of a seal). */
const IV_POOL = 256;

/** Seals and opens API cursors. */
export class CursorSealer {
  private readonly keys: KeyPair[];
  private ivPool = Buffer.alloc(0);
  private ivNext = 0;

  constructor(secrets: readonly Buffer[]) {
    if (secrets.length === 0) throw new Error('CursorSealer needs at least one secret');
    this.keys = secrets.map(derive);
  }

  /** Wraps a raw core cursor, binding workspace and read path. */
  seal(raw: string, workspaceId: string, path: Layout): string {
    const k = this.keys[0]!;
    const iv = this.nextIv();
    const cipher = createCipheriv('aes-256-ctr', k.enc, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify({ w: workspaceId, p: path, c: raw }), 'utf8'), cipher.final()]);
    const head = Buffer.concat([Buffer.from([VERSION]), iv, body]);
    const tag = k.mac.digest(head);
    return Buffer.concat([head, tag]).toString('base64url');
  }

  /** A fresh random IV: the next unused slice of a pool filled by randomBytes (never reused). */
  private nextIv(): Buffer {
    if (this.ivNext + IV_BYTES > this.ivPool.length) {
      this.ivPool = randomBytes(IV_BYTES * IV_POOL);
      this.ivNext = 0;
    }
    const iv = this.ivPool.subarray(this.ivNext, this.ivNext + IV_BYTES);
    this.ivNext += IV_BYTES;
    return iv;
  }

  /**
   * Opens an envelope for `workspaceId` on `path` and returns the raw cursor.
   * Throws {@link CursorError} when it is malformed, tampered with, or from
   * another workspace, and {@link CursorPathError} when it is from the other read path.
   */
  open(token: string, workspaceId: string, path: Layout): string {
    if (!CURSOR_PATTERN.test(token)) throw new CursorError('Malformed cursor');
    const bytes = Buffer.from(token, 'base64url');
    // Node's decoder ignores stray trailing characters; only the canonical encoding is accepted,
    // so one envelope has exactly one spelling.
    if (bytes.toString('base64url') !== token) throw new CursorError('Malformed cursor');
    if (bytes.length < 1 + IV_BYTES + 1 + TAG_BYTES || bytes[0] !== VERSION) throw new CursorError('Malformed cursor');
    const head = bytes.subarray(0, bytes.length - TAG_BYTES);
    const tag = bytes.subarray(bytes.length - TAG_BYTES);
    let key: KeyPair | null = null;
    for (const k of this.keys) {
      const expected = k.mac.digest(head);
      if (timingSafeEqual(expected, tag) && key === null) key = k;
    }
    if (key === null) throw new CursorError('Cursor signature does not verify');
    const iv = head.subarray(1, 1 + IV_BYTES);
    const decipher = createDecipheriv('aes-256-ctr', key.enc, iv);
    const plain = Buffer.concat([decipher.update(head.subarray(1 + IV_BYTES)), decipher.final()]).toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(plain);
    } catch (cause) {
      throw new CursorError('Malformed cursor', { cause });
    }
    let payload = payloadFast(parsed);
    if (payload === null) {
      const res = PayloadSchema.safeParse(parsed);
      if (!res.success) throw new CursorError('Malformed cursor', { cause: res.error });
      payload = res.data;
    }
    if (payload.w !== workspaceId) throw new CursorError('Cursor was issued for another workspace');
    if (payload.p !== path) throw new CursorPathError(payload.p, path);
    return payload.c;
  }
}
