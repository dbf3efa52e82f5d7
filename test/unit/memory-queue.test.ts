import { Phase } from '../../src/core/phase.js';
import { MemoryJobQueue } from '../../src/core/memory-queue.js';
import { runQueueConformance } from '../helpers/conformance.js';

runQueueConformance('MemoryJobQueue', async () => {
  const queue = new MemoryJobQueue({ phase: Phase.Legacy });
  return {
    queue,
    setPhase: async (phase) => queue.setPhase(phase),
    close: () => queue.close(),
  };
});
