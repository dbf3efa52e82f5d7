/**
 * A compact, exact set of pairs `(workspace, job id)` for verify's single-node
 * round 1 (src/ops/verify/passes.ts): the pairs verify-batch.lua proved
 * identical, and the v2 keys the walk met before their pair was proven.
 *
 * Exact: a 32-bit hash only picks the slot; every hit is confirmed against the
 * pair's own UTF-16 code units, kept in one array, so a hash collision can
 * never make an unproven key look proven (test/unit/proven-pairs.test.ts
 * forces collisions). Compact: typed arrays only, no object per pair (about
 * 55 bytes allocated per pair for ids like `job-123456`, growth included;
 * docs/performance.md, "Verify"), so a million pairs add nothing for the
 * collector to walk. Bounded: beyond `cap` pairs, add() refuses and the caller
 * falls back to its per-key check.
 */

/** Default bound on the pairs kept (per table). */
export const DEFAULT_PROVEN_CAP = 2_000_000;

/** A 32-bit hash of a pair. */
export type PairHash = (ws: string, jobId: string) => number;

/** FNV-1a over the UTF-16 code units of both ids, with the workspace's length between them. */
export const pairHash: PairHash = (ws, jobId) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < ws.length; i++) h = Math.imul(h ^ ws.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (0x10000 + ws.length), 0x01000193);
  for (let i = 0; i < jobId.length; i++) h = Math.imul(h ^ jobId.charCodeAt(i), 0x01000193);
  return h >>> 0;
};

/** An exact, bounded set of pairs. */
export class PairTable {
  /** Open addressing: entry number + 1 per slot, 0 = empty; a power of two, at most half full. */
  private slots = new Int32Array(1024);
  private hashes = new Uint32Array(512);
  private wsLens = new Uint32Array(512);
  /** Entry i's code units (workspace then job id) are units[starts[i], starts[i + 1]). */
  private starts = new Uint32Array(513);
  private units = new Uint16Array(8192);
  private n = 0;

  constructor(
    readonly cap: number,
    private readonly hash: PairHash = pairHash,
  ) {}

  get size(): number {
    return this.n;
  }

  /** Whether nothing more can be added. */
  get full(): boolean {
    return this.n >= this.cap;
  }

  has(ws: string, jobId: string): boolean {
    return this.find(ws, jobId, this.hash(ws, jobId)) >= 0;
  }

  /** Adds a pair; false when the bound is reached and the pair is not there already. */
  add(ws: string, jobId: string): boolean {
    const h = this.hash(ws, jobId);
    if (this.find(ws, jobId, h) >= 0) return true;
    if (this.n >= this.cap) return false;
    if (this.n + 2 > this.hashes.length) {
      const size = this.hashes.length * 2;
      this.hashes = grow(this.hashes, size);
      this.wsLens = grow(this.wsLens, size);
      this.starts = grow(this.starts, size + 1);
    }
    const at = this.starts[this.n]!;
    const len = ws.length + jobId.length;
    if (at + len > this.units.length) {
      const bigger = new Uint16Array(Math.max(this.units.length * 2, at + len));
      bigger.set(this.units.subarray(0, at));
      this.units = bigger;
    }
    for (let i = 0; i < ws.length; i++) this.units[at + i] = ws.charCodeAt(i);
    for (let i = 0; i < jobId.length; i++) this.units[at + ws.length + i] = jobId.charCodeAt(i);
    this.hashes[this.n] = h;
    this.wsLens[this.n] = ws.length;
    this.starts[this.n + 1] = at + len;
    this.n++;
    if (this.n * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    else this.place(this.n - 1);
    return true;
  }

  /** Every pair, in insertion order. */
  *entries(): Generator<{ ws: string; jobId: string }> {
    for (let i = 0; i < this.n; i++) {
      const s = this.starts[i]!;
      const w = s + this.wsLens[i]!;
      yield { ws: text(this.units, s, w), jobId: text(this.units, w, this.starts[i + 1]!) };
    }
  }

  /**
   * Every pair of this table in insertion order, as null when `other` holds it.
   * A pair `other` holds is looked up by its stored hash and code units, so it
   * costs no string (the set-aside v2 keys after the walk are nearly all proven).
   */
  *entriesUnless(other: PairTable): Generator<{ ws: string; jobId: string } | null> {
    const sameHash = other.hash === this.hash;
    for (let i = 0; i < this.n; i++) {
      const s = this.starts[i]!;
      const w = s + this.wsLens[i]!;
      const e = this.starts[i + 1]!;
      if (sameHash && other.findUnits(this.hashes[i]!, this.units, s, w, e) >= 0) {
        yield null;
        continue;
      }
      const pair = { ws: text(this.units, s, w), jobId: text(this.units, w, e) };
      yield !sameHash && other.has(pair.ws, pair.jobId) ? null : pair;
    }
  }

  /** {@link find} for a pair given as code units units[s, e), its workspace units[s, w). */
  private findUnits(h: number, units: Uint16Array, s: number, w: number, e: number): number {
    const mask = this.slots.length - 1;
    for (let p = h & mask; ; p = (p + 1) & mask) {
      const x = this.slots[p]! - 1;
      if (x < 0) return -1;
      if (this.hashes[x] !== h || this.wsLens[x] !== w - s) continue;
      const a = this.starts[x]!;
      if (this.starts[x + 1]! - a !== e - s) continue;
      let i = 0;
      while (i < e - s && this.units[a + i] === units[s + i]) i++;
      if (i === e - s) return x;
    }
  }

  /** The entry holding exactly this pair, or -1: a slot whose hash matches is confirmed unit by unit. */
  private find(ws: string, jobId: string, h: number): number {
    const mask = this.slots.length - 1;
    for (let p = h & mask; ; p = (p + 1) & mask) {
      const e = this.slots[p]! - 1;
      if (e < 0) return -1;
      if (this.hashes[e] === h && this.wsLens[e] === ws.length && this.equals(e, ws, jobId)) return e;
    }
  }

  private equals(e: number, ws: string, jobId: string): boolean {
    const s = this.starts[e]!;
    if (this.starts[e + 1]! - s !== ws.length + jobId.length) return false;
    for (let i = 0; i < ws.length; i++) if (this.units[s + i] !== ws.charCodeAt(i)) return false;
    const j = s + ws.length;
    for (let i = 0; i < jobId.length; i++) if (this.units[j + i] !== jobId.charCodeAt(i)) return false;
    return true;
  }

  private place(e: number): void {
    const mask = this.slots.length - 1;
    let p = this.hashes[e]! & mask;
    while (this.slots[p] !== 0) p = (p + 1) & mask;
    this.slots[p] = e + 1;
  }

  private rehash(size: number): void {
    this.slots = new Int32Array(size);
    for (let e = 0; e < this.n; e++) this.place(e);
  }
}

function grow(a: Uint32Array, size: number): Uint32Array<ArrayBuffer> {
  const b = new Uint32Array(size);
  b.set(a);
  return b;
}

/** The string of some UTF-16 code units (any of them, lone surrogates included), in chunks the call stack allows. */
function text(units: Uint16Array, from: number, to: number): string {
  let out = '';
  for (let i = from; i < to; i += 4096) out += String.fromCharCode(...units.subarray(i, Math.min(to, i + 4096)));
  return out;
}
