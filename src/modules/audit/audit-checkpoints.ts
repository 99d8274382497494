import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

export const CHECKPOINT_FILE = 'audit-checkpoints.ndjson';
/** Lines kept when the file is compacted, and the length that triggers it: the newest line alone is enough to verify. */
const KEEP = 16;
const COMPACT_AT = 64;
const HEX64 = /^[0-9a-f]{64}$/;

export interface Checkpoint {
  seq: number;
  hash: string;
  at: string;
}

export interface CheckpointRead {
  /** Lines whose MAC holds, in file order. */
  valid: Checkpoint[];
  /** Complete lines whose MAC does not hold under this vault's audit key. */
  forged: number;
}

/**
 * The audit chain head, anchored outside the database: an append-only, fsynced file under the data dir. Each line is
 * MACed under a key derived from the audit key (wrapped under the master keyring), so a line from another vault, or
 * any line at all once a database writer has replaced the audit key, fails to verify.
 */
export class CheckpointFile {
  private readonly key: Buffer;
  private writing: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: string,
    auditKey: Buffer,
  ) {
    this.key = crypto.createHmac('sha256', auditKey).update('pkv/v1/audit-checkpoint', 'utf8').digest();
  }

  static inDataDir(dataDir: string, auditKey: Buffer): CheckpointFile {
    return new CheckpointFile(path.join(dataDir, CHECKPOINT_FILE), auditKey);
  }

  private mac(seq: number, hash: string, at: string): string {
    return crypto.createHmac('sha256', this.key).update(`${seq}|${hash}|${at}`, 'utf8').digest('hex');
  }

  async read(): Promise<CheckpointRead> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { valid: [], forged: 0 };
      throw err;
    }
    const out: CheckpointRead = { valid: [], forged: 0 };
    for (const line of text.split('\n')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue; // blank, or a line torn by a crash mid-append: it never held a checkpoint
      }
      const { seq, hash, at, mac } = (parsed ?? {}) as Record<string, unknown>;
      const ok =
        Number.isSafeInteger(seq) && (seq as number) >= 0 && typeof hash === 'string' && HEX64.test(hash) && typeof at === 'string' && typeof mac === 'string' &&
        HEX64.test(mac) && crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(this.mac(seq as number, hash, at)));
      if (ok) out.valid.push({ seq: seq as number, hash: hash as string, at: at as string });
      else out.forged++;
    }
    return out;
  }

  /** Appends one line and fsyncs it; compacts the file to its newest lines once it grows long. Writes run one at a time. */
  append(head: { seq: number; hash: string }, at = new Date()): Promise<Checkpoint> {
    const run = this.writing.then(() => this.write(head, at));
    this.writing = run.catch(() => undefined);
    return run;
  }

  private async write(head: { seq: number; hash: string }, when: Date): Promise<Checkpoint> {
    const at = when.toISOString();
    const line = JSON.stringify({ seq: head.seq, hash: head.hash, at, mac: this.mac(head.seq, head.hash, at) }) + '\n';
    await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const fh = await fs.open(this.file, 'a', 0o600);
    try {
      await fh.write(line);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.compact();
    return { seq: head.seq, hash: head.hash, at };
  }

  /** Keeps the newest lines (write, fsync, rename, fsync the directory); never drops a line that fails its MAC: that is evidence. */
  private async compact(): Promise<void> {
    const { valid, forged } = await this.read();
    if (valid.length <= COMPACT_AT || forged > 0) return;
    const keep = [...valid].sort((a, b) => a.seq - b.seq).slice(-KEEP);
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fh = await fs.open(tmp, 'w', 0o600);
    try {
      await fh.write(keep.map((c) => JSON.stringify({ ...c, mac: this.mac(c.seq, c.hash, c.at) }) + '\n').join(''));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, this.file);
    const dir = await fs.open(path.dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
