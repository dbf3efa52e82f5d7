/** How the long commands report the time their guards held them back (src/ops/guards/controller.ts). */
import type { ThrottleSummary } from '../../ops/guards/controller.js';
import type { Output } from '../output.js';

/** The `throttle` of `--json` and the history: `{pausedMs, throttledMs, pauses, byGuard}`. */
export function throttleJson(t: ThrottleSummary | null | undefined): ThrottleSummary | null {
  return t ?? null;
}

/** One line when the guards or `control` held the run back; nothing otherwise. */
export function renderThrottle(t: ThrottleSummary | null | undefined, out: Output): void {
  if (!t || t.pausedMs + t.throttledMs === 0) return;
  const by = Object.entries(t.byGuard)
    .map(([g, s]) => `${g} ${((s.pausedMs + s.throttledMs) / 1000).toFixed(1)}s${s.pauses > 0 ? ` (${s.pauses} pause${s.pauses > 1 ? 's' : ''})` : ''}`)
    .join(', ');
  out.print(
    out.color.yellow(
      `held back ${((t.pausedMs + t.throttledMs) / 1000).toFixed(1)}s: paused ${(t.pausedMs / 1000).toFixed(1)}s, slowed ${(t.throttledMs / 1000).toFixed(1)}s — ${by}`,
    ),
  );
}
