import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CursorError } from '../../src/core/errors.js';
import { Layout } from '../../src/core/phase.js';
import { CachedHmac, CURSOR_PATTERN, CursorPathError, CursorSealer } from '../../src/api/cursor-envelope.js';

const raw = Buffer.from(JSON.stringify({ p: 'legacy', n: '10.1.2.3:6379', c: '123', k: 1000, after: 'ai:jobs:x' })).toString('base64url');

describe('cursor envelope', () => {
  const sealer = new CursorSealer([randomBytes(32)]);

  it('round-trips and is opaque', () => {
    const c = sealer.seal(raw, 'ws-a', Layout.Legacy);
    expect(c).toMatch(CURSOR_PATTERN);
    expect(sealer.open(c, 'ws-a', Layout.Legacy)).toBe(raw);
    // Neither the node address nor the workspace can be read out of it.
    const decoded = Buffer.from(c, 'base64url').toString('latin1');
    expect(decoded).not.toContain('10.1.2.3');
    expect(decoded).not.toContain('ws-a');
    expect(c).not.toContain(raw.slice(0, 12));
    // A fresh IV each time: two seals of the same position differ.
    expect(sealer.seal(raw, 'ws-a', Layout.Legacy)).not.toBe(c);
  });

  it('never reuses an IV, across refills of the IV pool', () => {
    const fresh = new CursorSealer([randomBytes(32)]);
    const ivs = new Set<string>();
    const n = 1000; // several pools of 256
    for (let i = 0; i < n; i++) {
      const c = fresh.seal(raw, 'ws-a', Layout.V2);
      ivs.add(Buffer.from(c, 'base64url').subarray(1, 17).toString('hex'));
      expect(fresh.open(c, 'ws-a', Layout.V2)).toBe(raw);
    }
    expect(ivs.size).toBe(n);
  });

  it('binds the workspace', () => {
    const c = sealer.seal(raw, 'ws-b', Layout.Legacy);
    expect(() => sealer.open(c, 'ws-a', Layout.Legacy)).toThrow(CursorError);
  });

  it('binds the read path with a distinct error', () => {
    const c = sealer.seal(raw, 'ws-a', Layout.Legacy);
    expect(() => sealer.open(c, 'ws-a', Layout.V2)).toThrow(CursorPathError);
    try {
      sealer.open(c, 'ws-a', Layout.V2);
    } catch (err) {
      expect((err as Error).message).toMatch(/restart paging/);
    }
  });

  it('refuses every single-byte tampering', () => {
    const c = sealer.seal(raw, 'ws-a', Layout.V2);
    const bytes = Buffer.from(c, 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      const t = Buffer.from(bytes);
      t[i] = t[i]! ^ 0x01;
      expect(() => sealer.open(t.toString('base64url'), 'ws-a', Layout.V2)).toThrow(CursorError);
    }
    // Truncated and extended.
    expect(() => sealer.open(c.slice(0, -1), 'ws-a', Layout.V2)).toThrow(CursorError);
    expect(() => sealer.open(`${c}AA`, 'ws-a', Layout.V2)).toThrow(CursorError);
    // Stray trailing characters that Node's base64url decoder would silently drop.
    for (const extra of ['x', 'xy', 'xyz', 'A', '-', '_']) expect(() => sealer.open(`${c}${extra}`, 'ws-a', Layout.V2)).toThrow(CursorError);
  });

  it('refuses malformed input', () => {
    for (const bad of ['', '0', '123', 'not a cursor', 'a'.repeat(5000), `${'A'.repeat(80)}==`, '../../etc', raw]) {
      expect(() => sealer.open(bad, 'ws-a', Layout.Legacy)).toThrow(CursorError);
    }
  });

  it('refuses a cursor sealed with another secret and supports rotation', () => {
    const oldSecret = randomBytes(32);
    const newSecret = randomBytes(32);
    const old = new CursorSealer([oldSecret]).seal(raw, 'ws-a', Layout.V2);
    expect(() => new CursorSealer([newSecret]).open(old, 'ws-a', Layout.V2)).toThrow(CursorError);
    expect(new CursorSealer([newSecret, oldSecret]).open(old, 'ws-a', Layout.V2)).toBe(raw);
  });
});

describe('CachedHmac', () => {
  it('gives the bytes of createHmac for keys shorter than, equal to and longer than the block, and any message', () => {
    for (const keyLen of [0, 1, 32, 63, 64, 65, 200]) {
      const key = randomBytes(keyLen);
      const mac = new CachedHmac(key);
      for (const len of [0, 1, 55, 64, 1000]) {
        const msg = randomBytes(len);
        expect(mac.digest(msg).equals(createHmac('sha256', key).update(msg).digest())).toBe(true);
      }
      // Reusable: the cached states are copied, never consumed.
      const again = randomBytes(17);
      expect(mac.digest(again).equals(createHmac('sha256', key).update(again).digest())).toBe(true);
    }
  });
});
