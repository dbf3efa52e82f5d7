/**
 * The phase drives reads and writes (docs/design.md "Phases and routing"). This table is the single
 * place where that decision lives; endpoint and worker code never branch on phase.
 */

/** Migration phases, in order. */
export const Phase = {
  Legacy: 'legacy',
  DualWrite: 'dual-write',
  ReadNew: 'read-new',
  NewOnly: 'new-only',
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

/** The two key layouts. */
export const Layout = {
  Legacy: 'legacy',
  V2: 'v2',
} as const;
export type Layout = (typeof Layout)[keyof typeof Layout];

/** Phases in their forward order. */
export const PHASE_ORDER: readonly Phase[] = [Phase.Legacy, Phase.DualWrite, Phase.ReadNew, Phase.NewOnly];

/** Where a phase reads from and writes to. */
export interface Route {
  /** Read from, and written first (with the atomic rev increment). */
  primary: Layout;
  /** Written second with apply-if-newer, or null when only the primary is written. */
  mirror: Layout | null;
}

const ROUTES: Record<Phase, Route> = {
  [Phase.Legacy]: { primary: Layout.Legacy, mirror: null },
  [Phase.DualWrite]: { primary: Layout.Legacy, mirror: Layout.V2 },
  [Phase.ReadNew]: { primary: Layout.V2, mirror: Layout.Legacy },
  [Phase.NewOnly]: { primary: Layout.V2, mirror: null },
};

/** The route of a phase. */
export function routeFor(phase: Phase): Route {
  return ROUTES[phase];
}

/** The layout reads follow in a phase. */
export function readPathFor(phase: Phase): Layout {
  return ROUTES[phase].primary;
}

/** True for a known phase name. */
export function isPhase(value: unknown): value is Phase {
  return typeof value === 'string' && (PHASE_ORDER as readonly string[]).includes(value);
}

/** The next phase forward, or null at the end. */
export function nextPhase(phase: Phase): Phase | null {
  const i = PHASE_ORDER.indexOf(phase);
  return PHASE_ORDER[i + 1] ?? null;
}

/** The previous phase, or null at the start. */
export function previousPhase(phase: Phase): Phase | null {
  const i = PHASE_ORDER.indexOf(phase);
  return i > 0 ? (PHASE_ORDER[i - 1] ?? null) : null;
}

/** One-line diagram with the current phase in brackets: `legacy → [dual-write] → read-new → new-only`. */
export function phaseDiagram(current: Phase): string {
  return PHASE_ORDER.map((p) => (p === current ? `[${p}]` : p)).join(' → ');
}

/** Position of a phase in the forward order. */
export function phaseRank(phase: Phase): number {
  return PHASE_ORDER.indexOf(phase);
}

/** Phases a workspace may run ahead to (a canary). */
export const OVERRIDE_PHASES: readonly Phase[] = [Phase.ReadNew, Phase.NewOnly];

/**
 * The phase a workspace's jobs follow: its override when it runs ahead of the
 * global phase, else the global phase. Overrides count only while the global
 * phase is dual-write or later (v2 is being written for everyone), and only
 * ahead of it: an override the global phase caught up with is moot.
 */
export function effectivePhase(global: Phase, override: Phase | null | undefined): Phase {
  if (!override || !OVERRIDE_PHASES.includes(override)) return global;
  if (phaseRank(global) < phaseRank(Phase.DualWrite)) return global;
  return phaseRank(override) > phaseRank(global) ? override : global;
}
