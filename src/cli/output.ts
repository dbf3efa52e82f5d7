/**
 * Where output goes: the command's result on stdout (human text, or exactly
 * one JSON object with `--json`), so `status | grep gate` works; progress,
 * logs, warnings and errors on stderr. Colours honour NO_COLOR and a non-TTY,
 * per stream.
 */
import { Chalk, type ChalkInstance } from 'chalk';
import { humanDuration } from '../core/durations.js';

/** Output sink of one CLI invocation. */
export class Output {
  /** Colours for the result (stdout). */
  readonly color: ChalkInstance;
  /** Colours for stderr (errors, warnings, progress). */
  readonly errColor: ChalkInstance;
  private printed = false;

  constructor(
    readonly json: boolean,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
  ) {
    const noColor = process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '';
    this.color = new Chalk({ level: noColor || !stdout.isTTY ? 0 : 1 });
    this.errColor = new Chalk({ level: noColor || !stderr.isTTY ? 0 : 1 });
  }

  /** True when stderr is an interactive terminal (progress bars only there). */
  get interactive(): boolean {
    return this.stderr.isTTY === true;
  }

  /** A human line on stderr (progress, logs, errors). */
  line(text = ''): void {
    this.stderr.write(`${text}\n`);
  }

  /**
   * A line of the command's human result on stdout, so it pipes into grep and
   * less. Nothing in --json mode: stdout then holds exactly the JSON object.
   */
  print(text = ''): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  /** A warning line on stderr. */
  warn(text: string): void {
    this.stderr.write(`${this.errColor.yellow('warning:')} ${text}\n`);
  }

  /** The one JSON result on stdout (only in --json mode; only once). */
  result(obj: unknown): void {
    if (!this.json || this.printed) return;
    this.printed = true;
    this.stdout.write(`${JSON.stringify(obj)}\n`);
  }
}

/** Formats an integer with thousands separators. */
export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** "12s ago", "5m ago", "2.1h ago", "3.0d ago", or "never". */
export function fmtAgo(ms: number | null): string {
  return ms === null ? 'never' : `${humanDuration(ms)} ago`;
}

/**
 * Untrusted text (key names, values read from Redis, reasons typed by someone
 * else) made safe for a terminal: control characters, including newlines and
 * escape sequences, are shown as \xNN, so a key name cannot forge an output
 * line or recolour the screen. JSON output stays exact; only human text is escaped.
 */
export function safe(text: string): string {
  // C0 and C1 controls and DEL; bidirectional overrides can also reorder what is shown.
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (ch) => {
    const code = ch.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
