/** Rendering shared by the canary (per-workspace) forms of flip-read, cleanup and rollback. */
import type { CanaryMoveResult } from '../../ops/canary.js';
import { safe, type Output } from '../output.js';

/** The `--json` object of a canary move. */
export function canaryJson(r: CanaryMoveResult & { chosen?: boolean }): Record<string, unknown> {
  return {
    workspaces: r.workspaces,
    chosen: r.chosen === true,
    from: r.from,
    to: r.to,
    epoch: r.epoch,
    dryRun: r.dryRun,
    already: r.already,
    forced: r.forced,
    gates: Object.fromEntries(Object.entries(r.gates).map(([ws, g]) => [ws, g.map((x) => ({ name: x.name, open: x.open, reason: x.reason }))])),
  };
}

/** Human lines of a canary move. */
export function renderCanary(r: CanaryMoveResult & { chosen?: boolean }, out: Output): void {
  const c = out.color;
  if (r.chosen) out.print(`canaries chosen (deterministic: the smallest sha256 of the workspace ids): ${r.workspaces.join(', ')}`);
  const moving = r.workspaces.filter((ws) => !r.already.includes(ws));
  if (r.already.length > 0) out.print(`${c.green('already')} in ${r.to}: ${r.already.join(', ')}`);
  if (moving.length === 0) return;
  if (r.dryRun) {
    out.print(`${c.yellow('dry run:')} would move workspace(s) ${moving.join(', ')} ${r.from} → ${r.to}; nothing changed.`);
    for (const [ws, gates] of Object.entries(r.gates))
      for (const g of gates) out.print(`  ${ws} gate ${g.name.padEnd(16)} ${g.open ? c.green('open') : c.yellow('forced')} — ${safe(g.reason)}`);
  } else {
    out.print(
      `${c.green('moved')} workspace(s) ${moving.join(', ')} ${r.from} → ${r.to}, epoch ${r.epoch}. Writers follow within the settle window; every other workspace is untouched.`,
    );
  }
  if (r.forced.length > 0) out.print(`${c.yellow('forced gates:')} ${r.forced.join(', ')} (recorded in the history)`);
}
