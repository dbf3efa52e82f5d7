// Verify's proven-pair shortcut (src/ops/verify/proven-pairs.ts): the v2 →
// legacy and index passes skip the pairs proven identical in the same round
// (verify-batch.lua on one node; both sides' facts on a cluster). These tests show it hides nothing: round 1
// finds the same mismatches with the shortcut, past its bound (the per-key
// fallback for the rest) and without it; and a `--workspace` run, whose passes
// run one after the other, still finds a legacy record deleted between them.
import { describe, expect, it } from 'vitest';
import { createdAtScore } from '../../src/core/job.js';
import { Keyspace } from '../../src/core/keys.js';
import { Phase } from '../../src/core/phase.js';
import { loadAccepted } from '../../src/ops/accept.js';
import { backfill } from '../../src/ops/backfill.js';
import { PairChecker } from '../../src/ops/verify/pair-check.js';
import { INDEX_WHOLE_READ, Passes } from '../../src/ops/verify/passes.js';
import { VerifyPlan, type VerifyPlanOptions } from '../../src/ops/verify/plan.js';
import { SuspectSet } from '../../src/ops/verify/suspects.js';
import { verify } from '../../src/ops/verify.js';
import { StateStore } from '../../src/core/state.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { opContext, seedLegacy } from './backfill-helpers.js';

type Client = Awaited<ReturnType<typeof coreClient>>;

/** Round 1 alone, with a given bound on the proven pairs: what it found, and what it examined. */
async function firstRound(client: Client, keys: Keyspace, provenCap: number, opts: VerifyPlanOptions = {}, onStage?: (stage: string, scanned: number) => void) {
  const ctx = opContext(client, keys);
  const plan = VerifyPlan.from(opts, await new StateStore(client, keys).read());
  const suspects = new SuspectSet(plan.maxSuspects, await loadAccepted(client, keys));
  const checker = new PairChecker(client, keys, plan, suspects);
  const passes = new Passes(ctx, plan, suspects, checker, null, provenCap);
  const first = await passes.run(null, (stage, p) => onStage?.(stage, p.scanned));
  return {
    first,
    proven: passes.provenCount,
    byKind: suspects.count().byKind,
    ids: suspects
      .entries()
      .map(([id]) => id)
      .sort(),
  };
}

describe('verify: pairs proven in round 1', () => {
  it.each(TOPOLOGIES)('finds the same mismatches with the shortcut, past its bound, and without it (%s)', async (topology) => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix('vproven');
    const keys = new Keyspace(prefix);
    try {
      await seedLegacy(client, keys, 400, { workspaces: 10, ttlEvery: 7 });
      await movePhase(client, keys, Phase.DualWrite, 100);
      await backfill(opContext(client, keys), {});
      const v2 = (i: number): string => keys.v2Job(`ws-${i % 10}`, `job-${i}`);
      const legacy = (i: number): string => keys.legacyJob(`job-${i}`);

      // Orphans: a v2 record whose legacy record is gone, one that never had one.
      await client.del(legacy(1));
      await client.hset(keys.v2Job('ws-3', 'ghost-3'), 'job_id', 'ghost-3', 'workspace_id', 'ws-3', 'rev', '1');
      // An id conflict: job-2 is ws-2's; a v2 record of it under ws-5.
      await client.hset(keys.v2Job('ws-5', 'job-2'), 'job_id', 'job-2', 'workspace_id', 'ws-5', 'rev', '1');
      // Index entries: dangling, wrong score, missing.
      await client.zadd(keys.index('ws-4'), 1, 'job-gone');
      await client.zadd(keys.index('ws-6'), 1, 'job-6');
      await client.zrem(keys.index('ws-7'), 'job-7');
      // Content and expiry.
      await client.hset(v2(8), 'status', 'changed');
      await client.pexpireat(v2(9), Date.now() + 3_600_000);
      // A v2 key of another type that no legacy record backs.
      await client.set(keys.v2Job('ws-0', 'strange'), 'not a hash');

      const expected = {
        orphan: 2,
        'id-conflict': 1,
        'index-dangling': 1,
        'index-score': 1,
        'index-missing': 1,
        'field-diff': 1,
        ttl: 1,
        'non-hash': 1,
      };
      const shortcut = await firstRound(client, keys, 1_000_000);
      expect(shortcut.byKind).toEqual(expected);
      // The shortcut was taken: every pair but the mismatched ones was proven.
      expect(shortcut.proven).toBeGreaterThan(380);
      // The same suspects, and the same keys and entries examined, whichever path each key took.
      const without = await firstRound(client, keys, 0);
      expect(without.ids).toEqual(shortcut.ids);
      expect(without.first).toEqual(shortcut.first);
      // Past the bound: the first 50 pairs are proven, the rest take the per-key checks.
      const bounded = await firstRound(client, keys, 50);
      expect(bounded.ids).toEqual(shortcut.ids);
      expect(bounded.first).toEqual(shortcut.first);
      expect([without.proven, bounded.proven]).toEqual([0, 50]);

      // The whole verify (rounds re-check the suspects) reports them.
      const r = await verify(opContext(client, keys), { roundDelayMs: 20 });
      expect(r.byKind).toEqual(expected);
    } finally {
      await cleanupClient(client, prefix);
    }
  });

  it('a hostile workspace_id: the script reads what it names, the record is still unmigratable and hides nothing', async () => {
    const client = await coreClient('standalone');
    const prefix = uniquePrefix('vprovenhostile');
    const keys = new Keyspace(prefix);
    try {
      await seedLegacy(client, keys, 40, { workspaces: 4 });
      await movePhase(client, keys, Phase.DualWrite, 100);
      await backfill(opContext(client, keys), {});
      // verify-batch.lua names a record's v2 key and index from its workspace_id as read. Give each hostile record
      // an exact copy and an index entry at the right score under the names it yields, as if it had been migrated.
      const hostile = ['ws-1:job-7', 'ws-2*', 'ws-3\nx', 'WS-1'];
      const createdAt = '2026-01-01T00:00:00.000Z';
      const planted: string[] = [];
      for (const [i, ws] of hostile.entries()) {
        const jobId = `evil-${i}`;
        await client.hset(keys.legacyJob(jobId), 'job_id', jobId, 'workspace_id', ws, 'rev', '1', 'created_at', createdAt);
        const v2 = `${keys.heads.v2}${ws}:${jobId}`;
        const index = `${keys.heads.index}${ws}`;
        await client.copy(keys.legacyJob(jobId), v2);
        await client.zadd(index, createdAtScore(createdAt), jobId);
        planted.push(`k|${keys.legacyJob(jobId)}`, `k|${v2}`, `k|${index}`);
      }
      const shortcut = await firstRound(client, keys, 1_000_000);
      // Every legacy record, planted copy and planted index is reported (as unmigratable), and nothing else is.
      expect(shortcut.byKind).toEqual({ unmigratable: planted.length });
      expect(shortcut.ids).toEqual([...planted].sort());
      // The same without the shortcut: no hostile record was taken as proven.
      const without = await firstRound(client, keys, 0);
      expect(without.ids).toEqual(shortcut.ids);
      expect(without.first).toEqual(shortcut.first);
    } finally {
      await cleanupClient(client, prefix);
    }
  });

  it('an index too large to read whole is walked (ZSCAN): every dangling entry is found, with the shortcut and without', async () => {
    const client = await coreClient('standalone');
    const prefix = uniquePrefix('vprovenbigix');
    const keys = new Keyspace(prefix);
    try {
      await seedLegacy(client, keys, 30, { workspaces: 3 });
      await movePhase(client, keys, Phase.DualWrite, 100);
      await backfill(opContext(client, keys), {});
      // ws-1's index holds its 10 jobs and more dangling entries than one whole read takes; ws-2's one dangling entry.
      const n = INDEX_WHOLE_READ + 5;
      const args: Array<string | number> = [];
      for (let i = 0; i < n; i++) args.push(i, `gone-${i}`);
      await client.zadd(keys.index('ws-1'), ...args);
      await client.zadd(keys.index('ws-2'), 1, 'gone-x');
      const shortcut = await firstRound(client, keys, 1_000_000);
      expect(shortcut.byKind).toEqual({ 'index-dangling': n + 1 });
      expect(shortcut.first.indexEntries).toBe(30 + n + 1);
      const without = await firstRound(client, keys, 0);
      expect(without.ids).toEqual(shortcut.ids);
      expect(without.first).toEqual(shortcut.first);
    } finally {
      await cleanupClient(client, prefix);
    }
  });

  it('--workspace: a legacy record deleted after the legacy pass, before the v2 pass, is an orphan', async () => {
    const client = await coreClient('standalone');
    const prefix = uniquePrefix('vprovenws');
    const keys = new Keyspace(prefix);
    try {
      await seedLegacy(client, keys, 60, { workspaces: 3 });
      await movePhase(client, keys, Phase.DualWrite, 100);
      await backfill(opContext(client, keys), {});
      let deleted = false;
      // The legacy pass reports progress after each batch; once it has seen all 60 records every pair is compared,
      // and the deletion is queued on the same connection ahead of the v2 pass's SCAN.
      const r = await firstRound(client, keys, 1_000_000, { workspaces: ['ws-1'] }, (stage, scanned) => {
        if (!deleted && stage.includes('legacy → v2') && scanned >= 60) {
          deleted = true;
          void client.del(keys.legacyJob('job-1'));
        }
      });
      expect(deleted).toBe(true);
      expect(r.byKind).toEqual({ orphan: 1 });
      expect(r.ids).toEqual(['p|ws-1|job-1']);
    } finally {
      await cleanupClient(client, prefix);
    }
  });
});
