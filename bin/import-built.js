// Shared by the bin scripts: loads the built module, or says in one line how to
// build it (exit 2, the contract's config error) instead of an
// ERR_MODULE_NOT_FOUND stack trace. dist/ is built by `npm run build`, which the
// package's `prepare` script runs on `npm ci`, `npm install` and `npm pack`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * @param {string} name the command, for the message
 * @param {string} relative the built module, relative to this directory
 * @returns {Promise<Record<string, unknown>>}
 */
export async function importBuilt(name, relative) {
  const url = new URL(relative, import.meta.url);
  const root = fileURLToPath(new URL('..', import.meta.url)).replace(/[\\/]$/, '');
  if (!existsSync(url)) {
    process.stderr.write(`${name}: not built: ${fileURLToPath(url)} is missing. Fix: run \`npm run build\` in ${root} (\`npm ci\` runs it too).\n`);
    process.exit(2);
  }
  try {
    return await import(url.href);
  } catch (err) {
    if (err && typeof err === 'object' && 'code' in err && err.code === 'ERR_MODULE_NOT_FOUND') {
      const detail = String(err instanceof Error ? err.message : err).split('\n')[0];
      process.stderr.write(`${name}: cannot load: ${detail}. Fix: run \`npm ci && npm run build\` in ${root} (an installed package: reinstall it).\n`);
      process.exit(2);
    }
    throw err;
  }
}
