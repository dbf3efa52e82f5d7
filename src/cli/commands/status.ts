/** `orch-migrate status`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { humanDuration } from '../../core/durations.js';
import { ConfigError } from '../../core/errors.js';
import { sleep } from '../../core/state.js';
import { describeControl } from '../../ops/control.js';
import type { RunInFlight } from '../../ops/run-heartbeat.js';
import { getStatus, type ShardStatus, type StatusOptions, type StatusResult } from '../../ops/status.js';
import type { LockInfo } from '../../core/lock.js';
import type { OpContext } from '../../ops/context.js';
import { dflt, durationFlag, fmtDuration, intFlag, orNull, parseDuration, switchFlag, withDefault } from '../options.js';
import { fmtAgo, fmtInt, safe, type Output } from '../output.js';
import { runCommand } from '../runner.js';

const DEFAULT_HISTORY = 5;
/** Refresh interval of --watch. */
const DEFAULT_WATCH_MS = 1000;
const MIN_WATCH_MS = 200;

/** `--watch [interval]`: commander gives undefined, true (bare) or the interval. */
const watchFlag = z
  .union([z.boolean(), z.string()])
  .optional()
  .transform((v, ctx) => {
    if (v === undefined || v === false) return null;
    if (v === true) return DEFAULT_WATCH_MS;
    const ms = parseDuration(v);
    if (ms === null || ms < MIN_WATCH_MS) {
      ctx.addIssue({
        code: 'custom',
        message: `expected a refresh interval of at least ${MIN_WATCH_MS}ms, such as 1s or 500ms, got ${JSON.stringify(v.slice(0, 40))}`,
      });
      return z.NEVER;
    }
    return ms;
  });

/** Options of `status`. */
const StatusFlagsSchema = z.object({
  exact: switchFlag,
  history: withDefault(intFlag(1, 100), DEFAULT_HISTORY),
  maxVerifyAge: orNull(durationFlag()),
  minSoak: orNull(durationFlag()),
  watch: watchFlag,
});

/** status, and whether it was the last frame of a --watch (already on the screen). */
type StatusRun = StatusResult & { watched?: boolean };

/** `12,345/~20,000 (62%)`. */
function runProgress(r: RunInFlight): string {
  if (r.total === null || r.total <= 0) return fmtInt(r.done);
  const pct = Math.min(100, Math.floor((r.done / r.total) * 100));
  return `${fmtInt(r.done)}/${r.totalIsEstimate ? '~' : ''}${fmtInt(r.total)} (${pct}%)`;
}

/** The lines of one run in flight: what it does, and what holds it back. */
export function runLines(r: RunInFlight, now: number, out: Output): Array<[string, string]> {
  const c = out.color;
  const rate = `${fmtInt(r.keysPerSecond)} keys/s${r.ceiling !== null ? ` (ceiling ${fmtInt(r.ceiling)})` : ''}`;
  const eta = r.state === 'paused' ? 'ETA -- (paused)' : r.etaMs === null ? 'ETA --' : `ETA ${humanDuration(r.etaMs)}`;
  const lines: Array<[string, string]> = [
    [
      'run',
      `${safe(r.op)} by ${safe(r.actor)} pid ${r.pid}@${safe(r.host)}, started ${fmtAgo(now - r.startedAt)}: ${safe(r.stage)} ${runProgress(r)}, ${rate}, ${eta}`,
    ],
  ];
  const t = r.throttle;
  const held = t.pausedMs + t.throttledMs > 0 ? ` (held back ${((t.pausedMs + t.throttledMs) / 1000).toFixed(1)}s so far, ${t.pauses} pause(s))` : '';
  const state = r.state === 'running' ? c.green('running') : r.state === 'paused' ? c.red('paused') : c.yellow('throttled');
  lines.push(['throttle', `${state}${r.reason ? ` — ${safe(r.reason)}` : ''}${held}`]);
  return lines;
}

/** The status as [label, value] lines (what render prints, and what --watch redraws). */
function statusLines(r: StatusResult, out: Output): Array<[string, string]> {
  const c = out.color;
  const lines: Array<[string, string]> = [];
  lines.push(['phase', `${r.diagram}   ${c.dim(`epoch ${r.epoch}`)}`]);
  lines.push([
    'changed',
    r.changedAt === null
      ? 'never (no state record: phase legacy, epoch 0)'
      : `${fmtAgo(r.sinceChangeMs)} by ${safe(r.changedBy ?? '?')}${r.reason ? ` — "${safe(r.reason)}"` : ''}`,
  ]);
  lines.push([
    'layouts',
    `legacy ${r.legacyComplete ? 'complete' : c.yellow('incomplete')}, v2 ${r.v2Complete ? 'complete' : 'not proven complete'}; settle window ${r.settleMs} ms`,
  ]);
  lines.push([
    'keys',
    `legacy ${r.counts.estimated ? '≈' : ''}${fmtInt(r.counts.legacy)}, v2 ${r.counts.estimated ? '≈' : ''}${fmtInt(r.counts.v2)}${r.counts.estimated ? c.dim(' (estimated; --exact to count)') : ''}`,
  ]);
  for (const cp of r.checkpoints) {
    lines.push([
      cp.op,
      `checkpoint: ${cp.nodesDone}/${cp.nodes} node(s) done, ${fmtInt(cp.scanned)} scanned, updated ${fmtAgo(cp.updatedAt === null ? null : r.serverTime - cp.updatedAt)}`,
    ]);
  }
  const b = r.lastBackfill;
  const cpBackfill = r.checkpoints.find((cp) => cp.op === 'backfill');
  lines.push([
    'backfill',
    b
      ? `last ${b.direction} run ${b.complete ? 'complete' : c.yellow('incomplete')}, ${fmtInt(b.copied)} copied, ${fmtInt(b.unmigratable)} unmigratable, ${fmtInt(b.keysPerSecond)} keys/s, ${fmtAgo(r.serverTime - b.finishedAt)} (epoch ${b.epoch})`
      : cpBackfill
        ? c.yellow(`no run has finished yet; the checkpoint shows ${fmtInt(cpBackfill.scanned)} scanned (a run is going, or was interrupted and resumes)`)
        : 'never run',
  ]);
  const v = r.lastVerify;
  lines.push([
    'verify',
    v
      ? `${v.ok ? c.green('clean') : c.red(`${fmtInt(v.mismatches)} persistent mismatch(es)`)}, ${v.scope}, ${fmtInt(v.scanned)} keys, ${v.rounds} round(s), ${fmtAgo(r.serverTime - v.finishedAt)} (epoch ${v.epoch})`
      : 'never run',
  ]);
  const cl = r.lastCleanup;
  if (cl) {
    const reasons = Object.entries(cl.keptByReason)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${fmtInt(n)}`)
      .join(', ');
    lines.push([
      'cleanup',
      `last run ${cl.complete ? 'complete' : c.yellow('incomplete')}, ${fmtInt(cl.deleted)} deleted, ${fmtInt(cl.kept)} kept${reasons ? ` (${reasons})` : ''}, ${fmtAgo(r.serverTime - cl.finishedAt)} (epoch ${cl.epoch})`,
    ]);
  }
  const live = r.writers.filter((w) => w.live);
  const lagging = live.filter((w) => w.epoch < r.epoch);
  lines.push([
    'writers',
    live.length === 0
      ? 'none registered (writers that do not register are covered by the settle window only)'
      : `${live.length} live, ${lagging.length === 0 ? c.green(`all at epoch ${r.epoch}`) : c.yellow(`${lagging.length} not yet at epoch ${r.epoch}`)}`,
  ]);
  for (const w of live.slice(0, 10))
    lines.push([
      'writer',
      `${safe(w.name || 'writer')} pid ${w.pid}@${safe(w.host)} epoch ${w.epoch}${w.epoch < r.epoch ? c.yellow(' (lagging)') : ''}, heartbeat ${fmtAgo(w.ageMs)}`,
    ]);
  const counts = Object.entries(r.canaries.byPhase);
  if (counts.length > 0) {
    lines.push([
      'canaries',
      `${counts.map(([p, n]) => `${fmtInt(n)} in ${p}`).join(', ')} (ahead of the global ${r.phase}); every other workspace follows the global phase`,
    ]);
    for (const cn of r.canaries.listed) {
      const closed = cn.gates.find((g) => !g.open);
      lines.push([
        'canary',
        `${safe(cn.workspace)} ${cn.phase}${cn.legacyComplete || cn.phase === 'new-only' ? '' : c.yellow(' (legacy incomplete: rollback --workspace resumes the copy back)')}; ${cn.next} --workspace ${closed ? `${c.red('closed')} — ${safe(closed.reason)}` : c.green('open')}`,
      ]);
    }
  }
  if (r.accepted > 0) lines.push(['accepted', `${fmtInt(r.accepted)} legacy key(s) accepted as unmigratable (orch-migrate accept --list)`]);
  if ((r.shards as ShardStatus[] | undefined)?.length) {
    // A sharded backfill: one line per live shard, its own lease and progress; its run lines follow.
    lines.push(['lock', c.yellow(`held by ${r.shards.length} shard(s) of a sharded backfill; every global operation waits for all of them`)]);
    for (const sh of r.shards) lines.push(['shard', shardLine(sh, r.serverTime, out)]);
  } else {
    lines.push(['lock', r.lock ? c.yellow(lockLine(r.lock)) : 'free']);
  }
  if (r.runs.length === 0) lines.push(['run', r.lock ? 'no heartbeat: the lock holder runs no guarded operation (or it just started)' : 'none in flight']);
  for (const run of r.runs) lines.push(...runLines(run, r.serverTime, out));
  if (r.control)
    lines.push([
      'control',
      `${r.control.paused ? c.red(safe(describeControl(r.control))) : c.yellow(safe(describeControl(r.control)))}${r.control.at ? `, ${fmtAgo(r.serverTime - r.control.at)}` : ''}`,
    ]);
  for (const [cmd, g] of Object.entries(r.gates)) {
    const first = g.gates.find((x) => !x.open);
    lines.push([`gate`, `${cmd.padEnd(18)} ${g.open ? c.green('open') : `${c.red('closed')} — ${first?.reason ?? ''}`}`]);
  }
  for (const h of r.history) lines.push(['history', `${new Date(h.at).toISOString()} ${safe(h.type)} ${historyWhat(h.type, h.data, c)} by ${safe(h.by)}`]);
  lines.push(['next', `${c.cyan(r.next.command)}  ${c.dim(`# ${safe(r.next.why)}`)}`]);
  return lines;
}

function formatLines(lines: Array<[string, string]>, out: Output): string[] {
  return lines.map(([k, val]) => `${out.color.bold(k.padEnd(9))} ${val}`);
}

function render(r: StatusRun, out: Output): void {
  // The last frame of --watch is already on the screen.
  if (r.watched) return;
  for (const line of formatLines(statusLines(r, out), out)) out.print(line);
}

// eslint-disable-next-line no-control-regex -- SGR colour sequences are what is measured here
const SGR = /\x1b\[[0-9;]*m/g;

/** A line cut to `columns` visible characters (colours dropped when it has to be cut), so no line wraps. */
export function fitLine(line: string, columns: number): string {
  const plain = line.replace(SGR, '');
  if (plain.length <= columns) return line;
  return `${plain.slice(0, Math.max(0, columns - 1))}…`;
}

/**
 * One frame of `status --watch` on a terminal: the cursor goes back over the
 * previous frame and the screen is cleared below it, so the status redraws in
 * place without scrolling. Lines are cut to the width (a wrapped line would
 * throw the count off) and the frame to the height.
 */
export function watchFrame(lines: string[], previous: number, columns: number, rows: number): { text: string; height: number } {
  const room = Math.max(1, rows - 1);
  let shown = lines.map((l) => fitLine(l, columns));
  if (shown.length > room)
    shown = [
      ...shown.slice(0, room - 1),
      fitLine(`… ${shown.length - room + 1} more line(s): make the terminal taller, or run status without --watch`, columns),
    ];
  const back = previous > 0 ? `\x1b[${previous}A` : '';
  return { text: `${back}\r\x1b[J${shown.join('\n')}\n`, height: shown.length };
}

/** One plain line per refresh for a log or a pipe: the runs in flight and control. */
export function watchLine(r: StatusResult): string {
  const at = new Date(r.serverTime).toISOString();
  const head = `${at} phase ${r.phase} epoch ${r.epoch}`;
  const control = r.control ? `; control: ${describeControl(r.control)}` : '';
  if (r.runs.length === 0) return `${head}; lock ${r.lock ? `held by ${r.lock.actor} (${r.lock.command})` : 'free'}; no run in flight${control}`;
  const shardOf = (x: RunInFlight): string => {
    // A result from an older version has no `shards`.
    const sh = ((r.shards as ShardStatus[] | undefined) ?? []).find((s) => s.run?.id === x.id);
    return sh ? ` shard ${sh.shard}` : '';
  };
  const runs = r.runs.map((x) => {
    const eta = x.state === 'paused' || x.etaMs === null ? 'ETA --' : `ETA ${humanDuration(x.etaMs)}`;
    return `${x.op}${shardOf(x)} ${runProgress(x)} ${fmtInt(x.keysPerSecond)} keys/s ${eta} ${x.state}${x.reason ? ` (${x.reason})` : ''}`;
  });
  return safe(`${head}; ${runs.join('; ')}${control}`);
}

/** `status --watch`: redraws until interrupted; returns the last status. */
async function watch(ctx: OpContext, o: StatusOptions, everyMs: number, out: Output): Promise<StatusRun> {
  const tty = process.stdout.isTTY === true;
  let height = 0;
  let last: StatusResult | null = null;
  while (!ctx.signal.aborted) {
    last = await getStatus(ctx, o);
    if (tty) {
      const frame = watchFrame(formatLines(statusLines(last, out), out), height, process.stdout.columns || 80, process.stdout.rows || 24);
      process.stdout.write(frame.text);
      height = frame.height;
    } else {
      out.print(watchLine(last));
    }
    await sleep(everyMs, ctx.signal).catch(() => undefined);
  }
  if (!last) last = await getStatus(ctx, o);
  return { ...last, watched: true };
}

/**
 * The lock line. A holder renews at a third of its lease, so a lease left
 * well below its length was not renewed: the holder is probably dead, and the
 * line says when the lock frees itself instead of "wait for it".
 */
function lockLine(l: LockInfo): string {
  const who = `${safe(l.actor)}${l.actor !== `${l.user}@${l.host}` ? ` (${safe(l.user)}@${safe(l.host)})` : ''} pid ${l.pid}`;
  const head = `held by ${who} running \`${safe(l.command)}\` since ${new Date(l.since).toISOString()}`;
  const stale = l.ttlMs > 0 && l.remainingMs < l.ttlMs / 2;
  return stale
    ? `${head}; not renewed for ${Math.round((l.ttlMs - l.remainingMs) / 1000)}s: the holder is probably dead, the lock frees itself in ${Math.ceil(l.remainingMs / 1000)}s`
    : `${head}, lease ${Math.ceil(l.remainingMs / 1000)}s`;
}

/** One live shard: who holds its lease and how long is left, its masters' checkpoint, and its heartbeat's rate. */
export function shardLine(sh: ShardStatus, now: number, out: Output): string {
  const progress = `${sh.nodesDone}/${sh.nodes.length} master(s) done, ${fmtInt(sh.scanned)} scanned, ${fmtInt(sh.copied)} copied`;
  const run = sh.run
    ? `; ${runProgress(sh.run)} this run, ${fmtInt(sh.run.keysPerSecond)} keys/s, ${sh.run.state === 'running' ? out.color.green('running') : out.color.yellow(sh.run.state)}, beat ${fmtAgo(now - sh.run.at)}`
    : '; no heartbeat yet';
  return `${sh.shard} ${lockLine(sh.holder)}: ${progress}${run}`;
}

/**
 * One history entry's summary, by its type: what moved, what was overridden,
 * or a run's outcome. Every value from the record is escaped here, before the
 * colour codes go around it (escaping afterwards would print them).
 */
function historyWhat(type: string, d: Record<string, unknown>, c: Output['color']): string {
  const t = (v: unknown): string => safe(String(v));
  const list = (v: unknown): string => (Array.isArray(v) ? v.map(t).join(', ') : '?');
  const reason = d.reason ? ` "${t(d.reason)}"` : '';
  const forced = Array.isArray(d.forced) && d.forced.length > 0 ? c.yellow(` forced: ${list(d.forced)}`) : '';
  switch (type) {
    case 'transition':
      return `${t(d.from)} → ${t(d.to)} (epoch ${t(d.epoch)})${reason}${forced}`;
    case 'workspace-transition': {
      const ws = Array.isArray(d.workspaces) ? d.workspaces : [];
      const shown = ws.length > 5 ? `${list(ws.slice(0, 5))} and ${ws.length - 5} more` : list(ws);
      return `workspace(s) ${shown}${d.from ? ` ${t(d.from)}` : ''} → ${t(d.to)} (epoch ${t(d.epoch)})${reason}${forced}`;
    }
    case 'transition-abandoned':
      return c.yellow(`the move of entry ${t(d.entry)} did not happen`);
    case 'force':
      return c.yellow(`gate(s) ${list(d.gates)} overridden for ${t(d.command)}:${reason}`);
    case 'override':
      return c.yellow(`${t(d.command)} --min-soak ${fmtDuration(Number(d.minSoakMs))} (default ${fmtDuration(Number(d.defaultMs))})${reason}`);
    case 'ack-timeout':
      return c.yellow(`writer(s) ${list(d.laggards)} did not acknowledge epoch ${t(d.epoch)}`);
    default: {
      const counts = (['copied', 'deleted', 'kept', 'mismatches'] as const)
        .filter((k) => typeof d[k] === 'number')
        .map((k) => `${fmtInt(d[k] as number)} ${k}`)
        .join(', ');
      return `${d.exitCode === undefined ? '' : `exit ${t(d.exitCode)}`}${counts ? ` (${counts})` : ''}${d.message ? ` ${t(d.message)}` : ''}${d.dryRun === true ? ' (dry run)' : ''}`.trim();
    }
  }
}

/** Registers `status`. */
export function registerStatus(program: Command, setExit: (code: number) => void): void {
  program
    .command('status')
    .description('Show the phase, key counts, backfill/verify progress, gates, lock, recent history and the next command to run')
    .option('--exact', 'count keys with SCAN instead of sampling (slower on big keyspaces)')
    .option('--history <n>', `history entries to show, 1-100 (default: ${DEFAULT_HISTORY})`)
    .option('--max-verify-age <duration>', 'freshness the flip-read gate requires of a verify (default: 1h)')
    .option('--min-soak <duration>', 'soak the cleanup gate requires in read-new (default: 1h)')
    .option(
      '--watch [interval]',
      `refresh until interrupted: redrawn in place on a terminal, one line per refresh otherwise ${dflt(fmtDuration(DEFAULT_WATCH_MS))}`,
    )
    .addHelpText(
      'after',
      `
The run in flight (operation, holder, progress, rate, ETA, throttle state and why) comes
from the heartbeat every guarded run writes; control shows what orch-migrate control set.

Examples:
  $ orch-migrate status
  $ orch-migrate status --watch              # Ctrl-C to stop
  $ orch-migrate status --watch 5s >> status.log
  $ orch-migrate status --exact --json | jq .phase`,
    )
    .action(async (_o, cmd: Command) => {
      setExit(
        await runCommand(cmd, {
          name: 'status',
          options: StatusFlagsSchema,
          mutating: false,
          execute: async ({ ctx, opts, globals, out }): Promise<StatusRun> => {
            const o: StatusOptions = {
              exact: opts.exact,
              historyCount: opts.history,
              ...(opts.maxVerifyAge === null ? {} : { maxVerifyAgeMs: opts.maxVerifyAge }),
              ...(opts.minSoak === null ? {} : { minSoakMs: opts.minSoak }),
            };
            if (opts.watch === null) return getStatus(ctx, o);
            if (globals.json) {
              throw new ConfigError('--watch redraws the status for people and --json prints exactly one object', {
                suggestion: 'Drop --json to watch, or poll `orch-migrate status --json` (e.g. with watch -n 1) for machines.',
              });
            }
            return watch(ctx, o, opts.watch, out);
          },
          render,
          toJson: (r: StatusRun) => {
            const { watched: _w, ...rest } = r;
            return rest;
          },
        }),
      );
    });
}
