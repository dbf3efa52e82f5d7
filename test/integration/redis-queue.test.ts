import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { runQueueConformance } from '../helpers/conformance.js';
import { StateStore } from '../../src/core/state.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES, topologyUrl } from '../helpers/core-clients.js';
import { deleteKeysWithPrefix, uniquePrefix } from '../helpers/fixtures.js';

describe.each(TOPOLOGIES)('RedisJobQueue on %s', (topology) => {
  runQueueConformance(`RedisJobQueue (${topology})`, async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix('conf');
    const keys = new Keyspace(prefix);
    const queue = await RedisJobQueue.create(client, { keys, legacyScanCount: 5 });
    return {
      queue,
      setPhase: async (phase) => {
        await movePhase(client, keys, phase);
        await queue.refreshPhase();
      },
      close: async () => {
        await queue.close();
        await cleanupClient(client, prefix);
      },
    };
  });
});

describe('RedisJobQueue on a client the library did not create', () => {
  it('registers its scripts on a plain `new Redis()`: enqueue, update and read work', async () => {
    const plain = new Redis(topologyUrl('standalone').url);
    const prefix = uniquePrefix('plain');
    const keys = new Keyspace(prefix);
    const queue = await RedisJobQueue.create(plain, { keys });
    try {
      const job = await queue.enqueue({ workspaceId: 'ws-plain', action: 'seed' });
      await queue.updateStatus('ws-plain', job.jobId, { status: 'succeeded' });
      expect((await queue.getJob('ws-plain', job.jobId))?.status).toBe('succeeded');
      expect((await new StateStore(plain, keys).read()).phase).toBe('legacy');
    } finally {
      await queue.close();
      await deleteKeysWithPrefix(plain, prefix);
      plain.disconnect();
    }
  });
});
