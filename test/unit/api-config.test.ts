import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { hashToken } from '../../src/api/auth.js';
import { API_ENV_DOCS, loadApiConfig } from '../../src/api/config.js';

const TOKENS_JSON = JSON.stringify([{ sha256: hashToken('t1'), workspace_id: 'acme', scopes: ['actions:preview'] }]);

function expectConfigError(fn: () => unknown, match: RegExp, mustNotContain?: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(match);
    if (mustNotContain) expect(`${(err as Error).message} ${(err as ConfigError).suggestion ?? ''}`).not.toContain(mustNotContain);
    return;
  }
  throw new Error('expected a ConfigError');
}

describe('API configuration', () => {
  it('has safe defaults', () => {
    const c = loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON });
    expect(c).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      redisUrl: 'redis://127.0.0.1:6379',
      redisCluster: false,
      metricsWorkspaceLabel: false,
      metricsWorkspaceAllowlist: [],
      logLevel: 'info',
      legacyScanCount: 1000,
      cursorSecretGenerated: true,
      maxPageBytes: 4 * 1024 * 1024,
      listConcurrency: 2,
      requestTimeoutMs: 30000,
    });
    expect(c.keys.prefix).toBe('ai');
    expect(c.cursorSecrets[0]!.length).toBe(32);
    expect(c.tokens).toHaveLength(1);
  });

  it('reads every variable', () => {
    const secret = 's'.repeat(40);
    const c = loadApiConfig(
      {
        PORT: '0',
        HOST: '127.0.0.1',
        REDIS_URL: 'redis://:pw@10.0.0.1:7000/2',
        ORCH_REDIS_CLUSTER: 'on',
        ORCH_PREFIX: 'tenant1',
        ORCH_API_TOKENS_FILE: '/etc/orch/tokens.json',
        ORCH_API_CURSOR_SECRET: `${secret},${'o'.repeat(32)}`,
        ORCH_SENSITIVE_KEYS: 'ssn, Card_Number',
        METRICS_WORKSPACE_LABEL: 'ON',
        METRICS_WORKSPACE_ALLOWLIST: 'acme, beta',
        LOG_LEVEL: 'warn',
        ORCH_LEGACY_SCAN_COUNT: '10',
        ORCH_API_BODY_LIMIT_BYTES: '4096',
        ORCH_API_SHUTDOWN_TIMEOUT_MS: '500',
        ORCH_API_MAX_PAGE_BYTES: '65536',
        ORCH_API_LIST_CONCURRENCY: '3',
        ORCH_API_REQUEST_TIMEOUT_MS: '5000',
      },
      { readFile: (p) => (p === '/etc/orch/tokens.json' ? TOKENS_JSON : '') },
    );
    expect(c).toMatchObject({
      port: 0,
      host: '127.0.0.1',
      redisCluster: true,
      sensitiveKeys: ['ssn', 'card_number'],
      metricsWorkspaceLabel: true,
      metricsWorkspaceAllowlist: ['acme', 'beta'],
      logLevel: 'warn',
      legacyScanCount: 10,
      bodyLimitBytes: 4096,
      shutdownTimeoutMs: 500,
      maxPageBytes: 65536,
      listConcurrency: 3,
      requestTimeoutMs: 5000,
      cursorSecretGenerated: false,
    });
    expect(c.keys.prefix).toBe('tenant1');
    expect(c.cursorSecrets.map((b) => b.toString())).toEqual([secret, 'o'.repeat(32)]);
  });

  it('merges both token sources and refuses duplicates', () => {
    const other = JSON.stringify([{ sha256: hashToken('t2'), workspace_id: 'beta', scopes: [] }]);
    expect(loadApiConfig({ ORCH_API_TOKENS_FILE: 'f', ORCH_API_TOKENS: other }, { readFile: () => TOKENS_JSON }).tokens).toHaveLength(2);
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS_FILE: 'f', ORCH_API_TOKENS: TOKENS_JSON }, { readFile: () => TOKENS_JSON }), /twice/);
  });

  it('fails fast with ConfigError and never echoes secrets', () => {
    expectConfigError(() => loadApiConfig({}), /No API tokens/);
    expectConfigError(
      () =>
        loadApiConfig(
          { ORCH_API_TOKENS_FILE: '/nope' },
          {
            readFile: () => {
              throw new Error('ENOENT');
            },
          },
        ),
      /Cannot read/,
    );
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, PORT: '70000' }), /PORT/);
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, PORT: '80abc' }), /PORT/);
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, METRICS_WORKSPACE_LABEL: 'maybe' }), /METRICS_WORKSPACE_LABEL/);
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, METRICS_WORKSPACE_ALLOWLIST: 'ok,Bad*' }), /ALLOWLIST/);
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, LOG_LEVEL: 'loud' }), /LOG_LEVEL/);
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, ORCH_PREFIX: 'a:b*' }), /prefix/);
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, ORCH_API_CURSOR_SECRET: 'hunter2-short' }), /shorter/, 'hunter2');
    expectConfigError(() => loadApiConfig({ ORCH_API_TOKENS: TOKENS_JSON, REDIS_URL: 'http://:supersecretpw@h:1' }), /scheme/, 'supersecretpw');
  });

  it('documents every variable it reads', () => {
    const names = API_ENV_DOCS.map((d) => d.name);
    for (const v of [
      'PORT',
      'HOST',
      'REDIS_URL',
      'ORCH_REDIS_CLUSTER',
      'ORCH_PREFIX',
      'ORCH_API_TOKENS_FILE',
      'ORCH_API_TOKENS',
      'ORCH_API_CURSOR_SECRET',
      'ORCH_SENSITIVE_KEYS',
      'METRICS_WORKSPACE_LABEL',
      'METRICS_WORKSPACE_ALLOWLIST',
      'LOG_LEVEL',
      'ORCH_LEGACY_SCAN_COUNT',
      'ORCH_API_BODY_LIMIT_BYTES',
      'ORCH_API_SHUTDOWN_TIMEOUT_MS',
      'ORCH_API_MAX_PAGE_BYTES',
      'ORCH_API_LIST_CONCURRENCY',
      'ORCH_API_REQUEST_TIMEOUT_MS',
    ]) {
      expect(names).toContain(v);
    }
  });
});
