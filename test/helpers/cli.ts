/**
 * Runs the real `orch-migrate` binary (built dist) as a user would, capturing
 * exit code, stdout, stderr and the parsed --json object.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Path of bin/orch-migrate. */
export const CLI = fileURLToPath(new URL('../../bin/orch-migrate', import.meta.url));

/** Outcome of a CLI run. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The JSON object on stdout, when there is exactly one. */
  json: Record<string, unknown> | null;
  durationMs: number;
}

/** Options of {@link runCli}. */
export interface RunCliOptions {
  env?: Record<string, string | undefined>;
  /** Kill the child after this long (default 60 s). */
  timeoutMs?: number;
  /** Called with the child once spawned (to signal it mid-run). */
  onSpawn?: (child: ChildProcess) => void;
}

/** Spawns `node bin/orch-migrate …args`. */
export function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...opts.env };
    for (const [k, v] of Object.entries(opts.env ?? {})) if (v === undefined) delete env[k];
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let json: Record<string, unknown> | null = null;
      const trimmed = stdout.trim();
      if (trimmed.startsWith('{') && !trimmed.includes('\n')) {
        try {
          json = JSON.parse(trimmed) as Record<string, unknown>;
        } catch {
          json = null;
        }
      }
      resolve({ code, signal, stdout, stderr, json, durationMs: Date.now() - started });
    });
    opts.onSpawn?.(child);
  });
}

/** Common args pointing the CLI at a server and a key prefix. */
export function target(url: string, prefix: string, cluster = false): string[] {
  return ['--redis-url', url, '--prefix', prefix, ...(cluster ? ['--cluster'] : [])];
}
