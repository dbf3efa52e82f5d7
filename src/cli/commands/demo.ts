/** `orch-migrate demo`. */
import type { Command } from 'commander';
import { ExitCode, toOrchError } from '../../core/errors.js';
import { runDemo } from '../demo/run-demo.js';
import { intOption } from '../options.js';
import { Output } from '../output.js';
import { reportError } from '../runner.js';

/** Registers `demo`. */
export function registerDemo(program: Command, setExit: (code: number) => void): void {
  program
    .command('demo')
    .description('Run the whole migration on a throwaway Redis with live writers, and prove every job survived')
    .option('--jobs <n>', 'legacy jobs to load', intOption(10, 1_000_000), 3000)
    .option('--workspaces <n>', 'workspaces to spread them over', intOption(1, 1000), 12)
    .option('--writers <n>', 'live writers running throughout', intOption(0, 32), 3)
    .addHelpText(
      'after',
      `
With no REDIS_URL it starts redis-server on a free port (or redis:7 in Docker) and stops it at the end, Ctrl-C included.
With REDIS_URL it uses that server under a fresh key prefix and deletes its own keys afterwards.

Example:
  $ npm run demo`,
    )
    .action(async (_o, cmd: Command) => {
      const globals = cmd.optsWithGlobals();
      const out = new Output(globals.json === true);
      const controller = new AbortController();
      const onSignal = (): void => controller.abort();
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const o = cmd.opts();
        const r = await runDemo(
          {
            jobs: o.jobs as number,
            workspaces: o.workspaces as number,
            writers: o.writers as number,
            ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}),
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
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
