import { describe } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { RedisJobQueue } from '../../src/core/redis-queue.js';
import { runQueueConformance } from '../helpers/conformance.js';
import { cleanupClient, coreClient, movePhase, TOPOLOGIES } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';

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
