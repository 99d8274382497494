import crypto from 'node:crypto';
import type { EntityManager } from 'typeorm';
import { derivedTable, execute, type Database, type Statement } from '../../db/database';
import type { Logger } from '../../logger';
import { AuditChainHeadEntity, AuditEventEntity } from './audit-event.entity';

export const GENESIS = '0'.repeat(64);
const SEAL_BATCH = 500;
const VERIFY_BATCH = 2000;

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

export type VerifyResult =
  | { ok: true; checked: number; head: ChainHead; unsealed: number }
  | { ok: false; checked: number; firstBadId: string | null; reason: string; head: ChainHead; unsealed: number };

const safeEq = (a: string, b: string) => a.length === b.length && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * Seals committed audit rows into a keyed hash chain shortly after they are written. Request transactions only
 * insert rows (no shared lock); the sealer alone locks the one head row, so one process seals at a time.
 */
export class AuditChain {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;

  constructor(
    private readonly db: Database,
    private readonly key: Buffer,
    private readonly logger: Logger,
  ) {}

  macOf(e: AuditEventEntity): string {
    return rowMac(this.key, e);
  }

  start(intervalMs = 500): void {
    this.timer ??= setInterval(() => void this.sealPending().catch((err) => this.logger.warn('audit sealing failed; will retry', { event: 'audit.seal_failed', errorCode: (err as { code?: string }).code })), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** Seals every committed unsealed row, in batches; returns how many were sealed. */
  async sealPending(): Promise<number> {
    if (this.running) return this.running;
    this.running = (async () => {
      let total = 0;
      for (;;) {
        const n = await this.db.transaction((tx) => this.sealBatch(tx));
        total += n;
        if (n < SEAL_BATCH) return total;
      }
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async sealBatch(tx: EntityManager): Promise<number> {
    const lock = tx.connection.options.type === 'mysql' ? ' FOR UPDATE' : '';
    const [head] = (await tx.query(`SELECT seq, hash FROM audit_chain_head WHERE id = 1${lock}`)) as Array<{ seq: number | string; hash: string }>;
    if (!head) throw new Error('audit_chain_head row is missing');
    const rows = (await tx.query(`SELECT id, row_mac FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT ${SEAL_BATCH}`)) as Array<{ id: string; row_mac: string }>;
    if (rows.length === 0) return 0;
    let seq = Number(head.seq);
    let hash = head.hash;
    const sealed: Sealed[] = rows.map((row) => {
      seq += 1;
      hash = chainLink(this.key, hash, seq, row.row_mac);
      return { id: row.id, seq, hash };
    });
    // One statement for the batch: the sealer holds the head row's lock only briefly.
    const { sql, params } = tx.connection.options.type === 'mysql' ? sealJoin(sealed) : sealCase(sealed);
    const affected = await execute(tx, sql, params);
    // The head lock makes this sealer the only writer of seq; if a row changed under it anyway, advancing the head
    // would make a gap that verify reports as tampering. Roll the batch back instead.
    if (affected !== undefined && affected !== rows.length) throw new Error(`audit sealing: ${affected} of ${rows.length} rows sealed; batch rolled back`);
    await tx.query('UPDATE audit_chain_head SET seq = ?, hash = ?, updated_at = ? WHERE id = 1', [seq, hash, Date.now()]);
    return rows.length;
  }

  async head(): Promise<ChainHead> {
    const h = await this.db.read((m) => m.findOneBy(AuditChainHeadEntity, { id: 1 }));
    return { seq: h?.seq ?? 0, hash: h?.hash ?? GENESIS };
  }

  /**
   * Walks the sealed rows in seq order, recomputing every row MAC and link, then checks the unsealed tail's MACs.
   * With `expected` (a head written down earlier), also reports a trail truncated below it. A sealer may extend the
   * chain during the walk: the head read first must lie on the chain, and the head read last must not be behind it.
   */
  async verify(expected?: ChainHead): Promise<VerifyResult> {
    const head = await this.head();
    let prev = GENESIS;
    let checked = 0;
    const fail = async (firstBadId: string | null, reason: string): Promise<VerifyResult> => ({ ok: false, checked, firstBadId, reason, head, unsealed: await this.countUnsealed() });

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
    return { ok: true, checked, head: { seq: checked, hash: prev }, unsealed };
  }

  private async linkAt(seq: number, hash: string): Promise<boolean> {
    const row = await this.db.read((m) => m.findOneBy(AuditEventEntity, { seq }));
    return !!row?.chainHash && safeEq(row.chainHash, hash);
  }

  private countUnsealed(): Promise<number> {
    return this.db.read((m) => m.createQueryBuilder(AuditEventEntity, 'e').where('e.seq IS NULL').getCount());
  }
}
