/**
 * The `orch-migrate` entry point: commander wiring only. Operations live in
 * src/ops; this is the one module that calls process.exit.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { ExitCode } from '../core/errors.js';
import { DEFAULT_ACK_TIMEOUT_MS } from '../core/writers.js';
import { DEFAULT_LOCK_TTL_MS } from '../core/lock.js';
import { DEFAULT_REDIS_URL } from '../core/redis.js';
import { dflt, fmtDuration } from './options.js';
import { registerEnableDualWrite } from './commands/enable-dual-write.js';
import { registerStatus } from './commands/status.js';
import { registerDemo } from './commands/demo.js';
import { registerCompletion } from './commands/completion.js';
import { extraCommands } from './commands/index.js';

/** Control characters (newlines included) escaped, so one message is one line. */
function oneLine(s: string): string {
  return s.replace(/\s+$/, '').replace(/\p{Cc}/gu, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Builds the program; `setExit` receives each action's exit code. */
export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command();
  program
    .name('orch-migrate')
    .description(
      'Zero-downtime migration of the AI Orchestrator job store from ai:jobs:<job_id> to ai:job:<workspace_id>:<job_id>.\n' +
        'Phases: legacy → dual-write → read-new → new-only. Every step is gated, locked, audited and reversible.',
    )
    .version(version(), '-V, --version')
    .addOption(new Option('--redis-url <url>', `Redis URL; the password is never printed ${dflt(DEFAULT_REDIS_URL)}`).env('REDIS_URL'))
    .option('--cluster', 'the URL is a startup node of a Redis Cluster; scan every master')
    .option('--json', 'print exactly one JSON object on stdout (progress and errors stay on stderr)')
    .addOption(new Option('--prefix <prefix>', `key prefix of the job store ${dflt('ai')}`).env('ORCH_PREFIX'))
    .addOption(new Option('--timeout <ms>', `fail a Redis command that gets no answer within this many ms ${dflt('15000')}`))
    .addOption(
      new Option('--lock-ttl <ms>', `lease of the operator lock in ms; a killed run stops blocking after this ${dflt(DEFAULT_LOCK_TTL_MS)}`).env(
        'ORCH_LOCK_TTL_MS',
      ),
    )
    .addOption(new Option('--actor <name>', 'who is acting, for the audit trail (default: OS user@host)').env('ORCH_ACTOR'))
    .addOption(
      new Option(
        '--ack-timeout <duration>',
        `how long a step waits for every registered writer to acknowledge a new phase (exit 3 naming the laggards after it) ${dflt(fmtDuration(DEFAULT_ACK_TIMEOUT_MS))}`,
      ).env('ORCH_ACK_TIMEOUT'),
    )
    .addOption(
      new Option('--tls-ca-file <file>', 'PEM file of the CA that signed the server certificate (a private CA); with a rediss:// URL').env('ORCH_TLS_CA_FILE'),
    )
    .addOption(
      new Option('--tls-cert-file <file>', 'PEM client certificate, for servers with tls-auth-clients yes (with --tls-key-file)').env('ORCH_TLS_CERT_FILE'),
    )
    .addOption(new Option('--tls-key-file <file>', 'PEM private key of --tls-cert-file (unencrypted; never printed)').env('ORCH_TLS_KEY_FILE'))
    .addOption(
      new Option('--tls-servername <name>', 'host name the server certificate must hold, when it differs from the host connected to').env(
        'ORCH_TLS_SERVERNAME',
      ),
    )
    .addOption(
      new Option(
        '--sentinel <host:port,…>',
        'find the master through these Redis Sentinels and follow its failovers; --redis-url then gives only user, password, db and rediss',
      ).env('ORCH_SENTINELS'),
    )
    .addOption(
      new Option(
        '--sentinel-master <name>',
        'the master name the sentinels monitor (with --sentinel; sentinel credentials: ORCH_SENTINEL_USERNAME/ORCH_SENTINEL_PASSWORD)',
      ).env('ORCH_SENTINEL_MASTER'),
    )
    .showHelpAfterError('(run with --help for usage)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // --help and --version are the result a user asked for: stdout, so they pipe into less/grep.
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
      // Commander echoes the offending value: keep its message on one line whatever the value holds.
      outputError: (s, write) => write(`${oneLine(s)}\n`),
    })
    .addHelpText(
      'after',
      `
Exit codes: 0 ok · 1 problems found · 2 usage/config error · 3 gate refused · 4 lock held or lost · 5 Redis unreachable · 6 stopped by a guard · 130 interrupted

Runbook order:
  orch-migrate status
  orch-migrate enable-dual-write --reason "…"
  orch-migrate backfill
  orch-migrate verify
  orch-migrate flip-read --reason "…"
  orch-migrate cleanup            # dry run; then --execute
  orch-migrate rollback           # preview one step back; then --execute`,
    );
  registerStatus(program, setExit);
  registerEnableDualWrite(program, setExit);
  for (const register of extraCommands) register(program, setExit);
  registerDemo(program, setExit);
  registerCompletion(program);
  return program;
}

/** Parses argv and runs; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let code: number = ExitCode.Ok;
  const program = buildProgram((c) => {
    code = c;
  });
  // A bare `orch-migrate` is a usage error: show the help where errors go, exit 2.
  if (argv.slice(2).length === 0) {
    process.stderr.write(program.helpInformation());
    return ExitCode.Usage;
  }
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return ExitCode.Ok;
      // Unknown commands, unknown options, bad values: usage errors. --json still gets its one object.
      if (argv.includes('--json')) {
        process.stdout.write(
          `${JSON.stringify({ ok: false, exitCode: ExitCode.Usage, error: { code: 'ERR_USAGE', message: oneLine(err.message).replace(/^error: /, ''), suggestion: 'Run with --help for usage.' } })}\n`,
        );
      }
      return ExitCode.Usage;
    }
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return ExitCode.Problems;
  }
}

/** Runs the CLI and exits the process with the contract's exit code. */
export async function run(argv: string[] = process.argv): Promise<never> {
  // A closed pipe (`status | head -1`) or a closed terminal is not a crash: stop writing, keep the exit code.
  const ignoreClosed = (err: NodeJS.ErrnoException): void => {
    if (err.code !== 'EPIPE' && err.code !== 'EIO') throw err;
  };
  process.stdout.on('error', ignoreClosed);
  process.stderr.on('error', ignoreClosed);
  const code = await main(argv);
  // Flush stdout before exiting: a piped --json consumer must get the whole object. The write
  // callback also fires when the reader has gone (EPIPE): waiting for 'drain' there never ended,
  // and Node exited 13 (unsettled top-level await) instead of the command's code.
  await new Promise<void>((resolve) => {
    if (process.stdout.destroyed) return resolve();
    process.stdout.once('close', () => resolve());
    process.stdout.write('', () => resolve());
  });
  process.exit(code);
}
