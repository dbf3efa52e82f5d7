/**
 * Gates (docs/design.md "Gates"): data checks that open or refuse a step. Each
 * closed gate says in one line why, and which command opens it. A data gate is
 * overridden only by name, `--force <gate>[,<gate>…] --reason "…"`, and the
 * override is recorded in the history; forcing one gate never forces another.
 * The phase precondition is never overridable: transitions move one step at a time.
 */
import { humanDuration } from '../core/durations.js';
import { ConfigError, GateError } from '../core/errors.js';
import { effectivePhase, Phase, PHASE_ORDER } from '../core/phase.js';
import type { MigrationState } from '../core/state.js';
import { describeWriter, laggards, type WriterStatus } from '../core/writers.js';
import { asBackfillSummary, asVerifySummary } from './summaries.js';

/** Default freshness bound of the verify that opens flip-read. */
export const DEFAULT_MAX_VERIFY_AGE_MS = 60 * 60 * 1000;
/** Default soak in read-new before cleanup. */
export const DEFAULT_MIN_SOAK_MS = 60 * 60 * 1000;

/**
 * Names of the gates `--force` may override, as status and the refusals print
 * them: the data gates, then preflight's checks (src/ops/preflight.ts), which
 * enable-dual-write and backfill run first.
 */
export const FORCEABLE_GATES = ['verify', 'soak', 'legacy-complete', 'writers', 'workspaces', 'version', 'eviction', 'memory', 'replicas', 'cluster'] as const;
export type ForceableGate = (typeof FORCEABLE_GATES)[number];

/** One gate's state. */
export interface GateStatus {
  name: string;
  open: boolean;
  /** Why it is open or closed, in one line. */
  reason: string;
  /** Command that opens it, when closed. */
  opensWith: string | null;
  /** False for phase preconditions, which --force cannot override. */
  forceable: boolean;
}

/** Inputs of gate evaluation. */
export interface GateInputs {
  state: MigrationState;
  /** Server time, ms. */
  now: number;
  maxVerifyAgeMs?: number;
  minSoakMs?: number;
  /** Registered writers as read now (the writers gate); omitted = none registered. */
  writers?: WriterStatus[];
}

const ago = humanDuration;

/** The command that moves the phase one step from `from` toward `to`. */
export function commandToward(from: Phase, to: Phase): string {
  const i = PHASE_ORDER.indexOf(from);
  const j = PHASE_ORDER.indexOf(to);
  if (j < i) return 'orch-migrate rollback --execute';
  switch (from) {
    case Phase.Legacy:
      return 'orch-migrate enable-dual-write';
    case Phase.DualWrite:
      return 'orch-migrate flip-read';
    case Phase.ReadNew:
      return 'orch-migrate cleanup --execute';
    default:
      return 'orch-migrate status';
  }
}

/** The phase must be `required`. Never forceable: transitions move one step at a time. */
export function phaseGate(state: MigrationState, required: Phase | Phase[], command: string): GateStatus {
  const allowed = Array.isArray(required) ? required : [required];
  const open = allowed.includes(state.phase);
  return {
    name: 'phase',
    open,
    reason: open ? `phase is ${state.phase}` : `${command} needs phase ${allowed.join(' or ')}, but the phase is ${state.phase}`,
    opensWith: open ? null : commandToward(state.phase, allowed[0]!),
    forceable: false,
  };
}

/** A clean, full verify in the current epoch, started after the last backfill finished, and fresh enough. */
export function verifyGate(inp: GateInputs): GateStatus {
  const v = asVerifySummary(inp.state.lastVerify);
  const b = asBackfillSummary(inp.state.lastBackfill);
  const maxAge = inp.maxVerifyAgeMs ?? DEFAULT_MAX_VERIFY_AGE_MS;
  const closed = (reason: string): GateStatus => ({ name: 'verify', open: false, reason, opensWith: 'orch-migrate verify', forceable: true });
  if (!v) return closed('no verify has run');
  if (v.epoch !== inp.state.epoch)
    return closed(`the last verify ran in epoch ${v.epoch}; the routing changed since (a phase or canary move; epoch ${inp.state.epoch})`);
  if (v.scope !== 'full') return closed('the last verify was partial (--workspace/--sample); a full verify is needed');
  if (!v.ok) {
    if (onlySourceProblems(v.byKind)) {
      // Bad source records, not a divergence: verify again would find them again; accepting known junk opens the gate.
      return {
        ...closed(`the last verify found ${v.mismatches} unmigratable or non-hash legacy key(s)`),
        opensWith:
          'orch-migrate accept <key>… --reason "…" for known junk, or fix them at the source (runbooks/incident-unmigratable.md); then orch-migrate verify',
      };
    }
    return closed(`the last verify found ${v.mismatches} persistent mismatch(es)`);
  }
  if (b && b.finishedAt > v.startedAt) return closed('a backfill finished after the last verify started');
  const age = inp.now - v.finishedAt;
  if (age > maxAge) return closed(`the last clean verify is ${ago(age)} old (max ${ago(maxAge)})`);
  return { name: 'verify', open: true, reason: `clean verify ${ago(age)} ago`, opensWith: null, forceable: true };
}

/** Kinds that are bad legacy records rather than a divergence between the layouts. */
const SOURCE_PROBLEMS = new Set(['unmigratable', 'non-hash']);

/** True when every mismatch counted is a bad source record (fixed at the source or accepted, never repaired). */
export function onlySourceProblems(byKind: Record<string, number>): boolean {
  const kinds = Object.entries(byKind).filter(([, n]) => n > 0);
  return kinds.length > 0 && kinds.every(([k]) => SOURCE_PROBLEMS.has(k));
}

/** Minimum time in read-new before cleanup. */
export function soakGate(inp: GateInputs): GateStatus {
  const min = inp.minSoakMs ?? DEFAULT_MIN_SOAK_MS;
  // Counted from the global phase's move: a canary moving meanwhile does not restart the soak.
  const since = inp.state.phaseChangedAt === null ? 0 : inp.now - inp.state.phaseChangedAt;
  const open = inp.state.phase === Phase.ReadNew && since >= min;
  return {
    name: 'soak',
    open,
    reason: open
      ? `in read-new for ${ago(since)} (min ${ago(min)})`
      : `in read-new for ${ago(since)}; soak needs ${ago(min)} (${ago(Math.max(0, min - since))} to go)`,
    opensWith: open ? null : `orch-migrate cleanup --execute in ${ago(Math.max(0, min - since))} (or with a shorter --min-soak)`,
    forceable: true,
  };
}

/** Legacy must hold every job before it becomes the primary again. */
export function legacyCompleteGate(state: MigrationState): GateStatus {
  return {
    name: 'legacy-complete',
    open: state.legacyComplete,
    reason: state.legacyComplete
      ? 'legacy layout is complete'
      : 'legacy layout is incomplete (cleanup deleted keys, or legacy missed writes in new-only) and the reverse backfill has not finished',
    opensWith: state.legacyComplete ? null : 'orch-migrate rollback --execute (resumes the reverse backfill v2 → legacy; reads stay on v2)',
    forceable: true,
  };
}

/**
 * Every live registered writer acts on the current epoch. Stacking a second
 * transition on writers that have not acknowledged the first would let them
 * lag two phases behind.
 */
export function writersGate(inp: GateInputs): GateStatus {
  const lagging = laggards(inp.writers ?? [], inp.state.epoch);
  if (lagging.length === 0) {
    const live = (inp.writers ?? []).filter((w) => w.live).length;
    return { name: 'writers', open: true, reason: `${live} live writer(s), all at epoch ${inp.state.epoch}`, opensWith: null, forceable: true };
  }
  return {
    name: 'writers',
    open: false,
    reason: `${lagging.length} live writer(s) have not acknowledged epoch ${inp.state.epoch}: ${lagging.slice(0, 3).map(describeWriter).join('; ')}`,
    opensWith: 'check those writer processes; `orch-migrate status` lists them (a dead one stops counting once its lease runs out)',
    forceable: true,
  };
}

/**
 * A global rollback below a canary: refused while workspaces run ahead, until
 * they are rolled back (`rollback --workspace`). Forcing it (`--force
 * workspaces`) is possible only for canaries in read-new, whose legacy records
 * are complete (writers mirror into legacy there); a canary in new-only never
 * lets the global phase fall below it (its legacy records are gone).
 */
export function workspacesGate(state: MigrationState): GateStatus {
  const ahead = Object.entries(state.overrides).filter(([, p]) => effectivePhase(state.phase, p) !== state.phase);
  if (ahead.length === 0) return { name: 'workspaces', open: true, reason: 'no workspace runs ahead of the global phase', opensWith: null, forceable: true };
  const names = ahead
    .slice(0, 5)
    .map(([ws, p]) => `${ws} (${p})`)
    .join(', ');
  const newOnly = ahead.filter(([, p]) => p === Phase.NewOnly).map(([ws]) => ws);
  return {
    name: 'workspaces',
    open: false,
    reason: `${ahead.length} workspace(s) run ahead of the global phase: ${names}${ahead.length > 5 ? ', …' : ''}`,
    opensWith: `orch-migrate rollback --workspace ${ahead.map(([ws]) => ws).join(',')} --execute`,
    // Never past a canary whose legacy records were deleted.
    forceable: newOnly.length === 0,
  };
}

/** Gates of each command, given the current state. */
export function gatesFor(command: string, inp: GateInputs): GateStatus[] {
  const s = inp.state;
  switch (command) {
    case 'enable-dual-write':
      return [phaseGate(s, Phase.Legacy, command), writersGate(inp)];
    case 'backfill':
      return [phaseGate(s, [Phase.DualWrite, Phase.ReadNew], command)];
    case 'flip-read':
      return [phaseGate(s, Phase.DualWrite, command), verifyGate(inp), writersGate(inp)];
    case 'cleanup':
      return s.phase === Phase.NewOnly
        ? [phaseGate(s, [Phase.ReadNew, Phase.NewOnly], command)]
        : [phaseGate(s, [Phase.ReadNew, Phase.NewOnly], command), soakGate(inp), verifyGate(inp), writersGate(inp)];
    case 'rollback':
      if (s.phase === Phase.Legacy) {
        return [
          {
            name: 'phase',
            open: false,
            reason: 'the phase is legacy, the start: there is nothing to roll back',
            opensWith: 'orch-migrate status',
            forceable: false,
          },
        ];
      }
      if (s.phase === Phase.ReadNew)
        return [phaseGate(s, [Phase.DualWrite, Phase.ReadNew, Phase.NewOnly], command), legacyCompleteGate(s), workspacesGate(s), writersGate(inp)];
      return [phaseGate(s, [Phase.DualWrite, Phase.ReadNew, Phase.NewOnly], command), workspacesGate(s), writersGate(inp)];
    default:
      return [];
  }
}

/** Options of {@link enforceGates}. */
export interface EnforceOptions {
  /** Gate names to override (`--force a,b`). */
  force?: readonly string[];
  reason?: string;
}

/** Parses `--force` values: a comma list of gate names; a bare `--force` or an unknown name is a usage error (exit 2). */
export function parseForce(value: unknown): string[] {
  const names = FORCEABLE_GATES.join(', ');
  if (value === undefined || value === false) return [];
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(`--force needs the names of the gates to override: --force <gate>[,<gate>…] (gates: ${names})`, {
      suggestion: `Name each gate you mean to override, e.g. --force verify --reason "…"; \`orch-migrate status\` shows which gates are closed.`,
    });
  }
  const out: string[] = [];
  for (const raw of value.split(',')) {
    const n = raw.trim();
    if (!(FORCEABLE_GATES as readonly string[]).includes(n)) {
      throw new ConfigError(`Unknown gate ${JSON.stringify(n.slice(0, 40))} in --force (gates: ${names})`, { suggestion: `Use one or more of: ${names}.` });
    }
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

/** An override must be explained: `--force` without a non-empty `--reason` is a usage error (exit 2). */
export function assertForceReason(opts: EnforceOptions): void {
  if ((opts.force ?? []).length > 0 && (opts.reason ?? '').trim() === '') {
    throw new ConfigError('--force needs --reason "…" so the override is explained in the history', {
      suggestion: 'Add --reason "why it is safe to override", e.g. --reason "verify ran on a replica"',
    });
  }
}

/**
 * Throws {@link GateError} (exit 3) for the first closed gate, unless it is
 * forceable and named in `force`. Returns the names of the gates overridden.
 */
export function enforceGates(gates: GateStatus[], opts: EnforceOptions): string[] {
  assertForceReason(opts);
  const named = opts.force ?? [];
  const forced: string[] = [];
  for (const g of gates) {
    if (g.open) continue;
    if (g.forceable && named.includes(g.name)) {
      forced.push(g.name);
      continue;
    }
    throw new GateError(g.name, `Refused: ${g.reason}.`, {
      suggestion: g.opensWith ? `Run: ${g.opensWith}${g.forceable ? ` (or override this gate alone with --force ${g.name} --reason "…")` : ''}` : undefined,
    });
  }
  return forced;
}
