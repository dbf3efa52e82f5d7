/**
 * Runs one subcommand: options → connection → (lock) → operation → output →
 * exit code. Every error becomes an OrchError with its contract exit code;
 * this module and main.ts are the only places that know about exit codes.
 */
import type { Command } from 'commander';
import type { ZodType } from 'zod';
import { ExitCode, GuardStopError, OrchError, RedisUnavailableError, toOrchError } from '../core/errors.js';
import { Keyspace } from '../core/keys.js';
import { LeaseLock } from '../core/lock.js';
import { asUnavailable, closeRedis, connectRedis, parseRedisUrl, redactUrl, type RedisClient } from '../core/redis.js';
import { defaultActor, StateStore } from '../core/state.js';
import type { OpContext } from '../ops/context.js';
import { assertForceReason } from '../ops/gates.js';
import { GlobalOptionsSchema, parseFlags, type GlobalOptions } from './options.js';
import { Output, safe } from './output.js';
import { createProgress, type ProgressReporter } from './progress.js';

/** Everything a command body receives. */
export interface CommandIO<O> {
  ctx: OpContext;
  out: Output;
  progress: ProgressReporter;
  globals: GlobalOptions;
  /** The command's own options, parsed by its schema (defaults applied). */
  opts: O;
}

/** Definition of a subcommand's run. */
export interface CommandSpec<R, O> {
  /** Name shown in the lock and the history. */
  name: string;
  /** The command's options: one schema holds their types and defaults. */
  options: ZodType<O>;
  /** Takes the lease lock (every command that writes). */
  mutating: boolean | ((opts: O) => boolean);
  execute(io: CommandIO<O>): Promise<R>;
  /** Human rendering of the result (stdout, through out.print). */
  render(result: R, out: Output): void;
  /** Exit code of a completed run (default 0). */
  exitCode?(result: R): number;
  /** JSON object on stdout (default: the result itself). */
  toJson?(result: R): unknown;
  /** Compact summary for the history stream (default: none for read-only commands). */
  historySummary?(result: R): Record<string, unknown>;
}

/** Parses the global options of a command (a bad value is a usage error naming the flag). */
export function globalOptions(cmd: Command): GlobalOptions {
  return parseFlags(GlobalOptionsSchema, cmd.optsWithGlobals());
}

/** Prints an error: one line plus the fix on stderr, and the JSON error object on stdout with --json. */
export function reportError(err: OrchError, out: Output): void {
  // Messages can quote untrusted input (a key name, a value): one line each, escaped.
  out.line(`${out.errColor.red('error:')} ${safe(err.message)}`);
  if (err.suggestion) out.line(`${out.errColor.dim('  fix:')} ${safe(err.suggestion)}`);
  // A guard's stop also says which guard, what it read, and how long the run was held back before.
  const details = err instanceof GuardStopError ? err.details() : {};
  out.result({ ok: false, exitCode: err.exitCode, error: { code: err.code, message: err.message, suggestion: err.suggestion ?? null, ...details } });
}

/**
 * Signals that stop a run cleanly (checkpoint saved, lock released, exit 130).
 * SIGHUP is what a closed terminal sends: Node's default would die on the spot.
 */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Installs the stop-signal handlers that abort `controller`; a second signal exits at once. */
function trapSignals(controller: AbortController, onSecond: () => void): () => void {
  let count = 0;
  const handler = (): void => {
    count += 1;
    if (count === 1) controller.abort();
    else onSecond();
  };
  for (const s of STOP_SIGNALS) process.on(s, handler);
  return () => {
    for (const s of STOP_SIGNALS) process.off(s, handler);
  };
}

/** Options whose value is a connection URL: never recorded, in either spelling (`--opt v`, `--opt=v`). */
const URL_OPTIONS = ['--redis-url'];

/**
 * The subcommand and its own arguments, as stored in the lock (shown to a
 * second operator and by status) and in the history. Credentials never get
 * there: connection options are dropped whatever their position or spelling,
 * and any other argument that holds a URL is redacted (userinfo and
 * credential query parameters).
 */
export function commandLine(name: string, argv: string[] = process.argv.slice(2)): string {
  const i = argv.indexOf(name);
  const rest = i >= 0 ? argv.slice(i + 1) : [];
  const kept: string[] = [];
  for (let j = 0; j < rest.length; j++) {
    const a = rest[j]!;
    if (URL_OPTIONS.includes(a)) {
      j++; // and its value
      continue;
    }
    if (URL_OPTIONS.some((o) => a.startsWith(`${o}=`))) continue;
    kept.push(a.includes('://') ? a.replace(/[a-z][a-z0-9+.-]*:\/\/\S*/gi, (u) => redactUrl(u)) : a);
  }
  return [name, ...kept].join(' ').slice(0, 200);
}

/** Runs a command spec; resolves with the process exit code. Never throws. */
export async function runCommand<R, O>(cmd: Command, spec: CommandSpec<R, O>): Promise<number> {
  let out = new Output(false);
  let client: RedisClient | null = null;
  let lock: LeaseLock | null = null;
  let address = '?';
  let state: StateStore | null = null;
  let actor = defaultActor();
  let mutating = false;
  const controller = new AbortController();
  const untrap = trapSignals(controller, () => {
    out.line('second interrupt: exiting now; the lock lease expires by itself');
    process.exit(ExitCode.Interrupted);
  });
  const progress = { current: null as ProgressReporter | null };
  try {
    out = new Output(cmd.optsWithGlobals().json === true);
    const globals = globalOptions(cmd);
    // Checked before connecting: bad flags, and a refused override, must not take (or wait for) the lock.
    const opts = parseFlags(spec.options, cmd.opts());
    const own = opts as { force?: string[]; reason?: string | null };
    assertForceReason({ force: own.force ?? [], reason: own.reason ?? '' });
    mutating = typeof spec.mutating === 'function' ? spec.mutating(opts) : spec.mutating;
    actor = globals.actor ?? actor;
    address = parseRedisUrl(globals.redisUrl).address;
    const keys = new Keyspace(globals.prefix);
    client = await connectRedis({
      url: globals.redisUrl,
      cluster: globals.cluster,
      commandTimeoutMs: globals.timeout,
      connectTimeoutMs: Math.min(5000, globals.timeout),
      connectionName: `orch-migrate:${spec.name}`,
    });
    state = new StateStore(client, keys);
    if (mutating) {
      // A state record edited into nonsense is a config error (exit 2) before anything is written:
      // taking the lock would bump lock_fence inside the very record the operator is repairing.
      await state.read();
      lock = await LeaseLock.acquire(client, keys, { command: commandLine(spec.name), ttlMs: globals.lockTtl, actor });
      // Losing the lease stops the run like an interrupt does.
      lock.signal.addEventListener('abort', () => controller.abort(lock?.signal.reason), { once: true });
    }
    progress.current = createProgress(out);
    const ctx: OpContext = { client, keys, state, actor, signal: controller.signal, lock };
    const result = await spec.execute({ ctx, out, progress: progress.current, globals, opts });
    progress.current.finish();
    const code = spec.exitCode?.(result) ?? ExitCode.Ok;
    spec.render(result, out);
    out.result(spec.toJson ? spec.toJson(result) : result);
    if (spec.historySummary) await state.appendHistory(spec.name, actor, { exitCode: code, ...spec.historySummary(result) });
    return code;
  } catch (raw) {
    progress.current?.stop();
    const err = toOrchError(asUnavailable(raw, address));
    reportError(err, out);
    if (mutating && state && !(err instanceof RedisUnavailableError)) {
      // Refusals and failures are part of the audit trail too.
      const details = err instanceof GuardStopError ? err.details() : {};
      await state.appendHistory(spec.name, actor, { exitCode: err.exitCode, error: err.code, message: err.message, ...details }).catch(() => undefined);
    }
    return err.exitCode;
  } finally {
    untrap();
    if (lock) await lock.release();
    if (client) await closeRedis(client);
  }
}
