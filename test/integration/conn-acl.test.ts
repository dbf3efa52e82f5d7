/**
 * Issue 15, least privilege: the users `orch-migrate acl` prints are created
 * on real servers (piped into redis-cli, as docs/connectivity.md says), and
 * everything runs as them:
 *  - the whole journey through the CLI as the operator (every subcommand:
 *    status, accept, enable-dual-write, backfill, verify with a report and a
 *    repair, flip-read, cleanup dry run and --execute, rollback preview and
 *    --execute with its reverse backfill), queue-core writers and a worker as
 *    the writer user, and the API as the API user in every phase;
 *  - the server's ACL LOG stays empty throughout (no refusal, not even one a
 *    client library swallows);
 *  - none of them can touch a key outside its prefix's families, run
 *    FLUSHALL, CONFIG or KEYS; the API and writer users cannot change the
 *    state record, not even from inside a script;
 *  - a user missing one rule gets exit 2 naming the `ACL SETUSER` rule to add.
 * On the shared Redis Cluster (the users created on every node) the journey
 * runs as the same users printed with --cluster.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadApiConfig } from '../../src/api/config.js';
import { main as apiMain } from '../../src/api/main.js';
import { createApiService, type ApiService } from '../../src/api/server.js';
import { ExitCode } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, ConnectionProfile, type RedisClient } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { closeClient, connectCluster, connectStandalone, deleteKeysWithPrefix, sharedClusterNodes, uniquePrefix, type AnyRedis } from '../helpers/fixtures.js';
import { startRedisServer, type HostPort, type RedisServerHandle } from '../helpers/redis-server.js';
import { bearer, captureStream, TOKENS, tokenEntries } from '../unit/api-helpers.js';
import { LiveWriters, lostWrites } from './conn-helpers.js';

type Role = 'operator' | 'api' | 'writer';
const ROLES: Role[] = ['operator', 'api', 'writer'];

interface Users {
  names: Record<Role, string>;
  passwords: Record<Role, string>;
  /** The printed lines, by role. */
  lines: Record<Role, string>;
  url(role: Role, hp: HostPort): string;
}

function randomUsers(): Users {
  const tag = randomBytes(4).toString('hex');
  const names = { operator: `op-${tag}`, api: `api-${tag}`, writer: `wr-${tag}` };
  const passwords = { operator: randomBytes(12).toString('hex'), api: randomBytes(12).toString('hex'), writer: randomBytes(12).toString('hex') };
  return {
    names,
    passwords,
    lines: { operator: '', api: '', writer: '' },
    url: (role, hp) => `redis://${names[role]}:${passwords[role]}@${hp.host}:${hp.port}`,
  };
}

/** `orch-migrate acl` for the users, piped into redis-cli on every node; returns the CLI run. */
async function createUsers(users: Users, prefix: string, nodes: HostPort[], extra: string[] = []): Promise<CliResult> {
  const r = await runCli(
    ['--prefix', prefix, ...extra, 'acl', '--operator-user', users.names.operator, '--api-user', users.names.api, '--writer-user', users.names.writer],
    {
      env: {
        ORCH_ACL_OPERATOR_PASSWORD: users.passwords.operator,
        ORCH_ACL_API_PASSWORD: users.passwords.api,
        ORCH_ACL_WRITER_PASSWORD: users.passwords.writer,
      },
    },
  );
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(3);
  ROLES.forEach((role, i) => (users.lines[role] = lines[i]!));
  for (const hp of nodes) {
    const cli = spawnSync(process.env.REDIS_CLI_BIN ?? 'redis-cli', ['-h', hp.host, '-p', String(hp.port)], {
      input: r.stdout,
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(cli.stdout.trim().split('\n'), cli.stderr).toEqual(['OK', 'OK', 'OK']);
  }
  return r;
}

/** Every ACL LOG entry of the nodes (a refusal anywhere shows here, even one a client swallowed). */
async function aclLog(nodes: HostPort[]): Promise<string[]> {
  const out: string[] = [];
  for (const hp of nodes) {
    const c = connectStandalone(`redis://${hp.host}:${hp.port}`);
    try {
      const entries = (await c.call('ACL', 'LOG', '128')) as unknown[][];
      for (const e of entries) {
        const flat = e.map(String);
        const get = (k: string): string => flat[flat.indexOf(k) + 1] ?? '?';
        out.push(`${hp.port}: ${get('username')} ${get('reason')} ${get('object')} (${get('context')})`);
      }
    } finally {
      await closeClient(c);
    }
  }
  return out;
}

async function resetAclLog(nodes: HostPort[]): Promise<void> {
  for (const hp of nodes) {
    const c = connectStandalone(`redis://${hp.host}:${hp.port}`);
    await c.call('ACL', 'LOG', 'RESET');
    await closeClient(c);
  }
}

async function dropUsers(users: Users, nodes: HostPort[], extra: string[] = []): Promise<void> {
  for (const hp of nodes) {
    const c = connectStandalone(`redis://${hp.host}:${hp.port}`);
    await c.call('ACL', 'DELUSER', ...Object.values(users.names), ...extra).catch(() => undefined);
    await closeClient(c);
  }
}

/** A user with one of the printed lines, renamed and with `edit` applied to its rules. */
async function variantUser(line: string, name: string, password: string, nodes: HostPort[], edit: (rules: string[]) => string[]): Promise<void> {
  // ACL SETUSER <user> <rules…>; the quoted selector is one rule.
  const rules = line
    .replace(/^ACL SETUSER \S+ /, '')
    .match(/"[^"]*"|\S+/g)!
    .map((r) => r.replace(/^"|"$/g, ''));
  const edited = edit(rules).map((r) => (r.startsWith('#') ? `>${password}` : r));
  for (const hp of nodes) {
    const c = connectStandalone(`redis://${hp.host}:${hp.port}`);
    await c.call('ACL', 'SETUSER', name, ...edited);
    await closeClient(c);
  }
}

/** Asserts that a raw client as `url` is refused what no role may do. */
async function expectConfined(url: string, prefix: string, role: Role, cluster: boolean): Promise<void> {
  const c: AnyRedis = cluster ? new Cluster([hostPortOf(url)], { redisOptions: credentialsOf(url) }) : new Redis(url, { maxRetriesPerRequest: 0 });
  c.on('error', () => undefined);
  const other = `${prefix}x`;
  try {
    const refused: Array<[string, ...string[]]> = [
      ['get', 'unrelated:key'],
      ['set', 'unrelated:key', 'x'],
      ['hgetall', `${other}:jobs:job1`],
      ['hset', `${other}:job:ws:job1`, 'a', 'b'],
      ['del', `${other}:migration:jobs`],
      // Inside the prefix, but not a job store family.
      ['set', `${prefix}:sessions:s1`, 'x'],
      ['flushall'],
      ['flushdb'],
      // The operator may read configuration (preflight), nobody may change it.
      ['config', 'set', 'maxmemory', '1'],
      ['keys', '*'],
      ['acl', 'list'],
      ['shutdown', 'nosave'],
      ['subscribe', `${other}:migration:jobs:events`],
    ];
    if (role !== 'operator') {
      refused.push(['config', 'get', 'maxmemory'], ['memory', 'usage', `${prefix}:jobs:job1`]);
      refused.push(
        ['hset', `${prefix}:migration:jobs`, 'phase', 'new-only'],
        ['del', `${prefix}:migration:jobs:lock`],
        ['publish', `${prefix}:migration:jobs:events`, 'x'],
      );
    }
    for (const [cmd, ...args] of refused) {
      await expect(c.call(cmd, ...args), `${role}: ${cmd} ${args.join(' ')}`).rejects.toThrow(/NOPERM/);
    }
    if (role !== 'operator') {
      // The selector lets EVAL declare the state record, but a write to it inside the script is still refused.
      await expect(c.call('EVAL', "return redis.call('HSET', KEYS[1], 'phase', 'new-only')", '1', `${prefix}:migration:jobs`)).rejects.toThrow(
        /can't access at least one of the keys/,
      );
    }
  } finally {
    c.disconnect();
  }
}

function hostPortOf(url: string): HostPort {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

function credentialsOf(url: string): { username: string; password: string } {
  const u = new URL(url);
  return { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
}

describe('least-privilege ACL users (standalone)', () => {
  let server: RedisServerHandle;
  let node: HostPort;
  let admin: Redis;
  const users = randomUsers();
  const prefix = uniquePrefix('acl');
  const keys = new Keyspace(prefix);
  let reportDir: string;
  /** The `orch-migrate acl` run that created the users. */
  let printed: CliResult;

  beforeAll(async () => {
    server = await startRedisServer();
    node = { host: server.host, port: server.port };
    admin = connectStandalone(server.url);
    reportDir = await mkdtemp(path.join(os.tmpdir(), 'orch-acl-'));
    printed = await createUsers(users, prefix, [node]);
  });
  afterAll(async () => {
    await closeClient(admin);
    await server?.stop();
    if (reportDir) await rm(reportDir, { recursive: true, force: true });
  });

  it('prints the lines with hashed passwords only, and redis-cli applies them', async () => {
    const r = printed;
    for (const pw of Object.values(users.passwords)) expect(r.stdout + r.stderr).not.toContain(pw);
    // Applied: the server holds exactly the printed users, enabled, with one password each.
    for (const role of ROLES) {
      const info = (await admin.call('ACL', 'GETUSER', users.names[role])) as unknown[];
      expect(String(info[info.indexOf('flags') + 1])).toContain('on');
      expect((info[info.indexOf('passwords') + 1] as unknown[]).length).toBe(1);
    }
    const operator = users.lines.operator;
    expect(operator).toMatch(new RegExp(`^ACL SETUSER ${users.names.operator} reset on #[0-9a-f]{64} resetchannels `));
    for (const fam of ['jobs:*', 'job:*', 'job-index:*', 'queue', 'migration:jobs', 'migration:jobs:*']) expect(operator).toContain(` ~${prefix}:${fam} `);
    expect(operator).toContain(` &${prefix}:migration:jobs:events `);
    // Nothing broad: no key or channel wildcard beyond the prefix, no category.
    expect(operator).not.toMatch(/ ~\*| &\*| allkeys| allchannels| allcommands| \+@/);
    for (const role of ['api', 'writer'] as const) {
      // Read-only on the state record; only the selector (EVAL/EVALSHA alone) names it read-write.
      const [root, selector] = users.lines[role].split(' "(');
      expect(root).toContain(` %R~${prefix}:migration:jobs `);
      expect(root).not.toContain(` ~${prefix}:migration:jobs `);
      expect(selector).toMatch(/ \+evalsha \+eval\)"$/);
      expect(selector).not.toMatch(/\+(hset|del|set|xadd)\b/);
    }
    expect(users.lines.writer).not.toContain('+scan');
    const json = await runCli(['--prefix', prefix, '--json', 'acl']);
    expect(json.code).toBe(0);
    const parsed = json.json as { users: Array<{ role: string; rules: Array<{ rule: string; why: string }> }> };
    expect(parsed.users.map((u) => u.role)).toEqual(ROLES);
    for (const u of parsed.users) for (const rule of u.rules) expect(rule.why.length, rule.rule).toBeGreaterThan(5);
  });

  it('the whole journey runs as those users: CLI as the operator, writers and a worker as the writer, the API as the API user', async () => {
    await resetAclLog([node]);
    // The old service's data: legacy records, and one known-bad record that gets accepted.
    const badKey = `${prefix}:jobs:bad-record-1`;
    await admin.hset(badKey, { job_id: 'bad-record-1', workspace_id: 'Not A Workspace', status: 'queued' });

    const writerClient = await connectRedis({ url: users.url('writer', node), profile: ConnectionProfile.Service, connectionName: 'acl-writer' });
    const queues = await Promise.all([0, 1].map(() => RedisJobQueue.create(writerClient, { keys })));
    // Registered like any queue-core process; it idles on an empty queue most of the time, and the API
    // idles between rounds: transitions still get their acknowledgements (they read the phase on a timer).
    const worker = await RedisJobQueue.create(writerClient, { keys });
    // Seeded in legacy through the queue core, as the writer user.
    for (let i = 0; i < 200; i++) await queues[i % 2]!.enqueue({ workspaceId: `ws${i % 4}`, action: 'seed', params: { i } });
    const writers = new LiveWriters(queues, { workspaces: 4, pauseMs: 15, dequeue: worker });
    writers.start();

    const config = loadApiConfig({
      REDIS_URL: users.url('api', node),
      ORCH_PREFIX: prefix,
      ORCH_API_TOKENS: JSON.stringify(tokenEntries('ws0', 'ws1')),
      LOG_LEVEL: 'silent',
    });
    const api: ApiService = await createApiService(config, { logStream: captureStream() });
    const apiRound = async (expectPath: 'legacy' | 'v2'): Promise<void> => {
      const list = await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=20', headers: bearer(TOKENS.a) });
      expect(list.statusCode, list.body).toBe(200);
      expect(list.headers['x-read-path']).toBe(expectPath);
      const created = await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.a), payload: { action: 'acl', params: { token: 'x' } } });
      expect(created.statusCode, created.body).toBe(201);
      const id = created.json<{ job_id: string }>().job_id;
      const patched = await api.app.inject({
        method: 'PATCH',
        url: `/ai/jobs/${id}`,
        headers: bearer(TOKENS.a),
        payload: { status: 'succeeded', result: { ok: true } },
      });
      expect(patched.statusCode, patched.body).toBe(200);
      const one = await api.app.inject({ method: 'GET', url: `/ai/jobs/${id}`, headers: bearer(TOKENS.a) });
      expect(one.statusCode, one.body).toBe(200);
      const health = await api.app.inject({ method: 'GET', url: '/healthz' });
      expect(health.statusCode, health.body).toBe(200);
      const metrics = await api.app.inject({ method: 'GET', url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
    };

    const op = (args: string[]): Promise<CliResult> => runCli(['--redis-url', users.url('operator', node), '--prefix', prefix, '--json', ...args]);
    const step = async (args: string[], expected = 0): Promise<CliResult> => {
      const r = await op(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(expected);
      return r;
    };
    const report = path.join(reportDir, 'verify.ndjson');
    try {
      await apiRound('legacy');
      await step(['status']);
      await step(['status', '--exact']);
      await step(['accept', badKey, '--reason', 'acl test: known junk']);
      await step(['accept', '--list']);
      await step(['enable-dual-write', '--reason', 'acl test', '--settle-ms', '200']);
      await apiRound('legacy');
      const bf = await step(['backfill']);
      expect(bf.json).toMatchObject({ unmigratable: 0 });
      expect(Number(bf.json!.copied)).toBeGreaterThanOrEqual(200);
      await step(['backfill', '--dry-run']);
      await step(['verify', '--rounds', '2', '--round-delay', '200ms', '--report', report]);
      await step(['flip-read', '--reason', 'acl test']);
      await apiRound('v2');
      // A mirror edited behind the protocol's back: verify finds it (exit 1), --repair fixes it with compare-and-swap.
      const victim = [...writers.ledger.keys()][0]!;
      await admin.hset(keys.legacyJob(victim), 'status', 'edited-by-hand');
      const dirty = await step(['verify', '--rounds', '2', '--round-delay', '200ms', '--report', report], 1);
      expect(Number(dirty.json!.mismatches)).toBeGreaterThanOrEqual(1);
      expect((await readFile(report, 'utf8')).length).toBeGreaterThan(0);
      const repaired = await step(['verify', '--rounds', '2', '--round-delay', '200ms', '--repair']);
      expect(Number(repaired.json!.repaired)).toBeGreaterThanOrEqual(1);
      await step(['verify', '--rounds', '2', '--round-delay', '200ms']);
      await step(['cleanup', '--min-soak', '0s']);
      const cleaned = await step(['cleanup', '--execute', '--min-soak', '0s', '--reason', 'acl test: no soak']);
      expect(Number(cleaned.json!.deleted)).toBeGreaterThan(0);
      await apiRound('v2');
      await step(['rollback']);
      await step(['rollback', '--execute', '--reason', 'acl test: drill']);
      await step(['verify', '--rounds', '2', '--round-delay', '200ms']);
      await apiRound('v2');
      const status = await step(['status']);
      expect(status.json).toMatchObject({ phase: 'read-new' });
    } finally {
      await writers.stop();
      for (const q of [...queues, worker]) await q.close();
      await api.close();
    }
    expect(writers.writes).toBeGreaterThan(20);
    expect(writers.errors.map(String)).toEqual([]);
    // Every acknowledged write is in the store at its acknowledged rev (read as admin).
    expect(await lostWrites(admin, keys, writers.ledger)).toEqual([]);
    await closeRedis(writerClient);
    // Not one refusal anywhere, not even one a client swallowed.
    expect(await aclLog([node])).toEqual([]);
  });

  it('none of the users can touch a key outside its families, nor run FLUSHALL, CONFIG or KEYS', async () => {
    for (const role of ROLES) await expectConfined(users.url(role, node), prefix, role, false);
  });

  it('a missing permission is exit 2 naming the ACL SETUSER rule to add', async () => {
    const u2 = randomUsers();
    const p2 = uniquePrefix('aclmiss');
    const k2 = new Keyspace(p2);
    const variants = ['no-info', 'no-migration-keys', 'no-copy', 'api-no-channel', 'api-no-scan'];
    await createUsers(u2, p2, [node]);
    const pw = randomBytes(8).toString('hex');
    const asUser = (name: string, args: string[]): Promise<CliResult> =>
      runCli(['--redis-url', `redis://${name}:${pw}@${node.host}:${node.port}`, '--prefix', p2, '--json', ...args]);
    try {
      // A key family (the migration keys: status reads the history).
      await variantUser(u2.lines.operator, 'no-migration-keys', pw, [node], (rules) => rules.filter((x) => x !== `~${p2}:migration:jobs:*`));
      const noKeys = await asUser('no-migration-keys', ['status']);
      expect(noKeys.code, noKeys.stderr).toBe(ExitCode.Usage);
      expect(noKeys.json).toMatchObject({ error: { code: 'ERR_NOPERM' } });
      expect(noKeys.stderr).toContain(`ACL SETUSER no-migration-keys ~${p2}:migration:jobs:*`);

      await admin.hset(k2.legacyJob('j1'), { job_id: 'j1', workspace_id: 'ws1', status: 'queued', created_at: new Date().toISOString() });
      const edw = await runCli(['--redis-url', u2.url('operator', node), '--prefix', p2, 'enable-dual-write', '--reason', 'acl test', '--settle-ms', '100']);
      expect(edw.code, edw.stderr).toBe(0);

      // A command the scan engine needs (INFO: each master's run_id for the checkpoint).
      await variantUser(u2.lines.operator, 'no-info', pw, [node], (rules) => rules.filter((x) => x !== '+info'));
      const noInfo = await asUser('no-info', ['backfill']);
      expect(noInfo.code, noInfo.stderr).toBe(ExitCode.Usage);
      expect(noInfo.json).toMatchObject({ error: { code: 'ERR_NOPERM' } });
      expect(noInfo.stderr).toContain('ACL SETUSER no-info +info');

      // A command only a Lua script runs (COPY, inside backfill-batch.lua): Redis does not name it, the script's commands are named.
      await variantUser(u2.lines.operator, 'no-copy', pw, [node], (rules) => rules.filter((x) => x !== '+copy'));
      const noCopy = await asUser('no-copy', ['backfill']);
      expect(noCopy.code, noCopy.stderr).toBe(ExitCode.Usage);
      expect(noCopy.json).toMatchObject({ error: { code: 'ERR_NOPERM' } });
      expect((noCopy.json as { error: { message: string } }).error.message).toContain('backfill-batch.lua');
      expect(noCopy.stderr).toMatch(/ACL SETUSER no-copy [^\n]*\+copy/);
      // With the rule added, the same user completes the backfill.
      await variantUser(u2.lines.operator, 'no-copy', pw, [node], (rules) => rules);
      const fixed = await asUser('no-copy', ['backfill']);
      expect(fixed.code, fixed.stderr).toBe(0);

      // The API without the events channel cannot follow transitions: it does not start (exit 2) and names the channel.
      await variantUser(u2.lines.api, 'api-no-channel', pw, [node], (rules) => rules.filter((x) => !x.startsWith('&')));
      const logs = captureStream();
      const code = await apiMain({
        env: {
          REDIS_URL: `redis://api-no-channel:${pw}@${node.host}:${node.port}`,
          ORCH_PREFIX: p2,
          ORCH_API_TOKENS: JSON.stringify(tokenEntries()),
          LOG_LEVEL: 'info',
        },
        logStream: logs,
      });
      expect(code).toBe(ExitCode.Usage);
      expect(logs.text()).toContain(`ACL SETUSER api-no-channel &${p2}:migration:jobs:events`);

      // A running API whose user lacks a command one route needs (SCAN: the legacy read path serves reads
      // until the flip, and this prefix is in dual-write): the request gets 503 and the log names the rule.
      await variantUser(u2.lines.api, 'api-no-scan', pw, [node], (rules) => rules.filter((x) => x !== '+scan'));
      const apiLogs = captureStream();
      const cfg = loadApiConfig({
        REDIS_URL: `redis://api-no-scan:${pw}@${node.host}:${node.port}`,
        ORCH_PREFIX: p2,
        ORCH_API_TOKENS: JSON.stringify(tokenEntries('ws1', 'ws2')),
        LOG_LEVEL: 'info',
      });
      const svc = await createApiService(cfg, { logStream: apiLogs });
      try {
        const list = await svc.app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.a) });
        expect(list.statusCode).toBe(503);
        expect(list.body).not.toMatch(/NOPERM|ACL/);
        expect(apiLogs.text()).toContain('"acl_rule":"ACL SETUSER api-no-scan +scan"');
      } finally {
        await svc.close();
      }
    } finally {
      await dropUsers(u2, [node], variants);
      await deleteKeysWithPrefix(admin, p2);
    }
  });
});

describe('least-privilege ACL users (Redis Cluster)', () => {
  const users = randomUsers();
  const prefix = uniquePrefix('aclcl');
  const keys = new Keyspace(prefix);
  let nodes: HostPort[];
  let admin: Cluster;

  beforeAll(async () => {
    nodes = sharedClusterNodes();
    admin = connectCluster();
    await createUsers(users, prefix, nodes, ['--cluster']);
  });
  afterAll(async () => {
    await dropUsers(users, nodes ?? []);
    if (admin) {
      await deleteKeysWithPrefix(admin, prefix);
      await closeClient(admin);
    }
  });

  it('the journey runs as the users printed with --cluster, on every master', async () => {
    expect(users.lines.operator).toContain('+cluster|slots');
    const seed = sharedClusterNodes()[0]!;
    const writerClient: RedisClient = await connectRedis({ url: users.url('writer', seed), cluster: true, profile: ConnectionProfile.Service });
    const queues = await Promise.all([0, 1].map(() => RedisJobQueue.create(writerClient, { keys })));
    for (let i = 0; i < 150; i++) await queues[i % 2]!.enqueue({ workspaceId: `ws${i % 3}`, action: 'seed', params: { i } });
    const writers = new LiveWriters(queues, { workspaces: 3, pauseMs: 20 });
    writers.start();
    const config = loadApiConfig({
      REDIS_URL: users.url('api', seed),
      ORCH_REDIS_CLUSTER: 'on',
      ORCH_PREFIX: prefix,
      ORCH_API_TOKENS: JSON.stringify(tokenEntries('ws0', 'ws1')),
      LOG_LEVEL: 'silent',
    });
    const api = await createApiService(config, { logStream: captureStream() });
    const op = async (args: string[], expected = 0): Promise<CliResult> => {
      const r = await runCli(['--redis-url', users.url('operator', seed), '--cluster', '--prefix', prefix, '--json', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(expected);
      return r;
    };
    try {
      await op(['status']);
      await op(['enable-dual-write', '--reason', 'acl cluster', '--settle-ms', '200']);
      const bf = await op(['backfill']);
      expect(Number(bf.json!.copied)).toBeGreaterThanOrEqual(150);
      await op(['verify', '--rounds', '2', '--round-delay', '200ms']);
      await op(['flip-read', '--reason', 'acl cluster']);
      const list = await api.app.inject({ method: 'GET', url: '/ai/jobs?limit=50', headers: bearer(TOKENS.a) });
      expect(list.statusCode, list.body).toBe(200);
      expect(list.headers['x-read-path']).toBe('v2');
      const created = await api.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.a), payload: { action: 'acl-cluster', params: {} } });
      expect(created.statusCode, created.body).toBe(201);
      await op(['verify', '--rounds', '2', '--round-delay', '200ms']);
      await op(['cleanup', '--execute', '--min-soak', '0s', '--reason', 'acl cluster']);
      await op(['rollback', '--execute', '--reason', 'acl cluster drill']);
      await op(['verify', '--rounds', '2', '--round-delay', '200ms']);
    } finally {
      await writers.stop();
      for (const q of queues) await q.close();
      await api.close();
    }
    expect(writers.errors.map(String)).toEqual([]);
    expect(await lostWrites(admin, keys, writers.ledger)).toEqual([]);
    await closeRedis(writerClient);
    // The cluster is shared with other suites: only this test's users are looked for in the log.
    const mine = (await aclLog(nodes)).filter((l) => Object.values(users.names).some((n) => l.includes(` ${n} `) || l.includes(`: ${n} `)));
    expect(mine).toEqual([]);
    for (const role of ROLES) await expectConfined(users.url(role, seed), prefix, role, true);
  });
});
