/**
 * Helpers of the fault and bad-input suites (issue 6): waiting for a run to be
 * mid-way, the ledger check (every record present and byte-identical where it
 * must be), DUMP fingerprints, and the one-line-error contract.
 *
 * `waitForCheckpoint` generalises the private `waitForProgress` of
 * test/integration/backfill-resume.test.ts to any checkpointed op (cleanup too).
 */
import type { ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import type { Keyspace } from '../../src/core/keys.js';
import { LeaseLock } from '../../src/core/lock.js';
import { Phase } from '../../src/core/phase.js';
import type { RedisClient } from '../../src/core/redis.js';
import { loadCheckpoint, sumCounter } from '../../src/ops/checkpoint.js';
import { readRecord } from '../../src/ops/record-compare.js';
import { seedLegacy } from '../integration/backfill-helpers.js';
import { runCli, type CliResult } from './cli.js';
import { movePhase } from './core-clients.js';

/** Throttle that keeps a 2,000-key run going for about 4 s, in batches of 50. */
export const SLOW = ['--rate', '500', '--batch-size', '50'];

/**
 * Polls `<p>:migration:jobs:checkpoint:<op>` until it shows at least `min` keys
 * scanned and, with `nodes`, a saved position with progress for that many
 * masters (each master saves its own, at most once a second).
 */
export async function waitForCheckpoint(client: RedisClient, keys: Keyspace, op: string, min: number, nodes = 1, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cp = await loadCheckpoint(client, keys, op);
    const scanned = sumCounter(cp, 'scanned');
    if (scanned >= min && cp.nodes.filter((n) => (n.counters.scanned ?? 0) > 0).length >= nodes) return scanned;
    if (Date.now() > deadline) throw new Error(`${op} made no progress (${scanned} scanned on ${cp.nodes.length} node(s) after ${timeoutMs}ms)`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until the lease lock is free (a killed holder's lease runs out by itself). */
export async function waitForLockFree(client: RedisClient, keys: Keyspace, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await LeaseLock.inspect(client, keys)) !== null) {
    if (Date.now() > deadline) throw new Error('the lock was never released');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls until the lease was renewed a moment ago (at least `minRemainingMs` left), so a kill leaves a known lease. */
export async function waitForFreshLease(client: RedisClient, keys: Keyspace, minRemainingMs: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pttl = await client.pttl(keys.lock);
    if (pttl >= minRemainingMs) return;
    if (Date.now() > deadline) throw new Error(`the lease was never renewed (pttl ${pttl})`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A record as canonical text: type, PEXPIRETIME and the fields sorted by name,
 * names and values as hex bytes. Independent of the hash's internal encoding and
 * field order (which DUMP is not), exact on every byte and on the expiry.
 * null when the key does not exist.
 */
export async function canonicalRecord(client: RedisClient, key: string): Promise<string | null> {
  const raw = await readRecord(client, key);
  if (raw.type === 'none') return null;
  if (raw.type !== 'hash') return `type=${raw.type}`;
  const pairs: string[] = [];
  for (let i = 0; i + 1 < raw.fields.length; i += 2) pairs.push(`${raw.fields[i]!.toString('hex')}=${raw.fields[i + 1]!.toString('hex')}`);
  pairs.sort();
  return `hash pexpireat=${raw.pexpireAt} n=${pairs.length}\n${pairs.join('\n')}`;
}

/** canonicalRecord of many keys (concurrent, in chunks). */
export async function canonicalRecords(client: RedisClient, keyList: string[], chunk = 500): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (let i = 0; i < keyList.length; i += chunk) {
    const part = keyList.slice(i, i + chunk);
    const rows = await Promise.all(part.map((k) => canonicalRecord(client, k)));
    part.forEach((k, j) => out.set(k, rows[j]!));
  }
  return out;
}

/** One seeded job of the ledger: its identity and its legacy record as seeded. */
export interface LedgerEntry {
  jobId: string;
  workspaceId: string;
  original: string;
}

/** Reads the seeded legacy records as they are now: the originals the ledger check compares against. */
export async function takeLedger(client: RedisClient, keys: Keyspace, jobs: Array<{ jobId: string; workspaceId: string }>): Promise<LedgerEntry[]> {
  const recs = await canonicalRecords(
    client,
    jobs.map((j) => keys.legacyJob(j.jobId)),
  );
  return jobs.map((j) => {
    const original = recs.get(keys.legacyJob(j.jobId));
    if (original === null || original === undefined) throw new Error(`takeLedger: ${j.jobId} has no legacy record`);
    return { ...j, original };
  });
}

/** What the ledger check requires of each layout. */
export interface LedgerExpectation {
  /** present: identical to the original; absent: gone; optional: gone or identical. */
  legacy: 'present' | 'absent' | 'optional';
  /** present: identical to the original; optional: absent or identical. */
  v2: 'present' | 'optional';
}

/**
 * The ledger check: every seeded job is somewhere, and wherever it is, it is
 * byte-identical to its original (fields and PEXPIRETIME). A job missing from
 * both layouts is a lost job. Returns a list of problems (empty = clean) so a
 * failure names the jobs.
 */
export async function ledgerProblems(client: RedisClient, keys: Keyspace, ledger: LedgerEntry[], want: LedgerExpectation): Promise<string[]> {
  const legacyKeys = ledger.map((e) => keys.legacyJob(e.jobId));
  const v2Keys = ledger.map((e) => keys.v2Job(e.workspaceId, e.jobId));
  const [legacy, v2] = await Promise.all([canonicalRecords(client, legacyKeys), canonicalRecords(client, v2Keys)]);
  const problems: string[] = [];
  ledger.forEach((e, i) => {
    const l = legacy.get(legacyKeys[i]!) ?? null;
    const n = v2.get(v2Keys[i]!) ?? null;
    if (l === null && n === null) problems.push(`${e.jobId}: LOST (in neither layout)`);
    if (l !== null && l !== e.original) problems.push(`${e.jobId}: legacy record changed`);
    if (n !== null && n !== e.original) problems.push(`${e.jobId}: v2 record differs from the original`);
    if (want.legacy === 'present' && l === null) problems.push(`${e.jobId}: legacy record missing`);
    if (want.legacy === 'absent' && l !== null) problems.push(`${e.jobId}: legacy record still present`);
    if (want.v2 === 'present' && n === null) problems.push(`${e.jobId}: v2 record missing`);
  });
  return problems;
}

/** Asserts the ledger check, listing at most 10 problems. */
export async function expectLedger(client: RedisClient, keys: Keyspace, ledger: LedgerEntry[], want: LedgerExpectation): Promise<void> {
  const problems = await ledgerProblems(client, keys, ledger, want);
  expect(problems.slice(0, 10), `${problems.length} ledger problem(s)`).toEqual([]);
}

/** DUMP (hex) + PEXPIRETIME of every key: "untouched" means byte for byte, expiry included. */
export async function fingerprint(client: RedisClient, keyList: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  await Promise.all(
    keyList.map(async (k) => {
      const [dump, at] = await Promise.all([client.dumpBuffer(k), client.pexpiretime(k)]);
      out.set(k, `${dump?.toString('hex') ?? 'nil'}@${at}`);
    }),
  );
  return out;
}

/**
 * The failure-output contract: exactly one `error:` line on stderr, no stack
 * trace, and never the given secrets in stdout or stderr. Returns the error line.
 */
export function expectOneErrorLine(r: CliResult, secrets: string[] = []): string {
  const lines = r.stderr.split('\n');
  const errors = lines.filter((l) => /^error:/.test(l));
  expect(errors, r.stderr).toHaveLength(1);
  expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at .+[:(]/m);
  expect(r.stderr).not.toMatch(/Error: .*\n\s+at /);
  for (const s of secrets) {
    expect(r.stdout).not.toContain(s);
    expect(r.stderr).not.toContain(s);
  }
  return errors[0]!;
}

/** Seeds `n` legacy jobs (every 10th with a TTL), moves to dual-write (settle 100 ms) and takes the ledger of originals. */
export async function seedDualWrite(client: RedisClient, keys: Keyspace, n: number): Promise<LedgerEntry[]> {
  const jobs = await seedLegacy(client, keys, n);
  await movePhase(client, keys, Phase.DualWrite, 100);
  return takeLedger(client, keys, jobs);
}

/**
 * Runs the CLI and injects `fault` once the op's checkpoint shows `min` keys
 * scanned (the run is provably mid-way). Spawned children are pushed to
 * `children` so an afterAll can kill leftovers.
 */
export async function runCliUntil(
  args: string[],
  progress: { client: RedisClient; keys: Keyspace; op: string; min: number; nodes?: number },
  fault: (child: ChildProcess) => Promise<void> | void,
  children: ChildProcess[] = [],
): Promise<CliResult> {
  let injected: Promise<void> | undefined;
  const result = await runCli(args, {
    onSpawn: (child) => {
      children.push(child);
      injected = waitForCheckpoint(progress.client, progress.keys, progress.op, progress.min, progress.nodes ?? 1).then(() => fault(child));
    },
  });
  await injected;
  return result;
}

/** A run that lost Redis: exit 5, one error line naming `address` (host:port), and the JSON error object. */
export function expectUnavailable(r: CliResult, address: string): void {
  expect(r.code, r.stderr).toBe(5);
  expect(expectOneErrorLine(r)).toContain(address);
  expect(r.json).toMatchObject({ ok: false, exitCode: 5, error: { code: 'ERR_REDIS_UNAVAILABLE' } });
}

/** `verify` exits 0 with no persistent mismatch. */
export async function expectVerifyClean(args: string[]): Promise<void> {
  const v = await runCli([...args, '--json', 'verify', '--round-delay', '50ms']);
  expect(v.code, v.stderr).toBe(0);
  expect(v.json).toMatchObject({ ok: true, mismatches: 0 });
}
