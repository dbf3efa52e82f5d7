import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { hashToken, parseTokenTable, Scope, TokenTable } from '../../src/api/auth.js';
import { bearer, memoryApi, TOKENS, tokenEntries } from './api-helpers.js';

describe('token table', () => {
  it('parses entries and normalises the hash to lower case', () => {
    const h = hashToken('x').toUpperCase();
    const t = parseTokenTable(JSON.stringify([{ sha256: h, workspace_id: 'acme', scopes: ['actions:preview'], note: 'ignored' }]), 'TEST');
    expect(t).toEqual([{ sha256: h.toLowerCase(), workspace_id: 'acme', scopes: ['actions:preview'] }]);
  });

  it('refuses bad JSON and bad entries with a ConfigError that never echoes a value', () => {
    expect(() => parseTokenTable('{nope', 'TEST')).toThrow(ConfigError);
    const secretish = 'plaintext-token-value-not-a-hash';
    try {
      parseTokenTable(JSON.stringify([{ sha256: secretish, workspace_id: 'a', scopes: [] }]), 'TEST');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect(String((err as Error).message)).not.toContain(secretish);
      expect((err as Error).message).toContain('0.sha256');
    }
    expect(() => parseTokenTable('{}', 'TEST')).toThrow(ConfigError);
    expect(() => parseTokenTable(JSON.stringify([{ sha256: hashToken('a'), workspace_id: 'a', scopes: ['ADMIN'] }]), 'TEST')).toThrow(ConfigError);
  });

  it('authenticates by hash, checks scope and the workspace rule', () => {
    const table = new TokenTable(tokenEntries());
    expect(table.authenticate(undefined, Scope.Preview)).toMatchObject({ ok: false, status: 401, error: 'unauthorized' });
    expect(table.authenticate('', Scope.Preview)).toMatchObject({ ok: false, status: 401 });
    expect(table.authenticate(`Basic ${TOKENS.a}`, Scope.Preview)).toMatchObject({ ok: false, status: 401, error: 'invalid_token' });
    expect(table.authenticate('Bearer nobody-has-this', Scope.Preview)).toMatchObject({ ok: false, status: 401, error: 'invalid_token' });
    expect(table.authenticate(`Bearer ${TOKENS.a} extra`, Scope.Preview)).toMatchObject({ ok: false, status: 401 });
    expect(table.authenticate(`bearer ${TOKENS.a}`, Scope.Write)).toMatchObject({ ok: true, principal: { workspaceId: 'ws-a' } });
    expect(table.authenticate(`Bearer ${TOKENS.aRead}`, Scope.Write)).toMatchObject({ ok: false, status: 403, error: 'insufficient_scope' });
    expect(table.authenticate(`Bearer ${TOKENS.none}`, Scope.Preview)).toMatchObject({ ok: false, status: 403 });
    expect(table.authenticate(`Bearer ${TOKENS.badWs}`, Scope.Preview)).toMatchObject({ ok: false, status: 403, error: 'forbidden' });
    expect(table.invalidWorkspaces()).toBe(1);
  });

  it('lookup stores no plaintext and finds the first matching entry', () => {
    const table = new TokenTable(tokenEntries());
    expect(JSON.stringify(table)).not.toContain(TOKENS.a);
    expect(table.lookup(TOKENS.b)?.workspaceId).toBe('ws-b');
    expect(table.lookup('other')).toBeNull();
  });
});

describe('auth over HTTP', () => {
  it('answers 401 for missing/unknown tokens and 403 for a missing scope or invalid workspace', async () => {
    const { app } = await memoryApi();
    const missing = await app.inject({ method: 'GET', url: '/ai/jobs' });
    expect(missing.statusCode).toBe(401);
    expect(missing.headers['www-authenticate']).toContain('Bearer');
    expect(missing.json()).toMatchObject({ error: 'unauthorized' });
    expect((await app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer('unknown') })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/ai/jobs/j1', headers: { authorization: 'Token abc' } })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.none) })).statusCode).toBe(403);
    expect((await app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.badWs) })).statusCode).toBe(403);
    const ro = await app.inject({ method: 'POST', url: '/ai/jobs', headers: bearer(TOKENS.aRead), payload: { action: 'a', params: {} } });
    expect(ro.statusCode).toBe(403);
    expect(ro.json()).toMatchObject({ error: 'insufficient_scope' });
    const roPatch = await app.inject({ method: 'PATCH', url: '/ai/jobs/j1', headers: bearer(TOKENS.aRead), payload: { status: 'running' } });
    expect(roPatch.statusCode).toBe(403);
    expect((await app.inject({ method: 'GET', url: '/ai/jobs', headers: bearer(TOKENS.aRead) })).statusCode).toBe(200);
    await app.close();
  });

  it('checks auth before reading the body', async () => {
    const { app } = await memoryApi();
    const res = await app.inject({ method: 'POST', url: '/ai/jobs', headers: { 'content-type': 'application/json' }, payload: '{not json' });
    expect(res.statusCode).toBe(401);
    await app.close();
  });
});
