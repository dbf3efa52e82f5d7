/**
 * The install story, as an SRE meets it: a fresh checkout without dist/ says
 * in one line how to build (no ERR_MODULE_NOT_FOUND stack trace); `npm pack`
 * builds through the `prepare` script; the tarball installs globally into a
 * prefix, and the installed `orch-migrate` runs a real migration step (its Lua
 * scripts ship with it), prints its version and help, and completes.
 *
 * The checkout is a copy of this work tree (tracked and new files, not dist/ or
 * node_modules/, which is linked), so the test never rebuilds the dist/ other
 * tests run. The global install uses `--prefer-offline`: dependency tarballs
 * come from the npm cache that the repo's own `npm ci` filled. `--offline`
 * alone is not enough on a fresh machine, because `npm ci` installs from the
 * lockfile and never fetches the registry metadata that resolving the
 * tarball's version ranges needs; that metadata is the only download.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeClient, connectStandalone, deleteKeysWithPrefix, sharedStandaloneUrl, uniquePrefix } from '../helpers/fixtures.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

/** The environment without what `npm test` exported for its own run (npm_lifecycle_*, npm_package_*, ...). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.toLowerCase().startsWith('npm_') && !['npm_config_cache', 'npm_config_userconfig', 'npm_config_registry'].includes(k.toLowerCase())) continue;
    env[k] = v;
  }
  delete env.REDIS_URL;
  return { ...env, NO_COLOR: '1', ...extra };
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string>; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: opts.cwd ?? REPO, env: cleanEnv(opts.env), encoding: 'utf8', timeout: 300_000, input: opts.input ?? '' });
}

const show = (r: SpawnSyncReturns<string>): string => `exit ${r.status}\n--- stdout\n${r.stdout.slice(-2000)}\n--- stderr\n${r.stderr.slice(-3000)}`;

describe('install: from a checkout, packed, installed globally', () => {
  let tmp: string;
  let checkout: string;
  let tarball: string;
  let prefix: string;

  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'orch-install-'));
    checkout = path.join(tmp, 'checkout');
    const files = run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard']);
    if (files.status !== 0) throw new Error(`this test copies the git work tree; git ls-files failed: ${show(files)}`);
    for (const f of files.stdout.split('\0')) {
      if (f === '' || !existsSync(path.join(REPO, f))) continue; // deleted in the work tree
      mkdirSync(path.dirname(path.join(checkout, f)), { recursive: true });
      cpSync(path.join(REPO, f), path.join(checkout, f));
    }
    symlinkSync(path.join(REPO, 'node_modules'), path.join(checkout, 'node_modules'), 'dir');
    prefix = path.join(tmp, 'prefix');
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('an unbuilt checkout says how to build, in one line, with exit 2 (no stack trace)', () => {
    expect(existsSync(path.join(checkout, 'dist'))).toBe(false);
    for (const [bin, args] of [
      ['orch-migrate', ['status']],
      ['orch-api', []],
    ] as const) {
      const r = run(process.execPath, [path.join(checkout, 'bin', bin), ...args]);
      expect(r.status, show(r)).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(`${bin}: not built`);
      expect(r.stderr).toContain('Fix: run `npm run build`');
      expect(r.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|\n\s+at /);
    }
  });

  it('npm pack builds through prepare and packs dist/, the Lua scripts and deploy/, not the sources or tests', () => {
    const r = run('npm', ['pack', '--pack-destination', tmp, '--no-audit', '--no-fund'], { cwd: checkout });
    expect(r.status, show(r)).toBe(0);
    tarball = path.join(tmp, `orch-migrate-${VERSION}.tgz`);
    expect(existsSync(tarball), show(r)).toBe(true);
    // prepare ran the build in the checkout: its CLI works now.
    const v = run(process.execPath, [path.join(checkout, 'bin', 'orch-migrate'), '--version']);
    expect(v.status, show(v)).toBe(0);
    expect((v.stdout + v.stderr).trim()).toBe(VERSION);

    const list = run('tar', ['-tzf', tarball]);
    expect(list.status, show(list)).toBe(0);
    const files = list.stdout.split('\n').filter(Boolean);
    // Every script file and every include it pulls in (src/core/lua, src/core/lua/includes).
    const luaDir = path.join(REPO, 'src/core/lua');
    const lua = [...readdirSync(luaDir).filter((f) => f.endsWith('.lua')), ...readdirSync(path.join(luaDir, 'includes')).map((f) => `includes/${f}`)];
    expect(lua.length).toBeGreaterThan(10);
    for (const f of [
      'package/package.json',
      'package/bin/orch-migrate',
      'package/bin/orch-api',
      'package/bin/import-built.js',
      'package/dist/src/cli/main.js',
      'package/dist/src/api/main.js',
      'package/deploy/metric-names.json',
      ...lua.map((l) => `package/dist/src/core/lua/${l}`),
    ]) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => f.startsWith('package/src/') || f.startsWith('package/test/') || f.startsWith('package/dist/test/'))).toEqual([]);
  });

  it('npm i -g of the tarball puts a working orch-migrate and orch-api on PATH', async () => {
    expect(tarball, 'the pack test must run first').toBeDefined();
    const install = run('npm', ['install', '--global', '--prefix', prefix, tarball, '--prefer-offline', '--no-audit', '--no-fund']);
    expect(install.status, show(install)).toBe(0);
    const bin = path.join(prefix, 'bin', 'orch-migrate');
    expect(existsSync(bin)).toBe(true);
    expect(existsSync(path.join(prefix, 'bin', 'orch-api'))).toBe(true);
    // As a runbook calls it: by name, from PATH, in another directory.
    const env = { PATH: `${path.join(prefix, 'bin')}${path.delimiter}${process.env.PATH ?? ''}` };

    const version = run('orch-migrate', ['--version'], { cwd: tmp, env });
    expect(version.status, show(version)).toBe(0);
    expect((version.stdout + version.stderr).trim()).toBe(VERSION);

    const help = run('orch-migrate', ['--help'], { cwd: tmp, env });
    expect(help.status, show(help)).toBe(0);
    for (const sub of ['status', 'enable-dual-write', 'backfill', 'verify', 'flip-read', 'cleanup', 'rollback', 'demo', 'completion']) {
      expect(help.stdout + help.stderr).toMatch(new RegExp(`\\n\\s+${sub}\\b`));
    }

    const completion = run('orch-migrate', ['completion', 'bash'], { cwd: tmp, env });
    expect(completion.status, show(completion)).toBe(0);
    const syntax = spawnSync('bash', ['-n'], { input: completion.stdout, encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);
    expect(completion.stdout).toContain('complete -F _orch_migrate orch-migrate');

    // A real step against Redis: the installed copy loads its own Lua scripts.
    const keyPrefix = uniquePrefix('install');
    const client = connectStandalone();
    try {
      const step = run(
        'orch-migrate',
        ['--redis-url', sharedStandaloneUrl(), '--prefix', keyPrefix, '--json', 'enable-dual-write', '--reason', 'install test', '--settle-ms', '100'],
        { cwd: tmp, env },
      );
      expect(step.status, show(step)).toBe(0);
      expect(JSON.parse(step.stdout)).toMatchObject({ from: 'legacy', to: 'dual-write', epoch: 1 });
      expect(await client.hget(`${keyPrefix}:migration:jobs`, 'phase')).toBe('dual-write');
    } finally {
      await deleteKeysWithPrefix(client, keyPrefix);
      await closeClient(client);
    }

    // orch-api loads too: without its token table it stops with the config error (exit 2), not a missing module.
    const api = run('orch-api', [], { cwd: tmp, env: { ...env, REDIS_URL: sharedStandaloneUrl(), PORT: '0' } });
    expect(api.status, show(api)).toBe(2);
    expect(api.stdout + api.stderr).toMatch(/ORCH_API_TOKENS/);
    expect(api.stdout + api.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND/);
  });
});
