import type { EntityManager } from 'typeorm';
import type { Page } from '../../pagination';
import { AuditEventEntity } from './audit-event.entity';

const INSERT_SQL =
  'INSERT INTO audit_events (id, seq, chain_hash, row_mac, at, action, outcome, actor_id, actor_username, actor_role, via, ' +
  'api_token_id, key_id, project_id, owner_id, ip, user_agent, request_id, reason, detail) VALUES ';
const ROW = '(' + Array(20).fill('?').join(', ') + ')';

export interface AuditFilter {
  action?: string;
  /** One outcome or several, comma-separated. */
  outcome?: string;
  actorRole?: string;
  byOwner?: boolean;
  actorId?: string;
  keyId?: string;
  projectId?: string;
  from?: Date;
  to?: Date;
}

export class AuditRepository {
  /** One plain parameterised INSERT for all the rows: every audited request pays for this, so no ORM insert builder. */
  async insert(tx: EntityManager, rows: AuditEventEntity[]): Promise<void> {
    const params = rows.flatMap((e) => [
      e.id, e.seq, e.chainHash, e.rowMac, e.at.getTime(), e.action, e.outcome, e.actorId, e.actorUsername, e.actorRole, e.via,
      e.apiTokenId, e.keyId, e.projectId, e.ownerId, e.ip, e.userAgent, e.requestId, e.reason, e.detail,
    ]);
    await tx.query(INSERT_SQL + rows.map(() => ROW).join(', '), params);
  }

  /** Newest first, keyset-paginated on id; fetches one extra row to tell whether a next page exists. */
  async list(m: EntityManager, filter: AuditFilter, page: Page): Promise<AuditEventEntity[]> {
    const qb = this.filtered(m, filter);
    if (page.before) qb.andWhere('e.id < :before', { before: page.before });
    return qb.orderBy('e.id', 'DESC').limit(page.limit + 1).getMany();
  }

  /** Oldest first after `afterId`, up to `upToId` inclusive: export walks a fixed snapshot in short reads. */
  /** Sealed rows with afterSeq < seq <= upToSeq matching the filter, in chain order. */
  exportBatch(m: EntityManager, filter: AuditFilter, afterSeq: number, upToSeq: number, limit: number): Promise<AuditEventEntity[]> {
    return this.filtered(m, filter).andWhere('e.seq > :afterSeq AND e.seq <= :upToSeq', { afterSeq, upToSeq }).orderBy('e.seq', 'ASC').limit(limit).getMany();
  }

  /** The current names of the keys, projects and owners these events refer to (a deleted project has none left). */
  async namesFor(m: EntityManager, events: Array<Pick<AuditEventEntity, 'keyId' | 'projectId' | 'ownerId'>>): Promise<{ keys: Map<string, string>; projects: Map<string, string>; users: Map<string, string> }> {
    const lookup = async (table: 'provider_keys' | 'projects' | 'users', column: 'name' | 'username', ids: Array<string | null>) => {
      const unique = [...new Set(ids.filter((id): id is string => !!id))];
      if (unique.length === 0) return new Map<string, string>();
      const rows: Array<{ id: string; name: string }> = await m.query(`SELECT id, ${column} AS name FROM ${table} WHERE id IN (${unique.map(() => '?').join(', ')})`, unique);
      return new Map(rows.map((r) => [r.id, r.name]));
    };
    return {
      keys: await lookup('provider_keys', 'name', events.map((e) => e.keyId)),
      projects: await lookup('projects', 'name', events.map((e) => e.projectId)),
      users: await lookup('users', 'username', events.map((e) => e.ownerId)),
    };
  }

  private filtered(m: EntityManager, filter: AuditFilter) {
    const qb = m.createQueryBuilder(AuditEventEntity, 'e');
    if (filter.action) qb.andWhere('e.action = :action', { action: filter.action });
    if (filter.outcome) qb.andWhere('e.outcome IN (:...outcomes)', { outcomes: filter.outcome.split(',') });
    if (filter.actorRole) qb.andWhere('e.actor_role = :actorRole', { actorRole: filter.actorRole });
    if (filter.byOwner === true) qb.andWhere('e.actor_id = e.owner_id');
    if (filter.byOwner === false) qb.andWhere('e.owner_id IS NOT NULL AND (e.actor_id IS NULL OR e.actor_id <> e.owner_id)');
    if (filter.actorId) qb.andWhere('e.actor_id = :actorId', { actorId: filter.actorId });
    if (filter.keyId) qb.andWhere('e.key_id = :keyId', { keyId: filter.keyId });
    if (filter.projectId) qb.andWhere('e.project_id = :projectId', { projectId: filter.projectId });
    if (filter.from) qb.andWhere('e.at >= :from', { from: filter.from.getTime() });
    if (filter.to) qb.andWhere('e.at < :to', { to: filter.to.getTime() });
    return qb;
  }
}
