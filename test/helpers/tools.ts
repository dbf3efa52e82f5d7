/**
 * External tools some tests need (bash, zsh, promtool, openssl, script). Outside CI a missing
 * tool skips the test with the install command; under CI=true it fails it,
 * because .ci/run installs every one of them and a skip there would hide a gap.
 */
import { spawnSync } from 'node:child_process';

/** Debian packages that provide each tool (what .ci/run installs). */
const PACKAGE: Record<string, string> = { zsh: 'zsh', promtool: 'prometheus', bash: 'bash', openssl: 'openssl', script: 'bsdutils' };

/** How a tool says its version when `--version` is not it (openssl has a subcommand). */
const VERSION_ARGS: Record<string, string[]> = { openssl: ['version'] };

/** True when `tool` runs. */
export function toolAvailable(tool: string): boolean {
  const r = spawnSync(tool, VERSION_ARGS[tool] ?? ['--version'], { stdio: 'ignore', timeout: 10_000 });
  return r.error === undefined && r.status === 0;
}

/** Skips (or, under CI=true, fails) the test when `tool` is missing. */
export function requireTool(tool: string, ctx: { skip(note?: string): never }): void {
  if (toolAvailable(tool)) return;
  const fix = `apt-get install -y ${PACKAGE[tool] ?? tool}`;
  if (process.env.CI === 'true') throw new Error(`${tool} is required under CI=true (.ci/run installs it: ${fix})`);
  ctx.skip(`${tool} is not installed (${fix})`);
}
