// `orch-api token create`: prints the token once, and the entry that admits it.
import { describe, expect, it } from 'vitest';
import { hashToken, parseTokenTable, TokenTable } from '../../src/api/auth.js';
import { runApiCli } from '../../src/api/token-cli.js';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runApiCli(args, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  return { code, out, err };
}

describe('orch-api token create', () => {
  it('prints the token and its table entry; the entry admits the token with the scopes asked for', async () => {
    const r = await run(['token', 'create', '--workspace', 'acme', '--scopes', 'actions:preview,actions:write']);
    expect(r.code).toBe(0);
    const [token, entryLine, ...rest] = r.out.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(token).toMatch(/^orch_[A-Za-z0-9_-]{43}$/);
    const entry = JSON.parse(entryLine!);
    expect(entry).toEqual({ sha256: hashToken(token!), workspace_id: 'acme', scopes: ['actions:preview', 'actions:write'] });
    // The entry is a valid token table row, and the token authenticates against it.
    const table = new TokenTable(parseTokenTable(JSON.stringify([entry]), 'test'));
    expect(table.authenticate(`Bearer ${token}`, 'actions:write')).toMatchObject({ ok: true, principal: { workspaceId: 'acme' } });
    // Printed once: stderr explains, it never repeats the token.
    expect(r.err).not.toContain(token);
    expect(r.err).toMatch(/shown once/);
    // A second run makes another token.
    const again = await run(['token', 'create', '--workspace', 'acme', '--scopes', 'actions:preview']);
    expect(again.out.split('\n')[0]).not.toBe(token);
  });

  it('prints one JSON object with --json', async () => {
    const r = await run(['token', 'create', '--workspace', 'ws-1', '--scopes', 'actions:preview', '--json']);
    expect(r.code).toBe(0);
    const obj = JSON.parse(r.out);
    expect(Object.keys(obj).sort()).toEqual(['entry', 'token']);
    expect(obj.entry.sha256).toBe(hashToken(obj.token));
  });

  it('refuses an invalid workspace, unknown scopes and missing options with exit 2', async () => {
    for (const args of [
      ['token', 'create', '--workspace', 'Bad:WS*', '--scopes', 'actions:preview'],
      ['token', 'create', '--workspace', 'acme', '--scopes', 'actions:admin'],
      ['token', 'create', '--workspace', 'acme', '--scopes', ','],
      ['token', 'create', '--workspace', 'acme'],
      ['token', 'frobnicate'],
    ]) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.out, args.join(' ')).toBe('');
    }
    expect((await run(['--help'])).code).toBe(0);
  });
});
