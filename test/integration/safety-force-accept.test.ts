/**
 * Issue 9, item 8: gates are forced one by one, known junk is accepted rather
 * than forced past, and the findings of resumed runs agree with their counts.
 *
 *  - `--force <gate>` overrides that gate only; a bare `--force` or an unknown
 *    name is a usage error listing the gates; a `--min-soak` shorter than the
 *    default needs `--reason` and is recorded as an `override`.
 *  - `orch-migrate accept` takes only currently unmigratable legacy keys; verify,
 *    backfill and cleanup then report them as `accepted` and stay ok, while a
 *    new bad key still fails.
 *  - An interrupted cleanup that keeps keys, resumed: its `--report` lists
 *    exactly `kept` keys, the first run's included. An interrupted backfill,
 *    resumed: its unmigratable listing agrees with its count.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { FindingsStore } from '../../src/ops/findings.js';
import { runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, TOPOLOGIES, topologyUrl, type Topology } from '../helpers/core-clients.js';
import { waitForCheckpoint } from '../helpers/fault-helpers.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { history } from '../helpers/lifecycle.js';
import { scanKeys, seedLegacy } from './backfill-helpers.js';
import { cli, cliToReadNew, readState } from './safety-helpers.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'orch-safety-force-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Report lines as `{key, reason}`. */
function reportLines(file: string): Array<{ key: string; reason: string }> {
  const text = readFileSync(file, 'utf8').trim();
  return text === '' ? [] : text.split('\n').map((l) => JSON.parse(l) as { key: string; reason: string });
}

describe.each(TOPOLOGIES)('per-gate --force on %s', (topology: Topology) => {
  it('--force soak does not force verify (nor the reverse); bare --force and unknown gates are usage errors; --min-soak shorter than 1h needs --reason and is recorded', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`force${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      const jobs = await seedLegacy(client, keys, 50);
      await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'force test']);
      await cli([...args, 'backfill']);
      // Real mismatches: v2 copies changed behind the protocol's back.
      for (const j of jobs.slice(0, 3)) await client.hset(keys.v2Job(j.workspaceId, j.jobId), 'status', 'tampered');
      await cli([...args, 'verify', '--round-delay', '50ms'], 1);

      // Forcing an unrelated gate never opens the verify gate.
      const soakOnly = await cli([...args, 'flip-read', '--force', 'soak', '--reason', 'force test'], 3);
      expect(soakOnly.stderr).toMatch(/3 persistent mismatch/);
      expect(soakOnly.stderr).toMatch(/--force verify/);
      await cli([...args, 'flip-read', '--force', 'soak,writers,legacy-complete', '--reason', 'force test'], 3);
      expect(await readState(client, keys)).toMatchObject({ phase: 'dual-write', epoch: 1 });

      // Usage errors, before any lock or change.
      const bare = await cli([...args, 'flip-read', '--force', '--reason', 'force test'], 2);
      expect(bare.stderr).toMatch(/verify, soak, legacy-complete, writers/);
      const unknown = await cli([...args, 'flip-read', '--force', 'verify,everything', '--reason', 'force test'], 2);
      expect(unknown.stderr).toMatch(/Unknown gate "everything"/);
      await cli([...args, 'flip-read', '--force', 'verify'], 2); // no --reason

      // Repaired and verified, the flip goes through; in read-new the soak gate is closed (1h by default).
      await cli([...args, 'verify', '--repair', '--round-delay', '50ms']);
      await cli([...args, 'flip-read', '--reason', 'force test']);
      await cli([...args, 'verify', '--round-delay', '50ms']);
      const verifyOnly = await cli([...args, 'cleanup', '--execute', '--force', 'verify', '--reason', 'force test'], 3);
      expect(verifyOnly.stderr).toMatch(/soak needs/);
      // A shorter soak is an override: without --reason it is a usage error ...
      const noReason = await cli([...args, 'cleanup', '--execute', '--min-soak', '0s'], 2);
      expect(noReason.stderr).toMatch(/--min-soak.*--reason/);
      expect(await readState(client, keys)).toMatchObject({ phase: 'read-new', epoch: 2 });
      // ... with one it goes through, and the history says so.
      await cli([...args, 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'CHG-9 canary soaked elsewhere']);
      expect(await readState(client, keys)).toMatchObject({ phase: 'new-only' });
      const h = await history(client, keys, 50);
      const override = h.find((e) => e.type === 'override');
      expect(override?.data).toMatchObject({ command: 'cleanup', minSoakMs: 0, reason: 'CHG-9 canary soaked elsewhere' });
      expect(h.some((e) => e.type === 'force')).toBe(false);
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});

describe.each(TOPOLOGIES)('accept on %s', (topology: Topology) => {
  it('only unmigratable keys can be accepted; then verify, backfill and cleanup report them as accepted and stay ok; a new bad key still fails; --revoke undoes it', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`accept${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    try {
      const jobs = await seedLegacy(client, keys, 40);
      const junk = [keys.legacyJob('junk-1'), keys.legacyJob('junk-2'), keys.legacyJob('junk-3')];
      await client.hset(junk[0]!, { job_id: 'junk-1', workspace_id: 'Not A Workspace', rev: '1' });
      await client.hset(junk[1]!, { job_id: 'junk-2', status: 'queued', rev: '1' });
      await client.set(junk[2]!, 'a string under the legacy pattern');
      await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'accept test']);
      const bf = await cli([...args, '--json', 'backfill'], 1);
      expect(bf.json).toMatchObject({ unmigratable: 3 });
      const v0 = await cli([...args, '--json', 'verify', '--round-delay', '50ms'], 1);
      expect(v0.json).toMatchObject({ ok: false, mismatches: 3 });

      // A key that migrates fine (or does not exist) is refused, and nothing is recorded.
      const refused = await cli([...args, 'accept', junk[0]!, keys.legacyJob(jobs[0]!.jobId), '--reason', 'accept test'], 2);
      expect(refused.stderr).toMatch(/migrates fine/);
      await cli([...args, 'accept', keys.legacyJob('never-existed'), '--reason', 'accept test'], 2);
      await cli([...args, 'accept', junk[0]!], 2); // no --reason
      expect(await client.exists(keys.accepted)).toBe(0);

      const file = path.join(tmp, `junk-${topology}.txt`);
      writeFileSync(file, `# reviewed by the data owner\n${junk[1]}\n${junk[2]}\n\n`);
      await cli([...args, 'accept', junk[0]!, '--from-file', file, '--reason', 'INC-88 test data from 2023']);
      const list = await cli([...args, '--json', 'accept', '--list']);
      expect((list.json as { accepted: Array<{ key: string; reason: string }> }).accepted.map((a) => [a.key, a.reason])).toEqual(
        [...junk].sort().map((k) => [k, 'INC-88 test data from 2023']),
      );

      const v1 = await cli([...args, '--json', 'verify', '--round-delay', '50ms']);
      expect(v1.json).toMatchObject({ ok: true, mismatches: 0, accepted: 3 });
      const bf2 = await cli([...args, '--json', 'backfill', '--restart']);
      expect(bf2.json).toMatchObject({ unmigratable: 0, accepted: 3 });
      // With a clean verify after that backfill, the flip needs no --force at all.
      await cli([...args, 'verify', '--round-delay', '50ms']);
      await cli([...args, 'flip-read', '--reason', 'accept test']);

      // A new bad key still fails verify, and closes the gate again.
      await client.hset(keys.legacyJob('junk-4'), { job_id: 'junk-4', workspace_id: 'ws-1', rev: 'seven' });
      const v2 = await cli([...args, '--json', 'verify', '--round-delay', '50ms'], 1);
      expect(v2.json).toMatchObject({ ok: false, mismatches: 1, accepted: 3 });
      expect(JSON.stringify(v2.json!.listed)).toContain('junk-4');
      await cli([...args, 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'accept test'], 3);

      // Accept it too: cleanup keeps every accepted key, counts it apart, and is ok.
      await cli([...args, 'accept', keys.legacyJob('junk-4'), '--reason', 'INC-89']);
      await cli([...args, 'verify', '--round-delay', '50ms']);
      const clean = await cli([...args, '--json', 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'accept test']);
      expect(clean.json).toMatchObject({ ok: true, kept: 4, keptByReason: { accepted: 4 }, deleted: 40 });
      expect((await scanKeys(client, keys.legacyPattern)).sort()).toEqual([...junk, keys.legacyJob('junk-4')].sort());

      // Revoked, the key is a problem again.
      await cli([...args, 'accept', '--revoke', junk[0]!, '--reason', 'INC-88 reopened']);
      const after = await cli([...args, '--json', 'cleanup', '--execute'], 1);
      expect(after.json).toMatchObject({ kept: 4, keptByReason: { accepted: 3, 'invalid-workspace': 1 } });
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});

describe.each(TOPOLOGIES)('findings survive resumes on %s', (topology: Topology) => {
  const masters = topology === 'cluster' ? 3 : 1;

  it('cleanup keeps keys, interrupted (SIGINT) and resumed: the --report file lists exactly `kept` keys, those of the first run included', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`cleanrep${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    const PLANTED = 20;
    try {
      await seedLegacy(client, keys, 1500);
      await cliToReadNew(args);
      // Legacy records v2 never got, spread over the keyspace: cleanup must keep them.
      const planted = Array.from({ length: PLANTED }, (_, i) => keys.legacyJob(`lonely-${i}`));
      for (const [i, k] of planted.entries()) await client.hset(k, { job_id: `lonely-${i}`, workspace_id: 'ws-1', status: 'queued', rev: '1' });

      const r1 = path.join(tmp, `kept-1-${topology}.ndjson`);
      const first = await runCli(
        [...args, '--json', 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'report test', '--report', r1, '--rate', '400', '--batch-size', '40'],
        {
          onSpawn: (c) => {
            children.push(c);
            void waitForCheckpoint(client, keys, 'cleanup', 900, masters).then(() => c.kill('SIGINT'));
          },
        },
      );
      expect(first.code, first.stderr).toBe(130);
      // The interrupted run wrote what it had kept so far.
      const firstKeys = reportLines(r1).map((l) => l.key);
      expect(firstKeys.length).toBeGreaterThan(0);
      expect(firstKeys.length).toBeLessThan(PLANTED + 1);
      for (const k of firstKeys) expect(planted).toContain(k);

      const r2 = path.join(tmp, `kept-2-${topology}.ndjson`);
      const second = await cli([...args, '--json', 'cleanup', '--execute', '--report', r2], 1);
      expect(second.json).toMatchObject({ resumed: true, complete: true, kept: PLANTED, keptByReason: { 'v2-missing': PLANTED } });
      const lines = reportLines(r2);
      expect(lines).toHaveLength(PLANTED);
      expect(lines.map((l) => l.key).sort()).toEqual([...planted].sort());
      for (const k of firstKeys) expect(lines.map((l) => l.key)).toContain(k);
      expect(new Set(lines.map((l) => l.reason))).toEqual(new Set(['v2-missing']));
      expect((await readState(client, keys)).lastCleanup).toMatchObject({ kept: PLANTED, complete: true });
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });

  it('backfill finds unmigratable records, interrupted (SIGINT) and resumed: the listing agrees with the count and includes what the first run found', async () => {
    const client = await coreClient(topology);
    const keys = new Keyspace(uniquePrefix(`bfrep${topology}`));
    const { url, cluster } = topologyUrl(topology);
    const args = target(url, keys.prefix, cluster);
    const PLANTED = 20;
    try {
      await seedLegacy(client, keys, 1500);
      const planted = Array.from({ length: PLANTED }, (_, i) => keys.legacyJob(`badws-${i}`));
      for (const [i, k] of planted.entries()) await client.hset(k, { job_id: `badws-${i}`, workspace_id: `Bad WS ${i}`, rev: '1' });
      await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'report test']);

      const first = await runCli([...args, '--json', 'backfill', '--rate', '400', '--batch-size', '40'], {
        onSpawn: (c) => {
          children.push(c);
          void waitForCheckpoint(client, keys, 'backfill', 900, masters).then(() => c.kill('SIGINT'));
        },
      });
      expect(first.code, first.stderr).toBe(130);
      const foundFirst = (await new FindingsStore(client, keys, 'backfill').list(1000)).map((f) => f.key);
      expect(foundFirst.length).toBeGreaterThan(0);
      expect(foundFirst.length).toBeLessThan(PLANTED + 1);

      const second = await cli([...args, '--json', 'backfill'], 1);
      const j = second.json as { resumed: boolean; complete: boolean; unmigratable: number; unmigratableRecords: Array<{ key: string; reason: string }> };
      expect(j).toMatchObject({ resumed: true, complete: true, unmigratable: PLANTED });
      expect(j.unmigratableRecords).toHaveLength(PLANTED);
      expect(j.unmigratableRecords.map((r) => r.key).sort()).toEqual([...planted].sort());
      for (const k of foundFirst) expect(j.unmigratableRecords.map((r) => r.key)).toContain(k);
      expect(new Set(j.unmigratableRecords.map((r) => r.reason))).toEqual(new Set(['invalid-workspace']));
    } finally {
      await cleanupClient(client, keys.prefix);
    }
  });
});
