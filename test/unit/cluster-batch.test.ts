/**
 * The slot function of the per-master pipelines (src/ops/cluster-batch.ts):
 * the values Redis Cluster gives (`CLUSTER KEYSLOT`, the spec's CRC16 test
 * vector 0x31C3), hash tags and non-ASCII keys.
 */
import { describe, expect, it } from 'vitest';
import { isRedirect, keySlot } from '../../src/ops/cluster-batch.js';

describe('keySlot', () => {
  it('matches CLUSTER KEYSLOT', () => {
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('hello')).toBe(866);
    expect(keySlot('somekey')).toBe(11058);
    // The cluster spec's CRC16 check value: 0x31C3.
    expect(keySlot('123456789')).toBe(0x31c3);
    expect(keySlot('ai:jobs:job-1')).toBe(7621);
    expect(keySlot('ai:job:ws-1:job-1')).toBe(6719);
  });

  it('hashes only a non-empty hash tag, the first one', () => {
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    expect(keySlot('{user1000}.followers')).toBe(3443);
    expect(keySlot('a{}b')).toBe(13694);
    expect(keySlot('{tag')).toBe(15608);
    expect(keySlot('x{y}z{w}')).toBe(keySlot('y'));
  });

  it('hashes the UTF-8 bytes of non-ASCII keys', () => {
    expect(keySlot('ключ')).toBe(10303);
  });
});

describe('isRedirect', () => {
  it('is MOVED or ASK, nothing else', () => {
    expect(isRedirect(new Error('MOVED 3999 127.0.0.1:6381'))).toBe(true);
    expect(isRedirect(new Error('ASK 3999 127.0.0.1:6381'))).toBe(true);
    expect(isRedirect(new Error('FENCED lock'))).toBe(false);
    expect(isRedirect(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'))).toBe(false);
    expect(isRedirect(null)).toBe(false);
  });
});
