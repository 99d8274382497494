import type { EntityManager } from 'typeorm';
import type { Database } from '../../db/database';
import { afterCommit } from '../../db/hooks';
import { ForbiddenError, UnavailableError } from '../../errors';
import { newId } from '../../ids';
import type { Logger } from '../../logger';
import { Page, PageResult, toPageResult } from '../../pagination';
import { Actor, can } from '../auth/actor';
import { AuditAction, AuditEventEntity, AuditOutcome } from './audit-event.entity';
import { AuditFilter, AuditRepository } from './audit.repository';
import type { AuditChain, ChainHead, VerifyResult } from './audit-chain';
import type { JobSlots } from './job-slots';
import { csvHeader, csvRows, ndjsonRows, UTF8_BOM } from './audit-export';

const EXPORT_BATCH = 1000;

/** Someone who could not be identified (a failed sign-in): only what they claimed and where from. */
export interface Anonymous {
  anonymous: true;
  claimedUsername?: string;
  userId?: string;
  role?: string;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
}

export interface AuditTarget {
  keyId?: string | null;
  projectId?: string | null;
  ownerId?: string | null;
}

export interface AuditEvent {
  id: string;
  seq: number | null;
  at: string;
  action: AuditAction;
  outcome: AuditOutcome;
  actorId: string | null;
  actorUsername: string | null;
  actorRole: string | null;
  via: string | null;
  apiTokenId: string | null;
  keyId: string | null;
  projectId: string | null;
  ownerId: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  reason: string | null;
  detail: Record<string, unknown> | null;
}

/**
 * An exported event also names the key, its project and its owner as they are called at export time, beside their
 * ids, for a reader of the file; the names are not part of the event (nor of its MAC): keys and projects get renamed.
 */
export interface ExportedEvent extends AuditEvent {
  keyName: string | null;
  projectName: string | null;
  ownerUsername: string | null;
}

/**
 * What the database will store: a lone surrogate (hostile input, or a clip through a surrogate pair) is written as
 * U+FFFD by both drivers, so it is replaced here first and the row MAC covers exactly the stored text.
 */
const wellFormed = (s: string) => s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
const clip = (s: string | null | undefined, n: number) => (s == null ? null : wellFormed(s.length > n ? s.slice(0, n) : s));

export function toAuditEvent(e: AuditEventEntity): AuditEvent {
  return {
    id: e.id,
    seq: e.seq,
    at: e.at.toISOString(),
    action: e.action,
    outcome: e.outcome,
    actorId: e.actorId,
    actorUsername: e.actorUsername,
    actorRole: e.actorRole,
    via: e.via,
    apiTokenId: e.apiTokenId,
    keyId: e.keyId,
    projectId: e.projectId,
    ownerId: e.ownerId,
    ip: e.ip,
    userAgent: e.userAgent,
    requestId: e.requestId,
    reason: e.reason,
    detail: e.detail ? (JSON.parse(e.detail) as Record<string, unknown>) : null,
  };
}

export class AuditService {
  /** Told of every row once it committed (the metrics count reveals and failed sign-ins here, as the trail has them). */
  onCommitted: ((rows: readonly AuditEventEntity[]) => void) | undefined;

  constructor(
    private readonly db: Database,
    private readonly repo: AuditRepository,
    private readonly logger: Logger,
    readonly chain: AuditChain,
    private readonly jobs?: JobSlots,
  ) {}

  /**
   * Runs an export or a verify for an API caller within the per-user and overall caps (429 beyond them); the slot is
   * held until fn settles, which for an export is when its last byte was written or its reader went away.
   */
  async withJobSlot<T>(actor: Actor, fn: () => Promise<T>): Promise<T> {
    if (!can(actor, 'audit:read')) throw new ForbiddenError('Exporting or verifying the audit trail needs the audit:read right');
    const release = this.jobs?.acquire(actor.userId);
    try {
      return await fn();
    } finally {
      release?.();
    }
  }

  async verify(actor: Actor, expected?: ChainHead): Promise<VerifyResult> {
    if (!can(actor, 'audit:read')) throw new ForbiddenError('Verifying the audit trail needs the audit:read right');
    return this.chain.verify(expected);
  }

  /**
   * Writes one audit row inside the caller's transaction, so it commits with (and before any result of) the work.
   * `detail` must never hold a secret; it is shipped to the log once the transaction commits.
   */
  async record(
    tx: EntityManager,
    who: Actor | Anonymous,
    action: AuditAction,
    outcome: AuditOutcome,
    target: AuditTarget = {},
    extra: { reason?: string | null; detail?: Record<string, unknown> } = {},
  ): Promise<AuditEventEntity> {
    const row = this.build(who, action, outcome, target, extra);
    await this.recordBuilt(tx, [row]);
    return row;
  }

  /** Writes rows made by build() inside the caller's transaction, in one statement (a batch of reveals). */
  async recordBuilt(tx: EntityManager, rows: AuditEventEntity[]): Promise<void> {
    if (rows.length === 0) return;
    try {
      await this.repo.insert(tx, rows);
    } catch (err) {
      // No audit row, no action: the whole transaction fails and the caller gets 503, never the result.
      throw new UnavailableError('The audit trail cannot be written right now', err);
    }
    afterCommit(tx, () => this.logCommitted(rows));
  }

  /** One audit row, sealed with its row MAC, not yet written (a batch of reveals writes its rows in one statement). */
  build(
    who: Actor | Anonymous,
    action: AuditAction,
    outcome: AuditOutcome,
    target: AuditTarget = {},
    extra: { reason?: string | null; detail?: Record<string, unknown> } = {},
  ): AuditEventEntity {
    const anon = 'anonymous' in who;
    const row = Object.assign(new AuditEventEntity(), {
      id: newId(),
      seq: null,
      chainHash: null,
      at: new Date(),
      action,
      outcome,
      actorId: anon ? who.userId ?? null : who.userId || null,
      actorUsername: clip(anon ? who.claimedUsername : who.username, 64),
      actorRole: anon ? who.role ?? null : who.role,
      via: anon ? null : who.via,
      apiTokenId: anon ? null : who.apiTokenId ?? null,
      keyId: target.keyId ?? null,
      projectId: target.projectId ?? null,
      ownerId: target.ownerId ?? null,
      ip: clip(who.ip, 64),
      userAgent: clip(who.userAgent, 512),
      requestId: clip(who.requestId, 64),
      reason: clip(extra.reason, 1024),
      detail: extra.detail ? JSON.stringify(extra.detail) : null,
      rowMac: '',
    });
    row.rowMac = this.chain.macOf(row);
    return row;
  }

  /** Ships committed rows to the log (never before their commit). */
  private logCommitted(rows: AuditEventEntity[]): void {
    this.onCommitted?.(rows);
    for (const row of rows) {
      const { seq: _s, ...event } = toAuditEvent(row);
      this.logger.info('audit', { event: 'audit', audit: event });
    }
  }

  async list(actor: Actor, filter: AuditFilter, page: Page): Promise<PageResult<AuditEvent>> {
    if (!can(actor, 'audit:read')) throw new ForbiddenError('Reading the audit trail needs the audit:read right');
    const rows = await this.db.read((m) => this.repo.list(m, filter, page));
    return toPageResult(rows, page, toAuditEvent);
  }

  /**
   * Seals what is pending, audits the export naming the chain head it covers, then yields the sealed rows up to that
   * head in chain order, in chunks read in short batches (constant memory, no long-held lock). The export is thus a
   * prefix of the chain that `verify` checks: a row committed late cannot slip between pages, and the audit.export
   * row says exactly which head the file ends at.
   */
  async openExport(actor: Actor, filter: AuditFilter, format: 'csv' | 'ndjson', onRows?: (count: number) => void): Promise<AsyncIterable<string>> {
    if (!can(actor, 'audit:read')) throw new ForbiddenError('Exporting the audit trail needs the audit:read right');
    await this.chain.sealPending();
    const head = await this.chain.head();
    const described = Object.fromEntries(Object.entries(filter).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]));
    await this.db.transaction((tx) => this.record(tx, actor, 'audit.export', 'success', {}, { detail: { format, filter: described, head } }));
    const db = this.db;
    const repo = this.repo;
    return (async function* () {
      if (format === 'csv') yield UTF8_BOM + csvHeader();
      for (let after = 0; after < head.seq; ) {
        const rows = await db.read((m) => repo.exportBatch(m, filter, after, head.seq, EXPORT_BATCH));
        if (rows.length === 0) return;
        const names = await db.read((m) => repo.namesFor(m, rows));
        const events: ExportedEvent[] = rows.map((r) => ({
          ...toAuditEvent(r),
          keyName: (r.keyId && names.keys.get(r.keyId)) ?? null,
          projectName: (r.projectId && names.projects.get(r.projectId)) ?? null,
          ownerUsername: (r.ownerId && names.users.get(r.ownerId)) ?? null,
        }));
        onRows?.(events.length);
        yield format === 'csv' ? csvRows(events) : ndjsonRows(events);
        if (rows.length < EXPORT_BATCH) return;
        after = rows[rows.length - 1].seq as number;
      }
    })();
  }

  async listForKey(keyId: string, page: Page): Promise<PageResult<AuditEvent>> {
    const rows = await this.db.read((m) => this.repo.list(m, { keyId }, page));
    return toPageResult(rows, page, toAuditEvent);
  }
}
