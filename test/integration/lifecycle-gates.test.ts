/**
 * Issue 4, gate acceptance (2), through the real binary: flip-read from legacy,
 * before any verify, after a backfill newer than the verify and with a stale
 * verify exits 3; cleanup --execute before the soak time exits 3 and deletes
 * nothing; --force --reason proceeds and the reason is in the history. Every
 * refusal is one line that names the command which opens the gate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { LeaseLock } from '../../src/core/lock.js';
import type { RedisClient } from '../../src/core/redis.js';
import { StateStore } from '../../src/core/state.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { cleanupClient, coreClient, topologyUrl } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { history, scanAll, seedJobs } from '../helpers/lifecycle.js';

function refusal(r: CliResult): { line: string; fix: string } {
  const lines = r.stderr.trim().split('\n');
  const line = lines.find((l) => l.startsWith('error: ')) ?? '';
  const fix = lines.find((l) => l.trim().startsWith('fix: ')) ?? '';
  return { line, fix };
}

describe('gates (CLI)', () => {
  let client: RedisClient;
  const prefix = uniquePrefix('gates');
  const keys = new Keyspace(prefix);
  let args: string[];
  const cli = (argv: string[]): Promise<CliResult> => runCli([...args, '--json', ...argv]);

  beforeAll(async () => {
    client = await coreClient('standalone');
    const t = topologyUrl('standalone');
    args = target(t.url, prefix, t.cluster);
    await seedJobs(client, keys, 120);
  });
  afterAll(async () => {
    await cleanupClient(client, prefix);
  });

  it('flip-read: refused from legacy, before any verify, after a newer backfill and with a stale verify', async () => {
    const fromLegacy = await cli(['flip-read', '--reason', 'too early']);
    expect(fromLegacy.code).toBe(3);
    expect(fromLegacy.json).toMatchObject({ ok: false, exitCode: 3, error: { code: 'ERR_GATE' } });
    expect(refusal(fromLegacy)).toEqual({
      line: 'error: Refused: flip-read needs phase dual-write, but the phase is legacy.',
      fix: '  fix: Run: orch-migrate enable-dual-write',
    });
    // The phase gate cannot be forced.
    expect((await cli(['flip-read', '--force', 'verify', '--reason', 'x'])).code).toBe(3);

    expect((await cli(['enable-dual-write', '--settle-ms', '100'])).code).toBe(0);
    expect((await cli(['backfill'])).code).toBe(0);
    const noVerify = await cli(['flip-read']);
    expect(noVerify.code).toBe(3);
    expect(refusal(noVerify)).toEqual({
      line: 'error: Refused: no verify has run.',
      fix: '  fix: Run: orch-migrate verify (or override this gate alone with --force verify --reason "…")',
    });

    expect((await cli(['verify'])).code).toBe(0);
    expect((await cli(['flip-read', '--dry-run'])).code).toBe(0);
    expect((await cli(['backfill', '--restart'])).code).toBe(0);
    const newerBackfill = await cli(['flip-read']);
    expect(newerBackfill.code).toBe(3);
    expect(refusal(newerBackfill).line).toBe('error: Refused: a backfill finished after the last verify started.');
    expect(refusal(newerBackfill).fix).toMatch(/Run: orch-migrate verify/);

    expect((await cli(['verify'])).code).toBe(0);
    await new Promise((r) => setTimeout(r, 1200));
    const stale = await cli(['flip-read', '--max-verify-age', '1s']);
    expect(stale.code).toBe(3);
    expect(refusal(stale).line).toMatch(/^error: Refused: the last clean verify is \ds old \(max 1s\)\.$/);

    const status = await cli(['status']);
    expect(status.json).toMatchObject({ phase: 'dual-write', gates: { 'flip-read': { open: true } } });
    const ok = await cli(['flip-read', '--reason', 'CHG-7 verify clean']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ from: 'dual-write', to: 'read-new', epoch: 2, dryRun: false, forced: [] });
    expect((await new StateStore(client, keys).read()).v2Complete).toBe(true);
  });

  it('cleanup --execute before the soak time: exit 3, nothing deleted; --force --reason proceeds and is recorded', async () => {
    expect((await cli(['verify'])).code).toBe(0);
    const legacyBefore = await scanAll(client, keys.legacyPattern);
    expect(legacyBefore).toHaveLength(120);

    const early = await cli(['cleanup', '--execute']);
    expect(early.code).toBe(3);
    expect(refusal(early).line).toMatch(/^error: Refused: in read-new for \d+s; soak needs 60m \(60m to go\)\.$/);
    expect(refusal(early).fix).toMatch(/--min-soak.*--force soak --reason/);
    expect(await scanAll(client, keys.legacyPattern)).toEqual(legacyBefore);
    const st = await new StateStore(client, keys).read();
    expect(st).toMatchObject({ phase: 'read-new', epoch: 2, legacyComplete: true });
    expect(await LeaseLock.inspect(client, keys)).toBeNull();
    expect(st.lastCleanup).toBeNull();

    const noReason = await cli(['cleanup', '--execute', '--force', 'soak']);
    expect(noReason.code).toBe(2);
    expect(await scanAll(client, keys.legacyPattern)).toEqual(legacyBefore);

    const forced = await cli(['cleanup', '--execute', '--force', 'soak,verify', '--reason', 'CHG-8 soak waived by the incident commander']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.json).toMatchObject({ dryRun: false, deleted: 120, kept: 0, phase: 'new-only', forced: ['soak'] });
    expect(await scanAll(client, keys.legacyPattern)).toEqual([]);

    const h = await history(client, keys);
    const force = h.find((e) => e.type === 'force');
    expect(force?.data).toMatchObject({ command: 'cleanup', gates: ['soak'], reason: 'CHG-8 soak waived by the incident commander' });
    const transition = h.find((e) => e.type === 'transition' && e.data.to === 'new-only');
    expect(transition?.data).toMatchObject({ from: 'read-new', forced: ['soak'], reason: 'CHG-8 soak waived by the incident commander' });
    // The refusals are in the audit trail too.
    expect(h.some((e) => e.type === 'cleanup' && e.data.exitCode === 3)).toBe(true);

    const status = await runCli([...args, 'status']);
    expect(status.stdout).toMatch(/gate\(s\) soak overridden for cleanup: "CHG-8 soak waived by the incident commander"/);
  });
});
