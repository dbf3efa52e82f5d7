/**
 * Bearer-token authentication (docs/design.md "The reference API"). The table stores sha256 hashes of
 * tokens, never the tokens. A presented token is hashed and its digest looked
 * up in a map keyed by digest: O(1) whatever the size of the table. The time a
 * lookup takes depends on the digest only, never on the token's characters, and
 * learning how a digest compares with the stored ones does not help to find a
 * token that hashes to one of them (sha256 is preimage-resistant), so the
 * lookup needs no constant-time scan of every entry. The workspace comes from
 * the matching entry, never from the request, and is validated with a full match.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../core/errors.js';
import { isWorkspaceId } from '../core/ids.js';

/** Scopes the routes require. */
export const Scope = {
  Preview: 'actions:preview',
  Write: 'actions:write',
} as const;
export type Scope = (typeof Scope)[keyof typeof Scope];

/** One row of the token table. */
export interface TokenEntry {
  /** Lower-case hex sha256 of the token. */
  sha256: string;
  workspace_id: string;
  scopes: string[];
}

const TokenEntrySchema = z.object({
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'sha256 must be 64 hex characters')
    .transform((s) => s.toLowerCase()),
  // Not validated here on purpose: an entry with a malformed workspace loads, and
  // its requests get 403 (the seed's "workspace_id invalid"), with a startup warning.
  workspace_id: z.string().min(1).max(256),
  scopes: z.array(z.string().regex(/^[a-z][a-z0-9_-]{0,31}:[a-z][a-z0-9_-]{0,31}$/, 'a scope looks like "actions:preview"')).max(32),
});
// A bound on the configuration, not on the lookup (a map): the table is parsed from one env var or file.
const TokenTableSchema = z.array(TokenEntrySchema).max(10000);

/** Parses a token table (JSON text); throws {@link ConfigError} without echoing any value. */
export function parseTokenTable(text: string, source: string): TokenEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new ConfigError(`${source} is not valid JSON`, { cause, suggestion: 'It must be a JSON array of {"sha256", "workspace_id", "scopes"}.' });
  }
  const res = TokenTableSchema.safeParse(json);
  if (!res.success) {
    const first = res.error.issues[0];
    const where = first && first.path.length > 0 ? ` at ${first.path.join('.')}` : '';
    throw new ConfigError(`${source} is not a valid token table${where}: ${first?.message ?? 'invalid'}`, {
      cause: res.error,
      suggestion: 'Each entry is {"sha256": "<hex sha256 of the token>", "workspace_id": "acme", "scopes": ["actions:preview"]}.',
    });
  }
  return res.data;
}

/** Hex sha256 of a token (what the table stores). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The caller, as the token table describes it. */
export interface Principal {
  workspaceId: string;
  scopes: ReadonlySet<string>;
}

/** Outcome of {@link TokenTable.authenticate}. */
export type AuthResult =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401 | 403; error: 'unauthorized' | 'invalid_token' | 'forbidden' | 'insufficient_scope'; message: string };

/** RFC 6750 b64token, bounded. */
const BEARER = /^Bearer ([A-Za-z0-9._~+/-]{1,1024}=*)$/i;

/** The hashed token table. */
export class TokenTable {
  private readonly entries: Array<{ workspaceId: string; scopes: ReadonlySet<string> }>;
  /** Lower-case hex sha256 → entry; the first entry wins when a hash is listed twice. */
  private readonly byHash = new Map<string, { workspaceId: string; scopes: ReadonlySet<string> }>();

  constructor(entries: readonly TokenEntry[]) {
    this.entries = [];
    for (const e of entries) {
      const entry = { workspaceId: e.workspace_id, scopes: new Set(e.scopes) };
      this.entries.push(entry);
      const hash = e.sha256.toLowerCase();
      if (!this.byHash.has(hash)) this.byHash.set(hash, entry);
    }
  }

  /** Entries whose workspace fails the full-match rule (reported at startup; their requests get 403). */
  invalidWorkspaces(): number {
    return this.entries.filter((e) => !isWorkspaceId(e.workspaceId)).length;
  }

  /** Number of entries. */
  get size(): number {
    return this.entries.length;
  }

  /** Finds the entry of a token by the digest of the token (see the module comment for why a map is safe). */
  lookup(token: string): { workspaceId: string; scopes: ReadonlySet<string> } | null {
    return this.byHash.get(createHash('sha256').update(token, 'utf8').digest('hex')) ?? null;
  }

  /** Checks the Authorization header against the table and the scope a route needs. */
  authenticate(authorization: string | string[] | undefined, required: Scope): AuthResult {
    if (authorization === undefined || authorization === '') {
      return { ok: false, status: 401, error: 'unauthorized', message: 'Missing bearer token' };
    }
    const header = Array.isArray(authorization) ? undefined : authorization;
    const m = header === undefined ? null : BEARER.exec(header);
    if (!m || m[1] === undefined) return { ok: false, status: 401, error: 'invalid_token', message: 'Invalid or unknown bearer token' };
    const entry = this.lookup(m[1]);
    if (!entry) return { ok: false, status: 401, error: 'invalid_token', message: 'Invalid or unknown bearer token' };
    if (!isWorkspaceId(entry.workspaceId)) {
      return { ok: false, status: 403, error: 'forbidden', message: 'The workspace of this token is invalid' };
    }
    if (!entry.scopes.has(required)) {
      return { ok: false, status: 403, error: 'insufficient_scope', message: `This token lacks the ${required} scope` };
    }
    return { ok: true, principal: { workspaceId: entry.workspaceId, scopes: entry.scopes } };
  }
}
