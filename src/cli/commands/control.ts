/**
 * `orch-migrate control pause|resume|rate <keys/s|unlimited>`: steers the
 * runs in flight from any machine that reaches Redis (src/ops/control.ts).
 * It takes no lock (the run it steers holds it) and is recorded in the history.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { describeControl, setControl, type ControlAction, type ControlState } from '../../ops/control.js';
import { readRuns, type RunInFlight } from '../../ops/run-heartbeat.js';
import { SAMPLE_EVERY_MS } from '../../ops/guards/controller.js';
import { orNull, textFlag } from '../options.js';
import { safe, type Output } from '../output.js';
import { runCommand } from '../runner.js';

const ACTIONS = ['pause', 'resume', 'rate'] as const;

/** Options of `control`: the positional arguments are folded in, so one schema checks them before connecting. */
const ControlFlagsSchema = z
  .object({
    action: z.string(),
    value: z.string().optional(),
    reason: orNull(textFlag()),
  })
  // Positional arguments: the issues carry no path, so the message is not prefixed with a flag name.
  .transform((o, ctx): { action: ControlAction; reason: string | null } => {
    const shown = (v: string): string => JSON.stringify(v.slice(0, 40));
    if (!(ACTIONS as readonly string[]).includes(o.action)) {
      ctx.addIssue({ code: 'custom', message: `control: expected pause, resume or rate <keys/s>, got ${shown(o.action)}` });
      return z.NEVER;
    }
    if (o.action !== 'rate') {
      if (o.value !== undefined) ctx.addIssue({ code: 'custom', message: `control ${o.action} takes no value, got ${shown(o.value)}` });
      return { action: { action: o.action as 'pause' | 'resume' }, reason: o.reason };
    }
    const v = o.value ?? '';
    if (v === 'unlimited') return { action: { action: 'rate', rate: null }, reason: o.reason };
    if (!/^[0-9]{1,9}(\.[0-9]+)?$/.test(v) || Number(v) <= 0) {
      ctx.addIssue({ code: 'custom', message: `control rate needs a positive number of keys per second, or unlimited, got ${shown(v)}` });
      return z.NEVER;
    }
    return { action: { action: 'rate', rate: Number(v) }, reason: o.reason };
  });

/** Result of `control`. */
interface ControlResult {
  action: ControlAction;
  control: ControlState | null;
  runs: RunInFlight[];
}

function render(r: ControlResult, out: Output): void {
  const c = out.color;
  const within = `within ${Math.ceil((SAMPLE_EVERY_MS * 2) / 1000)} s`;
  const what =
    r.action.action === 'pause'
      ? `paused: every running backfill, verify, cleanup and reverse backfill stops taking batches ${within} (the batches in flight finish; the lock and checkpoints stay)`
      : r.action.action === 'resume'
        ? `resumed: runs continue ${within}, each at its own rate and guards`
        : r.action.rate === null
          ? `rate cleared: runs go back to their own --rate ${within}`
          : `rate set to ${r.action.rate} keys/s for every run (replaces its --rate) ${within}`;
  out.print(`${c.green('control')} ${what}`);
  out.print(`control now: ${safe(describeControl(r.control))}`);
  if (r.runs.length === 0) out.print(c.yellow('no run in flight: this applies to the next run that starts (it says so when it starts)'));
  for (const run of r.runs)
    out.print(`  run ${safe(run.op)} ${safe(run.actor)} pid ${run.pid}@${safe(run.host)}: ${run.state}${run.reason ? ` — ${safe(run.reason)}` : ''}`);
}

/** Registers `control`. */
export function registerControl(program: Command, setExit: (code: number) => void): void {
  program
    .command('control')
    .description('Pause, resume or re-rate the running migration operations from anywhere (applied within a second; no lock needed)')
    .argument('<action>', `${ACTIONS.join(' | ')}`)
    .argument('[value]', 'for rate: keys per second for every run, or unlimited (each run goes back to its own --rate)')
    .option('--reason <text>', 'why (shown by status, recorded in the history)')
    .addHelpText(
      'after',
      `
The setting lives in Redis (<prefix>:migration:jobs:control) until changed: a pause also
holds a run started later, and a rate replaces each run's --rate until "rate unlimited".
orch-migrate status shows it, and the runs in flight.

Examples:
  $ orch-migrate control pause --reason "INC-88 p99 up on the API"
  $ orch-migrate control rate 2000
  $ orch-migrate control resume`,
    )
    .action(async (action: string, value: string | undefined, _o, cmd: Command) => {
      cmd.setOptionValue('action', action);
      if (value !== undefined) cmd.setOptionValue('value', value);
      setExit(
        await runCommand(cmd, {
          name: 'control',
          options: ControlFlagsSchema,
          // It steers the run that holds the lock: taking it would wait for that very run.
          mutating: false,
          execute: async ({ ctx, opts }) => {
            const control = await setControl(ctx, opts.action, opts.reason);
            return { action: opts.action, control, runs: await readRuns(ctx.client, ctx.keys, await ctx.state.serverTime()) };
          },
          render,
          toJson: (r) => ({
            action: r.action.action,
            ...(r.action.action === 'rate' ? { rate: r.action.rate } : {}),
            control: r.control,
            runs: r.runs.map((x) => ({ id: x.id, op: x.op, state: x.state })),
          }),
          historySummary: (r) => ({
            action: r.action.action,
            ...(r.action.action === 'rate' ? { rate: r.action.rate } : {}),
            paused: r.control?.paused ?? false,
            reason: r.control?.reason ?? null,
            runs: r.runs.length,
          }),
        }),
      );
    });
}
