/**
 * test/helpers/summary-reporter.ts: under CI=true a skipped test fails the
 * run, with the skipped tests named; without CI a skip is only counted. Proven
 * on a real vitest run of a small fixture, so vitest cannot quietly reset the
 * exit code the reporter sets.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const REPORTER = path.join(REPO, 'test/helpers/summary-reporter.ts');
const VITEST = path.join(REPO, 'node_modules/vitest/vitest.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'summary-reporter-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs vitest on one fixture file; `ci` sets CI=true. */
function runFixture(name: string, body: string, ci: boolean): { status: number | null; output: string } {
  const dir = path.join(tmp, name);
  const config = path.join(tmp, `${name}.config.mjs`);
  writeFileSync(config, `export default { test: { root: ${JSON.stringify(dir)}, include: ['*.test.mjs'], reporters: [${JSON.stringify(REPORTER)}] } };\n`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'fixture.test.mjs'), `import { it } from 'vitest';\n${body}\n`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.CI;
  if (ci) env.CI = 'true';
  const r = spawnSync(process.execPath, [VITEST, 'run', '--config', config], { cwd: REPO, env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const SKIPPING = `it('runs', () => {});\nit('needs a tool', (ctx) => ctx.skip('zsh is not installed'));\nit.skip('is parked', () => {});`;

describe('summary reporter', () => {
  it('under CI=true, a skipped test fails the run and is named with its reason', () => {
    const r = runFixture('ci', SKIPPING, true);
    expect(r.status, r.output).toBe(1);
    expect(r.output).toMatch(/CI=true: 2 test\(s\) skipped/);
    expect(r.output).toContain('fixture.test.mjs > needs a tool: zsh is not installed');
    expect(r.output).toContain('fixture.test.mjs > is parked');
    expect(r.output).toMatch(/\n1 passed, 0 failed, 2 skipped\n/);
  });

  it('without CI, skips are counted and the run passes', () => {
    const r = runFixture('local', SKIPPING, false);
    expect(r.status, r.output).toBe(0);
    expect(r.output).not.toMatch(/CI=true/);
    expect(r.output).toMatch(/\n1 passed, 0 failed, 2 skipped\n/);
  });

  it('under CI=true, a run with nothing skipped passes', () => {
    const r = runFixture('clean', `it('runs', () => {});`, true);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toMatch(/\n1 passed, 0 failed, 0 skipped\n/);
  });
});
