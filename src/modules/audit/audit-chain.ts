import crypto from 'node:crypto';
import fs from 'node:fs';
import type { EntityManager } from 'typeorm';
import { errorCode, isConflict } from '../../db/errors';
import { derivedTable, execute, isMySQL, type Statement } from '../../db/statements';
import type { Database } from '../../db/database';
import type { Logger } from '../../logger';
import { sealIdOf } from '../../crypto/envelope';
import { ProviderKeyEntity } from '../provider-keys/provider-key.entity';
import { AuditChainHeadEntity, AuditEventEntity } from './audit-event.entity';
import type { Checkpoint, CheckpointFile, CheckpointRead } from './audit-checkpoints';
import { KeySeals, SEALING_ACTIONS, sealNamedBy } from './key-seals';

export const GENESIS = '0'.repeat(64);
const SEAL_BATCH = 500;
const VERIFY_BATCH = 2000;
const KEY_PAGE = 1000;

type Sealed = { id: string; seq: number; hash: string };

/** MySQL: the batch's links as a derived table joined on the primary key (see derivedTable). */
function sealJoin(rows: Sealed[]): Statement {
  const v = derivedTable(['id', 'seq', 'hash'], rows.map((r) => [r.id, r.seq, r.hash]));
  return { sql: `UPDATE audit_events e JOIN (${v.sql}) v ON e.id = v.id SET e.seq = v.seq, e.chain_hash = v.hash WHERE e.seq IS NULL`, params: v.params };
}

/** SQLite: a CASE by id (cheap there beside the commit). */
function sealCase(rows: Sealed[]): Statement {
  const kase = () => `CASE id ${rows.map(() => 'WHEN ? THEN ?').join(' ')} END`;
  return {
    sql: `UPDATE audit_events SET seq = ${kase()}, chain_hash = ${kase()} WHERE id IN (${rows.map(() => '?').join(', ')}) AND seq IS NULL`,
    params: [...rows.flatMap((r) => [r.id, r.seq]), ...rows.flatMap((r) => [r.id, r.hash]), ...rows.map((r) => r.id)],
  };
}

/** The row's content in a fixed order; any change to a field changes its MAC. */
function canonical(e: AuditEventEntity): string {
  return JSON.stringify([
    e.id, e.at.getTime(), e.action, e.outcome, e.actorId, e.actorUsername, e.actorRole, e.via, e.apiTokenId,
    e.keyId, e.projectId, e.ownerId, e.ip, e.userAgent, e.requestId, e.reason, e.detail,
  ]);
}

export function rowMac(key: Buffer, e: AuditEventEntity): string {
  return crypto.createHmac('sha256', key).update(canonical(e), 'utf8').digest('hex');
}

/** link(n) = HMAC(key, link(n-1) | n | rowMac(n)): deleting, inserting or reordering a sealed row breaks every later link. */
export function chainLink(key: Buffer, prev: string, seq: number, mac: string): string {
  return crypto.createHmac('sha256', key).update(`${prev}|${seq}|${mac}`, 'utf8').digest('hex');
}

export interface ChainHead {
  seq: number;
  hash: string;
}

/** What verify compared the trail against: the newest checkpoint line of this instance's data dir, if any. */
type Compared = { checkpoint: Checkpoint | null };
export type VerifyResult =
  | ({ ok: true; checked: number; head: ChainHead; unsealed: number } & Compared)
  | ({ ok: false; checked: number; firstBadId: string | null; reason: string; head: ChainHead; unsealed: number } & Compared);

export interface ChainOptions {
  /** Where the chain head is anchored outside the database; without it (a test of the chain alone) nothing is anchored. */
  checkpoints?: CheckpointFile;
  /** At most one checkpoint per this many milliseconds while the sealer advances the chain. */
  checkpointIntervalMs?: number;
}

/** Compares bytes, not characters: a stored MAC with a non-ASCII character has the right length in characters but not in bytes. */
const safeEq = (a: string, b: string) => {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && crypto.timingSafeEqual(x, y);
};

const mismatch = (problem: string) => `the audit trail does not match its checkpoint, so nothing more is sealed onto it: ${problem}`;
const higher = (a: ChainHead | undefined, b: ChainHead | undefined) => (!a ? b : !b ? a : b.seq > a.seq ? b : a);
const when = (a: ChainHead & { at?: string }) => (a.at ? `the checkpoint written at ${a.at}` : 'the newest head this server sealed or saw');

/**
 * Seals committed audit rows into a keyed hash chain shortly after they are written. Request transactions only
 * insert rows (no shared lock); the sealer alone locks the one head row, so one process seals at a time.
 *
 * The head is anchored outside the database: every head this process seals, or finds under the head lock extending the
 * anchored chain, is remembered, and appended (at most every checkpointIntervalMs, and at shutdown) to a checkpoint
 * file under the data dir. A database writer can rewind the head
 * row and null the seq of later rows so that the sealer would re-link them around a deleted row; the sealer therefore
 * links nothing onto a head that is behind, or off, the anchor, and verify reports such a trail as tampered.
 */
export class AuditChain {
  /** Told of every failed verification (the container sends `audit.verify_failed` to webhooks); awaited, never throws. */
  onVerifyFailed: (result: Extract<VerifyResult, { ok: false }>) => Promise<void> = async () => undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  /** The newest head this process sealed, or read under the head lock and found to extend the anchored chain. */
  private knownHead: ChainHead | undefined;
  /** The checkpoint file as read once at first use (lines appended later are this process's own seals). */
  private fileAnchor: Promise<CheckpointRead> | undefined;
  private written: ChainHead | undefined;
  private lastWriteAt = 0;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointing: Promise<unknown> = Promise.resolve();
  private readonly listeners: Array<(checkpoint: Checkpoint) => void> = [];
  /** Alarms already logged: a stalled sealer would otherwise log the same line every half second. */
  private readonly alarmed = new Set<string>();
  /** Rows this process sealed, and when it last sealed any (ms since the epoch; 0: never): for the metrics. */
  sealedRows = 0;
  lastSealAt = 0;

  constructor(
    private readonly db: Database,
    private readonly key: Buffer,
    private readonly logger: Logger,
    private readonly options: ChainOptions = {},
  ) {}

  macOf(e: AuditEventEntity): string {
    return rowMac(this.key, e);
  }

  /** Whether the row's MAC holds (constant-time): a row forged or changed with database access alone does not. */
  holds(e: AuditEventEntity): boolean {
    return typeof e.rowMac === 'string' && safeEq(rowMac(this.key, e), e.rowMac);
  }

  get checkpointFile(): string | undefined {
    return this.options.checkpoints?.file;
  }

  /** Called with every checkpoint written: the seam for the `audit.checkpoint` webhook event once webhooks exist. */
  onCheckpoint(listener: (checkpoint: Checkpoint) => void): void {
    this.listeners.push(listener);
  }

  start(intervalMs = 500): void {
    this.timer ??= setInterval(() => void this.sealPending().catch((err) => this.sealFailed(err)), intervalMs);
    this.timer.unref();
  }

  /** A sealer on another node (Galera) that won the head row is sealing these rows: expected, so not a warning. */
  private sealFailed(err: unknown): void {
    const code = errorCode(err instanceof Error && err.cause ? err.cause : err);
    if (isConflict(err)) this.logger.debug('audit sealing deferred: another process holds the chain head', { event: 'audit.seal_deferred', errorCode: code });
    else this.logger.warn('audit sealing failed; will retry', { event: 'audit.seal_failed', errorCode: code });
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
    await this.checkpointing;
  }

  /** Writes the newest head this process sealed, if not written yet (shutdown, and the end of a CLI command). */
  async flush(): Promise<void> {
    await this.checkpointing;
    await this.checkpoint();
  }

  /** Seals every committed unsealed row, in batches; returns how many were sealed. */
  async sealPending(): Promise<number> {
    if (this.running) return this.running;
    this.running = (async () => {
      let total = 0;
      for (;;) {
        const batch = await this.db.transaction((tx) => this.sealBatch(tx));
        if (batch.head) this.remember(batch.head);
        if (batch.sealed > 0) {
          this.sealedRows += batch.sealed;
          this.lastSealAt = Date.now();
        }
        total += batch.sealed;
        if (batch.sealed < SEAL_BATCH) return total;
      }
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async sealBatch(tx: EntityManager): Promise<{ sealed: number; head?: ChainHead }> {
    const lock = isMySQL(tx) ? ' FOR UPDATE' : '';
    const [row] = (await tx.query(`SELECT seq, hash FROM audit_chain_head WHERE id = 1${lock}`)) as Array<{ seq: number | string; hash: string }>;
    if (!row) throw new Error('audit_chain_head row is missing');
    const head = { seq: Number(row.seq), hash: row.hash };
    const problem = await this.anchorProblem(tx, head);
    if (problem) {
      this.alarm('audit.checkpoint_mismatch', mismatch(problem));
      return { sealed: 0 };
    }
    // Another instance may have sealed up to here: anchoring it too means a later rewind below it is seen here as well.
    this.remember(head);
    const rows = await tx.createQueryBuilder(AuditEventEntity, 'e').where('e.seq IS NULL').orderBy('e.id', 'ASC').limit(SEAL_BATCH).getMany();
    // A row whose MAC fails was not written by the product: it is never linked, and nothing after it is (skipping it
    // would seal later rows around a row that verify still reports). Sealing resumes once it is gone.
    const forged = rows.findIndex((r) => !safeEq(rowMac(this.key, r), r.rowMac));
    if (forged >= 0) {
      this.alarm('audit.forged_row', 'an unsealed audit row fails its MAC (forged or changed in the database): sealing stops before it', { auditId: rows[forged].id });
      rows.length = forged;
    }
    if (rows.length === 0) return { sealed: 0 };
    let seq = head.seq;
    let hash = head.hash;
    const sealed: Sealed[] = rows.map((r) => {
      seq += 1;
      hash = chainLink(this.key, hash, seq, r.rowMac);
      return { id: r.id, seq, hash };
    });
    // One statement for the batch: the sealer holds the head row's lock only briefly.
    const { sql, params } = isMySQL(tx) ? sealJoin(sealed) : sealCase(sealed);
    const affected = await execute(tx, sql, params);
    // The head lock makes this sealer the only writer of seq; if a row changed under it anyway, advancing the head
    // would make a gap that verify reports as tampering. Roll the batch back instead.
    if (affected !== undefined && affected !== rows.length) throw new Error(`audit sealing: ${affected} of ${rows.length} rows sealed; batch rolled back`);
    await tx.query('UPDATE audit_chain_head SET seq = ?, hash = ?, updated_at = ? WHERE id = 1', [seq, hash, Date.now()]);
    return { sealed: rows.length, head: { seq, hash } };
  }

  /**
   * Unsealed rows, counted up to `cap`, and when the oldest of those was written: one bounded query on the unique
   * seq index (NULL seqs are the unsealed rows), whatever the size of the trail.
   */
  async pending(cap: number): Promise<{ rows: number; oldestAt: Date | undefined }> {
    const [row] = (await this.db.read((m) =>
      m.query('SELECT COUNT(*) AS n, MIN(t.at) AS oldest FROM (SELECT at FROM audit_events WHERE seq IS NULL LIMIT ?) t', [cap]),
    )) as Array<{ n: number | string; oldest: number | string | null }>;
    return { rows: Number(row?.n ?? 0), oldestAt: row?.oldest == null ? undefined : new Date(Number(row.oldest)) };
  }

  /** Logs an error once per distinct message (until the sealer moves on). */
  private alarm(event: string, message: string, extra: Record<string, unknown> = {}): void {
    const key = `${event}|${message}|${JSON.stringify(extra)}`;
    if (this.alarmed.has(key)) return;
    this.alarmed.add(key);
    this.logger.error(message, { event, ...extra });
  }

  private remember(head: ChainHead): void {
    if (head.seq === 0 || (this.knownHead && this.knownHead.seq >= head.seq)) return;
    this.knownHead = head;
    if (!this.options.checkpoints || this.checkpointTimer) return;
    const wait = this.lastWriteAt + (this.options.checkpointIntervalMs ?? 10_000) - Date.now();
    if (wait <= 0) {
      this.checkpointing = this.checkpoint();
      return;
    }
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = undefined;
      this.checkpointing = this.checkpoint();
    }, wait);
    this.checkpointTimer.unref();
  }

  private async checkpoint(): Promise<void> {
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    const head = this.knownHead;
    const file = this.options.checkpoints;
    if (!file || !head || (this.written && this.written.seq >= head.seq)) return;
    this.lastWriteAt = Date.now();
    try {
      const line = await file.append(head);
      this.written = head;
      for (const listener of this.listeners) listener(line);
    } catch (err) {
      // The trail itself is unharmed; the next sealed batch tries again.
      this.logger.warn('cannot write the audit checkpoint file', { event: 'audit.checkpoint_failed', errorCode: (err as { code?: string }).code });
    }
  }

  private readFileAnchor(): Promise<CheckpointRead> {
    const file = this.options.checkpoints;
    if (!file) return Promise.resolve({ valid: [], forged: 0 });
    this.fileAnchor ??= file.read().catch((err) => {
      this.fileAnchor = undefined;
      throw err;
    });
    return this.fileAnchor;
  }

  /**
   * Why the head the database shows cannot be the chain this vault anchored, or undefined when it can: it must not be
   * behind the newest anchored head, the row at that head's seq must still carry the anchored hash (a chain that
   * verifies through that link is, by the keyed hash chain, the anchored one up to there), and the head must match
   * its own row. Nothing is queried when the head is the one this process already knows.
   */
  private async anchorProblem(m: EntityManager, head: ChainHead): Promise<string | undefined> {
    const file = await this.readFileAnchor();
    if (file.forged > 0) return this.forgedFileReason(file.forged);
    const anchor = higher(newestOf(file), this.knownHead) as (ChainHead & { at?: string }) | undefined;
    if (anchor && anchor.seq > 0) {
      if (head.seq < anchor.seq) return `the chain head (seq ${head.seq}) is behind ${when(anchor)} (seq ${anchor.seq}): rows were removed and the head was rewound`;
      if (head.seq === anchor.seq) return safeEq(head.hash, anchor.hash) ? undefined : `the chain head at seq ${anchor.seq} differs from ${when(anchor)}: the trail was rewritten`;
      if (!(await linkIn(m, anchor.seq, anchor.hash))) return `row ${anchor.seq} no longer carries the hash of ${when(anchor)}: the trail was rewritten`;
    }
    if (head.seq === 0) return safeEq(head.hash, GENESIS) ? undefined : 'the chain head at seq 0 is not the genesis hash: the head was rewritten';
    return (await linkIn(m, head.seq, head.hash)) ? undefined : `the chain head (seq ${head.seq}) does not match row ${head.seq}: the head was rewritten`;
  }

  private forgedFileReason(lines: number): string {
    return `${lines} line(s) of the checkpoint file ${this.checkpointFile} do not verify under this vault's audit key: the audit key in the database was replaced, or the file was altered or comes from another vault`;
  }

  /** Start-up: compares the database with the anchored head and logs `audit.checkpoint_mismatch` when they disagree. */
  async checkAnchor(): Promise<string | undefined> {
    const head = await this.head();
    const file = this.options.checkpoints?.file;
    if (file && head.seq > 0 && !fs.existsSync(file)) {
      // Nothing to compare with: whoever can delete the file disarms rewind detection up to this head. Say so.
      this.logger.warn(
        `the audit checkpoint file ${file} is missing while the trail has ${head.seq} sealed row(s): the trail cannot be checked for a rewind, and is anchored afresh from this head (deleted or moved? restore it from a backup of the data dir)`,
        { event: 'audit.checkpoint_missing', headSeq: head.seq },
      );
    }
    const problem = await this.db.read((m) => this.anchorProblem(m, head));
    if (problem) this.alarm('audit.checkpoint_mismatch', mismatch(problem));
    else this.remember(head);
    return problem;
  }

  async head(): Promise<ChainHead> {
    const h = await this.db.read((m) => m.findOneBy(AuditChainHeadEntity, { id: 1 }));
    return { seq: h?.seq ?? 0, hash: h?.hash ?? GENESIS };
  }

  /**
   * Walks the sealed rows in seq order, recomputing every row MAC and link, then checks the unsealed tail's MACs.
   * Then compares the chain with its anchors outside the database (the checkpoint file, the head this process sealed
   * last) and with `expected` (a head written down earlier), and every live provider key with the sealing its trail
   * last recorded. A sealer may extend the chain during the walk: the head read first must lie on the chain, and the
   * head read last must not be behind it.
   */
  async verify(expected?: ChainHead): Promise<VerifyResult> {
    const result = await this.walk(expected);
    if (!result.ok) await this.onVerifyFailed(result).catch(() => undefined);
    return result;
  }

  private async walk(expected?: ChainHead): Promise<VerifyResult> {
    // Anchors are taken before the head: each is then at or below the chain the walk sees. A checkpoint this process is
    // writing (the sealer just remembered a head) is awaited first, so what verify reports does not depend on a race.
    await this.checkpointing;
    const file = this.options.checkpoints ? await this.options.checkpoints.read() : { valid: [], forged: 0 };
    const anchor = higher(newestOf(file), this.knownHead) as (ChainHead & { at?: string }) | undefined;
    const checkpoint = newestOf(file) ?? null;
    const head = await this.head();
    const seals = new KeySeals();
    let prev = GENESIS;
    let checked = 0;
    const fail = async (firstBadId: string | null, reason: string): Promise<VerifyResult> => ({ ok: false, checked, firstBadId, reason, head, unsealed: await this.countUnsealed(), checkpoint });

    /** Checks every sealed row after `from`, in pages; a failure, or undefined when all of them hold. */
    const walkSealed = async (from: number): Promise<VerifyResult | undefined> => {
      for (let after = from; ; ) {
        const rows = await this.db.read((m) => m.createQueryBuilder(AuditEventEntity, 'e').where('e.seq > :after', { after }).orderBy('e.seq', 'ASC').limit(VERIFY_BATCH).getMany());
        for (const row of rows) {
          const seq = row.seq as number;
          if (seq < 1) return fail(row.id, `sequence number ${seq} is before the start of the chain (inserted row)`);
          if (seq !== checked + 1) return fail(row.id, seq > checked + 1 ? `rows ${checked + 1}–${seq - 1} of the chain are missing (deleted)` : `sequence number ${seq} repeats`);
          if (!safeEq(rowMac(this.key, row), row.rowMac)) return fail(row.id, `row ${seq} was changed after it was written`);
          if (!row.chainHash || !safeEq(chainLink(this.key, prev, seq, row.rowMac), row.chainHash)) return fail(row.id, `row ${seq} does not link to row ${seq - 1} (inserted, reordered or altered chain)`);
          const stale = seals.see(row);
          if (stale) return fail(row.id, stale);
          prev = row.chainHash;
          checked = seq;
          if (seq === head.seq && !safeEq(prev, head.hash)) return fail(null, 'the chain head does not match the last sealed row');
        }
        if (rows.length < VERIFY_BATCH) return undefined;
        after = checked;
      }
    };

    /** Checks the MAC of every unsealed row, in pages (a long tail means sealing has been failing: memory matters then). */
    const walkUnsealed = async (): Promise<VerifyResult | number> => {
      let count = 0;
      for (let after = ''; ; ) {
        const rows = await this.db.read((m) => m.createQueryBuilder(AuditEventEntity, 'e').where('e.seq IS NULL AND e.id > :after', { after }).orderBy('e.id', 'ASC').limit(VERIFY_BATCH).getMany());
        for (const row of rows) {
          if (!safeEq(rowMac(this.key, row), row.rowMac)) return fail(row.id, 'an unsealed row was changed or forged');
          const stale = seals.see(row);
          if (stale) return fail(row.id, stale);
        }
        count += rows.length;
        if (rows.length < VERIFY_BATCH) return count;
        after = rows[rows.length - 1].id;
      }
    };

    // Starts below 1: a row forged with seq 0 or less would otherwise be skipped, yet still listed and exported.
    let bad = await walkSealed(Number.MIN_SAFE_INTEGER);
    if (bad) return bad;
    if (checked < head.seq) return fail(null, `the chain ends at ${checked} but its head says ${head.seq}: rows were removed from the tail`);
    // A sealer may have linked rows while the walk ran: they would be counted neither as checked nor as unsealed.
    // So count the unsealed tail first, then walk on to the head as it is now; rows only ever go from unsealed to
    // sealed, so every row is then in one count or the other. A few rounds at most: a busy trail never stops growing.
    let unsealed = 0;
    for (let round = 0; ; round++) {
      const tail = await walkUnsealed();
      if (typeof tail !== 'number') return tail;
      unsealed = tail;
      const last = await this.head();
      if (last.seq < checked || (last.seq === checked && !safeEq(prev, last.hash))) return fail(null, 'the chain head does not match the last sealed row');
      if (last.seq === checked || round === 4) break;
      bad = await walkSealed(checked);
      if (bad) return bad;
      if (checked < last.seq) return fail(null, `the chain ends at ${checked} but its head says ${last.seq}: rows were removed from the tail`);
    }
    if (expected && (expected.seq > checked || (expected.seq > 0 && !(await this.linkAt(expected.seq, expected.hash))))) {
      return fail(null, `the recorded head (seq ${expected.seq}) is no longer in the trail: it was truncated or rewritten`);
    }
    if (file.forged > 0) return fail(null, this.forgedFileReason(file.forged));
    if (anchor && anchor.seq > checked) return fail(null, `the trail ends at seq ${checked} but ${when(anchor)} is at seq ${anchor.seq}: rows were removed and the chain head was rewound`);
    if (anchor && anchor.seq > 0 && !(await this.linkAt(anchor.seq, anchor.hash))) return fail(null, `row ${anchor.seq} no longer carries the hash of ${when(anchor)}: the trail was rewritten`);
    const restored = await this.restoredKey(seals);
    if (restored) return fail(null, restored);
    return { ok: true, checked, head: { seq: checked, hash: prev }, unsealed, checkpoint };
  }

  /**
   * A live provider key whose sealed columns are not the sealing its trail last recorded (or that its trail deleted):
   * an older copy was put back. A key re-sealed while the walk ran is looked at again, against the trail as it is now.
   */
  private async restoredKey(seals: KeySeals): Promise<string | undefined> {
    for (let after = ''; ; ) {
      const keys = await this.db.read((m) =>
        m.createQueryBuilder(ProviderKeyEntity, 'k').select(['k.id', 'k.secretIv', 'k.secretTag']).where('k.id > :after AND k.secret_iv IS NOT NULL', { after }).orderBy('k.id', 'ASC').limit(KEY_PAGE).getMany(),
      );
      for (const key of keys) {
        const recorded = seals.get(key.id);
        if (!recorded || recorded.sealId === sealIdOf(key)) continue;
        const now = await this.latestSealing(key.id);
        if (now !== undefined && now.sealId === now.live) continue;
        return recorded.sealId === null
          ? `key ${key.id} holds a sealed secret although its trail deleted it (audit row ${recorded.eventId}): its sealed columns were restored from an older copy`
          : `key ${key.id} holds a sealed secret other than the one its trail last recorded (audit row ${recorded.eventId}): its sealed columns were restored from an older copy`;
      }
      if (keys.length < KEY_PAGE) return undefined;
      after = keys[keys.length - 1].id;
    }
  }

  /** The key's newest seal event (MAC-checked) and its sealing as stored now; undefined when the trail names none. */
  private async latestSealing(keyId: string): Promise<{ sealId: string | null; live: string | null } | undefined> {
    const live = await this.db.read((m) => m.createQueryBuilder(ProviderKeyEntity, 'k').select(['k.id', 'k.secretIv', 'k.secretTag']).where('k.id = :keyId', { keyId }).getOne());
    for (let before: string | undefined; ; ) {
      const rows = await this.db.read((m) => {
        const qb = m
          .createQueryBuilder(AuditEventEntity, 'e')
          .where('e.key_id = :keyId AND e.action IN (:...actions)', { keyId, actions: SEALING_ACTIONS });
        if (before) qb.andWhere('e.id < :before', { before });
        return qb.orderBy('e.id', 'DESC').limit(100).getMany();
      });
      for (const row of rows) {
        if (!safeEq(rowMac(this.key, row), row.rowMac)) return undefined;
        const named = sealNamedBy(row);
        if (named !== undefined) return { sealId: named, live: live ? sealIdOf(live) : null };
      }
      if (rows.length < 100) return undefined;
      before = rows[rows.length - 1].id;
    }
  }

  private async linkAt(seq: number, hash: string): Promise<boolean> {
    return this.db.read((m) => linkIn(m, seq, hash));
  }

  private countUnsealed(): Promise<number> {
    return this.db.read((m) => m.createQueryBuilder(AuditEventEntity, 'e').where('e.seq IS NULL').getCount());
  }
}

function newestOf(file: CheckpointRead): Checkpoint | undefined {
  return file.valid.reduce<Checkpoint | undefined>((best, c) => (!best || c.seq > best.seq ? c : best), undefined);
}

async function linkIn(m: EntityManager, seq: number, hash: string): Promise<boolean> {
  const row = await m.findOneBy(AuditEventEntity, { seq });
  return !!row?.chainHash && safeEq(row.chainHash, hash);
}
