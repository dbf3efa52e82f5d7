/**
 * The output contract (README "Output"): results on stdout, so they pipe into
 * grep and less; progress, logs and errors on stderr; with --json, stdout holds
 * exactly one JSON object. And untrusted strings (key names from Redis) never
 * reach a terminal raw: a key name cannot forge an output line.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { type RedisClient } from '../../src/core/redis.js';
import { CLI, runCli, target } from '../helpers/cli.js';
import { cleanupClient, coreClient, topologyUrl } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { seedJobs } from '../helpers/lifecycle.js';

describe('CLI output contract', () => {
  let client: RedisClient;
  let prefix: string;
  let keys: Keyspace;
  let args: string[];

  beforeAll(async () => {
    client = await coreClient('standalone');
    prefix = uniquePrefix('cliout');
    keys = new Keyspace(prefix);
    const { url } = topologyUrl('standalone');
    args = target(url, prefix);
    await seedJobs(client, keys, 30, 3);
  });
  afterAll(async () => {
    await cleanupClient(client, prefix);
  });

  it('status, --help and --version write their result to stdout; a bare invocation is a usage error on stderr', async () => {
    const status = await runCli([...args, 'status']);
    expect(status.code).toBe(0);
    expect(status.stderr).toBe('');
    // `orch-migrate status | grep gate`
    expect(status.stdout.split('\n').filter((l) => /^gate\b/.test(l))).toHaveLength(5);

    const help = await runCli(['backfill', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: orch-migrate backfill/);
    expect(help.stdout).toMatch(/--batch-size <n>\s+SCAN COUNT: keys per batch \(default: 1000\)/);
    expect(help.stderr).toBe('');

    const cleanupHelp = await runCli(['cleanup', '--help']);
    // Durations are shown as an operator writes them, not as raw milliseconds.
    expect(cleanupHelp.stdout).toMatch(/\(default: 1h\)/);
    expect(cleanupHelp.stdout).not.toMatch(/3600000/);

    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);

    const bare = await runCli([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toMatch(/Usage: orch-migrate/);
  });

  it('a reader that closes the pipe early (`--help | head -1`) leaves the exit code at 0, every time', () => {
    // The race is between the reader closing and the final flush; twenty tries made the old
    // code exit 13 (an unsettled top-level await) at least once on this machine.
    const script = `for i in $(seq 1 20); do node ${JSON.stringify(CLI)} --help | head -1 >/dev/null; printf '%s ' "\${PIPESTATUS[0]}"; done`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split(' ')).toEqual(Array.from({ length: 20 }, () => '0'));
  });

  it('a mutating command names its target (host, prefix) on stderr before acting; a read-only one does not', async () => {
    const p2 = uniquePrefix('clitarget');
    const { url } = topologyUrl('standalone');
    const own = await coreClient('standalone');
    try {
      const status = await runCli([...target(url, p2), 'status']);
      expect(status.stderr).not.toMatch(/^target:/m);
      const r = await runCli([...target(url, p2), '--json', 'enable-dual-write', '--reason', 'target line', '--settle-ms', '100']);
      expect(r.code, r.stderr).toBe(0);
      const host = new URL(url).host;
      // The first line, before preflight or the transition say anything.
      expect(r.stderr.split('\n')[0]).toBe(`target: ${host}, prefix ${p2}`);
      expect(r.stdout).not.toMatch(/target:/);
    } finally {
      await cleanupClient(own, p2);
    }
  });

  it('--json: stdout is exactly one JSON object; human text never goes there', async () => {
    const r = await runCli([...args, '--json', 'status']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.json).toMatchObject({ phase: 'legacy', epoch: 0 });
    const bad = await runCli([...args, '--json', 'backfill', '--batch-size', 'lots']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({
      ok: false,
      exitCode: 2,
      error: { message: '--batch-size: expected an integer from 1 to 100000, got "lots"' },
    });
  });

  it('hostile key names are escaped in human output and exact in JSON', async () => {
    const forged = `${prefix}:jobs:x\nbackfill complete: 0 scanned, 0 copied, 0 skipped, 0 unmigratable OK\n\u001b[2J`;
    await client.hset(forged, 'job_id', 'x', 'workspace_id', 'ws0', 'rev', '1');
    expect((await runCli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'output test'])).code).toBe(0);

    const human = await runCli([...args, 'backfill']);
    expect(human.code).toBe(1);
    // The forged text is on the same line as its key, escaped: no line starts with it, no escape byte reaches the terminal.
    expect(human.stdout.split('\n').filter((l) => l.startsWith('backfill complete: 0 scanned'))).toHaveLength(0);
    expect(human.stdout).toContain('x\\x0abackfill complete: 0 scanned');
    expect(human.stdout + human.stderr).not.toContain('\u001b');

    const json = await runCli([...args, '--json', 'backfill']);
    const listed = json.json!.unmigratableRecords as Array<{ key: string; reason: string }>;
    expect(listed.map((u) => u.key)).toContain(forged);
  });
});
