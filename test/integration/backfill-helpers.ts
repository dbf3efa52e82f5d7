/**
 * Helpers of the backfill/verify suites: seeding legacy records (binary,
 * unicode, huge, expiring), an in-process OpContext, and byte-exact layout
 * comparisons. Works on a standalone server and on a cluster.
 */
import { Cluster } from 'ioredis';
import { Keyspace } from '../../src/core/keys.js';
import { masterNodes, type RedisClient } from '../../src/core/redis.js';
import { StateStore } from '../../src/core/state.js';
import type { OpContext } from '../../src/ops/context.js';
import { fieldMap, readRecord } from '../../src/ops/record-compare.js';

/** An OpContext without a lock (fence null), as library callers use it. */
export function opContext(client: RedisClient, keys: Keyspace, signal: AbortSignal = new AbortController().signal): OpContext {
  return { client, keys, state: new StateStore(client, keys), actor: 'test@backfill', signal, lock: null };
}

/** One seeded legacy record. */
export interface SeededJob {
  jobId: string;
  workspaceId: string;
  ttl: boolean;
}

/** Options of {@link seedLegacy}. */
export interface SeedOptions {
  workspaces?: number;
  /** Every n-th record gets a TTL (default 10). */
  ttlEvery?: number;
  /** Add the hard cases: non-UTF-8 bytes, a 3,000-field hash, unicode. */
  specials?: boolean;
}

const INVALID_UTF8 = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x9f]);

/** Writes `n` legacy records fast (pipelined on one node, autopipelined on a cluster). */
export async function seedLegacy(client: RedisClient, keys: Keyspace, n: number, opts: SeedOptions = {}): Promise<SeededJob[]> {
  const workspaces = opts.workspaces ?? 20;
  const ttlEvery = opts.ttlEvery ?? 10;
  const jobs: SeededJob[] = [];
  const base = 1_700_000_000_000;
  const writes: Array<() => Promise<unknown>> = [];
  for (let i = 0; i < n; i++) {
    const jobId = `job-${i}`;
    const workspaceId = `ws-${i % workspaces}`;
    const ttl = i % ttlEvery === 0;
    const key = keys.legacyJob(jobId);
    const fields: Array<string | Buffer> = [
      'job_id',
      jobId,
      'workspace_id',
      workspaceId,
      'action',
      'summarize',
      'params',
      JSON.stringify({ api_key: 'sk-live-SECRET', n: i }),
      'status',
      'queued',
      'result',
      '',
      'error',
      '',
      'created_at',
      new Date(base + i * 1000).toISOString(),
      'updated_at',
      new Date(base + i * 1000).toISOString(),
      'rev',
      String(1 + (i % 3)),
    ];
    jobs.push({ jobId, workspaceId, ttl });
    writes.push(() => client.hset(key, ...(fields as [string, string])));
    if (ttl) writes.push(() => client.pexpire(key, 3_600_000 + i * 7));
  }
  if (opts.specials) {
    const special = (jobId: string, extra: Array<string | Buffer>): void => {
      const workspaceId = 'ws-special';
      jobs.push({ jobId, workspaceId, ttl: false });
      const key = keys.legacyJob(jobId);
      writes.push(() =>
        client.hset(
          key,
          ...(['job_id', jobId, 'workspace_id', workspaceId, 'created_at', new Date(base).toISOString(), 'rev', '4', ...extra] as unknown as [string, string]),
        ),
      );
    };
    special('binary-1', ['result', INVALID_UTF8, Buffer.from([0xde, 0xad, 0xbe, 0xef]), INVALID_UTF8]);
    special('unicode-1', ['params', JSON.stringify({ text: 'naïve café ✓ 日本語 😀', password: 'hunter2' }), 'émoji-field-😀', 'değer']);
    const wide: string[] = [];
    for (let f = 0; f < 3000; f++) wide.push(`field_${f}`, `value-${f}-${'x'.repeat(f % 50)}`);
    special('wide-1', wide);
  }
  await runChunked(client, writes);
  return jobs;
}

/** Runs write thunks in chunks (pipelining keeps the socket busy; chunks bound memory). */
export async function runChunked(client: RedisClient, writes: Array<() => Promise<unknown>>, chunk = 2000): Promise<void> {
  for (let i = 0; i < writes.length; i += chunk) await Promise.all(writes.slice(i, i + chunk).map((w) => w()));
  void client;
}

/** Every key matching `pattern` on every master. */
export async function scanKeys(client: RedisClient, pattern: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of masterNodes(client)) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      out.push(...found);
    } while (cursor !== '0');
  }
  return out;
}

/** DUMP of a key (null when absent), routed by the client. */
export function dump(client: RedisClient, key: string): Promise<Buffer | null> {
  return client.dumpBuffer(key);
}

/** A record as the verifier reads it: type, PEXPIRETIME and field → bytes (names latin1). */
export async function recordBytes(client: RedisClient, key: string): Promise<{ type: string; pexpireAt: number; fields: Map<string, Buffer> }> {
  const raw = await readRecord(client, key);
  return { type: raw.type, pexpireAt: raw.pexpireAt, fields: fieldMap(raw.fields) };
}

/** True for a cluster client. */
export function isClusterClient(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}
