/**
 * The Prometheus rules pass `promtool check rules` (syntax, PromQL, templates)
 * and their unit tests (`promtool test rules`: each alert fires on the series
 * that should fire it, and stays quiet on the look-alikes). promtool comes with
 * Debian's `prometheus` package, which .ci/run installs; under CI=true a
 * missing promtool fails this test instead of skipping it.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { requireTool } from '../helpers/tools.js';

const dir = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));

function promtool(...args: string[]): { status: number | null; output: string } {
  const r = spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('deploy/prometheus with promtool', () => {
  it('promtool check rules accepts orch-migrate.rules.yml', (ctx) => {
    requireTool('promtool', ctx);
    const r = promtool('check', 'rules', 'orch-migrate.rules.yml');
    expect(r.status, r.output).toBe(0);
    expect(r.output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('promtool test rules passes orch-migrate.rules.test.yml', (ctx) => {
    requireTool('promtool', ctx);
    const r = promtool('test', 'rules', 'orch-migrate.rules.test.yml');
    expect(r.status, r.output).toBe(0);
    expect(r.output).toMatch(/SUCCESS/);
  });
});
