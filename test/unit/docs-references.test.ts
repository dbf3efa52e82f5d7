/**
 * Every reference a comment or a document makes resolves inside the repo:
 * a `docs/design.md "Title"` names a heading of docs/design.md, and a repo
 * path (src/…, test/…, runbooks/…, docs/…, deploy/…, bench/…) names a file
 * or directory that exists.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const ROOTS = ['src', 'test', 'bench', 'runbooks', 'docs', 'deploy', '.ci', 'README.md'];
const TEXT = /\.(ts|lua|md|json|yml|yaml|sh)$|^run$/;

function files(rel: string): string[] {
  const abs = path.join(REPO, rel);
  if (!existsSync(abs)) return [];
  if (statSync(abs).isFile()) return [rel];
  return readdirSync(abs).flatMap((name) => (name === 'node_modules' ? [] : files(path.join(rel, name))));
}

const SELF = 'test/unit/docs-references.test.ts';
const sources = ROOTS.flatMap(files).filter((f) => TEXT.test(path.basename(f)) && f !== SELF);
const headings = new Set(
  readFileSync(path.join(REPO, 'docs/design.md'), 'utf8')
    .split('\n')
    .filter((l) => /^#{1,4} /.test(l))
    .map((l) => l.replace(/^#+ /, '').trim()),
);

describe('references resolve inside the repo', () => {
  it('every docs/design.md "Title" names a heading of docs/design.md', () => {
    const bad: string[] = [];
    let seen = 0;
    for (const f of sources) {
      const text = readFileSync(path.join(REPO, f), 'utf8');
      for (const m of text.matchAll(/docs\/design\.md[`']?,? "([^"]+)"/g)) {
        seen++;
        // A title may wrap onto the next comment line.
        const title = m[1]!.replace(/\s*\n\s*(?:--|\*|\/\/)?\s*/g, ' ').trim();
        if (!headings.has(title)) bad.push(`${f}: "${title}"`);
      }
    }
    expect(seen).toBeGreaterThan(10);
    expect(bad).toEqual([]);
  });

  it('every repo path a comment or document names exists', () => {
    const bad: string[] = [];
    let seen = 0;
    for (const f of sources) {
      const text = readFileSync(path.join(REPO, f), 'utf8');
      for (const m of text.matchAll(/(?<![\w./-])((?:src|test|bench|runbooks|docs|deploy)\/[\w.-]+(?:\/[\w.-]+)*)/g)) {
        const ref = m[1]!.replace(/[.,:;)]+$/, '');
        // Placeholders and generated paths are not references.
        const next = text[m.index + m[0].length] ?? '';
        if (/[<*…]/.test(next) || /\.\.\./.test(ref) || ref.startsWith('bench/results') || ref.includes('dist/')) continue;
        seen++;
        if (!existsSync(path.join(REPO, ref))) bad.push(`${f}: ${ref}`);
      }
    }
    expect(seen).toBeGreaterThan(50);
    expect([...new Set(bad)]).toEqual([]);
  });
});
