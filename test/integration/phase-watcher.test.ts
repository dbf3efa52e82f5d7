/** Processes follow a transition at once through the events channel, not only when their cache expires. */
import { describe, expect, it } from 'vitest';
import { Keyspace } from '../../src/core/keys.js';
import { PhaseWatcher } from '../../src/core/phase-watcher.js';
import { sleep, StateStore } from '../../src/core/state.js';
import { cleanupClient, coreClient, TOPOLOGIES } from '../helpers/core-clients.js';
import { uniquePrefix } from '../helpers/fixtures.js';

describe.each(TOPOLOGIES)('phase watcher on %s', (topology) => {
  it('a transition is seen at once via PUBLISH even with a 10-minute cache', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix('watch');
    const keys = new Keyspace(prefix);
    const store = new StateStore(client, keys);
    const seen: string[] = [];
    const watcher = new PhaseWatcher(client, keys, { onChange: (s) => seen.push(s.phase) });
    const blind = new PhaseWatcher(client, keys, { subscribe: false });
    try {
      await store.transition({ from: 'legacy', to: 'dual-write', expectedEpoch: 0, fence: null, settleMs: 600_000 });
      await watcher.start();
      await blind.start();
      expect((await watcher.current()).phase).toBe('dual-write');
      await store.transition({ from: 'dual-write', to: 'read-new', expectedEpoch: 1, fence: null });
      let phase = '';
      for (let i = 0; i < 100 && phase !== 'read-new'; i++) {
        await sleep(20);
        phase = (await watcher.current()).phase;
      }
      expect(phase).toBe('read-new');
      // Without the channel the cached phase is still used: the cache, not luck, made the difference.
      expect((await blind.current()).phase).toBe('dual-write');
      expect(seen).toEqual(['dual-write', 'read-new']);
    } finally {
      await watcher.close();
      await blind.close();
      await cleanupClient(client, prefix);
    }
  });

  it('peek() answers from the cache without waiting, even when due for a re-read, and re-reads in the background', async () => {
    const client = await coreClient(topology);
    const prefix = uniquePrefix('peek');
    const keys = new Keyspace(prefix);
    const store = new StateStore(client, keys);
    const watcher = new PhaseWatcher(client, keys, { subscribe: false, maxCacheMs: 50 });
    try {
      await store.transition({ from: 'legacy', to: 'dual-write', expectedEpoch: 0, fence: null, settleMs: 600_000 });
      await watcher.start();
      await store.transition({ from: 'dual-write', to: 'read-new', expectedEpoch: 1, fence: null });
      await sleep(100);
      // Due for a re-read: peek still answers at once with what it has (a synchronous return) ...
      expect(watcher.peek()).toMatchObject({ phase: 'dual-write', epoch: 1 });
      // ... and the re-read it started lands without anyone awaiting it.
      let phase = '';
      for (let i = 0; i < 200 && phase !== 'read-new'; i++) {
        await sleep(10);
        phase = watcher.peek()?.phase ?? '';
      }
      expect(phase).toBe('read-new');
      // expire() keeps the entry for peek() but makes current() read again.
      await store.transition({ from: 'read-new', to: 'new-only', expectedEpoch: 2, fence: null });
      watcher.expire();
      expect(watcher.peek()).toMatchObject({ phase: 'read-new' });
      expect((await watcher.current()).phase).toBe('new-only');
    } finally {
      await watcher.close();
      await cleanupClient(client, prefix);
    }
  });
});
