// Connection profiles, Redis URLs and the classification of Redis failures
// (the real servers are in test/integration/api-credentials.test.ts and api-reconnect.test.ts).
import { describe, expect, it } from 'vitest';
import { ConfigError, ExitCode, RedisAuthError, RedisOutOfMemoryError, RedisUnavailableError } from '../../src/core/errors.js';
import { asUnavailable, classifyRedisError, isAuthError, isOutOfMemoryError, parseRedisUrl, redactUrl, serviceBackoff } from '../../src/core/redis.js';

/** An error shaped like ioredis' ReplyError (classification looks at the class name and the reply code). */
function reply(message: string): Error {
  const e = new Error(message);
  e.name = 'ReplyError';
  return e;
}

describe('service backoff', () => {
  it('grows exponentially from 50 ms and is capped (with jitter), forever', () => {
    for (let t = 1; t <= 1000; t++) {
      const d = serviceBackoff(t);
      expect(d).toBeGreaterThanOrEqual(40);
      expect(d).toBeLessThanOrEqual(1200);
    }
    expect(serviceBackoff(1)).toBeLessThanOrEqual(60);
    expect(serviceBackoff(50, 5000)).toBeGreaterThanOrEqual(4000);
  });
});

describe('Redis URLs', () => {
  it('masks every credential form and echoes nothing unparseable', () => {
    const forms = [
      'redis://:S3cr3tA@h:6379',
      'redis://user:S3cr3tA@h:6379/2',
      'rediss://acluser:S3cr3tA@h:6380',
      'redis://S3cr3tA@h:6379',
      'redis://h:6379?password=S3cr3tA',
      'redis://h:6379/0?pass=S3cr3tA&x=1',
      'redis://h:6379?pwd=S3cr3tA',
      'redis://h:6379?username=S3cr3tA&password=S3cr3tA',
      'redis://:S3cr3tA%zz@h:6379',
      'redis://:p@ssS3cr3tA@h:6379',
      'not a url S3cr3tA',
    ];
    for (const f of forms) expect(redactUrl(f), f).not.toContain('S3cr3tA');
    expect(redactUrl('redis://user:pw@h:6380/2')).toBe('redis://user:***@h:6380/2');
    expect(redactUrl('redis://h:6379/0')).toBe('redis://h:6379/0');
  });

  it('honours ?password= and ?username= like redis-py, the userinfo winning', () => {
    expect(parseRedisUrl('redis://h:7000/1?username=app&password=pw')).toMatchObject({ host: 'h', port: 7000, db: 1, username: 'app', password: 'pw' });
    expect(parseRedisUrl('redis://u1:p1@h?username=u2&password=p2')).toMatchObject({ username: 'u1', password: 'p1' });
    expect(parseRedisUrl('redis://:p%40ss@h')).toMatchObject({ password: 'p@ss' });
  });

  it('refuses a bad %-escape in a credential with a config error (exit 2), not "URI malformed"', () => {
    let err: unknown = null;
    try {
      parseRedisUrl('redis://:abc%zzdef@h:6379');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(ExitCode.Usage);
    expect((err as Error).message).toMatch(/password.*percent-encoding/);
    expect((err as Error).message).not.toMatch(/abc|URI malformed/);
  });
});

describe('classification of Redis failures', () => {
  it('refused credentials → RedisAuthError, exit 2, naming the fix', () => {
    for (const msg of ['WRONGPASS invalid username-password pair or user is disabled.', 'NOAUTH Authentication required.', 'ERR invalid password']) {
      const e = classifyRedisError(reply(msg), 'h:6379');
      expect(e, msg).toBeInstanceOf(RedisAuthError);
      expect((e as RedisAuthError).exitCode).toBe(2);
      expect((e as RedisAuthError).message).toMatch(/^Redis at h:6379: authentication failed/);
      expect(isAuthError(reply(msg))).toBe(true);
    }
    // A cluster reports its last node's error.
    const clusterErr = Object.assign(new Error('Failed to refresh slots cache.'), {
      name: 'ClusterAllFailedError',
      lastNodeError: reply('NOAUTH Authentication required.'),
    });
    expect(classifyRedisError(clusterErr, 'h:1')).toBeInstanceOf(RedisAuthError);
  });

  it('OOM → RedisOutOfMemoryError, exit 6 (ExitCode.Guard), naming maxmemory and the kept checkpoint; also inside a script error', () => {
    expect(ExitCode.Guard).toBe(6);
    for (const msg of [
      "OOM command not allowed when used memory > 'maxmemory'.",
      "OOM command not allowed when used memory > 'maxmemory'. script: 3f2a, on @user_script:1.",
    ]) {
      const e = asUnavailable(reply(msg), 'h:6379');
      expect(e).toBeInstanceOf(RedisOutOfMemoryError);
      expect((e as RedisOutOfMemoryError).exitCode).toBe(6);
      expect((e as RedisOutOfMemoryError).message).toMatch(/maxmemory/);
      expect((e as RedisOutOfMemoryError).suggestion).toMatch(/checkpoint is kept/);
      expect(isOutOfMemoryError(new Error('wrapped', { cause: reply(msg) }))).toBe(true);
    }
  });

  it('a cluster node addressed without --cluster (MOVED/ASK) → exit 2 naming --cluster', () => {
    for (const msg of ['MOVED 5798 127.0.0.1:30002', 'ASK 5798 127.0.0.1:30002']) {
      const e = classifyRedisError(reply(msg), 'h:6379');
      expect(e, msg).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).exitCode).toBe(ExitCode.Usage);
      expect((e as ConfigError).code).toBe('ERR_CLUSTER_MODE');
      expect((e as ConfigError).suggestion).toMatch(/--cluster/);
    }
    // A value that merely starts with the word is not a redirect.
    expect(classifyRedisError(reply('MOVEDX something'), 'h:1')).not.toBeInstanceOf(ConfigError);
  });

  it('a redirect that surfaces through the cluster client (slots moving) → exit 5, rerun to resume; never "add --cluster"', () => {
    for (const msg of ['MOVED 5798 127.0.0.1:30002', 'ASK 5798 127.0.0.1:30002']) {
      const e = classifyRedisError(reply(msg), 'h:6379', { cluster: true });
      expect(e, msg).toBeInstanceOf(RedisUnavailableError);
      expect((e as RedisUnavailableError).exitCode).toBe(ExitCode.Unavailable);
      expect((e as RedisUnavailableError).message).toMatch(/slots moved/);
      expect((e as RedisUnavailableError).suggestion).toMatch(/rerun to resume/);
      expect((e as RedisUnavailableError).suggestion).not.toMatch(/--cluster/);
    }
  });

  it('unreachable through Sentinel names the sentinels, not --redis-url', () => {
    const e = classifyRedisError(new Error('connect ECONNREFUSED 127.0.0.1:1'), 'mymaster via sentinel 127.0.0.1:26379') as RedisUnavailableError;
    expect(e).toBeInstanceOf(RedisUnavailableError);
    expect(e.suggestion).toMatch(/--sentinel/);
    expect(e.suggestion).not.toMatch(/--redis-url/);
  });

  it('a lost connection → RedisUnavailableError (exit 5); anything else passes through', () => {
    expect(classifyRedisError(new Error('connect ECONNREFUSED 127.0.0.1:1'), 'h:1')).toBeInstanceOf(RedisUnavailableError);
    const other = reply('WRONGTYPE Operation against a key holding the wrong kind of value');
    expect(classifyRedisError(other, 'h:1')).toBe(other);
    // Message text that merely mentions the words is not a reply code.
    expect(classifyRedisError(new Error('job failed: OOM command not allowed'), 'h:1')).not.toBeInstanceOf(RedisOutOfMemoryError);
  });
});
