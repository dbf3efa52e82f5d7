/**
 * Progress on stderr: a cli-progress bar with rate and ETA on a TTY, a line
 * every few seconds otherwise (CI logs), nothing at all in --json mode when
 * stderr is not a terminal.
 *
 * Honest by construction: a total is an estimate (sampled key counts), so it
 * is shown as `~N` and never below the count already done; the ETA is `--`
 * until there is a rate to base it on; a finished run ends its bar at its
 * real final count (100%); the line is cut to the terminal's width with the
 * stage name giving way first, never the numbers.
 */
import cliProgress from 'cli-progress';
import type { Progress, ProgressFn } from '../ops/context.js';
import { fmtInt, type Output } from './output.js';

/** A progress sink: `finish` after a successful run (the bar ends at 100%), `stop` otherwise. */
export interface ProgressReporter {
  update: ProgressFn;
  finish(): void;
  stop(): void;
}

const LOG_EVERY_MS = 5000;
const MIN_BAR = 10;

/** "1h02m", "3m05s", "42s", or "--" while unknown. */
export function fmtEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The total to show: an estimate never below what is done. */
export function shownTotal(p: Pick<Progress, 'done' | 'total'>): number | null {
  return p.total === null ? null : Math.max(p.total, p.done);
}

/** `done / ~total` (or just `done` without a total). */
export function fmtCount(p: Pick<Progress, 'done' | 'total' | 'totalIsEstimate'>): string {
  const total = shownTotal(p);
  return total === null ? fmtInt(p.done) : `${fmtInt(p.done)}/${p.totalIsEstimate ? '~' : ''}${fmtInt(total)}`;
}

/** The stage name cut to `width` characters. */
function fit(text: string, width: number): string {
  if (width <= 1) return '';
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/** One bar's layout for a terminal `columns` wide: the stage name and the bar share what the numbers leave. */
export function barLayout(stage: string, tail: string, columns: number): { stage: string; barsize: number } {
  const room = Math.max(0, columns - 1 - tail.length - 2);
  const stageWidth = Math.min(stage.length, Math.max(8, room - MIN_BAR));
  const shown = fit(stage, stageWidth);
  return { stage: shown, barsize: Math.max(MIN_BAR, room - shown.length) };
}

/** Creates a reporter suited to the terminal. */
export function createProgress(out: Output): ProgressReporter {
  return out.interactive ? new BarReporter(out) : new LineReporter(out);
}

/** Plain lines for logs: on a new stage or message, then every few seconds. */
class LineReporter implements ProgressReporter {
  private lastLog = 0;
  private lastStage = '';

  constructor(private readonly out: Output) {}

  update = (p: Progress): void => {
    const now = Date.now();
    if (!p.message && p.stage === this.lastStage && now - this.lastLog < LOG_EVERY_MS) return;
    this.lastLog = now;
    this.lastStage = p.stage;
    // A message before any progress (a settle wait, a phase move) reads better without the "0".
    if (p.message && p.done === 0 && p.total === null) this.out.line(`${p.stage}: ${p.message}`);
    else this.out.line(`${p.stage}: ${fmtCount(p)}${p.message ? ` (${p.message})` : ''}`);
  };

  // In a log the result's summary line follows with the final counts; a sample line needs no closing.
  finish(): void {}

  stop(): void {}
}

/** A redrawn bar on a TTY. */
class BarReporter implements ProgressReporter {
  private bar: cliProgress.SingleBar | null = null;
  private stage = '';
  private startedAt = Date.now();
  private last: Progress | null = null;

  constructor(private readonly out: Output) {}

  update = (p: Progress): void => {
    if (p.message) {
      this.stop();
      this.out.line(`${p.stage}: ${p.message}`);
      return;
    }
    if (!this.bar || p.stage !== this.stage) this.open(p);
    this.last = p;
    this.draw(p, false);
  };

  private open(p: Progress): void {
    this.stop();
    this.stage = p.stage;
    this.startedAt = Date.now();
    this.bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: '{stage} {bar} {pct} {count} {rate}/s ETA {eta}',
        hideCursor: true,
        clearOnComplete: false,
        noTTYOutput: false,
        barsize: MIN_BAR,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(Math.max(shownTotal(p) ?? p.done, 1), p.done, this.payload(p, false));
  }

  private payload(p: Progress, final: boolean): Record<string, string> {
    const secs = Math.max(0.001, (Date.now() - this.startedAt) / 1000);
    const rate = p.done / secs;
    const total = shownTotal(p);
    const pct = final ? 100 : total ? Math.floor((p.done / Math.max(total, 1)) * 100) : 0;
    const eta = final ? 0 : total !== null && rate > 0 && p.done > 0 ? (total - p.done) / rate : null;
    const tail = ` ${pct}% ${fmtCount(final ? { ...p, total: p.done } : p)} ${fmtInt(rate)}/s ETA ${fmtEta(eta)}`;
    const layout = barLayout(this.stage, tail, process.stderr.columns || 80);
    if (this.bar) (this.bar as unknown as { options: { barsize: number } }).options.barsize = layout.barsize;
    return { stage: layout.stage, pct: `${pct}%`, count: fmtCount(final ? { ...p, total: p.done } : p), rate: fmtInt(rate), eta: fmtEta(eta) };
  }

  private draw(p: Progress, final: boolean): void {
    if (!this.bar) return;
    const total = final ? Math.max(p.done, 1) : Math.max(shownTotal(p) ?? p.done, p.done, 1);
    this.bar.setTotal(total);
    this.bar.update(final ? total : p.done, this.payload(p, final));
  }

  finish(): void {
    // A finished run ends at its real count: the estimate is replaced by what was done.
    if (this.last && this.bar) this.draw(this.last, true);
    this.stop();
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
