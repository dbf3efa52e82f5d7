/**
 * `orch-migrate preflight`, and the preflight gate `enable-dual-write` and
 * `backfill` run first: each refusing check is a gate named after it
 * (`version`, `eviction`, `memory`, `replicas`, `cluster`), forced one by one
 * with `--force <gate> --reason "…"` and recorded in the history.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { ExitCode } from '../../core/errors.js';
import { enforceGates } from '../../ops/gates.js';
import { fmtBytes, fmtLag, type LagLevel } from '../../ops/guards/guards.js';
import {
  DEFAULT_MAX_MEMORY_PCT,
  DEFAULT_MAX_REPLICA_LAG,
  preflight,
  preflightGates,
  raiseDenied,
  type PreflightCheck,
  type PreflightResult,
} from '../../ops/preflight.js';
import type { Redis } from 'ioredis';
import { Keyspace } from '../../core/keys.js';
import { closeRedis, connectRedis, redactUrl, type RedisClient } from '../../core/redis.js';
import { StateStore } from '../../core/state.js';
import { guardFlagFields } from '../guard-flags.js';
import { dflt, intFlag, orNull, parseFlags, rateFlag, withDefault } from '../options.js';
import { fmtInt, Output, safe } from '../output.js';
import { globalOptions, runCommand, type CommandIO } from '../runner.js';

const DEFAULT_SAMPLES = 2000;

/** Options of `preflight`. */
const PreflightFlagsSchema = z.object({
  maxMemoryPct: guardFlagFields.maxMemoryPct,
  maxReplicaLag: guardFlagFields.maxReplicaLag,
  rate: orNull(rateFlag()),
  samples: withDefault(intFlag(100, 100_000), DEFAULT_SAMPLES),
});

const LEVEL_WIDTH = 7;

/** The checks, one per line, and the fix under each that needs one. */
export function renderChecks(checks: PreflightCheck[], out: Output, print: (s: string) => void = (s) => out.print(s)): void {
  const c = out.color;
  for (const ch of checks) {
    const level =
      ch.level === 'ok'
        ? c.green(ch.level.padEnd(LEVEL_WIDTH))
        : ch.level === 'warn'
          ? c.yellow(ch.level.padEnd(LEVEL_WIDTH))
          : c.red(ch.level.padEnd(LEVEL_WIDTH));
    print(`  ${ch.name.padEnd(9)} ${level} ${safe(ch.detail)}`);
    if (ch.fix && ch.level !== 'ok') print(`  ${''.padEnd(9)} ${''.padEnd(LEVEL_WIDTH)} ${c.dim(`fix: ${safe(ch.fix)}`)}`);
  }
}

function render(r: PreflightResult, out: Output): void {
  const c = out.color;
  const refused = r.checks.filter((x) => x.level === 'refuse').map((x) => x.name);
  const warned = r.checks.filter((x) => x.level === 'warn').map((x) => x.name);
  out.print(
    `${refused.length > 0 ? c.red(`preflight: refused (${refused.join(', ')})`) : c.green('preflight: ok')}${warned.length > 0 ? c.yellow(`, ${warned.length} warning(s) (${warned.join(', ')})`) : ''} in ${(r.durationMs / 1000).toFixed(1)}s`,
  );
  renderChecks(r.checks, out);
  const p = r.projection;
  if (p) {
    out.print(
      `projection  ${fmtInt(p.pendingJobs)} job(s) to copy × ${fmtInt(p.perJobBytes)} B = ${fmtBytes(p.v2Bytes)} v2 + ${fmtBytes(p.indexBytes)} index (${fmtInt(p.workspaces)} workspace(s)) + ${fmtBytes(p.tableBytes)} hash tables = +${fmtBytes(p.growthBytes)}; ` +
        `used ${fmtBytes(p.usedBytes)} → ${fmtBytes(p.projectedUsedBytes)}${p.maxmemoryBytes > 0 ? ` of maxmemory ${fmtBytes(p.maxmemoryBytes)}` : ''} (${fmtInt(p.samples)} record(s) sampled, ±${p.sampleErrorPct}%)`,
    );
  }
  if (refused.length > 0)
    out.print(
      `refused checks are gates: enable-dual-write and backfill refuse too, unless overridden one by one with --force ${refused.join(',')} --reason "…"`,
    );
}

type PreflightFlags = ReturnType<typeof PreflightFlagsSchema.parse>;

function preflightOptions(opts: PreflightFlags): Parameters<typeof preflight>[1] {
  return {
    maxMemoryPct: opts.maxMemoryPct === undefined ? DEFAULT_MAX_MEMORY_PCT : opts.maxMemoryPct === 'off' ? null : opts.maxMemoryPct,
    maxReplicaLag: opts.maxReplicaLag === undefined ? DEFAULT_MAX_REPLICA_LAG : opts.maxReplicaLag === 'off' ? null : opts.maxReplicaLag,
    rate: opts.rate,
    samples: opts.samples,
  };
}

const toJson = (r: PreflightResult): Record<string, unknown> => ({ ok: r.ok, checks: r.checks, projection: r.projection, durationMs: r.durationMs });

/**
 * A cluster whose state is fail refuses a cluster connection (the client
 * never becomes ready), which would make preflight say "unreachable" about the
 * very node that answers. So with --cluster it first asks the startup node
 * alone; when the cluster is down it reaches every master named in CLUSTER
 * NODES on its own and runs the checks on those that answer. Returns the exit
 * code, or null to run the normal way (the cluster is ok, or the probe itself
 * failed: the normal path then reports that).
 */
async function preflightDegradedCluster(cmd: Command): Promise<number | null> {
  const clients: RedisClient[] = [];
  try {
    const globals = globalOptions(cmd);
    if (!globals.cluster) return null;
    const opts = parseFlags(PreflightFlagsSchema, cmd.opts());
    const connect = (url: string): Promise<RedisClient> =>
      connectRedis({
        url,
        commandTimeoutMs: Math.min(globals.timeout, 5000),
        connectTimeoutMs: 2000,
        maxReconnects: 0,
        connectionName: 'orch-migrate:preflight',
      });
    const startup = await connect(globals.redisUrl);
    clients.push(startup);
    if (/^cluster_state:ok\s*$/m.test(String(await startup.cluster('INFO')))) return null;
    const nodes = String(await startup.cluster('NODES'))
      .split('\n')
      .map((l) => l.split(' '))
      .filter((p) => (p[2] ?? '').includes('master') && (p[8] ?? '') !== '')
      .map((p) => (p[1] ?? '').split('@')[0]!);
    const base = new URL(globals.redisUrl);
    const masters = await Promise.all(
      nodes.map(async (addr) => {
        const u = new URL(base.href);
        u.host = addr;
        try {
          const c = await connect(u.href);
          clients.push(c);
          return { addr, node: c as Redis };
        } catch (e) {
          return { addr, node: null, error: e instanceof Error ? new Error(e.message.replace(u.href, redactUrl(u.href))) : new Error(String(e)) };
        }
      }),
    );
    const keys = new Keyspace(globals.prefix);
    const ctx = { client: startup, keys, state: new StateStore(startup, keys), actor: globals.actor ?? '', signal: new AbortController().signal, lock: null };
    const r = await preflight(ctx, { ...preflightOptions(opts), masters, cluster: true });
    raiseDenied(r);
    const out = new Output(globals.json);
    render(r, out);
    out.result(toJson(r));
    return r.ok ? ExitCode.Ok : ExitCode.Gate;
  } catch {
    return null;
  } finally {
    await Promise.all(clients.map((c) => closeRedis(c)));
  }
}

/** Registers `preflight`. */
export function registerPreflight(program: Command, setExit: (code: number) => void): void {
  program
    .command('preflight')
    .description('Check that Redis can take the migration: version, eviction policy, projected memory, replicas, cluster health (read-only)')
    .option('--max-memory-pct <pct>', `the memory guard's level the projection must stay under, % of maxmemory ${dflt(DEFAULT_MAX_MEMORY_PCT)}`)
    .option('--max-replica-lag <10s|64mb|off>', `refuse when a replica is further behind ${dflt(fmtLag(DEFAULT_MAX_REPLICA_LAG))}`)
    .option('--rate <keys/s>', 'the --rate the backfill will run at, for the replica output buffer check (default: full speed)')
    .option('--samples <n>', `legacy records sampled with MEMORY USAGE at least (more while the mean is uncertain) ${dflt(DEFAULT_SAMPLES)}`)
    .addHelpText(
      'after',
      `
Exit 0 when every check passes (warnings included), 3 when one refuses. enable-dual-write and
backfill run the same checks first; a refusing check is a gate named after it, overridden one
by one: --force memory --reason "…" (recorded in the history).

Examples:
  $ orch-migrate preflight
  $ orch-migrate preflight --json | jq '.projection | {perJobBytes, jobs, v2Bytes, indexBytes}'`,
    )
    .action(async (_o, cmd: Command) => {
      const degraded = await preflightDegradedCluster(cmd);
      if (degraded !== null) return setExit(degraded);
      setExit(
        await runCommand(cmd, {
          name: 'preflight',
          options: PreflightFlagsSchema,
          mutating: false,
          execute: async ({ ctx, opts, progress }) => {
            const r = await preflight(ctx, { ...preflightOptions(opts), onProgress: progress.update });
            raiseDenied(r);
            return r;
          },
          render,
          toJson,
          exitCode: (r) => (r.ok ? ExitCode.Ok : ExitCode.Gate),
          // Read-only like status: no history entry (it must also work on a node it cannot write to, e.g. a
          // cluster node addressed without --cluster, which it reports). The gates that run it record overrides.
        }),
      );
    });
}

/** What the preflight gate reports inside enable-dual-write's and backfill's results. */
export interface PreflightGateResult {
  ok: boolean;
  /** Refusing checks overridden with --force. */
  forced: string[];
  warnings: string[];
  checks: PreflightCheck[];
}

/** Levels the gate checks against (the run's own guard levels, when it has them). */
export interface PreflightGateOptions {
  command: string;
  force: readonly string[];
  reason: string | null;
  rate?: number | null;
  maxMemoryPct?: number | null;
  maxReplicaLag?: LagLevel | null;
}

/**
 * Runs preflight before a command that starts or grows the migration:
 * warnings go to stderr, a refusing check refuses the command (exit 3) unless
 * forced by name; forced checks are recorded in the history.
 */
export async function preflightGate(io: Pick<CommandIO<unknown>, 'ctx' | 'out' | 'progress'>, o: PreflightGateOptions): Promise<PreflightGateResult> {
  const { ctx, out, progress } = io;
  const r = await preflight(ctx, {
    maxMemoryPct: o.maxMemoryPct === undefined ? DEFAULT_MAX_MEMORY_PCT : o.maxMemoryPct,
    maxReplicaLag: o.maxReplicaLag === undefined ? DEFAULT_MAX_REPLICA_LAG : o.maxReplicaLag,
    rate: o.rate ?? null,
    onProgress: progress.update,
  });
  raiseDenied(r, o.force ?? []);
  const warnings = r.checks.filter((c) => c.level === 'warn');
  for (const w of warnings) out.warn(`preflight ${w.name}: ${safe(w.detail)}${w.fix ? ` (fix: ${safe(w.fix)})` : ''}`);
  const forced = enforceGates(preflightGates(r), { force: o.force, reason: o.reason ?? '' });
  if (forced.length > 0) {
    out.warn(
      `preflight: forced ${forced.join(', ')} (recorded in the history): ${r.checks
        .filter((c) => forced.includes(c.name))
        .map((c) => safe(c.detail))
        .join('; ')}`,
    );
    await ctx.state.appendHistory('force', ctx.actor, {
      command: o.command,
      gates: forced,
      reason: o.reason ?? '',
      preflight: r.checks.filter((c) => forced.includes(c.name)),
    });
  }
  return { ok: r.ok, forced, warnings: warnings.map((w) => w.name), checks: r.checks };
}
