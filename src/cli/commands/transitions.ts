/** Rendering shared by the phase-transition subcommands. */
import type { TransitionOpResult } from '../../ops/transition.js';
import type { Output } from '../output.js';

/** The `--json` object of a transition: from, to, epoch, dryRun (+ forced gates). */
export function transitionJson(r: TransitionOpResult): Record<string, unknown> {
  return { from: r.from, to: r.to, epoch: r.epoch, dryRun: r.dryRun, forced: r.forced, changedAt: r.changedAt };
}

/** Human line of a transition. */
export function renderTransition(r: TransitionOpResult, out: Output): void {
  const c = out.color;
  if (r.dryRun) {
    out.line(`${c.yellow('dry run:')} would move ${r.from} → ${r.to} (epoch ${r.epoch} → ${r.epoch + 1}); nothing changed. Rerun without --dry-run to act.`);
    for (const g of r.gates) out.line(`  gate ${g.name.padEnd(16)} ${g.open ? c.green('open') : c.yellow('forced')} — ${g.reason}`);
  } else {
    out.line(`${c.green('moved')} ${r.from} → ${r.to}, epoch ${r.epoch}. Writers follow within the ${r.settleMs} ms settle window.`);
  }
  if (r.forced.length > 0) out.line(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
}
