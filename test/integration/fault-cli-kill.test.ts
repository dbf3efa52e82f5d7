/**
 * Issue 6, fault suite: the CLI itself is killed with kill -9 in the middle of
 * a throttled `cleanup --execute`. Its lease (--lock-ttl 2000) keeps a rerun
 * out with exit 4 naming the dead holder until it runs out by itself; the rerun
 * then resumes from the checkpoint and completes. LEDGER CHECK: no job lost.
 * Only the CLI dies here, so this runs on the shared single-node server.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { LeaseLock } from '../../src/core/lock.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, topologyUrl } from '../helpers/core-clients.js';
import { expectLedger, expectOneErrorLine, runCliUntil, seedDualWrite, SLOW, waitForFreshLease, waitForLockFree } from '../helpers/fault-helpers.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { exited } from '../helpers/lifecycle.js';
import { scanKeys } from './backfill-helpers.js';

const N = 2000;

describe('fault: the CLI is killed with kill -9 mid-cleanup', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  it("the rerun exits 4 while the dead run's lease lives, completes after it expires; nothing lost", async () => {
    const client = await coreClient('standalone');
    const keys = new Keyspace(uniquePrefix('fclikill'));
    const args = target(topologyUrl('standalone').url, keys.prefix);
    try {
      const ledger = await seedDualWrite(client, keys, N);
      expect((await runCli([...args, 'backfill'])).code).toBe(0);
      expect((await runCli([...args, 'flip-read', '--force', 'verify', '--reason', 'fault test: the ledger check proves the copy'])).code).toBe(0);

      let victim: ChildProcess | undefined;
      const first = await runCliUntil(
        [...args, '--lock-ttl', '2000', 'cleanup', '--execute', '--min-soak', '0s', '--force', 'soak,verify', '--reason', 'fault test', ...SLOW],
        { client, keys, op: 'cleanup', min: 300 },
        async (child) => {
          victim = child;
          // Right after a renewal, so the dead holder's lease has a known ~2 s left.
          await waitForFreshLease(client, keys, 1850);
          child.kill('SIGKILL');
          await exited(child);
        },
        children,
      );
      expect(first.signal).toBe('SIGKILL');
      expect((await LeaseLock.inspect(client, keys))?.pid).toBe(victim!.pid);

      const refused = await runCli([...args, '--json', 'cleanup', '--execute', '--reason', 'fault test: resume']);
      expect(refused.code, refused.stderr).toBe(4);
      expect(expectOneErrorLine(refused)).toContain(`pid ${victim!.pid}`);
      expect(refused.json).toMatchObject({ exitCode: 4, error: { code: 'ERR_LOCKED' } });
      // Mid-run ledger: whatever was deleted is in v2, whole.
      await expectLedger(client, keys, ledger, { legacy: 'optional', v2: 'present' });
      const left = (await scanKeys(client, keys.legacyPattern)).length;
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThan(N);

      await waitForLockFree(client, keys, 10_000);
      const second = await runCli([...args, '--json', 'cleanup', '--execute', '--reason', 'fault test: resume']);
      expect(second.code, second.stderr).toBe(0);
      expect(second.json).toMatchObject({ dryRun: false, phase: 'new-only', complete: true, resumed: true, kept: 0 });
      // Cumulative from the checkpoint: deletes after its last save (the kill) are not counted again.
      expect(second.json!.deleted).toBeGreaterThan(0);
      expect(second.json!.deleted).toBeLessThanOrEqual(N);
      await expectLedger(client, keys, ledger, { legacy: 'absent', v2: 'present' });
      expect(await scanKeys(client, keys.legacyPattern)).toEqual([]);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});
