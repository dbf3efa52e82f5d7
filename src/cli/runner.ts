/**
 * Runs one subcommand: options → connection → (lock) → operation → output →
 * exit code. Every error becomes an OrchError with its contract exit code;
 * this module and main.ts are the only places that know about exit codes.
 */
import type { Command } from 'commander';
import type { Redis } from 'ioredis';
import type { ZodType } from 'zod';
import { ExitCode, GuardStopError, OrchError, RedisUnavailableError, toOrchError } from '../core/errors.js';
import { Keyspace } from '../core/keys.js';
import { LeaseLock, type LockShard } from '../core/lock.js';
import {
  asUnavailable,
  closeRedis,
  connectionTarget,
  connectRedis,
  connectReplica,
  parseRedisUrl,
  redactUrl,
  replicaLag,
  type RedisClient,
  type RedisConnectionOptions,
  type ReplicaLag,
} from '../core/redis.js';
import { sentinelSettings, SENTINEL_SETTING_NAMES } from '../core/sentinel.js';
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
  /**
   * The shard whose lease a mutating run takes instead of the global one
   * (`backfill --shard i/n`): shards of one count run side by side, and any
   * global holder excludes them all (src/core/lock.ts). Default: global.
   */
  lockShard?(opts: O): LockShard | null;
  execute(io: CommandIO<O>): Promise<R>;
  /** Human rendering of the result (stdout, through out.print). */
  render(result: R, out: Output): void;
  /** Exit code of a completed run (default 0). */
  exitCode?(result: R): number;
  /** JSON object on stdout (default: the result itself). */
  toJson?(result: R): unknown;
  /** Compact summary for the history stream (default: none for read-only commands). */
  historySummary?(result: R): Record<string, unknown>;
  /**
   * `replica`: the operation's reads go to a replica (`ctx.client` is then a
   * replica connection, while the state record, the lock and the history stay
   * on the master). Only for operations that write nothing through
   * `ctx.client`; the lag is measured before and after and stated in the result.
   */
  readFrom?(opts: O): 'master' | 'replica';
}

/** Where a run read from, when not the master (`readFrom` in --json, and the history). */
export interface ReadFromReplica {
  role: 'replica';
  address: string;
  /** Bytes of the master's writes the replica had not applied, when the run started and when it ended. */
  lagBytesAtStart: number | null;
  lagBytesAtEnd: number | null;
  linkStatus: string;
  lastIoSecondsAgo: number | null;
}

/** The connection options of the global flags: URL, cluster, TLS and Sentinel (sentinel credentials from the environment only). */
export function connectionOptions(globals: GlobalOptions, name: string): RedisConnectionOptions {
  return {
    url: globals.redisUrl,
    cluster: globals.cluster,
    commandTimeoutMs: globals.timeout,
    connectTimeoutMs: Math.min(5000, globals.timeout),
    connectionName: `orch-migrate:${name}`,
    tls: { caFile: globals.tlsCaFile, certFile: globals.tlsCertFile, keyFile: globals.tlsKeyFile, servername: globals.tlsServername },
    sentinel: sentinelSettings({
      sentinels: globals.sentinel,
      masterName: globals.sentinelMaster,
      // Passwords never go on a command line (ps shows it): the environment only.
      username: process.env[SENTINEL_SETTING_NAMES.username.env] ?? null,
      password: process.env[SENTINEL_SETTING_NAMES.password.env] ?? null,
    }),
  };
}

function fmtLag(lag: number | null): string {
  return lag === null ? 'unknown' : `${lag} byte(s)`;
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

/** The ACL user a connection authenticates as, for "grant it with ACL SETUSER <user> …" (never the password). */
function userOf(conn: RedisConnectionOptions | null): string {
  if (!conn) return 'default';
  try {
    return parseRedisUrl(conn.url).username ?? 'default';
  } catch {
    return 'default';
  }
}

/** Runs a command spec; resolves with the process exit code. Never throws. */
export async function runCommand<R, O>(cmd: Command, spec: CommandSpec<R, O>): Promise<number> {
  let out = new Output(false);
  let client: RedisClient | null = null;
  let reader: Redis | null = null;
  let lock: LeaseLock | null = null;
  let address = '?';
  let conn: RedisConnectionOptions | null = null;
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
    conn = connectionOptions(globals, spec.name);
    address = connectionTarget(conn);
    const keys = new Keyspace(globals.prefix);
    client = await connectRedis(conn);
    state = new StateStore(client, keys);
    let lagAtStart: ReplicaLag | null = null;
    if (spec.readFrom?.(opts) === 'replica') {
      reader = await connectReplica({ ...conn, connectionName: `orch-migrate:${spec.name}:replica` }, client);
      lagAtStart = await replicaLag(client as Redis, reader);
      // A replica cut off from its master may be any age: reading it would verify the past.
      if (lagAtStart.linkStatus !== 'up') {
        throw new RedisUnavailableError(
          lagAtStart.address,
          `the replica's link to its master is ${lagAtStart.linkStatus}, so its data may be far behind; reading from it was refused`,
        );
      }
    }
    if (mutating) {
      // Before anything changes, say where: at 3 a.m. the wrong REDIS_URL is the costliest mistake.
      out.line(`target: ${safe(address)}, prefix ${keys.prefix}`);
      // A state record edited into nonsense is a config error (exit 2) before anything is written:
      // taking the lock would bump lock_fence inside the very record the operator is repairing.
      await state.read();
      lock = await LeaseLock.acquire(client, keys, { command: commandLine(spec.name), ttlMs: globals.lockTtl, actor, shard: spec.lockShard?.(opts) ?? null });
      // Losing the lease stops the run like an interrupt does.
      if (lock.signal.aborted) controller.abort(lock.signal.reason);
      else lock.signal.addEventListener('abort', () => controller.abort(lock?.signal.reason), { once: true });
    }
    progress.current = createProgress(out);
    const ctx: OpContext = { client: reader ?? client, keys, state, actor, signal: controller.signal, lock };
    const result = await spec.execute({ ctx, out, progress: progress.current, globals, opts });
    progress.current.finish();
    let readFrom: ReadFromReplica | null = null;
    if (reader && lagAtStart) {
      const end = await replicaLag(client as Redis, reader);
      readFrom = {
        role: 'replica',
        address: end.address,
        lagBytesAtStart: lagAtStart.lagBytes,
        lagBytesAtEnd: end.lagBytes,
        linkStatus: end.linkStatus,
        lastIoSecondsAgo: end.lastIoSecondsAgo,
      };
    }
    const code = spec.exitCode?.(result) ?? ExitCode.Ok;
    spec.render(result, out);
    if (readFrom) {
      out.print(
        `read from replica ${readFrom.address}: ${fmtLag(readFrom.lagBytesAtStart)} behind the master at the start, ${fmtLag(readFrom.lagBytesAtEnd)} at the end ` +
          `(link ${readFrom.linkStatus}, last I/O from the master ${readFrom.lastIoSecondsAgo ?? '?'}s ago); writes newer than that were not seen`,
      );
    }
    const json = spec.toJson ? spec.toJson(result) : result;
    out.result(readFrom && json !== null && typeof json === 'object' ? { ...(json as Record<string, unknown>), readFrom } : json);
    if (spec.historySummary) {
      try {
        await state.appendHistory(spec.name, actor, { exitCode: code, ...spec.historySummary(result), ...(readFrom ? { readFrom } : {}) });
      } catch (err) {
        // The run is done and its result printed: a lost audit line must not turn success into a failure.
        out.warn(
          `warning: the run finished, but its history entry could not be written (${safe(toOrchError(err).message)}); the state record holds its summary`,
        );
      }
    }
    return code;
  } catch (raw) {
    progress.current?.stop();
    const err = toOrchError(asUnavailable(raw, address, { user: userOf(conn), tls: conn?.tls ?? null, cluster: conn?.cluster === true }));
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
    if (reader) await closeRedis(reader);
    if (client) await closeRedis(client);
  }
}
