import type { EntityManager } from 'typeorm';
import type { Page } from '../../http/pagination';
import { AuditEventEntity } from './audit-event.entity';

export interface AuditFilter {
  action?: string;
  outcome?: string;
  actorId?: string;
  keyId?: string;
  projectId?: string;
  from?: Date;
  to?: Date;
}

export class AuditRepository {
  async insert(tx: EntityManager, row: AuditEventEntity): Promise<void> {
    await tx.insert(AuditEventEntity, row);
  }

  /** Newest first, keyset-paginated on id; fetches one extra row to tell whether a next page exists. */
  async list(m: EntityManager, filter: AuditFilter, page: Page): Promise<AuditEventEntity[]> {
    const qb = this.filtered(m, filter);
    if (page.before) qb.andWhere('e.id < :before', { before: page.before });
    return qb.orderBy('e.id', 'DESC').limit(page.limit + 1).getMany();
  }

  /** Oldest first after `afterId`, up to `upToId` inclusive: export walks a fixed snapshot in short reads. */
  exportBatch(m: EntityManager, filter: AuditFilter, afterId: string | undefined, upToId: string, limit: number): Promise<AuditEventEntity[]> {
    const qb = this.filtered(m, filter).andWhere('e.id <= :upToId', { upToId });
    if (afterId) qb.andWhere('e.id > :afterId', { afterId });
    return qb.orderBy('e.id', 'ASC').limit(limit).getMany();
  }

  async newestId(m: EntityManager): Promise<string | undefined> {
    const row = await m.createQueryBuilder(AuditEventEntity, 'e').select('MAX(e.id)', 'id').getRawOne<{ id: string | null }>();
    return row?.id ?? undefined;
  }

  private filtered(m: EntityManager, filter: AuditFilter) {
    const qb = m.createQueryBuilder(AuditEventEntity, 'e');
    if (filter.action) qb.andWhere('e.action = :action', { action: filter.action });
    if (filter.outcome) qb.andWhere('e.outcome = :outcome', { outcome: filter.outcome });
    if (filter.actorId) qb.andWhere('e.actor_id = :actorId', { actorId: filter.actorId });
    if (filter.keyId) qb.andWhere('e.key_id = :keyId', { keyId: filter.keyId });
    if (filter.projectId) qb.andWhere('e.project_id = :projectId', { projectId: filter.projectId });
    if (filter.from) qb.andWhere('e.at >= :from', { from: filter.from.getTime() });
    if (filter.to) qb.andWhere('e.at < :to', { to: filter.to.getTime() });
    return qb;
  }
}
