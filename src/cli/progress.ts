/**
 * Progress on stderr: a cli-progress bar with rate and ETA on a TTY, a line
 * every few seconds otherwise (CI logs), nothing at all in --json mode when
 * stderr is not a terminal.
 */
import cliProgress from 'cli-progress';
import type { Progress, ProgressFn } from '../ops/context.js';
import { fmtInt, type Output } from './output.js';

/** A progress sink with a stop method. */
export interface ProgressReporter {
  update: ProgressFn;
  stop(): void;
}

const LOG_EVERY_MS = 5000;

/** Creates a reporter suited to the terminal. */
export function createProgress(out: Output): ProgressReporter {
  if (!out.interactive) {
    let lastLog = 0;
    let lastStage = '';
    return {
      update(p: Progress) {
        const now = Date.now();
        if (p.message || p.stage !== lastStage || now - lastLog >= LOG_EVERY_MS) {
          lastLog = now;
          lastStage = p.stage;
          const total = p.total === null ? '' : ` / ${p.totalIsEstimate ? '~' : ''}${fmtInt(p.total)}`;
          // A message before any progress (a settle wait, a phase move) reads better without the "0".
          if (p.message && p.done === 0 && p.total === null) out.line(`${p.stage}: ${p.message}`);
          else out.line(`${p.stage}: ${fmtInt(p.done)}${total}${p.message ? ` (${p.message})` : ''}`);
        }
      },
      stop() {},
    };
  }
  let bar: cliProgress.SingleBar | null = null;
  let stage = '';
  const start = Date.now();
  return {
    update(p: Progress) {
      if (p.message) {
        bar?.stop();
        bar = null;
        out.line(`${p.stage}: ${p.message}`);
        return;
      }
      if (!bar || p.stage !== stage) {
        bar?.stop();
        stage = p.stage;
        bar = new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: `${p.stage} {bar} {percentage}% | {value}/{total}${p.totalIsEstimate ? ' (total estimated)' : ''} | {rate} keys/s | ETA {eta_formatted}`,
            etaBuffer: 50,
            hideCursor: true,
            clearOnComplete: false,
            noTTYOutput: false,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(Math.max(p.total ?? p.done, 1), p.done, { rate: '0' });
      }
      const total = Math.max(p.total ?? p.done, p.done, 1);
      const secs = Math.max(0.001, (Date.now() - start) / 1000);
      bar.setTotal(total);
      bar.update(p.done, { rate: fmtInt(p.done / secs) });
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
