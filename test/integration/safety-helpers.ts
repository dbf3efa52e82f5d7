/**
 * Shared steps of the issue 9 safety suites (test/integration/safety-*.test.ts):
 * walking the CLI through the phases as an operator would, and small waits on
 * conditions (never sleeps for correctness).
 */
import { expect } from 'vitest';
import type { Keyspace } from '../../src/core/keys.js';
import type { RedisClient } from '../../src/core/redis.js';
import { StateStore, type MigrationState } from '../../src/core/state.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { poll } from '../helpers/wait.js';

/** Runs the CLI and asserts its exit code, showing its output when it differs. */
export async function cli(args: string[], expected = 0): Promise<CliResult> {
  const r = await runCli(args);
  expect(r.code, `orch-migrate ${args.filter((a) => !a.startsWith('redis://')).join(' ')}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(expected);
  return r;
}

/** legacy → dual-write (settle 100 ms) → backfill → verify → read-new → verify, as the runbooks do. */
export async function cliToReadNew(args: string[]): Promise<void> {
  await cli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'safety test']);
  await cli([...args, 'backfill']);
  await cli([...args, 'verify', '--round-delay', '50ms']);
  await cli([...args, 'flip-read', '--reason', 'safety test']);
  await cli([...args, 'verify', '--round-delay', '50ms']);
}

/** {@link cliToReadNew}, then cleanup --execute (a short soak, with its reason) into new-only. */
export async function cliToNewOnly(args: string[]): Promise<void> {
  await cliToReadNew(args);
  await cli([...args, 'cleanup', '--execute', '--min-soak', '0s', '--reason', 'safety test: short soak']);
}

/** The decoded state record. */
export function readState(client: RedisClient, keys: Keyspace): Promise<MigrationState> {
  return new StateStore(client, keys).read();
}

/** Polls `check` every 20 ms until it returns true, or throws after `timeoutMs` naming `what`. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  await poll(what, check, { timeoutMs, everyMs: 20 });
}
