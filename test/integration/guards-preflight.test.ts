/**
 * `orch-migrate preflight` on real servers configured to fail each check
 * (src/ops/preflight.ts): too little maxmemory, allkeys-lru, volatile-lru, a
 * replica (in sync, stalled, a small output buffer), a 3-master cluster with
 * a master down, a cluster node addressed without --cluster, an ACL user that
 * cannot run INFO (exit 2, naming the grant); the refusals as gates of enable-dual-write and backfill,
 * forced one by one; and the memory projection against the used_memory growth
 * of a real backfill, on two data shapes unlike each other.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { closeRedis, connectRedis, type RedisClient } from '../../src/core/redis.js';
import type { PreflightCheck, MemoryProjection } from '../../src/ops/preflight.js';
import { runCli, target, type CliResult } from '../helpers/cli.js';
import { movePhase } from '../helpers/core-clients.js';
import { processControlUnavailable, uniquePrefix } from '../helpers/fixtures.js';
import { startRedisCluster, startRedisServer, type RedisClusterHandle, type RedisServerHandle } from '../helpers/redis-server.js';
import { seedLegacy } from './backfill-helpers.js';
import { expectExit, historyOf, settledUsedMemory, startWithReplica, waitFor, waitForReplicaInSync } from './guards-helpers.js';
import { Phase } from '../../src/core/phase.js';

const skip = processControlUnavailable();
const servers: RedisServerHandle[] = [];
const clients: RedisClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => closeRedis(c)));
  await Promise.all(servers.map((s) => s.stop()));
});

async function server(extraArgs: string[] = []): Promise<{ s: RedisServerHandle; client: RedisClient }> {
  const s = await startRedisServer({ extraArgs });
  servers.push(s);
  const client = await connectRedis({ url: s.url });
  clients.push(client);
  return { s, client };
}

interface PreflightJson {
  ok: boolean;
  checks: PreflightCheck[];
  projection: MemoryProjection | null;
}

async function preflight(url: string, prefix: string, extra: string[] = [], cluster = false): Promise<CliResult & { pf: PreflightJson }> {
  const r = await runCli([...target(url, prefix, cluster), '--json', 'preflight', ...extra]);
  expect(r.json, r.stderr).not.toBeNull();
  return { ...r, pf: r.json as unknown as PreflightJson };
}

const checkOf = (pf: PreflightJson, name: string): PreflightCheck => pf.checks.find((c) => c.name === name)!;

describe.skipIf(skip !== undefined)('preflight on servers configured to fail each check', () => {
  it('a healthy server: every check ok (no maxmemory warns), with the projection the contract names', async () => {
    const { s, client } = await server(['--maxmemory', '512mb']);
    const keys = new Keyspace(uniquePrefix('pfok'));
    await seedLegacy(client, keys, 2000);
    const r = await preflight(s.url, keys.prefix);
    expectExit(r, 0);
    expect(r.pf.ok).toBe(true);
    expect(r.pf.checks.map((c) => [c.name, c.level])).toEqual([
      ['version', 'ok'],
      ['eviction', 'ok'],
      ['memory', 'ok'],
      ['replicas', 'ok'],
      ['cluster', 'ok'],
    ]);
    for (const c of r.pf.checks) expect(c).toMatchObject({ ok: true, detail: expect.any(String) });
    expect(r.pf.projection).toMatchObject({
      jobs: 2000,
      perJobBytes: expect.any(Number),
      v2Bytes: expect.any(Number),
      indexBytes: expect.any(Number),
      usedBytes: expect.any(Number),
      maxmemoryBytes: 512 * 1024 * 1024,
    });
    expect(r.pf.projection!.perJobBytes).toBeGreaterThan(200);
    const human = await runCli([...target(s.url, keys.prefix), 'preflight']);
    expect(human.stdout).toMatch(/^preflight: ok in /);
    expect(human.stdout).toMatch(/projection {2}2,000 job\(s\) to copy/);
  });

  it('too little maxmemory: memory refuses and names the maxmemory that would do; at that maxmemory it passes', async () => {
    const { s, client } = await server();
    const keys = new Keyspace(uniquePrefix('pfmem'));
    await seedLegacy(client, keys, 5000);
    const first = await preflight(s.url, keys.prefix);
    const growth = first.pf.projection!.growthBytes;
    const used = first.pf.projection!.usedBytes;
    expect(checkOf(first.pf, 'memory').level).toBe('warn'); // no maxmemory
    await client.config('SET', 'maxmemory', String(Math.round(used + growth * 0.5)));
    const r = await preflight(s.url, keys.prefix);
    expectExit(r, 3);
    expect(r.pf.ok).toBe(false);
    const mem = checkOf(r.pf, 'memory');
    expect(mem).toMatchObject({ ok: false, level: 'refuse' });
    expect(mem.detail).toMatch(/over the 90% the memory guard allows/);
    const needed = Number(/CONFIG SET maxmemory ([0-9]+)/.exec(mem.fix ?? '')?.[1]);
    expect(needed).toBeGreaterThan(used + growth);
    await client.config('SET', 'maxmemory', String(needed));
    const after = await preflight(s.url, keys.prefix);
    expectExit(after, 0);
    expect(checkOf(after.pf, 'memory').ok).toBe(true);
  });

  it('allkeys-lru refuses, volatile-lru warns (exit 0), noeviction passes', async () => {
    const { s, client } = await server(['--maxmemory', '512mb', '--maxmemory-policy', 'allkeys-lru']);
    const keys = new Keyspace(uniquePrefix('pfevict'));
    await seedLegacy(client, keys, 100);
    const lru = await preflight(s.url, keys.prefix);
    expectExit(lru, 3);
    expect(checkOf(lru.pf, 'eviction')).toMatchObject({ level: 'refuse', ok: false });
    expect(checkOf(lru.pf, 'eviction').detail).toMatch(/maxmemory-policy allkeys-lru: .*evict jobs, v2 copies and the migration state record/);
    expect(checkOf(lru.pf, 'eviction').fix).toMatch(/CONFIG SET maxmemory-policy noeviction/);
    await client.config('SET', 'maxmemory-policy', 'volatile-lru');
    const vol = await preflight(s.url, keys.prefix);
    expectExit(vol, 0);
    expect(checkOf(vol.pf, 'eviction')).toMatchObject({ level: 'warn', ok: true });
    expect(checkOf(vol.pf, 'eviction').detail).toMatch(/jobs with a TTL may be evicted before they expire/);
  });

  it('refusals are gates of enable-dual-write and backfill, forced one by one and recorded in the history', async () => {
    const { s, client } = await server(['--maxmemory-policy', 'allkeys-lru']);
    const keys = new Keyspace(uniquePrefix('pfgate'));
    const args = target(s.url, keys.prefix);
    await seedLegacy(client, keys, 3000);
    const pf = await preflight(s.url, keys.prefix);
    await client.config('SET', 'maxmemory', String(Math.round(pf.pf.projection!.usedBytes + pf.pf.projection!.growthBytes * 0.3)));
    // Two refusals: eviction and memory.
    const refused = await runCli([...args, 'enable-dual-write', '--reason', 'gate test']);
    expectExit(refused, 3);
    expect(refused.stderr).toMatch(/error: Refused: preflight eviction: .*allkeys-lru/);
    expect(refused.stderr).toMatch(/--force eviction --reason/);
    const onlyOne = await runCli([...args, 'enable-dual-write', '--reason', 'gate test', '--force', 'eviction']);
    expectExit(onlyOne, 3);
    expect(onlyOne.stderr).toMatch(/error: Refused: preflight memory: /);
    expect((await client.hget(keys.state, 'phase')) ?? 'legacy').toBe('legacy');
    const both = await runCli([
      ...args,
      '--json',
      'enable-dual-write',
      '--settle-ms',
      '100',
      '--reason',
      'drill: memory is watched by hand',
      '--force',
      'eviction,memory',
    ]);
    expectExit(both, 0);
    expect(both.json).toMatchObject({ from: 'legacy', to: 'dual-write', preflight: { ok: false, forced: ['eviction', 'memory'] } });
    expect(both.stderr).toMatch(/warning: preflight: forced eviction, memory/);
    const forced = await historyOf(client, keys, 'force');
    expect(forced[0]!.data).toMatchObject({ command: 'enable-dual-write', gates: ['eviction', 'memory'], reason: 'drill: memory is watched by hand' });
    // From here only the memory refusal is needed. Under allkeys-lru this close to maxmemory the
    // server may evict the lock key itself (a client output buffer is enough to cross the line), and
    // a run that loses its lock stops with exit 4, as it must; so stop the evictions, keep the limit.
    await client.config('SET', 'maxmemory-policy', 'noeviction');
    await client.config('SET', 'maxmemory', '0');
    const again = await preflight(s.url, keys.prefix);
    await client.config('SET', 'maxmemory', String(Math.round(again.pf.projection!.usedBytes + again.pf.projection!.growthBytes * 0.3)));
    // backfill runs the same checks first.
    const bf = await runCli([...args, 'backfill', '--reason', 'x']);
    expectExit(bf, 3);
    expect(bf.stderr).toMatch(/Refused: preflight memory/);
    // A dry run writes nothing: no preflight.
    expectExit(await runCli([...args, 'backfill', '--dry-run']), 0);
    // A bad gate name is a usage error that lists them all.
    const bad = await runCli([...args, 'backfill', '--force', 'memroy', '--reason', 'x']);
    expectExit(bad, 2);
    expect(bad.stderr).toMatch(
      /Unknown gate "memroy" in --force \(gates: verify, soak, legacy-complete, writers, workspaces, version, eviction, memory, replicas, cluster\)/,
    );
  });

  it('a replica attached: in sync passes; stalled (SIGSTOP) refuses naming it; a small output buffer limit warns with a --rate that fits', async () => {
    const { master, replica } = await startWithReplica(servers);
    const client = await connectRedis({ url: master.url });
    clients.push(client);
    const keys = new Keyspace(uniquePrefix('pfrepl'));
    await seedLegacy(client, keys, 1000);
    await waitForReplicaInSync(client);
    const ok = await preflight(master.url, keys.prefix);
    expectExit(ok, 0);
    expect(checkOf(ok.pf, 'replicas')).toMatchObject({ level: 'ok' });
    expect(checkOf(ok.pf, 'replicas').detail).toMatch(new RegExp(`replica 127\\.0\\.0\\.1:${replica.port} of 127\\.0\\.0\\.1:${master.port}: state online`));

    await client.config('SET', 'client-output-buffer-limit', 'replica 1mb 512kb 10');
    const small = await preflight(master.url, keys.prefix);
    expectExit(small, 0);
    expect(checkOf(small.pf, 'replicas').level).toBe('warn');
    expect(checkOf(small.pf, 'replicas').detail).toMatch(
      /a replica that stalls is dropped after [0-9.]+s by client-output-buffer-limit replica \(1\.0 MB hard, 512\.0 KB\/10s soft\) and resyncs in full, before the replica-lag guard would pause the run/,
    );
    const fitting = Number(/--rate ([0-9]+)/.exec(checkOf(small.pf, 'replicas').fix ?? '')?.[1]);
    expect(fitting).toBeGreaterThan(0);
    expect(checkOf((await preflight(master.url, keys.prefix, ['--rate', String(fitting)])).pf, 'replicas').level).toBe('ok');

    replica.pause();
    try {
      // Redis counts the replica's lag in whole seconds since its last ACK (one a second).
      await waitFor('the replica to lag 3s', async () => /slave0:.*lag=([3-9]|[1-9][0-9]+)\b/.test(await client.info('replication')), 30_000);
      const stalled = await preflight(master.url, keys.prefix, ['--max-replica-lag', '2s']);
      expectExit(stalled, 3);
      expect(checkOf(stalled.pf, 'replicas')).toMatchObject({ level: 'refuse' });
      expect(checkOf(stalled.pf, 'replicas').detail).toMatch(
        new RegExp(`replica 127\\.0\\.0\\.1:${replica.port} .*last ACK [0-9]+s ago.*over --max-replica-lag 2s`),
      );
    } finally {
      replica.resume();
    }
    // Pointed at the replica itself.
    const onReplica = await preflight(replica.url, keys.prefix);
    expectExit(onReplica, 3);
    expect(checkOf(onReplica.pf, 'replicas').detail).toMatch(/is a slave, not a master/);
  });

  it('an ACL user that cannot run INFO: preflight stops closed with exit 2 naming the ACL rule to add; no password printed', async () => {
    const { s, client } = await server();
    const keys = new Keyspace(uniquePrefix('pfacl'));
    await seedLegacy(client, keys, 200);
    await client.call('ACL', 'SETUSER', 'noinfo', 'on', '>s3cret-pw', '~*', '+@all', '-info');
    const url = `redis://noinfo:s3cret-pw@127.0.0.1:${s.port}`;
    // A missing grant is not a gate to force: it is a configuration error with its fix.
    const r = await runCli([...target(url, keys.prefix), '--json', 'preflight']);
    expectExit(r, 2);
    expect(r.json).toMatchObject({ ok: false, error: { code: 'ERR_NOPERM' } });
    expect((r.json as { error: { suggestion: string } }).error.suggestion).toContain('ACL SETUSER noinfo +info');
    expect(r.stdout + r.stderr).not.toContain('s3cret-pw');
  });
});

describe.skipIf(skip !== undefined)('preflight on a 3-master cluster', () => {
  let cluster: RedisClusterHandle;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('healthy: ok; a node addressed without --cluster refuses; one master down: cluster refuses naming it', async () => {
    cluster = await startRedisCluster({ masters: 3 });
    const client = await connectRedis({ url: cluster.url, cluster: true });
    clients.push(client);
    const keys = new Keyspace(uniquePrefix('pfcl'));
    await seedLegacy(client, keys, 3000);
    const ok = await preflight(cluster.url, keys.prefix, [], true);
    expectExit(ok, 0);
    expect(checkOf(ok.pf, 'cluster')).toMatchObject({ level: 'ok' });
    expect(ok.pf.projection!.jobs).toBe(3000);
    expect(ok.pf.projection!.nodes).toHaveLength(3);

    const single = await preflight(cluster.url, keys.prefix, [], false);
    expectExit(single, 3);
    expect(checkOf(single.pf, 'cluster').detail).toMatch(/is a Redis Cluster node, but --cluster was not given/);

    const victim = cluster.nodes[2]!;
    await victim.kill('SIGKILL');
    // The others mark it failed after cluster-node-timeout.
    const survivor = await connectRedis({ url: cluster.nodes[0]!.url });
    clients.push(survivor);
    await waitFor('the cluster to notice the dead master', async () => /cluster_state:fail/.test(String(await survivor.cluster('INFO'))), 30_000);
    const down = await preflight(cluster.url, keys.prefix, [], true);
    expectExit(down, 3);
    const c = checkOf(down.pf, 'cluster');
    expect(c.level).toBe('refuse');
    expect(c.detail).toContain(`127.0.0.1:${victim.port}`);
    expect(c.detail).toMatch(/cluster_state fail/);
    expect(c.fix).toMatch(/cluster_state:ok/);
  });
});

/** Seeds a shape unlike the bench: many small workspaces, long ids, params over 64 bytes (hashtable hashes), a third with a TTL. */
async function seedOtherShape(client: RedisClient, keys: Keyspace, n: number): Promise<void> {
  const base = 1_750_000_000_000;
  for (let start = 0; start < n; start += 1000) {
    const p = (client as import('ioredis').Redis).pipeline();
    for (let i = start; i < Math.min(n, start + 1000); i++) {
      const id = `${(i * 2654435761) % 4294967296}-${i.toString(36).padStart(8, '0')}-aaaa-bbbb-${String(i).padStart(12, '0')}`;
      const key = keys.legacyJob(id);
      p.hset(key, {
        job_id: id,
        workspace_id: `tenant-${i % 3000}`,
        action: i % 2 ? 'embed' : 'transcribe_audio_file',
        params: JSON.stringify({ url: `https://files.example.com/${id}/input.bin`, options: { lang: 'de', speakers: i % 7, diarize: true } }),
        status: 'running',
        created_at: new Date(base + i * 1000).toISOString(),
        updated_at: new Date(base + i * 1000).toISOString(),
        rev: String(i % 9),
      });
      if (i % 3 === 0) p.pexpire(key, 7 * 86_400_000);
    }
    await p.exec();
  }
}

describe.skipIf(skip !== undefined)('the memory projection against a measured backfill', () => {
  const shapes: Array<{ name: string; seed: (c: RedisClient, k: Keyspace) => Promise<unknown>; n: number }> = [
    { name: '20,000 bench-like jobs in 20 large workspaces (skiplist indexes), every 10th with a TTL', seed: (c, k) => seedLegacy(c, k, 20_000), n: 20_000 },
    {
      name: '15,000 jobs in 3,000 small workspaces (listpack indexes), 36-char ids, hashtable-encoded records, a third with a TTL',
      seed: (c, k) => seedOtherShape(c, k, 15_000),
      n: 15_000,
    },
  ];
  it.for(shapes)('$name: the projected growth is within ±10 percent of the used_memory growth', async ({ seed, n }) => {
    const { s, client } = await server();
    const keys = new Keyspace(uniquePrefix('pfproj'));
    await seed(client, keys);
    const pf = await preflight(s.url, keys.prefix);
    expectExit(pf, 0);
    const projected = pf.pf.projection!.growthBytes;
    await movePhase(client, keys, Phase.DualWrite, 100);
    const before = await settledUsedMemory(client);
    const bf = await runCli([...target(s.url, keys.prefix), '--json', 'backfill']);
    expectExit(bf, 0);
    expect(bf.json).toMatchObject({ copied: n, complete: true });
    const growth = (await settledUsedMemory(client)) - before;
    const error = (projected - growth) / growth;
    console.log(`projection ${projected} B vs measured growth ${growth} B: ${(error * 100).toFixed(1)}%`);
    expect(Math.abs(error), `projected ${projected} B, measured ${growth} B`).toBeLessThanOrEqual(0.1);
  });
});
