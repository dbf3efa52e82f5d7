/** `orch-migrate demo`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { ConfigError, ExitCode, toOrchError } from '../../core/errors.js';
import { runDemo } from '../demo/run-demo.js';
import { dflt, intFlag, parseFlags, switchFlag, withDefault } from '../options.js';
import { Output } from '../output.js';
import { reportError } from '../runner.js';

/**
 * Signals that end the demo cleanly. SIGHUP is the one a closed terminal
 * sends: Node's default for it is to die on the spot, without the cleanup that
 * stops the throwaway server (redis-server itself ignores SIGHUP, so it would
 * run on).
 */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

const DEFAULT_JOBS = 3000;
const DEFAULT_WORKSPACES = 12;
const DEFAULT_WRITERS = 3;

/** Options of `demo`. */
const DemoFlagsSchema = z.object({
  jobs: withDefault(intFlag(10, 1_000_000), DEFAULT_JOBS),
  workspaces: withDefault(intFlag(1, 1000), DEFAULT_WORKSPACES),
  writers: withDefault(intFlag(0, 32), DEFAULT_WRITERS),
  yes: switchFlag,
});

/** Registers `demo`. */
export function registerDemo(program: Command, setExit: (code: number) => void): void {
  program
    .command('demo')
    .description('Run the whole migration on a throwaway Redis with live writers, and prove every job survived')
    .option('--jobs <n>', `legacy jobs to load ${dflt(DEFAULT_JOBS)}`)
    .option('--workspaces <n>', `workspaces to spread them over ${dflt(DEFAULT_WORKSPACES)}`)
    .option('--writers <n>', `live writers running throughout ${dflt(DEFAULT_WRITERS)}`)
    .option('--yes', 'run on the server named by --redis-url or REDIS_URL although the demo did not start it')
    .addHelpText(
      'after',
      `
By default it starts redis-server on a free loopback port and stops it at the end, on Ctrl-C, SIGTERM and
SIGHUP (a closed terminal) too; a server left by a demo that was killed is stopped by the next demo.
A server named by --redis-url or REDIS_URL is refused (exit 2) unless --yes is given: the demo then writes
only under a fresh key prefix there and deletes that prefix's keys at the end.

Examples:
  $ orch-migrate demo
  $ orch-migrate demo --redis-url redis://127.0.0.1:6390 --yes`,
    )
    .action(async (_o, cmd: Command) => {
      const globals = cmd.optsWithGlobals();
      const out = new Output(globals.json === true);
      const controller = new AbortController();
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals): void => {
        signals += 1;
        if (signals === 1) {
          out.line(`demo: ${signal} received; stopping the writers, the current step and the throwaway server`);
          controller.abort();
          return;
        }
        // A second signal: leave now. The launcher's exit handler still kills the server.
        process.exit(ExitCode.Interrupted);
      };
      // After SIGHUP the terminal is gone and writing to it fails (EIO): the cleanup must go on regardless.
      const ignoreWriteError = (): void => undefined;
      process.stderr.on('error', ignoreWriteError);
      process.stdout.on('error', ignoreWriteError);
      for (const s of STOP_SIGNALS) process.on(s, onSignal);
      try {
        if (globals.cluster === true) {
          throw new ConfigError('The demo runs on a single Redis node; --cluster is not supported here', {
            suggestion: 'Drop --cluster (the migration commands themselves support Redis Cluster).',
          });
        }
        // Only a URL the user gave counts: the built-in default (127.0.0.1:6379) is nobody's consent.
        const source = cmd.getOptionValueSourceWithGlobals('redisUrl');
        const redisUrl = source === 'cli' || source === 'env' ? (globals.redisUrl as string) : undefined;
        const o = parseFlags(DemoFlagsSchema, cmd.opts());
        const r = await runDemo(
          {
            jobs: o.jobs,
            workspaces: o.workspaces,
            writers: o.writers,
            ...(redisUrl !== undefined ? { redisUrl } : {}),
            yes: o.yes,
            signal: controller.signal,
          },
          out,
        );
        out.result(r);
        setExit(r.ok ? ExitCode.Ok : ExitCode.Problems);
      } catch (err) {
        const e = toOrchError(err);
        reportError(e, out);
        setExit(e.exitCode);
      } finally {
        for (const s of STOP_SIGNALS) process.off(s, onSignal);
        process.stderr.off('error', ignoreWriteError);
        process.stdout.off('error', ignoreWriteError);
      }
    });
}
