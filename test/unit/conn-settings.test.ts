// Connection settings (TLS, Sentinel), the classification of ACL refusals, and the ACL rules
// against the code they must cover (the Lua scripts) and the docs that explain them.
// Real servers: test/integration/conn-tls.test.ts, conn-sentinel.test.ts, conn-acl.test.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AclPermissionError, ConfigError, ExitCode, RedisUnavailableError } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { aclKeyPattern, classifyRedisError, connectionSettingsFromEnv, connectionTarget, scriptsBySha } from '../../src/core/redis.js';
import { parseSentinelList, sentinelSettings } from '../../src/core/sentinel.js';
import { isServername, loadTlsOptions } from '../../src/core/tls.js';
import { ACL_ROLES, aclUsers, grantedCommands, scriptCommands, type AclRole } from '../../src/ops/acl.js';

/** A reply error as ioredis makes it: the class name, and the command it answers. */
function reply(message: string, name: string, args: unknown[]): Error {
  const e = new Error(message) as Error & { command: { name: string; args: unknown[] } };
  e.name = 'ReplyError';
  e.command = { name, args };
  return e;
}

function shaOf(file: string): string {
  for (const [sha, facts] of scriptsBySha()) if (facts.file === file) return sha;
  throw new Error(`no script ${file}`);
}

describe('Sentinel settings', () => {
  it('parses host:port lists by full match: names, IPv4, [IPv6]', () => {
    expect(parseSentinelList('10.0.0.1:26379,sentinel-2.internal:26380,[::1]:26381')).toEqual([
      { host: '10.0.0.1', port: 26379 },
      { host: 'sentinel-2.internal', port: 26380 },
      { host: '::1', port: 26381 },
    ]);
    expect(parseSentinelList(' a:1 , b:2 ')).toHaveLength(2);
  });

  it('refuses anything else, naming the option', () => {
    for (const bad of [
      '',
      'host',
      'host:',
      ':26379',
      'host:0',
      'host:65536',
      'host:26379,',
      'a:1,,b:2',
      'a b:1',
      'a:1,A:1',
      '::1:26379',
      '[zz]:1',
      'h*:1',
      `${'a:1,'.repeat(16)}b:2`,
    ]) {
      expect(() => parseSentinelList(bad), bad).toThrow(ConfigError);
    }
    expect(() => parseSentinelList('x')).toThrow(/--sentinel \(ORCH_SENTINELS\)/);
  });

  it('needs both the list and the master name, or neither', () => {
    expect(sentinelSettings({})).toBeNull();
    expect(() => sentinelSettings({ sentinels: 'a:1' })).toThrow(/without --sentinel-master/);
    expect(() => sentinelSettings({ masterName: 'm' })).toThrow(/without --sentinel /);
    expect(() => sentinelSettings({ sentinels: 'a:1', masterName: 'bad name' })).toThrow(/--sentinel-master/);
    expect(sentinelSettings({ sentinels: 'a:1', masterName: 'jobs-1', password: 'pw' })).toMatchObject({ masterName: 'jobs-1', password: 'pw' });
  });

  it('reads the same variables as the CLI options, and prints the target without credentials', () => {
    const s = connectionSettingsFromEnv({
      ORCH_SENTINELS: 'a:1,b:2',
      ORCH_SENTINEL_MASTER: 'm',
      ORCH_SENTINEL_PASSWORD: 'S3cret',
      ORCH_TLS_CA_FILE: '/ca.pem',
    });
    expect(s.tls).toEqual({ caFile: '/ca.pem', certFile: null, keyFile: null, servername: null });
    expect(s.sentinel).toMatchObject({ masterName: 'm', password: 'S3cret' });
    const target = connectionTarget({ url: 'redis://u:S3cret@x:1', sentinel: s.sentinel });
    expect(target).toBe('m via sentinel a:1,b:2');
    expect(connectionSettingsFromEnv({})).toEqual({ tls: null, sentinel: null });
  });
});

describe('TLS settings', () => {
  it('takes host names, not IP addresses, as --tls-servername', () => {
    for (const ok of ['redis.internal', 'localhost', 'a-b.c-d.example']) expect(isServername(ok), ok).toBe(true);
    for (const bad of ['127.0.0.1', '::1', '', 'a..b', '-a.b', 'a_b.c d', 'x'.repeat(254)]) expect(isServername(bad), bad).toBe(false);
  });

  it('refuses half a client pair and unreadable files with a config error naming the setting', () => {
    expect(() => loadTlsOptions({ certFile: '/c.pem' })).toThrow(/--tls-cert-file \(ORCH_TLS_CERT_FILE\) is set without --tls-key-file/);
    expect(() => loadTlsOptions({ caFile: '/nonexistent/ca.pem' })).toThrow(/Cannot read --tls-ca-file .*ENOENT/);
    expect(() => loadTlsOptions({ servername: '10.0.0.1' })).toThrow(/--tls-servername/);
    expect(loadTlsOptions(null)).toEqual({});
  });
});

describe('ACL refusals name the rule to add (exit 2)', () => {
  const ctx = { user: 'orch-migrate' };

  it('a command', () => {
    const e = classifyRedisError(reply("NOPERM this user has no permissions to run the 'info' command", 'info', ['server']), 'h:1', ctx);
    expect(e).toBeInstanceOf(AclPermissionError);
    expect((e as AclPermissionError).exitCode).toBe(ExitCode.Usage);
    expect((e as AclPermissionError).rule).toBe('ACL SETUSER orch-migrate +info');
    const sub = classifyRedisError(reply("NOPERM this user has no permissions to run the 'config|get' command", 'config', ['get', 'x']), 'h:1', ctx);
    expect((sub as AclPermissionError).rule).toBe('ACL SETUSER orch-migrate +config|get');
  });

  it('a key, as its family pattern', () => {
    const e = classifyRedisError(
      reply('NOPERM this user has no permissions to access one of the keys used as arguments', 'xrevrange', ['ai:migration:jobs:history', '+', '-']),
      'h:1',
      ctx,
    );
    expect((e as AclPermissionError).rule).toBe('ACL SETUSER orch-migrate ~ai:migration:jobs:*');
    expect(aclKeyPattern('p1:jobs:j1')).toBe('~p1:jobs:*');
    expect(aclKeyPattern('p1:job:ws:j1')).toBe('~p1:job:*');
    expect(aclKeyPattern('p1:job-index:ws')).toBe('~p1:job-index:*');
    expect(aclKeyPattern('p1:queue')).toBe('~p1:queue');
    expect(aclKeyPattern('p1:migration:jobs')).toBe('~p1:migration:jobs');
    expect(aclKeyPattern('other')).toBe('~other');
  });

  it('a channel', () => {
    const e = classifyRedisError(
      reply('NOPERM this user has no permissions to access one of the channels used as arguments', 'subscribe', ['ai:migration:jobs:events']),
      'h:1',
      { user: 'orch-api' },
    );
    expect((e as AclPermissionError).rule).toBe('ACL SETUSER orch-api &ai:migration:jobs:events');
  });

  it('inside one of our scripts, which Redis does not name: the script and its commands, or its declared keys', () => {
    const sha = shaOf('cleanup-unlink.lua');
    const cmd = classifyRedisError(
      reply(`ERR The user executing the script can't run this command or subcommand script: ${sha}, on @user_script:22.`, 'evalsha', [
        sha,
        '1',
        'ai:jobs:j1',
        '3',
        'ws',
      ]),
      'h:1',
      ctx,
    ) as AclPermissionError;
    expect(cmd).toBeInstanceOf(AclPermissionError);
    expect(cmd.message).toContain('cleanup-unlink.lua');
    expect(cmd.rule).toBe('ACL SETUSER orch-migrate +hmget +time +type +unlink');
    const key = classifyRedisError(
      reply(`ERR The user executing the script can't access at least one of the keys mentioned in the command arguments script: ${sha}`, 'evalsha', [
        sha,
        '1',
        'ai:jobs:j1',
        '3',
      ]),
      'h:1',
      ctx,
    ) as AclPermissionError;
    expect(key.rule).toBe('ACL SETUSER orch-migrate ~ai:jobs:*');
  });

  it('other replies keep their meaning', () => {
    const wrongtype = reply('WRONGTYPE Operation against a key holding the wrong kind of value', 'hgetall', ['k']);
    expect(classifyRedisError(wrongtype, 'h:1', ctx)).toBe(wrongtype);
    expect(classifyRedisError(reply("READONLY You can't write against a read only replica.", 'set', ['k']), 'h:1')).toBeInstanceOf(RedisUnavailableError);
    expect(classifyRedisError(reply('NOREPLICAS Not enough good replicas to write.', 'set', ['k']), 'h:1')).toBeInstanceOf(RedisUnavailableError);
  });
});

describe('the ACL users', () => {
  const keys = new Keyspace('ai');
  /**
   * Scripts the queue core runs for the API and writers (the rest of src/core/lua is the operator's).
   * repair-cas.lua is left out: the queue core calls it only to delete a record it just created
   * (a lost create race on a cluster), without its lock and index keys, so it runs TYPE, HGET,
   * HGETALL and DEL there, all granted; GET (lock) and ZREM (index) are the operator's.
   */
  const WRITE_SCRIPTS = ['write-job.lua', 'writer-heartbeat.lua', 'write-primary.lua', 'apply-if-newer.lua', 'mirror-create.lua'];
  const OPERATOR_SCRIPTS = scriptCommands()
    .map((s) => s.file)
    .filter((f) => !['write-job.lua', 'writer-heartbeat.lua', 'write-primary.lua', 'mirror-create.lua'].includes(f));

  it('grant every command the scripts each role runs call (Redis checks each redis.call)', () => {
    const byFile = new Map(scriptCommands().map((s) => [s.file, s.commands]));
    const check = (role: AclRole, files: string[]): void => {
      const granted = new Set(grantedCommands(role, { keys, cluster: true }));
      for (const f of files) for (const c of byFile.get(f) ?? []) expect(granted.has(c), `${role} runs ${f}, which calls ${c.toUpperCase()}`).toBe(true);
    };
    check('operator', OPERATOR_SCRIPTS);
    check('api', WRITE_SCRIPTS);
    check('writer', WRITE_SCRIPTS);
  });

  it('never grant what no part runs', () => {
    for (const role of ACL_ROLES) {
      const granted = grantedCommands(role, { keys, cluster: true, db: 2 });
      for (const never of [
        'keys',
        'flushall',
        'flushdb',
        'config',
        'debug',
        'shutdown',
        'acl',
        'script',
        'module',
        'monitor',
        'replicaof',
        'slaveof',
        'save',
        'bgsave',
        'migrate',
        'function',
        'client|kill',
      ]) {
        expect(granted, `${role}: ${never}`).not.toContain(never);
      }
      expect(granted.some((c) => c.startsWith('@'))).toBe(false);
    }
    expect(grantedCommands('writer', { keys })).not.toContain('scan');
    expect(grantedCommands('operator', { keys })).not.toContain('select');
    expect(grantedCommands('operator', { keys, db: 3 })).toContain('select');
    expect(grantedCommands('operator', { keys })).not.toContain('cluster|slots');
  });

  it('are explained in docs/connectivity.md, rule by rule', () => {
    const doc = readFileSync(new URL('../../docs/connectivity.md', import.meta.url), 'utf8');
    for (const u of aclUsers({ keys, cluster: true, db: 1 })) {
      // Every rule as printed for the default prefix, in backticks (the password hash is shown as #<sha256>).
      for (const r of u.rules) if (!r.rule.startsWith('#')) expect(doc.includes(`\`${r.rule}\``), `${u.role}: ${r.rule}`).toBe(true);
    }
  });

  it('print the password only as its SHA-256, and the same rules for every prefix', () => {
    const users = aclUsers({ keys: new Keyspace('tenant-7'), passwords: { operator: 'hunter2hunter2' } });
    expect(users.map((u) => u.user)).toEqual(['orch-migrate', 'orch-api', 'orch-writer']);
    expect(users[0]!.line).toContain('#');
    expect(JSON.stringify(users)).not.toContain('hunter2hunter2');
    expect(users[1]!.passwordSet).toBe(false);
    for (const u of users) {
      expect(u.line.startsWith(`ACL SETUSER ${u.user} reset on `)).toBe(true);
      expect(u.aclfileLine.startsWith(`user ${u.user} reset on `)).toBe(true);
      for (const token of u.line.split(' ').filter((t) => /^(%R)?~/.test(t))) expect(token, token).toMatch(/^(%R)?~tenant-7:/);
    }
  });
});
