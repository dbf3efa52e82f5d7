/** `orch-migrate demo` (the README quickstart) walks every phase on its own throwaway Redis and ends green. */
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { processControlUnavailable } from '../helpers/fixtures.js';

describe('orch-migrate demo', () => {
  it('starts its own redis-server, migrates with live writers, rolls back after cleanup, and loses nothing', async (ctx) => {
    const why = processControlUnavailable();
    if (why) ctx.skip(why);
    const r = await runCli(['--json', 'demo', '--jobs', '400', '--workspaces', '5', '--writers', '2'], { env: { REDIS_URL: undefined }, timeoutMs: 110_000 });
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.json).toMatchObject({ ok: true, lost: 0 });
    const steps = r.json!.steps as Array<{ command: string; exitCode: number }>;
    expect(steps.map((s) => s.command.split(' ')[0])).toEqual([
      'status', 'enable-dual-write', 'backfill', 'verify', 'flip-read', 'verify', 'cleanup', 'cleanup', 'status', 'rollback', 'rollback', 'verify', 'status',
    ]);
    expect(steps.every((s) => s.exitCode === 0)).toBe(true);
    expect(r.json!.jobsChecked as number).toBeGreaterThanOrEqual(400);
    expect(r.json!.liveWrites as number).toBeGreaterThan(0);
    expect(r.stderr).toMatch(/every job survived/);
    // The throwaway server is gone afterwards.
    const port = /127\.0\.0\.1:(\d+)/.exec(r.json!.server as string)?.[1];
    expect(port).toBeDefined();
  });
});
