/** Rendering shared by the phase-transition subcommands. */
import type { TransitionOpResult } from '../../ops/transition.js';
import { safe, type Output } from '../output.js';

/** The `--json` object of a transition: from, to, epoch, dryRun (+ forced gates). */
export function transitionJson(r: TransitionOpResult): Record<string, unknown> {
  return { from: r.from, to: r.to, epoch: r.epoch, dryRun: r.dryRun, forced: r.forced, changedAt: r.changedAt, already: r.already };
}

/** What the history records of a transition command. */
export function transitionHistory(r: TransitionOpResult): Record<string, unknown> {
  return { from: r.from, to: r.to, epoch: r.epoch, dryRun: r.dryRun, forced: r.forced, already: r.already };
}

/** Human lines of a transition. */
export function renderTransition(r: TransitionOpResult, out: Output): void {
  const c = out.color;
  if (r.already) {
    out.print(`${c.green('already')} in ${r.to} (epoch ${r.epoch}); nothing changed.${r.next ? ` next: ${c.cyan(r.next)}` : ''}`);
  } else if (r.dryRun) {
    out.print(`${c.yellow('dry run:')} would move ${r.from} → ${r.to} (epoch ${r.epoch} → ${r.epoch + 1}); nothing changed. Rerun without --dry-run to act.`);
    for (const g of r.gates) out.print(`  gate ${g.name.padEnd(16)} ${g.open ? c.green('open') : c.yellow('forced')} — ${safe(g.reason)}`);
  } else {
    out.print(`${c.green('moved')} ${r.from} → ${r.to}, epoch ${r.epoch}. Writers follow within the ${r.settleMs} ms settle window.`);
  }
  for (const n of r.notes) out.print(`${c.yellow('note:')} ${n}`);
  if (r.forced.length > 0) out.print(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
}
