/**
 * Issue 6, bad-input suite (operator input): hostile workspace ids, nonsense
 * flags and URLs, a state record edited by hand into nonsense, and a history
 * stream deleted mid-migration. Every failing case exits with a code from the
 * contract (2 usage/config, 5 unreachable), prints exactly one `error:` line
 * and no stack trace, never prints a password, and changes nothing: the DUMP
 * of every key under the test's prefix is identical before and after.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import type { RedisClient } from '../../src/core/redis.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { cleanupClient, coreClient, topologyUrl } from '../helpers/core-clients.js';
import { expectOneErrorLine, expectVerifyClean, fingerprint } from '../helpers/fault-helpers.js';
import { uniquePrefix } from '../helpers/fixtures.js';
import { history, scanAll, seedJobs } from '../helpers/lifecycle.js';

const SECRET = 's3cr3t-Pa55word';

/** Every key under the prefix with its DUMP and PEXPIRETIME. */
async function everything(client: RedisClient, prefix: string): Promise<Map<string, string>> {
  return fingerprint(client, await scanAll(client, `${prefix}:*`));
}

/** Runs argument lists a few at a time (the machine has 2 cores; a CLI start is mostly CPU). */
async function runAll(argvs: string[][], width = 3): Promise<CliResult[]> {
  const out: CliResult[] = [];
  for (let i = 0; i < argvs.length; i += width) out.push(...(await Promise.all(argvs.slice(i, i + width).map((a) => runCli(a)))));
  return out;
}

describe('bad input: operator input', () => {
  let client: RedisClient;
  const keys = new Keyspace(uniquePrefix('badcli'));
  let args: string[];
  let url: string;

  beforeAll(async () => {
    client = await coreClient('standalone');
    url = topologyUrl('standalone').url;
    args = target(url, keys.prefix);
    await seedJobs(client, keys, 30);
    const r = await runCli([...args, 'enable-dual-write', '--settle-ms', '100', '--reason', 'bad-input test']);
    expect(r.code, r.stderr).toBe(0);
    expect((await runCli([...args, 'backfill'])).code).toBe(0);
  });
  afterAll(async () => {
    await cleanupClient(client, keys.prefix);
  });

  it('hostile workspace ids for verify --workspace: exit 2 with the rule in the message; nothing changed', async () => {
    const before = await everything(client, keys.prefix);
    const hostile = ['*', '?', '[a]', '..', 'ACME', 'a'.repeat(33), '', 'ws:1', 'wś\t'];
    const runs = await runAll(hostile.map((ws) => [...args, '--json', 'verify', '--workspace', ws]));
    runs.forEach((r, i) => {
      expect(r.code, `--workspace ${JSON.stringify(hostile[i])}: ${r.stderr}`).toBe(2);
      const line = expectOneErrorLine(r);
      expect(line).toMatch(/workspace id/);
      expect(line).toMatch(/a-z, 0-9, "_" or "-", at most 32/);
    });
    expect(await everything(client, keys.prefix)).toEqual(before);
    // The longest valid id still works (the rule is a full match, not a prefix match).
    const ok = await runCli([...args, '--json', 'verify', '--workspace', `ws-${'x'.repeat(29)}`, '--rounds', '1']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ ok: true, scope: 'partial' });
  });

  it('nonsense flags and values: exit 2 with one error line, and the password in the URL is never printed', async () => {
    const data = async (): Promise<Map<string, string>> => {
      const all = await everything(client, keys.prefix);
      // `flip-read --force` without --reason is refused after the lock is taken: lock_fence moves and the
      // refusal is audited. Phase and epoch must not.
      all.delete(keys.history);
      all.delete(keys.state);
      const s = await client.hmget(keys.state, 'phase', 'epoch', 'changed_at');
      all.set('phase/epoch/changed_at', s.join('/'));
      return all;
    };
    const before = await data();
    const withPw = `redis://:${SECRET}@127.0.0.1:${new URL(url).port}`;
    const t = ['--redis-url', withPw, '--prefix', keys.prefix];
    const cases: Array<{ argv: string[]; mentions: RegExp }> = [
      { argv: [...t, 'backfill', '--rate', '-1'], mentions: /--rate/ },
      { argv: [...t, 'backfill', '--shard', '5/2'], mentions: /--shard/ },
      { argv: [...t, 'verify', '--sample', '2'], mentions: /--sample/ },
      { argv: [...t, 'backfill', '--batch-size', '0'], mentions: /--batch-size/ },
      { argv: [...t, 'backfill', '--concurrency', '1e3'], mentions: /--concurrency/ },
      { argv: [...t, 'verify', '--round-delay', 'soon'], mentions: /--round-delay/ },
      { argv: [...t, 'cleanup', '--min-soak', '-5m'], mentions: /--min-soak/ },
      { argv: [...t, '--timeout', '0', 'status'], mentions: /--timeout/ },
      { argv: [...t, 'backfill', '--frobnicate'], mentions: /--frobnicate/ },
      // Prefixes that would be glob patterns or break the key layout.
      { argv: ['--redis-url', withPw, '--prefix', 'a*', 'status'], mentions: /prefix/ },
      { argv: ['--redis-url', withPw, '--prefix', 'ai:jobs', 'status'], mentions: /prefix/ },
      // --force without a reason, on a mutating command.
      { argv: [...t, 'flip-read', '--force'], mentions: /--force <gate>.*verify, soak, legacy-complete, writers/ },
      { argv: [...t, 'flip-read', '--force', 'verify'], mentions: /--reason/ },
      { argv: [...t, 'flip-read', '--force', 'verfiy', '--reason', 'typo'], mentions: /Unknown gate "verfiy"/ },
    ];
    const runs = await runAll(cases.map((c) => c.argv));
    runs.forEach((r, i) => {
      const what = cases[i]!.argv.slice(4).join(' ');
      expect(r.code, `${what}: ${r.stderr}`).toBe(2);
      expect(expectOneErrorLine(r, [SECRET]), what).toMatch(cases[i]!.mentions);
    });
    expect(await data()).toEqual(before);
  });

  it('bad Redis URLs exit 2; a TLS URL to a plain server is a bounded connection failure (exit 5); no password printed', async () => {
    const port = new URL(url).port;
    const bad = [
      `http://:${SECRET}@127.0.0.1:${port}`,
      `redis://:${SECRET}@127.0.0.1:${port}/not-a-db`,
      `redis://:${SECRET}@127.0.0.1:99999`,
      `redis://:${SECRET}@[::1`,
      `${SECRET}`,
      `redis://user:${SECRET}@/0`,
    ];
    const runs = await runAll(bad.map((u) => ['--redis-url', u, '--json', 'status']));
    runs.forEach((r, i) => {
      expect(r.code, `${bad[i]!.replace(SECRET, '***')}: ${r.stderr}`).toBe(2);
      expect(expectOneErrorLine(r, [SECRET])).toMatch(/Redis URL|scheme|database|host/);
      expect(r.json).toMatchObject({ ok: false, exitCode: 2 });
    });
    // The same through REDIS_URL.
    const env = await runCli(['--json', 'status'], { env: { REDIS_URL: `http://:${SECRET}@127.0.0.1:${port}` } });
    expect(env.code).toBe(2);
    expectOneErrorLine(env, [SECRET]);

    // rediss:// to a plain server: the TLS handshake never completes. A connection failure, bounded by the connect timeout.
    const tls = await runCli(['--redis-url', `rediss://user:${SECRET}@127.0.0.1:${port}`, '--json', 'status'], { timeoutMs: 60_000 });
    expect(tls.code, tls.stderr).toBe(5);
    expect(expectOneErrorLine(tls, [SECRET])).toContain(`127.0.0.1:${port}`);
    expect(tls.json).toMatchObject({ ok: false, exitCode: 5, error: { code: 'ERR_REDIS_UNAVAILABLE' } });
    expect(tls.durationMs).toBeLessThan(20_000);
    // Nothing but the error and its fix on stderr (no runtime warnings about the TLS setup).
    expect(tls.stderr.trim().split('\n'), tls.stderr).toHaveLength(2);
  });

  it('a state record edited by hand into an unknown phase, a non-numeric epoch or lock_fence: every subcommand exits 2 naming the fix; nothing changed', async () => {
    // Every subcommand (a dry run or preview where one exists, else the real thing).
    const every = [
      ['status'],
      ['enable-dual-write', '--reason', 'x'],
      ['backfill'],
      ['verify', '--rounds', '1'],
      ['flip-read', '--force', 'verify', '--reason', 'x'],
      ['cleanup', '--execute', '--force', 'soak,verify', '--reason', 'x'],
      ['rollback'],
    ];
    const some = [['status'], ['backfill'], ['rollback', '--execute', '--reason', 'x']];
    const original = await client.hgetall(keys.state);
    try {
      const edits: Array<[Record<string, string>, string[][]]> = [
        [{ phase: 'dual_write' }, every],
        [{ epoch: 'seven' }, every],
        [{ phase: '' }, some.slice(0, 1)],
        [{ epoch: '-1' }, some.slice(0, 1)],
        [{ lock_fence: 'abc' }, some],
      ];
      for (const [edit, subcommands] of edits) {
        await client.hset(keys.state, edit);
        const before = await everything(client, keys.prefix);
        const stateBefore = await client.hgetall(keys.state);
        const runs = await runAll(subcommands.map((s) => [...args, '--json', ...s]));
        runs.forEach((r, i) => {
          const what = `${JSON.stringify(edit)} ${subcommands[i]!.join(' ')}`;
          expect(r.code, `${what}: ${r.stderr}`).toBe(2);
          expect(expectOneErrorLine(r), what).toMatch(/state record .* is corrupt/i);
          expect(r.stderr, what).toContain('runbooks/incident-state-record.md');
          expect(r.json, what).toMatchObject({ ok: false, exitCode: 2, error: { code: 'ERR_STATE_CORRUPT' } });
        });
        // Nothing changed: not the record an operator is looking at, not the data, and no lock left behind.
        expect(await client.hgetall(keys.state)).toEqual(stateBefore);
        const after = await everything(client, keys.prefix);
        after.delete(keys.history); // refusals are part of the audit trail
        before.delete(keys.history);
        expect(after).toEqual(before);
        expect(await client.exists(keys.lock)).toBe(0);
        await client.del(keys.state);
        await client.hset(keys.state, original);
      }
    } finally {
      await client.del(keys.state);
      await client.hset(keys.state, original);
    }
    expect((await runCli([...args, 'status'])).code).toBe(0);
  });

  it('a history stream deleted mid-migration: status works, and the next transition recreates it', async () => {
    expect(await client.exists(keys.history)).toBe(1);
    await client.del(keys.history);
    const status = await runCli([...args, '--json', 'status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.json).toMatchObject({ phase: 'dual-write', history: [] });

    await expectVerifyClean(args);
    const flip = await runCli([...args, '--json', 'flip-read', '--reason', 'after the history was lost']);
    expect(flip.code, flip.stderr).toBe(0);
    expect(flip.json).toMatchObject({ from: 'dual-write', to: 'read-new' });
    const entries = await history(client, keys, 10);
    expect(entries.some((e) => e.type === 'transition' && e.data.from === 'dual-write' && e.data.to === 'read-new')).toBe(true);
    const again = await runCli([...args, '--json', 'status']);
    expect(again.code).toBe(0);
    expect((again.json!.history as unknown[]).length).toBeGreaterThan(0);
  });
});
