// Credentials and refusals at the connection edge, on a private redis-server
// with a password (and an ACL user): every URL form of a password is honoured
// or refused with the contract's code, never printed; a wrong password is
// "authentication failed" (exit 2), not "unreachable" (exit 5); OOM is its own
// error class (exit 6) and a 503 in the API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ExitCode, RedisAuthError, RedisOutOfMemoryError } from '../../src/core/errors.js';
import { Keyspace } from '../../src/core/keys.js';
import { classifyRedisError, closeRedis, connectRedis, ConnectionProfile, isOutOfMemoryError, parseRedisUrl, redactUrl } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { main } from '../../src/api/main.js';
import { runCli, target } from '../helpers/cli.js';
import { processControlUnavailable } from '../helpers/fixtures.js';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisServerHandle } from '../helpers/redis-server.js';
import { captureStream, tokenEntries } from '../unit/api-helpers.js';
import { startRealApi, TOKENS } from './api-helpers.js';

const PASSWORD = 'Pw-Zq93kLm0s3cr3t';
const ACL_USER = 'orchapp';
const ACL_PASSWORD = 'Acl-Zq44uvW7s3cr3t';

let server: RedisServerHandle | null = null;
beforeAll(async () => {
  if (processControlUnavailable()) return;
  // The harness checks a new server with an unauthenticated PING, so the password is set once it runs
  // (the ACL user first: after requirepass every new connection must authenticate).
  server = await startRedisServer();
  const admin = new Redis({ host: server.host, port: server.port, maxRetriesPerRequest: 1 });
  try {
    await admin.call('ACL', 'SETUSER', ACL_USER, 'on', `>${ACL_PASSWORD}`, '~*', '&*', '+@all');
    await admin.call('CONFIG', 'SET', 'requirepass', PASSWORD);
  } finally {
    admin.disconnect();
  }
});
afterAll(async () => {
  await server?.stop();
});

function hostPort(): string {
  return `${server!.host}:${server!.port}`;
}

describe('credentials in Redis URLs', () => {
  it.skipIf(processControlUnavailable() !== undefined)('honours every password form and refuses a wrong one as authentication failed (exit 2)', async () => {
    const good = [
      `redis://:${PASSWORD}@${hostPort()}`,
      `redis://default:${PASSWORD}@${hostPort()}`,
      `redis://${ACL_USER}:${ACL_PASSWORD}@${hostPort()}`,
      `redis://${hostPort()}?password=${PASSWORD}`,
      `redis://${hostPort()}/0?username=${ACL_USER}&password=${ACL_PASSWORD}`,
    ];
    for (const url of good) {
      const c = await connectRedis({ url });
      expect(await c.ping(), redactUrl(url)).toBe('PONG');
      await closeRedis(c);
      for (const secret of [PASSWORD, ACL_PASSWORD]) expect(redactUrl(url)).not.toContain(secret);
    }
    const bad = [
      `redis://:wrong-${PASSWORD}@${hostPort()}`,
      `redis://${ACL_USER}:nope@${hostPort()}`,
      `redis://${hostPort()}`,
      `redis://${hostPort()}?password=nope`,
    ];
    for (const url of bad) {
      for (const profile of [ConnectionProfile.Cli, ConnectionProfile.Service]) {
        const started = Date.now();
        const err = await connectRedis({ url, profile }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err, url).toBeInstanceOf(RedisAuthError);
        const e = err as RedisAuthError;
        expect(e.exitCode).toBe(ExitCode.Usage);
        expect(e.message).toMatch(/authentication failed/);
        expect(e.message).not.toMatch(/unreachable/);
        expect(e.suggestion).toMatch(/password/);
        expect(e.suggestion).toMatch(/ACL user/);
        expect(`${e.message} ${e.suggestion ?? ''}`).not.toContain('wrong-');
        // Wrong credentials do not wait for the reconnect budget (the service profile retries forever otherwise).
        expect(Date.now() - started).toBeLessThan(5000);
      }
    }
  });

  it('refuses a password with a bad %-escape as a config error that does not echo it', () => {
    for (const url of ['redis://:pa%zzss@127.0.0.1:6379', 'redis://us%zz:pw@127.0.0.1:6379']) {
      let err: unknown = null;
      try {
        parseRedisUrl(url);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).exitCode).toBe(2);
      expect((err as ConfigError).message).not.toMatch(/URI malformed|pa%zzss|%zz/);
      expect((err as ConfigError).suggestion).toMatch(/%25/);
    }
  });

  it.skipIf(processControlUnavailable() !== undefined)('the CLI exits 2 for a wrong password and for %zz, and prints no credential', async () => {
    const wrong = await runCli(['status', '--json', ...target(`redis://:wrong-${PASSWORD}@${hostPort()}`, 'tcreds')]);
    expect(wrong.code).toBe(2);
    expect(wrong.stdout + wrong.stderr).toMatch(/authentication failed/);
    expect(wrong.stdout + wrong.stderr).not.toContain(PASSWORD);
    const malformed = await runCli(['status', '--json', ...target(`redis://:bad%zz${PASSWORD}@${hostPort()}`, 'tcreds')]);
    expect(malformed.code).toBe(2);
    expect(malformed.stdout + malformed.stderr).not.toMatch(/URI malformed/);
    expect(malformed.stdout + malformed.stderr).not.toContain(PASSWORD);
  });

  it.skipIf(processControlUnavailable() !== undefined)(
    'the API starts with a password in the userinfo or the query and never logs it; a wrong one exits 2',
    async () => {
      for (const url of [
        `redis://:${PASSWORD}@${hostPort()}`,
        `redis://${hostPort()}?password=${PASSWORD}`,
        `redis://${ACL_USER}:${ACL_PASSWORD}@${hostPort()}/0`,
      ]) {
        const logs = captureStream();
        let stop!: () => void;
        const done = main({
          env: { PORT: '0', HOST: '127.0.0.1', REDIS_URL: url, ORCH_PREFIX: 'tcredsapi', ORCH_API_TOKENS: JSON.stringify(tokenEntries()), LOG_LEVEL: 'debug' },
          signals: ['SIGUSR2'],
          logStream: logs,
          onListening: () => stop(),
        });
        await new Promise<void>((r) => (stop = r));
        process.kill(process.pid, 'SIGUSR2');
        expect(await done).toBe(0);
        const text = logs.text();
        expect(text).toContain('orch-api listening');
        expect(text).toContain(hostPort());
        for (const secret of [PASSWORD, ACL_PASSWORD]) expect(text).not.toContain(secret);
      }
      const logs = captureStream();
      const code = await main({
        env: { REDIS_URL: `redis://:wrong-${PASSWORD}@${hostPort()}`, ORCH_API_TOKENS: JSON.stringify(tokenEntries()), LOG_LEVEL: 'info' },
        logStream: logs,
      });
      expect(code).toBe(2);
      expect(logs.text()).toMatch(/authentication failed/);
      expect(logs.text()).not.toContain(PASSWORD);
    },
  );
});

describe('out of memory', () => {
  it.skipIf(processControlUnavailable() !== undefined)(
    'is RedisOutOfMemoryError (exit 6, names maxmemory, checkpoint kept) for writes and scripts, and a 503 in the API',
    async () => {
      const oom = await startRedisServer();
      try {
        const url = oom.url;
        const client = await connectRedis({ url });
        const keys = new Keyspace('toom');
        const q = await RedisJobQueue.create(client, { keys, phase: { subscribe: false } });
        await q.enqueue({ workspaceId: 'ws-a', action: 'a', params: {}, jobId: 'before' });
        // Fill, then lower maxmemory under what is used: every write is refused from now on.
        await client.set('toom:filler', 'x'.repeat(2 * 1024 * 1024));
        await client.call('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
        await client.call('CONFIG', 'SET', 'maxmemory', '1mb');
        const plain = await client.set('toom:k', 'v').then(
          () => null,
          (e: unknown) => e,
        );
        const scripted = await q.enqueue({ workspaceId: 'ws-a', action: 'a', params: {}, jobId: 'after' }).then(
          () => null,
          (e: unknown) => e,
        );
        for (const raw of [plain, scripted]) {
          expect(isOutOfMemoryError(raw)).toBe(true);
          const e = classifyRedisError(raw, '127.0.0.1:1');
          expect(e).toBeInstanceOf(RedisOutOfMemoryError);
          const oomErr = e as RedisOutOfMemoryError;
          expect(oomErr.exitCode).toBe(6);
          expect(ExitCode.Guard).toBe(6);
          expect(oomErr.message).toMatch(/maxmemory/);
          expect(oomErr.suggestion).toMatch(/checkpoint is kept/);
        }
        // The API answers a write with 503 (temporarily unavailable), not 500, and reads still work.
        const api = await startRealApi({ name: 'oom', redisUrl: url });
        try {
          const res = await api.inject('POST', '/ai/jobs', TOKENS.a, { action: 'a', params: {} });
          expect(res.statusCode, res.body).toBe(503);
          expect(res.headers['retry-after']).toBe('1');
          expect(res.body).not.toMatch(/OOM|maxmemory/);
          expect((await api.inject('GET', '/ai/jobs', TOKENS.a)).statusCode).toBe(200);
        } finally {
          await client.call('CONFIG', 'SET', 'maxmemory', '0');
          await api.close();
        }
        await q.close();
        await closeRedis(client);
      } finally {
        await oom.stop();
      }
    },
  );
});
