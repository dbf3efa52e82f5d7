/**
 * The one central redaction function. API responses (`params`, `result`,
 * `error`), the API's logs (every log object, message, error and request URL)
 * and verify reports (`redactRecord`) all go through it, so one rule set
 * decides what is a secret. The rules are documented for users in docs/api.md
 * ("Redaction").
 *
 * Keys are normalised (lower case, everything but letters and digits removed,
 * so `X-Api-Key`, `x_api_key` and `xApiKey` are one name) and matched against
 * fragments and words, at any depth, inside arrays. String values are scanned
 * too: JSON held in a string is redacted as JSON, URLs lose their userinfo and
 * sensitive query parameters, and `Bearer …`/`Basic …` credentials, `key=value`
 * pairs with a sensitive key, PEM private keys, JWTs and well-known token
 * formats are masked. When a rule is in doubt it over-redacts: a masked
 * harmless value costs less than a leaked secret.
 *
 * Hostile input never makes it throw: recursion is depth-bounded (anything
 * deeper is replaced by the marker), JSON text is redacted by a linear,
 * non-recursive scanner, and every regular expression is linear with bounded
 * repetitions.
 */
/** The replacement text. */
export const REDACTED = '***REDACTED***';
/** The replacement inside URLs (short, and needs no percent-encoding). */
export const URL_MASK = '***';

/**
 * Fragments that make a key sensitive wherever they appear in its normalised
 * form: `db_password`, `aws_secret_access_key`, `x-api-key`, `set-cookie`,
 * `sessionid`, `client_secret`, `accessToken`, `signing_key`, ...
 */
export const SENSITIVE_FRAGMENTS: readonly string[] = [
  'password',
  'passwd',
  'passphrase',
  'passcode',
  'pwd',
  'secret',
  'token',
  'apikey',
  'privatekey',
  'privkey',
  'credential',
  'cookie',
  'bearer',
  'session',
  'sessid',
  'signature',
  'jwt',
  'accesskey',
  'signingkey',
  'encryptionkey',
  'masterkey',
  'clientkey',
  'hmac',
  'webhook',
  'mnemonic',
  'seedphrase',
  'recoverycode',
  'backupcode',
  'connectionstring',
  'connstr',
  'csrf',
  'xsrf',
  'totp',
  'hotp',
];

/** Whole words (or whole keys) that are sensitive: `db_pw`, `card_pin`, `otp`, `url_sig`, `github_pat`. */
export const SENSITIVE_WORDS: readonly string[] = ['pw', 'pin', 'otp', 'cvv', 'cvc', 'cvv2', 'sig', 'sid', 'pat', 'mfa', 'dsn'];

/**
 * Words that contain a sensitive fragment but are not secrets. They are removed
 * from the normalised key before the `pass` and `auth` rules look at it, so
 * `passenger_count`, `bypass_cache`, `author` and `authority` stay visible while
 * `dbpass`, `pass_hash`, `auth` and `authorization` do not.
 */
const SAFE_WORDS: readonly string[] = [
  'passenger',
  'passport',
  'passive',
  'passage',
  'passthrough',
  'passthru',
  'passover',
  'passerby',
  'passed',
  'passes',
  'passing',
  'passable',
  'bypass',
  'compass',
  'surpass',
  'trespass',
  'overpass',
  'underpass',
];

/**
 * Qualifiers of a `…key` name that mark an identifier, not a credential
 * (`idempotency_key`, `cache_key`, `sort_key`, `public_key`). Any other
 * qualifier makes `…key` sensitive (`stripe_key`, `tls_key`, `openai_key`).
 */
const SAFE_KEY_QUALIFIERS: readonly string[] = [
  'idempotency',
  'idempotent',
  'cache',
  'sort',
  'sorting',
  'partition',
  'primary',
  'foreign',
  'object',
  's3',
  'routing',
  'route',
  'group',
  'grouping',
  'dedup',
  'dedupe',
  'deduplication',
  'lookup',
  'hash',
  'range',
  'row',
  'message',
  'msg',
  'public',
  'pub',
  'map',
  'dict',
  'index',
  'unique',
  'composite',
  'natural',
  'surrogate',
  'join',
  'shard',
  'bucket',
  'redis',
  'kv',
  'translation',
  'i18n',
  'locale',
  'order',
  'metric',
  'label',
  'tag',
  'field',
  'column',
  'attribute',
  'json',
  'config',
  'setting',
  'cluster',
  'stream',
  'entity',
  'resource',
  'item',
  'record',
  'document',
  'doc',
  'file',
  'event',
  'topic',
  'queue',
  'job',
  'task',
  'request',
  'trace',
  'correlation',
  'hot',
];

/** English words that end in `key` and are not credentials. */
const KEY_WORDS_NOT_SECRET: readonly string[] = ['monkey', 'turkey', 'hockey', 'jockey', 'donkey', 'whiskey', 'lackey', 'hotkey'];

/**
 * LLM usage counters (`max_tokens`, `prompt_tokens`, `token_count`) hold a
 * number, never a credential: under these names a number is kept, anything
 * else is still masked.
 */
const TOKEN_COUNTER = /tokens(count|limit|usage|budget|total|used)?$|token(count|limit|usage|budget|total|used)$|^(num|max|min|total)tokens?/;

/** Query parameters that carry credentials in URLs even though the name alone is vague. */
const URL_CREDENTIAL_PARAMS: readonly string[] = ['key', 'code', 'user', 'username', 'auth', 'pass', 'sig'];

/** Deepest object nesting the walker descends; deeper values become the marker. */
export const DEFAULT_MAX_DEPTH = 200;
/** Deepest JSON-in-a-string-in-JSON chain that is unpacked; deeper strings become the marker. */
const MAX_STRING_NESTING = 16;
/** Longest string that is tried as JSON (longer ones are scanned as text). */
const MAX_JSON_STRING = 32 * 1024 * 1024;

/** Lower case, letters and digits only: `X-Api-Key` → `xapikey`. */
export function normalizeKey(key: string): string {
  return key.toLowerCase().replace(/[^a-z0-9]/g, '');
}

/** Words of a key: split at separators and camelCase humps (`dbPass_v2` → db, pass, v2). */
function keyWords(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
}

function withoutSafeWords(norm: string): string {
  let s = norm;
  for (const w of SAFE_WORDS) if (s.includes(w)) s = s.split(w).join('|');
  // `author…` is safe unless it continues as authoriz/authoris(ation).
  return s.replace(/author(?!i[sz])/g, '|');
}

/** The `…key` rule: a key whose last word is key/keys, qualified by anything but an identifier word. */
function isQualifiedKeyName(norm: string, words: string[]): boolean {
  if (KEY_WORDS_NOT_SECRET.some((w) => norm.endsWith(w) || norm.endsWith(`${w}s`))) return false;
  const qualifiedBy = (prefix: string): boolean => prefix.length > 0 && !SAFE_KEY_QUALIFIERS.some((q) => prefix.startsWith(q));
  const k = words.findIndex((w, i) => i > 0 && (w === 'key' || w === 'keys'));
  if (k > 0) return qualifiedBy(words.slice(0, k).join(''));
  const m = /^(.*?)keys?$/.exec(norm);
  return m !== null && qualifiedBy(m[1] ?? '');
}

/** Builds the key predicate for the default rules plus configured fragments. */
function keyMatcher(extra: readonly string[]): (key: string) => boolean {
  const extras = extra.map(normalizeKey).filter((e) => e.length > 0);
  const cache = new Map<string, boolean>();
  const decide = (key: string): boolean => {
    const norm = normalizeKey(key);
    if (norm === '') return false;
    if (extras.some((e) => norm.includes(e))) return true;
    if (SENSITIVE_FRAGMENTS.some((f) => norm.includes(f))) return true;
    const words = keyWords(key);
    if (words.some((w) => SENSITIVE_WORDS.includes(w)) || SENSITIVE_WORDS.includes(norm)) return true;
    const rest = withoutSafeWords(norm);
    if (rest.includes('pass') || rest.includes('auth')) return true;
    return isQualifiedKeyName(norm, words);
  };
  return (key: string): boolean => {
    let hit = cache.get(key);
    if (hit === undefined) {
      hit = decide(key);
      // Keys repeat a lot (every job has the same names); the cache is bounded.
      if (cache.size < 10_000) cache.set(key, hit);
    }
    return hit;
  };
}

/** Parses a comma-separated list of extra sensitive keys (`ORCH_SENSITIVE_KEYS`). */
export function sensitiveKeysFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.ORCH_SENSITIVE_KEYS ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s.length > 0);
}

/** Options of {@link createRedactor}. */
export interface RedactorOptions {
  /** Deepest object nesting walked (default {@link DEFAULT_MAX_DEPTH}). */
  maxDepth?: number;
}

/** A redactor bound to a key set: call it on any value; `text` and `isSensitiveKey` expose the parts. */
export interface Redactor {
  <T>(value: T): T;
  /** Redacts a string value (JSON text, URLs, credentials in free text). */
  text(value: string): string;
  /** True when a key's value is masked whatever it holds. */
  isSensitiveKey(key: string): boolean;
  /** The query string of a URL (`a=1&token=x`, without `?`) with sensitive values masked. */
  query(query: string): string;
}

// ---------------------------------------------------------------------------
// Text scanners
// ---------------------------------------------------------------------------

const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----[\s\S]{0,65536}?-----END [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----/g;
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]{0,30}:\/\/[^\s"'<>`]{1,8192}/gi;
const AUTH_SCHEME = /\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]{8,8192}|\b(Token|Digest|Negotiate)(\s+)[A-Za-z0-9._~+/=-]{16,8192}/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{4,8192}\.[A-Za-z0-9_-]{4,8192}\.[A-Za-z0-9_-]{0,8192}/g;
// Formats that are credentials whatever key holds them (GitHub, Slack, Stripe, OpenAI/Anthropic, AWS, Google, GitLab, npm).
const KNOWN_TOKEN =
  /\b(gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255}|xox[abprs]-[A-Za-z0-9-]{10,255}|[sr]k_(live|test)_[A-Za-z0-9]{10,255}|sk-[A-Za-z0-9_-]{20,255}|A[SK]IA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,255}|npm_[A-Za-z0-9]{36})\b/g;
// key=value, key: value, "key": "value" in free text. Keys and values are bounded, so the scan stays linear.
// `key=` / `key:` / `"key":` in free text. The value is matched separately, and only after a
// sensitive key, with a sticky expression: every character is looked at a bounded number of times.
const KEY_HEAD = /(["']?)([A-Za-z_][A-Za-z0-9_.-]{0,63})\1([ \t]{0,8}[:=][ \t]{0,8})/g;
const VALUE_AT = /"(?:[^"\\\n]|\\.){0,8192}"|'[^'\n]{0,8192}'|[^\s"'&;,)}\]]{1,8192}/y;

/** Masks userinfo and sensitive query/fragment parameters of one URL. Never throws, never needs a valid URL. */
function maskUrl(url: string, sensitive: (key: string) => boolean, text?: (value: string) => string): string {
  const schemeEnd = url.indexOf('://');
  if (schemeEnd < 0) return url;
  const start = schemeEnd + 3;
  let end = url.length;
  for (const ch of ['?', '#']) {
    const i = url.indexOf(ch, start);
    if (i >= 0 && i < end) end = i;
  }
  const slash = url.indexOf('/', start);
  const at = url.indexOf('@', start);
  let out = url.slice(0, start);
  let rest: string;
  if (at >= 0 && at < end && (slash < 0 || at < slash)) {
    // Userinfo present. A password may hold unencoded '@' or '/': it extends to the last '@'.
    const lastAt = url.lastIndexOf('@', end - 1);
    const userinfo = url.slice(start, lastAt);
    const colon = userinfo.indexOf(':');
    // A lone name may be a password written without its colon, or a token used as the user
    // (https://<token>@github.com): only `user:password` keeps the user visible.
    out += colon > 0 ? `${userinfo.slice(0, colon)}:${URL_MASK}@` : colon === 0 ? `:${URL_MASK}@` : `${URL_MASK}@`;
    rest = url.slice(lastAt + 1);
  } else {
    rest = url.slice(start);
  }
  const q = rest.indexOf('?');
  const h = rest.indexOf('#');
  if (q < 0 && h < 0) return out + rest;
  const qEnd = h >= 0 && (q < 0 || h > q) ? h : rest.length;
  let result = out + rest.slice(0, q >= 0 ? q : h);
  if (q >= 0 && q < qEnd) result += `?${maskQuery(rest.slice(q + 1, qEnd), sensitive, text)}`;
  // OAuth's implicit flow puts access_token in the fragment.
  if (h >= 0) result += `#${maskQuery(rest.slice(h + 1), sensitive, text)}`;
  return result;
}

function decodeComponent(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/**
 * Masks the values of sensitive parameters in `a=1&b=2` text, keeping
 * everything else byte for byte. With `text`, other values are decoded and
 * redacted as text too (a `redirect=` may carry a URL with a password).
 */
function maskQuery(query: string, sensitive: (key: string) => boolean, text?: (value: string) => string): string {
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      const name = decodeComponent(pair.slice(0, eq));
      if (sensitive(name) || URL_CREDENTIAL_PARAMS.includes(normalizeKey(name))) return `${pair.slice(0, eq)}=${URL_MASK}`;
      if (!text) return pair;
      const value = decodeComponent(pair.slice(eq + 1));
      const red = text(value);
      return red === value ? pair : `${pair.slice(0, eq)}=${encodeURIComponent(red)}`;
    })
    .join('&');
}

// ---------------------------------------------------------------------------
// The redactor
// ---------------------------------------------------------------------------

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

class RedactorImpl {
  readonly sensitive: (key: string) => boolean;
  private readonly maxDepth: number;

  constructor(extra: readonly string[], opts: RedactorOptions) {
    this.sensitive = keyMatcher(extra);
    this.maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  }

  /** True when the value under `key` must be masked (a counter under a token-count name is kept). */
  masks(key: string, value: unknown): boolean {
    if (!this.sensitive(key)) return false;
    if (value === null || value === undefined || value === '') return false;
    if (typeof value === 'number' && TOKEN_COUNTER.test(normalizeKey(key))) return false;
    return true;
  }

  walk(value: unknown, depth: number, nesting: number): unknown {
    if (depth > this.maxDepth) return REDACTED;
    if (typeof value === 'string') return this.text(value, nesting);
    if (Array.isArray(value)) return value.map((v) => this.walk(v, depth + 1, nesting));
    // Errors, Buffers, Dates, requests: left to their serializers (which redact their text).
    if (!isPlainObject(value)) return value;
    const out: Record<string, unknown> = {};
    // Object.keys, not Object.entries: the same own enumerable string keys in the same order, without an array per key.
    for (const k of Object.keys(value)) {
      const v = value[k];
      out[k] = this.masks(k, v) ? REDACTED : this.walk(v, depth + 1, nesting);
    }
    return out;
  }

  text(s: string, nesting = 0): string {
    if (s.length < 3) return s;
    if (nesting > MAX_STRING_NESTING) return REDACTED;
    const t = s.trim();
    const first = t[0];
    const last = t[t.length - 1];
    if (
      s.length <= MAX_JSON_STRING &&
      ((first === '{' && last === '}') || (first === '[' && last === ']') || (first === '"' && last === '"' && t.length > 1))
    ) {
      let parsed: unknown;
      let valid = true;
      try {
        parsed = JSON.parse(s);
      } catch {
        valid = false;
      }
      // JSON serialised twice is a JSON string literal holding JSON text: unwrap it, redact, wrap again.
      if (valid && typeof parsed === 'string') return JSON.stringify(this.text(parsed, nesting + 1));
      if (valid) return this.jsonText(s, nesting + 1);
    }
    return this.freeText(s, nesting);
  }

  /** Credentials in free text. */
  private freeText(s: string, nesting: number): string {
    let out = s;
    if (out.includes('PRIVATE KEY')) out = out.replace(PEM_PRIVATE_KEY, REDACTED);
    if (out.includes('://')) out = out.replace(URL_IN_TEXT, (u) => maskUrl(u, this.sensitive, (v) => this.text(v, nesting + 1)));
    out = out.replace(
      AUTH_SCHEME,
      (_m, s1: string | undefined, w1: string | undefined, s2: string | undefined, w2: string | undefined) => `${s1 ?? s2}${w1 ?? w2}${REDACTED}`,
    );
    if (out.includes('eyJ')) out = out.replace(JWT, REDACTED);
    out = out.replace(KNOWN_TOKEN, REDACTED);
    if (out.includes('=') || out.includes(':')) out = this.keyValues(out);
    return out;
  }

  /** Masks the value of every `key=value` / `key: value` pair whose key is sensitive. */
  private keyValues(s: string): string {
    const heads = new RegExp(KEY_HEAD.source, 'g');
    const valueAt = new RegExp(VALUE_AT.source, 'y');
    let out = '';
    let copied = 0;
    for (let m = heads.exec(s); m !== null; m = heads.exec(s)) {
      const key = m[2]!;
      if (!this.sensitive(key)) continue;
      const head = m.index + m[0].length;
      valueAt.lastIndex = head;
      const v = valueAt.exec(s);
      if (v === null) continue;
      const value = v[0];
      if (value === REDACTED || value.startsWith(URL_MASK)) continue;
      if (/^[0-9]+$/.test(value) && TOKEN_COUNTER.test(normalizeKey(key))) continue;
      const quote = value[0] === '"' || value[0] === "'" ? value[0] : '';
      out += `${s.slice(copied, head)}${quote}${REDACTED}${quote}`;
      copied = head + value.length;
      // A key inside an unmasked value (`user: password=x`) is still found: only masked values are skipped.
      heads.lastIndex = copied;
    }
    return out + s.slice(copied);
  }

  /**
   * Redacts valid JSON text without building it: one linear pass with an
   * explicit stack, so any depth is fine (a 20,000-level document included) and
   * the formatting of the input is kept.
   */
  jsonText(text: string, nesting: number): string {
    const parts: string[] = [];
    const stack: Array<'o' | 'a'> = [];
    let expectKey = false;
    let pendingKey: string | null = null;
    let i = 0;
    const n = text.length;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22 /* " */) {
        const end = stringEnd(text, i);
        const lit = text.slice(i, end);
        i = end;
        if (expectKey) {
          pendingKey = JSON.parse(lit) as string;
          parts.push(lit);
          expectKey = false;
          continue;
        }
        const key = pendingKey;
        pendingKey = null;
        const value = JSON.parse(lit) as string;
        if (key !== null && this.masks(key, value)) {
          parts.push(JSON.stringify(REDACTED));
          continue;
        }
        const red = this.text(value, nesting);
        parts.push(red === value ? lit : JSON.stringify(red));
        continue;
      }
      if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
        const key = pendingKey;
        pendingKey = null;
        if (key !== null && this.sensitive(key)) {
          parts.push(JSON.stringify(REDACTED));
          i = valueEnd(text, i);
          continue;
        }
        stack.push(c === 0x7b ? 'o' : 'a');
        expectKey = c === 0x7b;
        parts.push(text[i]!);
        i += 1;
        continue;
      }
      if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
        stack.pop();
        expectKey = false;
        parts.push(text[i]!);
        i += 1;
        continue;
      }
      if (c === 0x2c /* , */) {
        expectKey = stack[stack.length - 1] === 'o';
        parts.push(',');
        i += 1;
        continue;
      }
      if (c === 0x3a /* : */ || c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) {
        parts.push(text[i]!);
        i += 1;
        continue;
      }
      // A number, true, false or null.
      let end = i;
      while (end < n && !/[\s,:\]}]/.test(text[end]!)) end += 1;
      const lit = text.slice(i, end);
      i = end;
      const key = pendingKey;
      pendingKey = null;
      const value = lit === 'null' ? null : lit === 'true' ? true : lit === 'false' ? false : Number(lit);
      parts.push(key !== null && this.masks(key, value) ? JSON.stringify(REDACTED) : lit);
    }
    return parts.join('');
  }
}

/** Index just past the string literal that starts at `i` (a `"`). */
function stringEnd(text: string, i: number): number {
  let j = i + 1;
  while (j < text.length) {
    const c = text.charCodeAt(j);
    if (c === 0x5c) j += 2;
    else if (c === 0x22) return j + 1;
    else j += 1;
  }
  return text.length;
}

/** Index just past the object or array that starts at `i`. */
function valueEnd(text: string, i: number): number {
  let depth = 0;
  let j = i;
  while (j < text.length) {
    const c = text.charCodeAt(j);
    if (c === 0x22) {
      j = stringEnd(text, j);
      continue;
    }
    if (c === 0x7b || c === 0x5b) depth += 1;
    else if (c === 0x7d || c === 0x5d) {
      depth -= 1;
      if (depth === 0) return j + 1;
    }
    j += 1;
  }
  return text.length;
}

/** Builds a redactor for the default rules plus `extra` keys (normalised, matched as fragments). */
export function createRedactor(extra: readonly string[] = [], opts: RedactorOptions = {}): Redactor {
  const impl = new RedactorImpl(extra, opts);
  const fn = <T>(value: T): T => {
    try {
      return impl.walk(value, 0, 0) as T;
    } catch {
      // Unreachable by design; if it ever happens, nothing of the value is shown.
      return REDACTED as T;
    }
  };
  const text = (value: string): string => {
    try {
      return impl.text(value, 0);
    } catch {
      return REDACTED;
    }
  };
  return Object.assign(fn, {
    text,
    isSensitiveKey: impl.sensitive,
    query: (q: string): string => {
      try {
        return maskQuery(q, impl.sensitive, (v) => impl.text(v, 1));
      } catch {
        return URL_MASK;
      }
    },
  });
}

/** The process-wide redactor (defaults + ORCH_SENSITIVE_KEYS). */
export const redact: Redactor = createRedactor(sensitiveKeysFromEnv());

/**
 * A URL with its credentials masked: the password of the userinfo (a lone
 * user name too, which may be a password without its colon), and the values of
 * sensitive query and fragment parameters (`password`, `pass`, `pwd`,
 * `username`, `token`, `key`, ...). Works on text that is not a valid URL.
 */
export function redactUrlCredentials(url: string, redactor: Redactor = redact): string {
  return maskUrl(url, redactor.isSensitiveKey, (v) => redactor.text(v));
}

/**
 * Redacts a stored job hash for reports: sensitive field names are masked,
 * every value goes through the same text redaction as API responses (JSON in
 * depth, URLs, credentials in free text), `params` that is not JSON is masked
 * whole (free text could hold a secret no rule recognises), and bytes that
 * are not UTF-8 are shown as base64 rather than mangled.
 */
export function redactRecord(fields: Map<string, Buffer> | Record<string, Buffer | string>, redactor: Redactor = redact): Record<string, unknown> {
  const entries = fields instanceof Map ? [...fields.entries()] : Object.entries(fields);
  const out: Record<string, unknown> = {};
  for (const [k, raw] of entries) {
    const buf = typeof raw === 'string' ? Buffer.from(raw) : raw;
    if (redactor.isSensitiveKey(k) && buf.length > 0) {
      out[k] = REDACTED;
      continue;
    }
    const text = buf.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(buf)) {
      out[k] = { base64: buf.toString('base64') };
      continue;
    }
    if (k === 'params' && text !== '') {
      let json = true;
      try {
        JSON.parse(text);
      } catch {
        json = false;
      }
      if (!json) {
        out[k] = REDACTED;
        continue;
      }
    }
    out[k] = redactor.text(text);
  }
  return out;
}
