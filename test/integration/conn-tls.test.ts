/**
 * Issue 15, TLS: real `redis-server --tls-port` servers with a private CA made
 * by openssl (test/helpers/tls.ts), one of them with `--tls-auth-clients yes`.
 *
 *  - the CLI, the API and the queue core connect with --tls-ca-file (and a
 *    client certificate for mutual TLS), and the migration runs over TLS;
 *  - a certificate that is not trusted, has expired or names another host, and
 *    a missing or untrusted client certificate, are exit 2 naming the option
 *    that fixes it (never "unreachable", exit 5).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadApiConfig } from '../../src/api/config.js';
import { main as apiMain } from '../../src/api/main.js';
import { createApiService } from '../../src/api/server.js';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectionSettingsFromEnv, connectRedis, ConnectionProfile } from '../../src/core/redis.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { ExitCode } from '../../src/core/errors.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { closeClient, connectStandalone, deleteKeysWithPrefix, uniquePrefix } from '../helpers/fixtures.js';
import { startTlsRedisServer, type TlsRedisServerHandle } from '../helpers/redis-server.js';
import { createTestPki, type TestPki } from '../helpers/tls.js';
import { requireTool, toolAvailable } from '../helpers/tools.js';
import { bearer, captureStream, TOKENS, tokenEntries } from '../unit/api-helpers.js';

let pki: TestPki;
/** Server certificate for 127.0.0.1, client certificates not requested. */
let oneWay: TlsRedisServerHandle;
/** Same certificate, `tls-auth-clients yes`. */
let mutual: TlsRedisServerHandle;
/** A certificate for redis.internal only. */
let otherName: TlsRedisServerHandle;
/** An expired certificate. */
let expired: TlsRedisServerHandle;

function errorOf(r: CliResult): { code: string; message: string; suggestion: string | null } {
  expect(r.json, `${r.stdout}\n${r.stderr}`).not.toBeNull();
  return (r.json as { error: { code: string; message: string; suggestion: string | null } }).error;
}

/** The CLI's exit 2 with the fix named, on stderr for people and in the JSON for scripts. */
function expectTlsRefusal(r: CliResult, reason: RegExp, option: string): void {
  expect(r.code, r.stderr).toBe(ExitCode.Usage);
  const e = errorOf(r);
  expect(e.code).toBe('ERR_TLS');
  expect(e.message).toMatch(reason);
  expect(e.suggestion).toContain(option);
  expect(r.stderr).toContain(`fix:`);
  expect(r.stderr).toContain(option);
  expect(r.stderr).not.toMatch(/unreachable/i);
}

beforeAll(async () => {
  // Without openssl each test skips (or fails under CI=true) through requireTool.
  if (!toolAvailable('openssl')) return;
  pki = await createTestPki();
  [oneWay, mutual, otherName, expired] = await Promise.all([
    startTlsRedisServer({ ...pki.server, caFile: pki.caFile }, 'no'),
    startTlsRedisServer({ ...pki.server, caFile: pki.caFile }, 'yes'),
    startTlsRedisServer({ ...pki.serverOtherName, caFile: pki.caFile }, 'no'),
    startTlsRedisServer({ ...pki.serverExpired, caFile: pki.caFile }, 'no'),
  ]);
});

afterAll(async () => {
  await Promise.allSettled([oneWay, mutual, otherName, expired].filter(Boolean).map((s) => s.stop()));
  await pki?.remove();
});

describe('TLS with a private CA', () => {
  it('connects with --tls-ca-file (or ORCH_TLS_CA_FILE) and refuses an untrusted server certificate with exit 2 naming the option', async (ctx) => {
    requireTool('openssl', ctx);
    const prefix = uniquePrefix('tlsca');
    const ok = await runCli(['--redis-url', oneWay.tlsUrl, '--tls-ca-file', pki.caFile, '--prefix', prefix, '--json', 'status']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.json).toMatchObject({ phase: 'legacy' });

    const viaEnv = await runCli(['--prefix', prefix, '--json', 'status'], { env: { REDIS_URL: oneWay.tlsUrl, ORCH_TLS_CA_FILE: pki.caFile } });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);

    // No CA: the system store does not know a private CA.
    expectTlsRefusal(await runCli(['--redis-url', oneWay.tlsUrl, '--prefix', prefix, '--json', 'status']), /not trusted/, '--tls-ca-file');
    // A CA that did not sign the server's certificate.
    const wrongCa = await runCli(['--redis-url', oneWay.tlsUrl, '--tls-ca-file', pki.otherCaFile, '--prefix', prefix, '--json', 'status']);
    expectTlsRefusal(wrongCa, /not trusted/, '--tls-ca-file');
    expect(errorOf(wrongCa).suggestion).toContain(pki.otherCaFile);
  });

  it('refuses a certificate that names another host (exit 2, --tls-servername), and --tls-servername fixes it', async (ctx) => {
    requireTool('openssl', ctx);
    const prefix = uniquePrefix('tlsname');
    const wrong = await runCli(['--redis-url', otherName.tlsUrl, '--tls-ca-file', pki.caFile, '--prefix', prefix, '--json', 'status']);
    expectTlsRefusal(wrong, /names another host/, '--tls-servername');
    expect(errorOf(wrong).suggestion).toContain('redis.internal');

    const fixed = await runCli([
      '--redis-url',
      otherName.tlsUrl,
      '--tls-ca-file',
      pki.caFile,
      '--tls-servername',
      'redis.internal',
      '--prefix',
      prefix,
      '--json',
      'status',
    ]);
    expect(fixed.code, fixed.stderr).toBe(0);

    // The server name is checked too: one the certificate does not hold is refused the same way.
    const bad = await runCli([
      '--redis-url',
      oneWay.tlsUrl,
      '--tls-ca-file',
      pki.caFile,
      '--tls-servername',
      'redis.internal',
      '--prefix',
      prefix,
      '--json',
      'status',
    ]);
    expectTlsRefusal(bad, /names another host/, '--tls-servername');
  });

  it('refuses an expired server certificate with exit 2 and says what to renew', async (ctx) => {
    requireTool('openssl', ctx);
    const r = await runCli(['--redis-url', expired.tlsUrl, '--tls-ca-file', pki.caFile, '--json', 'status']);
    expect(r.code, r.stderr).toBe(ExitCode.Usage);
    const e = errorOf(r);
    expect(e.code).toBe('ERR_TLS');
    expect(e.message).toMatch(/expired/);
    expect(e.suggestion).toMatch(/Renew the server's certificate/);
  });

  it('checks the TLS settings before connecting: mismatched key, half a client pair, a plain URL, a bad server name', async (ctx) => {
    requireTool('openssl', ctx);
    const url = mutual.tlsUrl;
    const mismatch = await runCli([
      '--redis-url',
      url,
      '--tls-ca-file',
      pki.caFile,
      '--tls-cert-file',
      pki.client.certFile,
      '--tls-key-file',
      pki.server.keyFile,
      '--json',
      'status',
    ]);
    expect(mismatch.code).toBe(ExitCode.Usage);
    expect(errorOf(mismatch).message).toMatch(/--tls-key-file .* is not the private key of the certificate in --tls-cert-file/);
    // Key material never reaches the output.
    expect(mismatch.stdout + mismatch.stderr).not.toMatch(/PRIVATE KEY/);

    const half = await runCli(['--redis-url', url, '--tls-ca-file', pki.caFile, '--tls-cert-file', pki.client.certFile, '--json', 'status']);
    expect(half.code).toBe(ExitCode.Usage);
    expect(errorOf(half).message).toMatch(/--tls-cert-file .* is set without --tls-key-file/);

    const missing = await runCli(['--redis-url', url, '--tls-ca-file', `${pki.dir}/no-such-ca.pem`, '--json', 'status']);
    expect(missing.code).toBe(ExitCode.Usage);
    expect(errorOf(missing).message).toMatch(/Cannot read --tls-ca-file .*ENOENT/);

    const notPem = await runCli(['--redis-url', url, '--tls-ca-file', pki.server.keyFile, '--json', 'status']);
    expect(notPem.code).toBe(ExitCode.Usage);
    expect(errorOf(notPem).message).toMatch(/holds no PEM certificate/);

    const plain = await runCli(['--redis-url', `redis://127.0.0.1:${mutual.tlsPort}`, '--tls-ca-file', pki.caFile, '--json', 'status']);
    expect(plain.code).toBe(ExitCode.Usage);
    expect(errorOf(plain).suggestion).toMatch(/rediss:\/\//);

    const ip = await runCli(['--redis-url', url, '--tls-ca-file', pki.caFile, '--tls-servername', '127.0.0.1', 'status']);
    expect(ip.code).toBe(ExitCode.Usage);
    expect(ip.stderr).toMatch(/--tls-servername: expected a host name/);
  });
});

describe('mutual TLS (tls-auth-clients yes)', () => {
  it('without a client certificate, or with one from an untrusted CA: exit 2 naming --tls-cert-file', async (ctx) => {
    requireTool('openssl', ctx);
    expectTlsRefusal(await runCli(['--redis-url', mutual.tlsUrl, '--tls-ca-file', pki.caFile, '--json', 'status']), /client certificate/, '--tls-cert-file');
    const stranger = await runCli([
      '--redis-url',
      mutual.tlsUrl,
      '--tls-ca-file',
      pki.caFile,
      '--tls-cert-file',
      pki.clientUntrusted.certFile,
      '--tls-key-file',
      pki.clientUntrusted.keyFile,
      '--json',
      'status',
    ]);
    expectTlsRefusal(stranger, /refused our client certificate/, '--tls-cert-file');
  });

  it('the migration runs over mutual TLS: queue-core writer, CLI journey to a clean verify, and the API', async (ctx) => {
    requireTool('openssl', ctx);
    const prefix = uniquePrefix('mtls');
    const keys = new Keyspace(prefix);
    const env = { ORCH_TLS_CA_FILE: pki.caFile, ORCH_TLS_CERT_FILE: pki.client.certFile, ORCH_TLS_KEY_FILE: pki.client.keyFile };
    // The queue core takes the same settings from the same variables.
    const settings = connectionSettingsFromEnv(env);
    expect(settings.tls).toEqual({ caFile: pki.caFile, certFile: pki.client.certFile, keyFile: pki.client.keyFile, servername: null });
    const client = await connectRedis({ url: mutual.tlsUrl, tls: settings.tls, profile: ConnectionProfile.Service, connectionName: 'tls-writer' });
    const admin = connectStandalone(mutual.url);
    try {
      const q = await RedisJobQueue.create(client, { keys });
      const created = await Promise.all(
        Array.from({ length: 120 }, (_, i) => q.enqueue({ workspaceId: i % 2 ? 'ws-a' : 'ws-b', action: 'tls', params: { i } })),
      );
      await q.close();
      // The server saw TLS connections from the client certificate's subject.
      const clients = String(await admin.client('LIST'));
      expect(clients).toMatch(/name=tls-writer/);

      const cli = (args: string[]): Promise<CliResult> => runCli(['--prefix', prefix, '--json', ...args], { env: { ...env, REDIS_URL: mutual.tlsUrl } });
      for (const step of [
        ['enable-dual-write', '--reason', 'tls test', '--settle-ms', '100'],
        ['backfill'],
        ['verify', '--rounds', '2', '--round-delay', '100ms'],
        ['flip-read', '--reason', 'tls test'],
      ]) {
        const r = await cli(step);
        expect(r.code, `${step.join(' ')}: ${r.stderr}`).toBe(0);
        if (step[0] === 'backfill') expect(r.json).toMatchObject({ scanned: created.length, copied: created.length, unmigratable: 0 });
        if (step[0] === 'verify') expect(r.json).toMatchObject({ ok: true, mismatches: 0 });
      }

      // The API, configured from the environment like bin/orch-api.
      const config = loadApiConfig({
        ...env,
        REDIS_URL: mutual.tlsUrl,
        ORCH_PREFIX: prefix,
        ORCH_API_TOKENS: JSON.stringify(tokenEntries('ws-a', 'ws-b')),
        LOG_LEVEL: 'silent',
      });
      const service = await createApiService(config, { logStream: captureStream() });
      try {
        const list = await service.app.inject({ method: 'GET', url: '/ai/jobs?limit=200', headers: bearer(TOKENS.a) });
        expect(list.statusCode, list.body).toBe(200);
        expect(list.headers['x-read-path']).toBe('v2');
        expect(list.json<{ jobs: unknown[] }>().jobs).toHaveLength(created.filter((j) => j.workspaceId === 'ws-a').length);
        const post = await service.app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.a), payload: { action: 'over-tls', params: {} } });
        expect(post.statusCode, post.body).toBe(201);
      } finally {
        await service.close();
      }
    } finally {
      await deleteKeysWithPrefix(admin, prefix);
      await closeClient(admin);
      await closeRedis(client);
    }
  });

  it('bin/orch-api without its client certificate exits 2 and logs the variable to set', async (ctx) => {
    requireTool('openssl', ctx);
    const logs = captureStream();
    const code = await apiMain({
      env: { REDIS_URL: mutual.tlsUrl, ORCH_TLS_CA_FILE: pki.caFile, ORCH_API_TOKENS: JSON.stringify(tokenEntries()), LOG_LEVEL: 'info' },
      logStream: logs,
    });
    expect(code).toBe(ExitCode.Usage);
    expect(logs.text()).toMatch(/ORCH_TLS_CERT_FILE/);
    expect(logs.text()).not.toMatch(/unreachable/i);
  });
});
