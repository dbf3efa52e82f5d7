/**
 * Live control from a second process (src/cli/commands/control.ts) during a
 * throttled backfill: `control pause` stops progress within a second, `status`
 * shows the paused run and the control; `control rate` changes the measured
 * rate both ways; `control resume` lets it finish. And `--rate` is a true
 * ceiling: after a slow stretch (Redis stopped for 5 s) the run does not burst
 * to catch up. Rates are checked as ceilings with room for a loaded machine;
 * the latency figures are the bench's (bench/guards.ts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import { loadCheckpoint, sumCounter } from '../../src/ops/checkpoint.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, topologyUrl } from '../helpers/core-clients.js';
import { expectLedger, seedDualWrite } from '../helpers/fault-helpers.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { expectExit, heartbeat, historyOf, startCli, waitFor, waitForRun } from './guards-helpers.js';

const servers: RedisServerHandle[] = [];
const clients: RedisClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => closeRedis(c)));
  await Promise.all(servers.map((s) => s.stop()));
});

/** The rate the run measured itself, once it has run `settleMs` at the new setting. */
async function measuredRate(client: RedisClient, keys: Keyspace, settleMs: number): Promise<number> {
  await new Promise((r) => setTimeout(r, settleMs));
  return (await heartbeat(client, keys))!.keysPerSecond;
}

describe('control from a second process', () => {
  it('pause stops progress within a second; status shows it; rate changes the measured rate; resume finishes the run', async () => {
    const client = await coreClient('standalone');
    const keys = new Keyspace(uniquePrefix('gctl'));
    const { url } = topologyUrl('standalone');
    const args = target(url, keys.prefix);
    const N = 30_000;
    try {
      const ledger = await seedDualWrite(client, keys, N);
      const run = await startCli([...args, '--json', 'backfill', '--rate', '1500', '--batch-size', '200']);
      await waitForRun(client, keys, 'the backfill to make progress at 1,500 keys/s', (r) => r.done >= 1500 && r.keysPerSecond > 0);

      const pause = await runCli([...args, 'control', 'pause', '--reason', 'INC-88 api p99']);
      expectExit(pause, 0);
      const pausedAt = Date.now();
      expect(pause.stdout).toMatch(/^control paused: every running backfill, verify, cleanup and reverse backfill stops taking batches within 1 s/);
      expect(pause.stdout).toMatch(/ {2}run backfill .* pid [0-9]+@/);
      const p = await waitForRun(client, keys, 'the run to report the pause', (r) => r.state === 'paused', 20_000);
      console.log(`control pause → run paused (heartbeat) in ${Date.now() - pausedAt} ms`);
      expect(p.holding).toEqual(['control']);
      expect(p.reason).toMatch(/paused by `orch-migrate control pause` \(.*\): "INC-88 api p99"/);
      // The batches in flight finish; after that the count stands still.
      await new Promise((r) => setTimeout(r, 1200));
      const cp1 = sumCounter(await loadCheckpoint(client, keys, 'backfill'), 'scanned');
      const a = (await heartbeat(client, keys))!.done;
      await new Promise((r) => setTimeout(r, 2500));
      const b = (await heartbeat(client, keys))!.done;
      expect(b).toBe(a);
      expect(sumCounter(await loadCheckpoint(client, keys, 'backfill'), 'scanned')).toBe(cp1);

      const st = await runCli([...args, '--json', 'status']);
      expectExit(st, 0);
      expect(st.json).toMatchObject({
        control: { paused: true, reason: 'INC-88 api p99' },
        runs: [{ op: 'backfill', state: 'paused', holding: ['control'], ceiling: 1500 }],
        next: { command: 'orch-migrate control resume' },
      });
      const human = await runCli([...args, 'status']);
      expect(human.stdout).toMatch(
        /^run +backfill by .* pid [0-9]+@.*: backfill [0-9,]+\/~?[0-9,]+ \([0-9]+%\), [0-9,]+ keys\/s \(ceiling 1,500\), ETA -- \(paused\)$/m,
      );
      expect(human.stdout).toMatch(/^control +paused by .* — "INC-88 api p99"/m);

      // Up: a rate set live replaces --rate.
      expectExit(await runCli([...args, 'control', 'rate', '4000']), 0);
      expectExit(await runCli([...args, 'control', 'resume']), 0);
      await waitForRun(client, keys, 'the run to go again', (r) => r.state === 'running' && r.ceiling === 4000, 20_000);
      const fast = await measuredRate(client, keys, 3000);
      expect(fast).toBeLessThanOrEqual(4000 * 1.15);
      expect(fast).toBeGreaterThan(1500 * 1.3);
      // Down.
      expectExit(await runCli([...args, 'control', 'rate', '500']), 0);
      await waitForRun(client, keys, 'the lower ceiling', (r) => r.ceiling === 500, 20_000);
      const slow = await measuredRate(client, keys, 3000);
      expect(slow).toBeLessThanOrEqual(500 * 1.15);
      expect(slow).toBeGreaterThan(0);
      // Back to the run's own --rate, then out of its way.
      const cleared = await runCli([...args, '--json', 'control', 'rate', 'unlimited']);
      expect(cleared.json).toMatchObject({ action: 'rate', rate: null, control: null });
      expect(await client.exists(keys.control)).toBe(0);

      const r = await run.done;
      expectExit(r, 0);
      const j = r.json as { copied: number; throttle: { byGuard: Record<string, { pausedMs: number; pauses: number }> } };
      expect(j.copied).toBe(N);
      expect(j.throttle.byGuard.control!.pausedMs).toBeGreaterThan(3000);
      expect(j.throttle.byGuard.control!.pauses).toBe(1);
      const actions = (await historyOf(client, keys, 'control')).map((h) => h.data.action).reverse();
      expect(actions).toEqual(['pause', 'rate', 'resume', 'rate', 'rate']);
      await expectLedger(client, keys, ledger, { legacy: 'present', v2: 'present' });
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });

  it('a pause set before a run holds it from the start (it says so); bad values are usage errors', async () => {
    const client = await coreClient('standalone');
    const keys = new Keyspace(uniquePrefix('gctl2'));
    const { url } = topologyUrl('standalone');
    const args = target(url, keys.prefix);
    try {
      await seedDualWrite(client, keys, 500);
      const none = await runCli([...args, 'control', 'pause']);
      expectExit(none, 0);
      expect(none.stdout).toMatch(/no run in flight: this applies to the next run that starts/);
      const run = await startCli([...args, '--json', 'backfill']);
      const held = await waitForRun(client, keys, 'the backfill to be held by the pause', (r) => r.state === 'paused', 30_000);
      expect(held.done).toBe(0);
      expectExit(await runCli([...args, 'control', 'resume']), 0);
      const r = await run.done;
      expectExit(r, 0);
      expect(r.stderr).toMatch(/warning: control: paused by .* — set with orch-migrate control; it applies to this run/);
      expect(r.json).toMatchObject({ ok: true, copied: 500, throttle: { byGuard: { control: { pauses: 1 } } } });

      for (const [argv, msg] of [
        [['control', 'stop'], /error: control: expected pause, resume or rate <keys\/s>, got "stop"/],
        [['control', 'rate'], /error: control rate needs a positive number of keys per second, or unlimited, got ""/],
        [['control', 'rate', '1e3'], /error: control rate needs a positive number/],
        [['control', 'rate', '0'], /error: control rate needs a positive number/],
        [['control', 'pause', 'now'], /error: control pause takes no value, got "now"/],
      ] as const) {
        const bad = await runCli([...args, ...argv]);
        expectExit(bad, 2);
        expect(bad.stderr).toMatch(msg);
      }
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});

describe.skipIf(processControlUnavailable() !== undefined)('--rate is a true ceiling', () => {
  it('after Redis stalls for 5 s mid-run, the backfill does not burst to catch up', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const client = await connectRedis({ url: server.url });
    clients.push(client);
    const keys = new Keyspace(uniquePrefix('gceil'));
    const N = 20_000;
    const rate = 2000;
    await seedDualWrite(client, keys, N);
    const run = await startCli([...target(server.url, keys.prefix), '--json', 'backfill', '--rate', String(rate), '--concurrency', '4']);
    await waitForRun(client, keys, 'progress', (r) => r.done >= 3000);
    // Measured between two checkpoint saves (their own timestamps), one before the stall and one well after it.
    const save = async (): Promise<{ at: number; scanned: number }> => {
      const cp = await loadCheckpoint(client, keys, 'backfill');
      return { at: cp.nodes[0]?.updatedAt ?? 0, scanned: sumCounter(cp, 'scanned') };
    };
    const nextSave = async (after: number): Promise<{ at: number; scanned: number }> => {
      let s = await save();
      await waitFor('a checkpoint save', async () => (s = await save()).at > after, 30_000);
      return s;
    };
    const a = await nextSave((await save()).at);
    server.pause();
    const stalledAt = Date.now();
    await new Promise((r) => setTimeout(r, 5000));
    server.resume();
    const resumedAt = Date.now();
    const b = await nextSave(resumedAt + 3000);
    const activeSecs = (b.at - a.at - (resumedAt - stalledAt)) / 1000;
    // At most the rate while Redis answered, plus the batches granted before the stall that finish after it
    // (concurrency + 1 batches of a tenth of a second), plus 10% for a loaded machine.
    const ceiling = (rate * activeSecs + 5 * (rate / 10)) * 1.1;
    const keysDone = b.scanned - a.scanned;
    console.log(
      `a 5 s stall inside ${((b.at - a.at) / 1000).toFixed(1)} s: ${keysDone} keys in ${activeSecs.toFixed(1)} s of answers (ceiling ${rate}/s → at most ${Math.round(ceiling)}; a catch-up burst would add up to ${rate * 5})`,
    );
    expect(keysDone).toBeLessThanOrEqual(ceiling);
    const r = await run.done;
    expectExit(r, 0);
    expect(r.json).toMatchObject({ copied: N });
    await waitFor('the heartbeat to go', async () => (await client.exists(keys.run)) === 0, 10_000);
  });
});
