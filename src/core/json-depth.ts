/**
 * Nesting depth of JSON text, measured without parsing it.
 *
 * `JSON.parse` copes with deep nesting, but everything that walks the result
 * recursively (JSON.stringify, the redactor, zod, structured logging) overflows
 * the stack somewhere past ~10,000 levels. Readers and the API therefore check
 * the depth of untrusted JSON text first, in one linear pass with no recursion,
 * and treat text that nests deeper than they can walk as opaque.
 */

/** Deepest JSON the queue core parses from a stored record (deeper text is served as raw text). */
export const MAX_STORED_JSON_DEPTH = 128;

/**
 * The bracket nesting depth of `text`, counting `{` and `[` outside string
 * literals. Stops counting at `limit + 1`, so the cost of hostile input is one
 * scan of it. Text that is not JSON still gets a number; callers parse it anyway.
 */
export function jsonDepth(text: string, limit = Number.MAX_SAFE_INTEGER): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i += 1;
      else if (c === 0x22 /* " */) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth += 1;
      if (depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth = Math.max(0, depth - 1);
  }
  return max;
}

/** True when `text` holds at most `n` opening brackets (so it cannot nest deeper than `n`). */
function bracketsAtMost(text: string, n: number): boolean {
  let count = 0;
  for (const ch of ['{', '[']) {
    for (let i = text.indexOf(ch); i >= 0; i = text.indexOf(ch, i + 1)) {
      count += 1;
      if (count > n) return false;
    }
  }
  return true;
}

/** True when `text` nests deeper than `limit`. */
export function jsonTooDeep(text: string, limit: number): boolean {
  // Text with few brackets cannot nest deeply: counting them with indexOf (fast on long strings
  // without brackets, such as a large blob) often settles it without the character loop.
  if (bracketsAtMost(text, limit)) return false;
  return jsonDepth(text, limit) > limit;
}
