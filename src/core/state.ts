/**
 * The migration state record (docs/design.md "The state record is never guessed"): a contract read by services in other
 * languages, so its field names and encodings are stable and documented in
 * the README. A missing record means phase `legacy`, epoch 0.
 */
import os from 'node:os';
import { ConfigError, EpochConflictError, FencedError, InterruptedError, isReplyError } from './errors.js';
import type { Keyspace } from './keys.js';
import { isWorkspaceId } from './ids.js';
import { effectivePhase, isPhase, OVERRIDE_PHASES, Phase } from './phase.js';
import { isCluster, type RedisClient } from './redis.js';
import { isScriptError, ScriptError, scriptErrorReply } from './script-replies.js';
import { callScript, ensureScripts, ScriptName } from './scripts.js';
import { defaultWorkspaceState, encodeWorkspaceState, readWorkspaceStates, writeWorkspaceStates, type WorkspaceState } from './workspaces.js';

/** Field names of the state hash. */
export const StateField = {
  Phase: 'phase',
  Epoch: 'epoch',
  ChangedAt: 'changed_at',
  ChangedBy: 'changed_by',
  Reason: 'reason',
  SettleMs: 'settle_ms',
  LegacyComplete: 'legacy_complete',
  V2Complete: 'v2_complete',
  LastBackfill: 'last_backfill',
  LastVerify: 'last_verify',
  LastCleanup: 'last_cleanup',
  LockFence: 'lock_fence',
  /** JSON shard holder → its newest fence (src/core/lua/lock-fence.lua). */
  ShardFences: 'shard_fences',
  ShadowReadRate: 'shadow_read_rate',
  /** +1 on every move back to legacy: forward checkpoints of an older lineage are void. */
  Lineage: 'lineage',
  /** When the global phase last moved; `changed_at` also moves with a canary's (workspace) transition. */
  PhaseChangedAt: 'phase_changed_at',
} as const;

/** Checkpointed operations whose checkpoint shows that a migration exists. */
const TRACE_OPS = ['backfill', 'reverse-backfill', 'cleanup'] as const;

/** Default settle window: how long a writer may act on a cached phase. */
export const DEFAULT_SETTLE_MS = 2000;
/** History stream is trimmed to roughly this many entries. */
const HISTORY_MAXLEN = 10000;

/** The decoded state record. */
export interface MigrationState {
  phase: Phase;
  epoch: number;
  /** Server time (ms) of the last transition, or null before the first. */
  changedAt: number | null;
  changedBy: string | null;
  reason: string | null;
  settleMs: number;
  /** Whether the legacy layout holds every job (false after cleanup starts, true again after a reverse backfill). */
  legacyComplete: boolean;
  /** Whether v2 holds every job (proved by a clean verify). */
  v2Complete: boolean;
  /** Fence issued with the most recent lock acquisition. */
  lockFence: number;
  /** Fraction (0..1) of dual-write reads the API shadows against v2. */
  shadowReadRate: number;
  /** Moves back to legacy so far; a forward checkpoint is valid only within one lineage. */
  lineage: number;
  lastBackfill: Record<string, unknown> | null;
  lastVerify: Record<string, unknown> | null;
  lastCleanup: Record<string, unknown> | null;
  /**
   * Per-workspace phases (canaries), as stored: only the ones that are ahead
   * of the global phase count (see {@link MigrationState.phaseOf}).
   */
  overrides: Record<string, Phase>;
  /** When the global phase last moved (server ms): the soak counts from here, not from a canary move. */
  phaseChangedAt: number | null;
  /** Every field as stored. */
  raw: Record<string, string>;
}

/** The phase a workspace's jobs follow in `state` (its canary override, or the global phase). */
export function phaseOf(state: Pick<MigrationState, 'phase' | 'overrides'>, workspaceId: string): Phase {
  return effectivePhase(state.phase, state.overrides[workspaceId]);
}

/** A history stream entry. */
export interface HistoryEntry {
  id: string;
  type: string;
  at: number;
  by: string;
  data: Record<string, unknown>;
}

/** Input of {@link StateStore.transition}. */
export interface TransitionOptions {
  from: Phase;
  to: Phase;
  expectedEpoch: number;
  /** Fence of the lock we hold; null only for library callers that coordinate otherwise (tests). */
  fence: number | string | null;
  actor?: string;
  reason?: string;
  /** Extra state fields set in the same atomic step. */
  extra?: Record<string, string>;
  /** Gates that were overridden with --force; recorded in the history. */
  forcedGates?: string[];
  /** settle_ms to record if the record has none yet. */
  settleMs?: number;
}

/** Input of {@link StateStore.transitionWorkspaces}. */
export interface WorkspaceTransitionOptions {
  /** The workspaces that move together. */
  workspaces: string[];
  /** Each one's override as the caller saw it (null = none): the move is refused if any changed. */
  expected: Record<string, Phase | null>;
  /** The phase they move to; null = back to the global phase (the override goes). */
  to: Phase | null;
  /** Each one's new state record (src/core/workspaces.ts). */
  states: Map<string, WorkspaceState>;
  expectedEpoch: number;
  fence: number | string | null;
  actor?: string;
  reason?: string;
  forcedGates?: string[];
  /** What the history entry says (command, from, …). */
  data?: Record<string, unknown>;
  /**
   * The run's lease deadline (server unix ms, src/core/lock.ts): on a cluster
   * the overrides are written before the fenced epoch step, and not at all
   * past it. 0 or absent = none (unlocked callers, tests).
   */
  leaseDeadlineMs?: number;
}

/** Result of a transition. */
export interface TransitionResult {
  from: Phase;
  to: Phase;
  epoch: number;
  changedAt: number;
}

/** The OS user and host, the default actor of a change. */
export function defaultActor(): string {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    user = process.env.USER ?? 'unknown';
  }
  return `${user}@${os.hostname()}`;
}

function parseJsonField(raw: string | undefined): Record<string, unknown> | null {
  if (raw === undefined || raw === '') return null;
  try {
    const v = JSON.parse(raw) as unknown;
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The state record is unusable: never guessed at (docs/design.md "The state record is never guessed"). */
export class StateCorruptError extends ConfigError {
  constructor(key: string, what: string, opts: { cause?: unknown } = {}) {
    super(`State record ${key} is corrupt: ${what}`, {
      code: 'ERR_STATE_CORRUPT',
      suggestion: `Do not guess the phase: follow runbooks/incident-state-record.md (it restores ${key} from the history stream).`,
      ...opts,
    });
  }
}

function corrupt(key: string, what: string): StateCorruptError {
  return new StateCorruptError(key, what);
}

/**
 * Decodes a state hash. An empty hash, or one holding only bookkeeping fields
 * (the lock fence) and no epoch, is the pre-migration state: legacy, epoch 0.
 * A record that names an epoch or a change but no valid phase is corrupt
 * (exit 2), never read as legacy.
 */
export function decodeState(key: string, raw: Record<string, string>, overridesRaw: Record<string, string> = {}): MigrationState {
  const phaseRaw = raw[StateField.Phase];
  const started = raw[StateField.Epoch] !== undefined || raw[StateField.ChangedAt] !== undefined;
  if (phaseRaw === undefined && started) throw corrupt(key, 'it has an epoch or a change time but no phase field');
  const phase = phaseRaw ?? Phase.Legacy;
  if (!isPhase(phase)) throw corrupt(key, `unknown phase ${JSON.stringify(phase.slice(0, 40))}`);
  const epochRaw = raw[StateField.Epoch] ?? '0';
  if (!/^[0-9]{1,15}$/.test(epochRaw)) throw corrupt(key, `epoch ${JSON.stringify(epochRaw.slice(0, 40))} is not a non-negative integer`);
  const num = (f: string, dflt: number): number => {
    const v = raw[f];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isFinite(n)) throw corrupt(key, `${f} ${JSON.stringify(v.slice(0, 40))} is not a number`);
    return n;
  };
  const changedAt = raw[StateField.ChangedAt] === undefined ? null : num(StateField.ChangedAt, 0);
  const overrides: Record<string, Phase> = {};
  for (const [ws, p] of Object.entries(overridesRaw)) {
    // A canary entry is routing: one that is not a workspace id and a phase it may run ahead to is corruption.
    if (!isWorkspaceId(ws) || !isPhase(p) || !OVERRIDE_PHASES.includes(p))
      throw corrupt(
        `${key}:workspaces`,
        `entry ${JSON.stringify(ws.slice(0, 40))} → ${JSON.stringify(p.slice(0, 40))} is not a workspace in read-new or new-only`,
      );
    overrides[ws] = p;
  }
  return {
    phase,
    epoch: Number(epochRaw),
    changedAt,
    changedBy: raw[StateField.ChangedBy] ?? null,
    reason: raw[StateField.Reason] ?? null,
    settleMs: num(StateField.SettleMs, DEFAULT_SETTLE_MS),
    legacyComplete: (raw[StateField.LegacyComplete] ?? '1') === '1',
    v2Complete: (raw[StateField.V2Complete] ?? '0') === '1',
    lockFence: num(StateField.LockFence, 0),
    shadowReadRate: Math.min(1, Math.max(0, num(StateField.ShadowReadRate, 0))),
    lineage: num(StateField.Lineage, 0),
    lastBackfill: parseJsonField(raw[StateField.LastBackfill]),
    lastVerify: parseJsonField(raw[StateField.LastVerify]),
    lastCleanup: parseJsonField(raw[StateField.LastCleanup]),
    overrides,
    phaseChangedAt: raw[StateField.PhaseChangedAt] === undefined ? changedAt : num(StateField.PhaseChangedAt, 0),
    raw,
  };
}

/** Sleeps `ms`, rejecting with {@link InterruptedError} when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new InterruptedError());
    const t = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      Math.max(0, ms),
    );
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new InterruptedError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Reads and moves the state record; appends to the history; announces transitions. */
export class StateStore {
  constructor(
    readonly client: RedisClient,
    readonly keys: Keyspace,
  ) {
    ensureScripts(client);
  }

  /**
   * Reads and decodes the record. A missing record means legacy, epoch 0 only
   * while nothing shows that a migration exists: a missing record next to a
   * history stream or a checkpoint (eviction, a stray DEL) is corruption.
   */
  async read(): Promise<MigrationState> {
    let raw: Record<string, string>;
    let overrides: Record<string, string>;
    try {
      // One HGETALL each: on a cluster the two hashes live in different slots.
      [raw, overrides] = await Promise.all([this.client.hgetall(this.keys.state), this.client.hgetall(this.keys.workspacePhases)]);
    } catch (err) {
      throw wrongTypeAsCorrupt(err, this.keys.state);
    }
    const state = decodeState(this.keys.state, raw, overrides);
    if (raw[StateField.Epoch] === undefined) {
      const traces = await this.migrationTraces();
      if (traces.length > 0) {
        throw corrupt(
          this.keys.state,
          `it is ${Object.keys(raw).length === 0 ? 'missing' : 'without phase and epoch'} but ${traces.join(' and ')} show a migration exists (evicted or deleted?)`,
        );
      }
    }
    return state;
  }

  /**
   * What shows that a migration has started, checked only when the record
   * looks pre-migration: a checkpoint, or a transition entry in the history
   * (other entries, such as a dry run's, exist before the first transition).
   */
  private async migrationTraces(): Promise<string[]> {
    const cps = TRACE_OPS.map((op) => this.keys.checkpoint(op));
    // One EXISTS per key: on a cluster they hash to different slots.
    const found = await Promise.all(cps.map((k) => this.client.exists(k)));
    const traces = cps.filter((_, i) => found[i] === 1);
    if (await this.historyHasTransition()) traces.push(`a transition in ${this.keys.history}`);
    return traces;
  }

  /** Scans the (trimmed, so bounded) history stream for a transition entry. */
  private async historyHasTransition(): Promise<boolean> {
    let start = '-';
    for (let page = 0; page < HISTORY_MAXLEN / 1000 + 1; page++) {
      let rows: Array<[string, string[]]>;
      try {
        rows = await this.client.xrange(this.keys.history, start, '+', 'COUNT', 1000);
      } catch (err) {
        if (isScriptError(err, ScriptError.WrongType)) return false;
        throw err;
      }
      for (const [, flat] of rows)
        if (flat[0] === 'type' && (flat[1] === 'transition' || flat[1] === 'workspace-transition' || flat[1] === 'transition-abandoned')) return true;
      if (rows.length < 1000) return false;
      start = `(${rows[rows.length - 1]![0]}`;
    }
    return false;
  }

  /** Server time in ms (the clock every settle window is measured against). */
  async serverTime(): Promise<number> {
    const [s, us] = await this.client.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }

  /**
   * Compare-and-set of the phase on its epoch (fenced by the lock), committed
   * with its history entry and announced on the events channel. On one node
   * the script does all three atomically. On a cluster the history stream is
   * in another slot: its entry is appended first, and marked abandoned when
   * the compare-and-set refuses, so no phase ever moves without an entry.
   */
  async transition(opts: TransitionOptions): Promise<TransitionResult> {
    const actor = opts.actor ?? defaultActor();
    const reason = opts.reason ?? '';
    const extra: string[] = [];
    for (const [f, v] of Object.entries(opts.extra ?? {})) extra.push(f, v);
    const data: Record<string, unknown> = {
      from: opts.from,
      to: opts.to,
      reason,
      ...(opts.forcedGates && opts.forcedGates.length > 0 ? { forced: opts.forcedGates } : {}),
    };
    const bumpLineage = opts.to === Phase.Legacy && opts.from !== Phase.Legacy ? '1' : '0';
    const args = (history: boolean): Array<string | number> => [
      opts.expectedEpoch,
      opts.from,
      opts.to,
      opts.fence === null ? '' : String(opts.fence),
      actor,
      reason,
      opts.settleMs ?? DEFAULT_SETTLE_MS,
      bumpLineage,
      HISTORY_MAXLEN,
      JSON.stringify(data),
      history ? this.keys.events : '',
      ...extra,
    ];
    const what = `${opts.from} → ${opts.to}`;
    if (!isCluster(this.client)) {
      let reply: [number, number, string];
      try {
        reply = await callScript<[number, number, string]>(this.client, ScriptName.TransitionWithHistory, [this.keys.state, this.keys.history, ...args(true)]);
      } catch (err) {
        throw mapStateScriptError(err, what, this.keys);
      }
      return { from: opts.from, to: opts.to, epoch: Number(reply[0]), changedAt: Number(reply[1]) };
    }
    await this.assertHistoryWritable();
    const intent = await this.appendHistory('transition', actor, { ...data, epoch: opts.expectedEpoch + 1 });
    let reply: [number, number, string];
    try {
      reply = await callScript<[number, number, string]>(this.client, ScriptName.Transition, [this.keys.state, ...args(false)]);
    } catch (err) {
      await this.appendHistory('transition-abandoned', actor, { entry: intent, from: opts.from, to: opts.to, epoch: opts.expectedEpoch + 1 }).catch(
        () => undefined,
      );
      throw mapStateScriptError(err, what, this.keys);
    }
    const result: TransitionResult = { from: opts.from, to: opts.to, epoch: Number(reply[0]), changedAt: Number(reply[1]) };
    // The move is committed: a lost announcement only delays writers to their next cache refresh.
    await this.client.publish(this.keys.events, JSON.stringify({ phase: opts.to, epoch: result.epoch, changed_at: result.changedAt })).catch(() => undefined);
    return result;
  }

  /**
   * Moves canary workspaces: overrides, their state records, the epoch (so
   * writers re-read and acknowledge), history and event, as one step on a
   * single node. On a cluster the overrides hash lives in another slot: its
   * compare-and-set (within the lease deadline) comes first, then the epoch's;
   * if that refuses, the overrides and records are put back.
   */
  async transitionWorkspaces(opts: WorkspaceTransitionOptions): Promise<{ epoch: number; changedAt: number }> {
    const actor = opts.actor ?? defaultActor();
    const data = {
      ...(opts.data ?? {}),
      workspaces: opts.workspaces,
      to: opts.to ?? 'global',
      reason: opts.reason ?? '',
      ...(opts.forcedGates && opts.forcedGates.length > 0 ? { forced: opts.forcedGates } : {}),
    };
    const perWs: string[] = [];
    for (const ws of opts.workspaces) perWs.push(ws, opts.expected[ws] ?? '', encodeWorkspaceState(opts.states.get(ws) ?? defaultWorkspaceState()));
    const common = (roles: string, events: string): Array<string | number> => [
      roles,
      opts.expectedEpoch,
      opts.fence === null ? '' : String(opts.fence),
      actor,
      HISTORY_MAXLEN,
      JSON.stringify(data),
      events,
      opts.to ?? '',
      ...perWs,
    ];
    const what = `workspaces ${opts.workspaces.join(',')} → ${opts.to ?? 'the global phase'}`;
    if (!isCluster(this.client)) {
      try {
        const [epoch, changedAt] = await callScript<[number, number]>(this.client, ScriptName.WorkspaceTransition, [
          this.keys.state,
          this.keys.history,
          this.keys.workspacePhases,
          this.keys.workspaceState,
          ...common('hws', this.keys.events),
        ]);
        return { epoch: Number(epoch), changedAt: Number(changedAt) };
      } catch (err) {
        throw mapStateScriptError(err, what, this.keys);
      }
    }
    // Cluster: overrides (compare-and-set, within the lease), then the fenced epoch step in the
    // state record's slot. A writer whose cache expires in between may route by the new override
    // early: adjacent phases mixing, as within any settle window. A refused epoch step undoes them.
    await this.assertHistoryWritable();
    const intent = await this.appendHistory('workspace-transition', actor, { ...data, epoch: opts.expectedEpoch + 1 });
    const before = await readWorkspaceStates(this.client, this.keys, opts.workspaces);
    const triples = (from: (ws: string) => string, to: (ws: string) => string): string[] => opts.workspaces.flatMap((ws) => [ws, from(ws), to(ws)]);
    const was = (ws: string): string => opts.expected[ws] ?? '';
    const next = (): string => opts.to ?? '';
    try {
      await callScript<number>(this.client, ScriptName.WorkspaceOverridesCas, [this.keys.workspacePhases, opts.leaseDeadlineMs ?? 0, ...triples(was, next)]);
    } catch (err) {
      await this.appendHistory('transition-abandoned', actor, { entry: intent, workspaces: opts.workspaces }).catch(() => undefined);
      throw mapStateScriptError(err, what, this.keys);
    }
    try {
      await writeWorkspaceStates(this.client, this.keys, opts.states);
      const [epoch, changedAt] = await callScript<[number, number]>(this.client, ScriptName.WorkspaceTransitionStateOnly, [this.keys.state, ...common('', '')]);
      // Committed: a lost announcement only delays writers to their next cache refresh.
      await this.client
        .publish(this.keys.events, JSON.stringify({ phase: null, epoch: Number(epoch), changed_at: Number(changedAt), workspaces: true }))
        .catch(() => undefined);
      return { epoch: Number(epoch), changedAt: Number(changedAt) };
    } catch (err) {
      // The move did not happen: put back our own overrides (not one a newer run set since) and the records.
      await callScript<number>(this.client, ScriptName.WorkspaceOverridesCas, [this.keys.workspacePhases, 0, ...triples(next, was)]).catch(() => undefined);
      await writeWorkspaceStates(this.client, this.keys, before).catch(() => undefined);
      await this.appendHistory('transition-abandoned', actor, { entry: intent, workspaces: opts.workspaces }).catch(() => undefined);
      throw mapStateScriptError(err, what, this.keys);
    }
  }

  /**
   * Drops overrides the global phase has caught up with (a global transition
   * clears them). Only cosmetic for routing: an override at or behind the
   * global phase is ignored anyway (src/core/phase.ts effectivePhase).
   */
  async dropCaughtUpOverrides(global: Phase): Promise<string[]> {
    const raw = await this.client.hgetall(this.keys.workspacePhases);
    const stale = Object.entries(raw)
      .filter(([, p]) => !isPhase(p) || effectivePhase(global, p) === global)
      .map(([ws]) => ws);
    if (stale.length > 0) await this.client.hdel(this.keys.workspacePhases, ...stale);
    return stale;
  }

  /** The history stream must be a stream (or absent) before a transition relies on it. */
  private async assertHistoryWritable(): Promise<void> {
    const kind = await this.client.type(this.keys.history);
    if (kind !== 'none' && kind !== 'stream') throw historyWrongType(this.keys, kind);
  }

  /** Writes state fields on behalf of the lock holder with `fence` (refused once fenced out). */
  async setFields(fence: number | string | null, fields: Record<string, string>): Promise<void> {
    const flat: string[] = [];
    for (const [f, v] of Object.entries(fields)) flat.push(f, v);
    if (flat.length === 0) return;
    try {
      await callScript<number>(this.client, ScriptName.FencedHset, [this.keys.state, fence === null ? '' : String(fence), ...flat]);
    } catch (err) {
      throw mapStateScriptError(err, 'state update', this.keys);
    }
  }

  /** Appends an audit entry; the stream is trimmed to about 10k entries. */
  async appendHistory(type: string, actor: string, data: Record<string, unknown>): Promise<string> {
    const id = await this.client.xadd(
      this.keys.history,
      'MAXLEN',
      '~',
      HISTORY_MAXLEN,
      '*',
      'type',
      type,
      'at',
      String(Date.now()),
      'by',
      actor,
      'data',
      JSON.stringify(data),
    );
    return id ?? '';
  }

  /** The newest `count` history entries, newest first. A deleted stream reads as empty. */
  async history(count = 10): Promise<HistoryEntry[]> {
    const rows = await this.client.xrevrange(this.keys.history, '+', '-', 'COUNT', count);
    return rows.map(([id, flat]) => {
      const m: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) m[flat[i]!] = flat[i + 1]!;
      return { id, type: m.type ?? '?', at: Number(m.at ?? 0), by: m.by ?? '?', data: parseJsonField(m.data) ?? {} };
    });
  }

  /** Milliseconds until the settle window of the last transition is over (0 when over). */
  async settleRemaining(state: MigrationState): Promise<number> {
    if (state.changedAt === null) return 0;
    const now = await this.serverTime();
    return Math.max(0, state.changedAt + state.settleMs - now);
  }

  /**
   * Waits until every writer must have seen the current phase: changed_at +
   * settle_ms on the server clock. Abortable.
   */
  async waitForSettle(state: MigrationState, opts: { signal?: AbortSignal; onWait?: (remainingMs: number) => void } = {}): Promise<void> {
    const remaining = await this.settleRemaining(state);
    if (remaining <= 0) return;
    opts.onWait?.(remaining);
    // A small margin absorbs the jitter between the server clock and our timers.
    await sleep(remaining + 50, opts.signal);
  }
}

/** A history stream of the wrong type: a config error naming the key (exit 2). */
function historyWrongType(keys: Keyspace, kind: string): ConfigError {
  return new ConfigError(`The history stream ${keys.history} is a ${kind}, not a stream: refused before the phase moved`, {
    code: 'ERR_HISTORY_WRONGTYPE',
    suggestion: `Rename the key out of the way (RENAME ${keys.history} ${keys.history}:broken), then rerun; see runbooks/incident-state-record.md.`,
  });
}

/** A WRONGTYPE reply on the state key: corruption that names the key (exit 2). */
function wrongTypeAsCorrupt(err: unknown, key: string): unknown {
  if (isScriptError(err, ScriptError.WrongType)) return new StateCorruptError(key, 'the key is not a hash', { cause: err });
  return err;
}

/** Maps the scripts' error replies to the error model. */
export function mapStateScriptError(err: unknown, what: string, keys: Keyspace): unknown {
  if (!isReplyError(err)) return err;
  const { code, args } = scriptErrorReply(err)!;
  if (code === ScriptError.Fenced) {
    return new FencedError(`Refused ${what}: this run no longer holds the migration lock (fence ${args.join(' ')})`, { cause: err });
  }
  if (code === ScriptError.Epoch) {
    const [epoch, phase] = args;
    return new EpochConflictError(`Refused ${what}: the state record is now at epoch ${epoch ?? '?'}, phase ${phase ?? '?'}`, { cause: err });
  }
  if (code === ScriptError.HistoryWrongType) return historyWrongType(keys, args[0] ?? '?');
  if (code === ScriptError.WsPhase) {
    const [ws, now] = args;
    return new EpochConflictError(`Refused ${what}: workspace ${ws ?? '?'} is now ${now ? `in ${now}` : 'at the global phase'}`, { cause: err });
  }
  return wrongTypeAsCorrupt(err, keys.state);
}
