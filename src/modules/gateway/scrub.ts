/** The shortest run of a key's bytes that is masked wherever it appears (the whole key when it is shorter). */
export const RUN = 8;
const MASK = 0x2a; // '*'

/**
 * Masks, byte for byte, every run of at least RUN consecutive bytes of one secret, including runs that straddle the
 * chunks of a stream (some providers echo part of the key in their 401 messages). Lengths are kept, so a
 * Content-Length stays true. Each position's last RUN bytes are compared, as two 32-bit words, against the secret's
 * own RUN-byte windows (a bitmap first, then an exact check): one pass, constant work per byte.
 */
export class KeyScrubber {
  readonly secret: Buffer;
  readonly run: number;
  private readonly bitmap: Uint8Array;
  private readonly bitmapMask: number;
  /**
   * The secret's windows as a hash table in flat arrays (one is built per gateway call: no object per window): slot
   * by hash, linear probing, 0 for empty; `his`/`los` hold each window's words at its slot.
   */
  private readonly slots: Uint8Array;
  private readonly his: Uint32Array;
  private readonly los: Uint32Array;
  private readonly slotMask: number;
  /** Bytes that occur in the secret: a chunk ending in any other byte holds nothing back. */
  readonly occurs = new Uint8Array(256);

  constructor(secret: string) {
    this.secret = Buffer.from(secret, 'utf8');
    this.run = Math.min(RUN, this.secret.length);
    let bits = 1 << 13;
    while (bits < this.secret.length * 64 && bits < 1 << 22) bits <<= 1;
    this.bitmap = new Uint8Array(bits >>> 3);
    this.bitmapMask = bits - 1;
    let size = 16;
    while (size < this.secret.length * 2) size <<= 1;
    this.slots = new Uint8Array(size);
    this.his = new Uint32Array(size);
    this.los = new Uint32Array(size);
    this.slotMask = size - 1;
    const n = this.run;
    let hi = 0;
    let lo = 0;
    for (let i = 0; i < this.secret.length; i++) {
      // The window ending at byte i, slid as scan() slides it.
      this.occurs[this.secret[i]] = 1;
      hi = ((hi << 8) | (lo >>> 24)) >>> 0;
      lo = ((lo << 8) | this.secret[i]) >>> 0;
      if (n < 8) [hi, lo] = clip(hi, lo, n);
      if (i + 1 < n) continue;
      const h = hash(hi, lo);
      this.bitmap[(h & this.bitmapMask) >>> 3] |= 1 << (h & 7);
      let s = h & this.slotMask;
      while (this.slots[s] !== 0 && !(this.his[s] === hi && this.los[s] === lo)) s = (s + 1) & this.slotMask;
      this.slots[s] = 1;
      this.his[s] = hi;
      this.los[s] = lo;
    }
  }

  private isWindow(h: number, hi: number, lo: number): boolean {
    for (let s = h & this.slotMask; this.slots[s] !== 0; s = (s + 1) & this.slotMask) if (this.his[s] === hi && this.los[s] === lo) return true;
    return false;
  }

  /** A stream's scrubber: feed it the chunks in order, then end it. */
  stream(): ScrubStream {
    return new ScrubStream(this);
  }

  /** A whole value at once (a header value): the value itself when it holds no run of the secret. */
  scrubAll(value: string): string {
    const buf = Buffer.from(value, 'latin1');
    let out: Buffer | undefined;
    this.scan(buf, (from, to) => (out ??= Buffer.from(buf)).fill(MASK, from, to));
    return out ? out.toString('latin1') : value;
  }

  /**
   * Calls mask(from, to) for every window of `buf` that is a window of the secret (ranges come in increasing order
   * and may overlap).
   */
  scan(buf: Buffer, mask: (from: number, to: number) => void): void {
    const n = this.run;
    if (n === 0) return;
    let hi = 0;
    let lo = 0;
    for (let i = 0; i < buf.length; i++) {
      // Slide the window one byte: hi:lo are the last n bytes (for n < 8 the high bytes are cut off).
      hi = ((hi << 8) | (lo >>> 24)) >>> 0;
      lo = ((lo << 8) | buf[i]) >>> 0;
      if (n < 8) [hi, lo] = clip(hi, lo, n);
      if (i + 1 < n) continue;
      const h = hash(hi, lo);
      if ((this.bitmap[(h & this.bitmapMask) >>> 3] & (1 << (h & 7))) === 0) continue;
      if (this.isWindow(h, hi, lo)) mask(i + 1 - n, i + 1);
    }
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * One stream's state. A chunk's last bytes are held back only while they could begin a run (a suffix of fewer than
 * RUN bytes that occurs in the secret): a chunk ending in a newline or a brace, as SSE events and JSON do, goes
 * out whole, at once.
 */
export class ScrubStream {
  private held: Buffer = EMPTY;
  /** How many leading bytes of `held` are already masked (a masked run that reached the end of the last chunk). */
  private heldMasked = 0;

  constructor(private readonly key: KeyScrubber) {}

  /** The bytes that can be sent now, masked (possibly fewer than came in: the rest comes with the next chunk or `end`). */
  push(chunk: Buffer): Buffer {
    const buf = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    let out = buf;
    let masked = 0;
    // `buf` keeps the original bytes (the held ones are scanned again with the next chunk): masks go into a copy.
    const mask = (from: number, to: number) => {
      if (out === buf) out = Buffer.from(buf);
      out.fill(MASK, Math.max(from, masked), to);
      masked = Math.max(masked, to);
    };
    if (this.heldMasked > 0) mask(0, this.heldMasked);
    this.key.scan(buf, mask);
    const keep = this.heldBack(buf);
    this.held = keep > 0 ? Buffer.from(buf.subarray(buf.length - keep)) : EMPTY;
    // A masked range is at least RUN long, so one reaching into the held bytes covers all of them up to its end.
    this.heldMasked = Math.max(0, Math.min(keep, masked - (buf.length - keep)));
    return out.subarray(0, buf.length - keep);
  }

  /** Whatever was held back, masked as decided. */
  end(): Buffer {
    const rest = Buffer.from(this.held);
    rest.fill(MASK, 0, this.heldMasked);
    this.held = EMPTY;
    this.heldMasked = 0;
    return rest;
  }

  /** The longest suffix shorter than RUN that occurs in the secret: a run the next chunk may complete. */
  private heldBack(buf: Buffer): number {
    if (buf.length === 0 || this.key.occurs[buf[buf.length - 1]] === 0) return 0;
    for (let k = Math.min(this.key.run - 1, buf.length); k > 0; k--) {
      if (this.key.secret.indexOf(buf.subarray(buf.length - k)) !== -1) return k;
    }
    return 0;
  }
}

/** Keeps only the low n bytes of hi:lo (n < 8). */
function clip(hi: number, lo: number, n: number): [number, number] {
  if (n >= 4) return [(hi & (2 ** (8 * (n - 4)) - 1)) >>> 0, lo];
  return [0, (lo & (2 ** (8 * n) - 1)) >>> 0];
}

/** Shifts and xors only: it runs for every byte of every answer. */
function hash(hi: number, lo: number): number {
  return (lo ^ (lo >>> 15) ^ (hi << 7) ^ (hi >>> 11)) >>> 0;
}
