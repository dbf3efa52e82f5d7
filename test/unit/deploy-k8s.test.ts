// deploy/k8s/backfill-indexed-job.yaml: an Indexed Job whose pod i runs `backfill --shard i/N`.
// Parsed here and checked against the CLI itself, so the manifest cannot name a flag or an
// environment variable the program does not have, nor disagree with itself about N.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } };
}
interface Container {
  name: string;
  command: string[];
  args: string[];
  env: EnvVar[];
}
interface JobManifest {
  apiVersion: string;
  kind: string;
  spec: {
    completionMode: string;
    completions: number;
    parallelism: number;
    podFailurePolicy?: { rules: Array<{ action: string; onExitCodes?: { containerName?: string; values: number[] } }> };
    template: { spec: { restartPolicy: string; containers: Container[] } };
  };
}

const manifest = parse(readFileSync(new URL('../../deploy/k8s/backfill-indexed-job.yaml', import.meta.url), 'utf8')) as JobManifest;
const container = manifest.spec.template.spec.containers[0]!;
const program = buildProgram(() => undefined);
const backfill = program.commands.find((c) => c.name() === 'backfill')!;

/** Long flags a command accepts, and the environment variables its options read. */
function flagsOf(cmd: Command): { flags: Set<string>; envs: Set<string> } {
  const flags = new Set<string>();
  const envs = new Set<string>();
  for (const o of cmd.options) {
    if (o.long) flags.add(o.long);
    if (o.envVar) envs.add(o.envVar);
  }
  return { flags, envs };
}

describe('deploy/k8s/backfill-indexed-job.yaml', () => {
  it('is an Indexed Job running N pods at once, N = completions = parallelism', () => {
    expect(manifest).toMatchObject({ apiVersion: 'batch/v1', kind: 'Job', spec: { completionMode: 'Indexed' } });
    expect(manifest.spec.completions).toBeGreaterThan(1);
    expect(manifest.spec.parallelism).toBe(manifest.spec.completions);
    // podFailurePolicy is only valid with restartPolicy Never.
    expect(manifest.spec.template.spec.restartPolicy).toBe('Never');
    const failJob = manifest.spec.podFailurePolicy?.rules.find((r) => r.action === 'FailJob');
    expect(failJob?.onExitCodes?.containerName).toBe(container.name);
    // Exit 4 (a dead predecessor's lease still live) and 5 (Redis away) are worth a retry; never fail the Job on them.
    expect(failJob?.onExitCodes?.values).not.toContain(4);
    expect(failJob?.onExitCodes?.values).not.toContain(5);
  });

  it('runs `orch-migrate backfill --shard $(JOB_COMPLETION_INDEX)/N --json` on a cluster, the completion index as the shard index', () => {
    expect(container.command).toEqual(['orch-migrate']);
    const args = container.args;
    const sub = args.indexOf('backfill');
    expect(sub).toBeGreaterThanOrEqual(0);
    expect(args).toContain('--json');
    expect(args).toContain('--cluster');
    const shard = args[args.indexOf('--shard') + 1];
    expect(args.indexOf('--shard')).toBeGreaterThan(sub);
    expect(shard).toBe(`$(JOB_COMPLETION_INDEX)/${manifest.spec.completions}`);
    // $(VAR) in args expands only from a variable declared in env: the completion index annotation.
    const idx = container.env.find((e) => e.name === 'JOB_COMPLETION_INDEX');
    expect(idx?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.annotations['batch.kubernetes.io/job-completion-index']");
  });

  it('names only flags and environment variables that orch-migrate has (`orch-migrate backfill --help`)', () => {
    const global = flagsOf(program);
    const own = flagsOf(backfill);
    const args = container.args;
    const sub = args.indexOf('backfill');
    for (const [i, a] of args.entries()) {
      if (!a.startsWith('--')) continue;
      const known = i < sub ? global.flags : new Set([...own.flags, ...global.flags]);
      expect(known, `${a} is not a flag of orch-migrate${i > sub ? ' backfill' : ''}`).toContain(a);
    }
    const help = backfill.helpInformation();
    for (const a of args.slice(sub + 1).filter((x) => x.startsWith('--'))) expect(help).toContain(a);
    for (const e of container.env) {
      if (e.name === 'JOB_COMPLETION_INDEX') continue;
      expect(global.envs, `${e.name} is read by no option`).toContain(e.name);
    }
  });

  it('takes the Redis URL (and its password) from a Secret, never inline', () => {
    const url = container.env.find((e) => e.name === 'REDIS_URL');
    expect(url?.value).toBeUndefined();
    expect(url?.valueFrom?.secretKeyRef).toMatchObject({ name: expect.any(String), key: expect.any(String) });
    for (const e of container.env) expect(e.value ?? '', e.name).not.toMatch(/:\/\/|password/i);
    for (const a of [...container.command, ...container.args]) expect(a).not.toMatch(/:\/\/|--redis-url/);
  });
});
