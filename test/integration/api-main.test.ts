// bin/orch-api's entry point over a real socket: start, serve, SIGTERM-style stop; exit codes.
import { describe, expect, it } from 'vitest';
import { main } from '../../src/api/main.js';
import { deleteKeysWithPrefix, connectStandalone, closeClient, sharedStandaloneUrl, uniquePrefix } from '../helpers/fixtures.js';
import { findFreePort } from '../helpers/redis-server.js';
import { TOKENS, tokenEntries } from '../unit/api-helpers.js';

describe('orch-api main()', () => {
  it('listens, serves over HTTP and stops gracefully on the signal', async () => {
    const prefix = uniquePrefix('apimain');
    let port = 0;
    let listening!: () => void;
    const up = new Promise<void>((r) => (listening = r));
    const done = main({
      env: {
        PORT: '0',
        HOST: '127.0.0.1',
        REDIS_URL: sharedStandaloneUrl(),
        ORCH_PREFIX: prefix,
        ORCH_API_TOKENS: JSON.stringify(tokenEntries()),
        LOG_LEVEL: 'silent',
        ORCH_API_CURSOR_SECRET: 'k'.repeat(32),
      },
      signals: ['SIGUSR2'],
      onListening: (addr) => {
        port = addr.port;
        listening();
      },
    });
    await up;
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(health.headers.get('x-read-path')).toBe('legacy');
    const created = await fetch(`http://127.0.0.1:${port}/ai/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKENS.a}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'a', params: { api_key: 'zzz-secret' } }),
    });
    expect(created.status).toBe(201);
    expect(await created.text()).not.toContain('zzz-secret');
    process.kill(process.pid, 'SIGUSR2');
    expect(await done).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    const admin = connectStandalone();
    await deleteKeysWithPrefix(admin, prefix);
    await closeClient(admin);
  });

  it('exits 2 on a configuration error and 5 when Redis is unreachable', async () => {
    expect(await main({ env: { LOG_LEVEL: 'silent' } })).toBe(2);
    const closedPort = await findFreePort();
    expect(
      await main({
        env: { REDIS_URL: `redis://127.0.0.1:${closedPort}`, ORCH_API_TOKENS: JSON.stringify(tokenEntries()), LOG_LEVEL: 'silent' },
      }),
    ).toBe(5);
  });
});
