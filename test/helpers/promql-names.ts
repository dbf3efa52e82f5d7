/**
 * Finds the metric names (and the label names their selectors match on) in a
 * PromQL expression, as written in Grafana panels and Prometheus rules. It is
 * a tokenizer, not a full parser: enough to tell a metric from a function,
 * an aggregation keyword, a grouping label list, a duration or a string.
 */

/** One metric selector found in an expression. */
export interface MetricRef {
  name: string;
  /** Label names in its `{...}` matchers. */
  labels: string[];
}

type Token = { kind: 'ident' | 'number' | 'string' | 'punct'; text: string };

// Words that are PromQL syntax, never metric names.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless', 'atan2', 'inf', 'nan']);
// Aggregation operators: `sum by (x) (...)` puts a keyword, not `(`, after them.
const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
// Keywords followed by a parenthesised list of label names (not an expression).
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '#') {
      while (i < expr.length && expr[i] !== '\n') i++; // comment
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < expr.length && expr[j] !== c) j += expr[j] === '\\' && c !== '`' ? 2 : 1;
      tokens.push({ kind: 'string', text: expr.slice(i + 1, j) });
      i = j + 1;
    } else if (/[0-9.]/.test(c)) {
      const m = /^[0-9.][0-9A-Za-z_.+-]*/.exec(expr.slice(i))!; // 0.99, 1e3, 5m, 1h30m
      tokens.push({ kind: 'number', text: m[0] });
      i += m[0].length;
    } else if (/[A-Za-z_:]/.test(c)) {
      const m = /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(expr.slice(i))!;
      tokens.push({ kind: 'ident', text: m[0] });
      i += m[0].length;
    } else {
      tokens.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return tokens;
}

/** Index just past the bracket that closes the one at `start`. */
function skipGroup(tokens: Token[], start: number, open: string, close: string): number {
  let depth = 0;
  for (let i = start; i < tokens.length; i++) {
    if (tokens[i]!.kind !== 'punct') continue;
    if (tokens[i]!.text === open) depth++;
    else if (tokens[i]!.text === close && --depth === 0) return i + 1;
  }
  return tokens.length;
}

/** Label names (and an exact `__name__`) in the matchers of `{...}` starting at `start`. */
function matchers(tokens: Token[], start: number): { end: number; labels: string[]; name: string | null } {
  const end = skipGroup(tokens, start, '{', '}');
  const labels: string[] = [];
  let name: string | null = null;
  for (let i = start + 1; i < end - 1; i++) {
    const t = tokens[i]!;
    if (t.kind !== 'ident') continue;
    const op = tokens[i + 1]?.text ?? '';
    const value = tokens.slice(i + 1, i + 4).find((x) => x.kind === 'string');
    if (t.text === '__name__' && op === '=' && tokens[i + 2]?.text !== '~' && value) name = value.text;
    else labels.push(t.text);
  }
  return { end, labels, name };
}

/**
 * Metric selectors in `expr`. Grafana's `label_values(selector, label)` and its
 * `$variables` are understood; `[range]`, `offset`, grouping lists, strings and
 * function names are not metrics.
 */
export function metricRefs(expr: string): MetricRef[] {
  let text = expr.replace(/\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]/g, '0');
  const lv = /^\s*label_values\(\s*(.*?)\s*(?:,\s*[A-Za-z_][A-Za-z0-9_]*\s*)?\)\s*$/s.exec(text);
  if (lv) text = /,/.test(text) ? lv[1]! : '';
  const tokens = tokenize(text);
  const refs: MetricRef[] = [];
  for (let i = 0; i < tokens.length;) {
    const t = tokens[i]!;
    const next = tokens[i + 1];
    if (t.kind === 'punct' && t.text === '[') {
      i = skipGroup(tokens, i, '[', ']'); // range or subquery
    } else if (t.kind === 'punct' && t.text === '{') {
      const m = matchers(tokens, i); // {__name__="x", ...}
      if (m.name) refs.push({ name: m.name, labels: m.labels });
      i = m.end;
    } else if (t.kind !== 'ident') {
      i++;
    } else if (AGGREGATIONS.has(t.text.toLowerCase())) {
      i++;
    } else if (KEYWORDS.has(t.text.toLowerCase())) {
      i = LABEL_LISTS.has(t.text.toLowerCase()) && next?.text === '(' ? skipGroup(tokens, i + 1, '(', ')') : i + 1;
    } else if (next?.kind === 'punct' && next.text === '(') {
      i++; // a function or an aggregation
    } else if (next?.kind === 'punct' && next.text === '{') {
      const m = matchers(tokens, i + 1);
      refs.push({ name: t.text, labels: m.labels });
      i = m.end;
    } else {
      refs.push({ name: t.text, labels: [] });
      i++;
    }
  }
  return refs;
}

/** Every PromQL expression inside a Prometheus rule's annotations (`{{ query "..." }}`). */
export function annotationQueries(annotations: Record<string, string> | undefined): string[] {
  const out: string[] = [];
  for (const v of Object.values(annotations ?? {})) {
    for (const m of v.matchAll(/query\s+"((?:[^"\\]|\\.)*)"/g)) out.push(m[1]!.replace(/\\"/g, '"'));
  }
  return out;
}
