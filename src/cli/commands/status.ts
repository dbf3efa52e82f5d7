/** `orch-migrate status`. */
import type { Command } from 'commander';
import { z } from 'zod';
import { getStatus, type StatusResult } from '../../ops/status.js';
import { durationFlag, fmtDuration, intFlag, orNull, switchFlag, withDefault } from '../options.js';
import { fmtAgo, fmtInt, safe, type Output } from '../output.js';
import { runCommand } from '../runner.js';

const DEFAULT_HISTORY = 5;

/** Options of `status`. */
const StatusFlagsSchema = z.object({
  exact: switchFlag,
  history: withDefault(intFlag(1, 100), DEFAULT_HISTORY),
  maxVerifyAge: orNull(durationFlag()),
  minSoak: orNull(durationFlag()),
});

function render(r: StatusResult, out: Output): void {
  const c = out.color;
  const lines: Array<[string, string]> = [];
  lines.push(['phase', `${r.diagram}   ${c.dim(`epoch ${r.epoch}`)}`]);
  lines.push(['changed', r.changedAt === null ? 'never (no state record: phase legacy, epoch 0)' : `${fmtAgo(r.sinceChangeMs)} by ${safe(r.changedBy ?? '?')}${r.reason ? ` — "${safe(r.reason)}"` : ''}`]);
  lines.push(['layouts', `legacy ${r.legacyComplete ? 'complete' : c.yellow('incomplete')}, v2 ${r.v2Complete ? 'complete' : 'not proven complete'}; settle window ${r.settleMs} ms`]);
  lines.push(['keys', `legacy ${r.counts.estimated ? '≈' : ''}${fmtInt(r.counts.legacy)}, v2 ${r.counts.estimated ? '≈' : ''}${fmtInt(r.counts.v2)}${r.counts.estimated ? c.dim(' (estimated; --exact to count)') : ''}`]);
  for (const cp of r.checkpoints) {
    lines.push([cp.op, `checkpoint: ${cp.nodesDone}/${cp.nodes} node(s) done, ${fmtInt(cp.scanned)} scanned, updated ${fmtAgo(cp.updatedAt === null ? null : r.serverTime - cp.updatedAt)}`]);
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
  lines.push(['verify', v ? `${v.ok ? c.green('clean') : c.red(`${fmtInt(v.mismatches)} persistent mismatch(es)`)}, ${v.scope}, ${fmtInt(v.scanned)} keys, ${v.rounds} round(s), ${fmtAgo(r.serverTime - v.finishedAt)} (epoch ${v.epoch})` : 'never run']);
  const cl = r.lastCleanup;
  if (cl) {
    const reasons = Object.entries(cl.keptByReason).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${fmtInt(n)}`).join(', ');
    lines.push(['cleanup', `last run ${cl.complete ? 'complete' : c.yellow('incomplete')}, ${fmtInt(cl.deleted)} deleted, ${fmtInt(cl.kept)} kept${reasons ? ` (${reasons})` : ''}, ${fmtAgo(r.serverTime - cl.finishedAt)} (epoch ${cl.epoch})`]);
  }
  const live = r.writers.filter((w) => w.live);
  const lagging = live.filter((w) => w.epoch < r.epoch);
  lines.push(['writers', live.length === 0 ? 'none registered (writers that do not register are covered by the settle window only)' : `${live.length} live, ${lagging.length === 0 ? c.green(`all at epoch ${r.epoch}`) : c.yellow(`${lagging.length} not yet at epoch ${r.epoch}`)}`]);
  for (const w of live.slice(0, 10)) lines.push(['writer', `${safe(w.name || 'writer')} pid ${w.pid}@${safe(w.host)} epoch ${w.epoch}${w.epoch < r.epoch ? c.yellow(' (lagging)') : ''}, heartbeat ${fmtAgo(w.ageMs)}`]);
  const counts = Object.entries(r.canaries.byPhase);
  if (counts.length > 0) {
    lines.push(['canaries', `${counts.map(([p, n]) => `${fmtInt(n)} in ${p}`).join(', ')} (ahead of the global ${r.phase}); every other workspace follows the global phase`]);
    for (const cn of r.canaries.listed) {
      const closed = cn.gates.find((g) => !g.open);
      lines.push(['canary', `${safe(cn.workspace)} ${cn.phase}${cn.legacyComplete || cn.phase === 'new-only' ? '' : c.yellow(' (legacy incomplete: rollback --workspace resumes the copy back)')}; ${cn.next} --workspace ${closed ? `${c.red('closed')} — ${safe(closed.reason)}` : c.green('open')}`]);
    }
  }
  if (r.accepted > 0) lines.push(['accepted', `${fmtInt(r.accepted)} legacy key(s) accepted as unmigratable (orch-migrate accept --list)`]);
  lines.push(['lock', r.lock ? c.yellow(lockLine(r)) : 'free']);
  for (const [cmd, g] of Object.entries(r.gates)) {
    const first = g.gates.find((x) => !x.open);
    lines.push([`gate`, `${cmd.padEnd(18)} ${g.open ? c.green('open') : `${c.red('closed')} — ${first?.reason ?? ''}`}`]);
  }
  for (const h of r.history) lines.push(['history', `${new Date(h.at).toISOString()} ${safe(h.type)} ${historyWhat(h.type, h.data, c)} by ${safe(h.by)}`]);
  for (const [k, val] of lines) out.print(`${c.bold(k.padEnd(9))} ${val}`);
  out.print(`${c.bold('next'.padEnd(9))} ${c.cyan(r.next.command)}  ${c.dim(`# ${safe(r.next.why)}`)}`);
}

/**
 * The lock line. A holder renews at a third of its lease, so a lease left
 * well below its length was not renewed: the holder is probably dead, and the
 * line says when the lock frees itself instead of "wait for it".
 */
function lockLine(r: StatusResult): string {
  const l = r.lock!;
  const who = `${safe(l.actor)}${l.actor !== `${l.user}@${l.host}` ? ` (${safe(l.user)}@${safe(l.host)})` : ''} pid ${l.pid}`;
  const head = `held by ${who} running \`${safe(l.command)}\` since ${new Date(l.since).toISOString()}`;
  const stale = l.ttlMs > 0 && l.remainingMs < l.ttlMs / 2;
  return stale
    ? `${head}; not renewed for ${Math.round((l.ttlMs - l.remainingMs) / 1000)}s: the holder is probably dead, the lock frees itself in ${Math.ceil(l.remainingMs / 1000)}s`
    : `${head}, lease ${Math.ceil(l.remainingMs / 1000)}s`;
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
    .addHelpText(
      'after',
      `
Examples:
  $ orch-migrate status
  $ orch-migrate status --exact --json | jq .phase`,
    )
    .action(async (_o, cmd: Command) => {
      setExit(
        await runCommand(cmd, {
          name: 'status',
          options: StatusFlagsSchema,
          mutating: false,
          execute: ({ ctx, opts }) =>
            getStatus(ctx, {
              exact: opts.exact,
              historyCount: opts.history,
              ...(opts.maxVerifyAge === null ? {} : { maxVerifyAgeMs: opts.maxVerifyAge }),
              ...(opts.minSoak === null ? {} : { minSoakMs: opts.minSoak }),
            }),
          render,
        }),
      );
    });
}
