/**
 * One central redaction function (seed Pattern 4). Keys are matched
 * case-insensitively at any depth, inside arrays too. The default set is the
 * seed's SENSITIVE_KEYS; `ORCH_SENSITIVE_KEYS` (comma-separated) extends it.
 */

/** The replacement text. */
export const REDACTED = '***REDACTED***';

/** The seed's sensitive keys, lower-cased. */
export const DEFAULT_SENSITIVE_KEYS: readonly string[] = [
  'password',
  'token',
  'authorization',
  'api_key',
  'apikey',
  'secret',
  'bearer',
  'access_token',
  'refresh_token',
  'auth',
];

/** A redactor bound to a key set. */
export type Redactor = <T>(value: T) => T;

/** Parses a comma-separated list of extra sensitive keys. */
export function sensitiveKeysFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.ORCH_SENSITIVE_KEYS ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
}

/** Builds a redactor for the default keys plus `extra`. */
export function createRedactor(extra: readonly string[] = []): Redactor {
  const keys = new Set([...DEFAULT_SENSITIVE_KEYS, ...extra.map((k) => k.toLowerCase())]);
  const walk = (value: unknown, depth: number): unknown => {
    // Depth bound: hostile input cannot blow the stack.
    if (depth > 64) return REDACTED;
    if (Array.isArray(value)) return value.map((v) => walk(v, depth + 1));
    if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        out[k] = keys.has(k.toLowerCase()) ? REDACTED : walk(v, depth + 1);
      }
      return out;
    }
    return value;
  };
  return <T>(value: T): T => walk(value, 0) as T;
}

/** The process-wide redactor (defaults + ORCH_SENSITIVE_KEYS). */
export const redact: Redactor = createRedactor(sensitiveKeysFromEnv());

/**
 * Redacts a stored job hash for reports: sensitive field names are masked,
 * `params` is parsed and redacted in depth, and bytes that are not UTF-8 are
 * shown as base64 rather than mangled.
 */
export function redactRecord(fields: Map<string, Buffer> | Record<string, Buffer | string>, redactor: Redactor = redact): Record<string, unknown> {
  const entries = fields instanceof Map ? [...fields.entries()] : Object.entries(fields);
  const probe = redactor(Object.fromEntries(entries.map(([k]) => [k, 0])) as Record<string, unknown>);
  const out: Record<string, unknown> = {};
  for (const [k, raw] of entries) {
    if (probe[k] === REDACTED) {
      out[k] = REDACTED;
      continue;
    }
    const buf = typeof raw === 'string' ? Buffer.from(raw) : raw;
    const text = buf.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(buf)) {
      out[k] = { base64: buf.toString('base64') };
      continue;
    }
    if (k === 'params') {
      try {
        out[k] = JSON.stringify(redactor(JSON.parse(text) as unknown));
      } catch {
        // Unparseable params could still hold a secret in free text: never show them.
        out[k] = REDACTED;
      }
      continue;
    }
    out[k] = text;
  }
  return out;
}
