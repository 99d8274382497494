import type { EntityManager } from 'typeorm';
import type { Page } from '../../http/pagination';
import { ProviderKeyEntity } from './provider-key.entity';

export interface KeyFilter {
  projectId?: string;
  ownerId?: string;
  provider?: string;
  status?: string;
  q?: string;
}

/** Metadata columns only: list pages never load ciphertext. */
const METADATA = ['id', 'name', 'provider', 'hint', 'status', 'ownerId', 'projectId', 'remark', 'createdBy', 'createdAt', 'updatedAt', 'expiresAt', 'lastRevealedAt', 'revealCount'].map((c) => `k.${c}`);

// '!' escapes LIKE wildcards the same way on SQLite and MySQL (a backslash literal is read differently by each).
const likeEscape = (s: string) => s.replace(/[!%_]/g, (c) => `!${c}`);

export class ProviderKeysRepository {
  /** With `forUpdate`, the row is locked until commit on MySQL (SQLite transactions are already serialized). */
  findById(m: EntityManager, id: string, forUpdate = false): Promise<ProviderKeyEntity | null> {
    const qb = m.createQueryBuilder(ProviderKeyEntity, 'k').where('k.id = :id', { id });
    if (forUpdate && m.connection.options.type === 'mysql') qb.setLock('pessimistic_write');
    return qb.getOne();
  }

  findByFingerprint(m: EntityManager, fingerprint: string): Promise<Pick<ProviderKeyEntity, 'id'> | null> {
    return m.createQueryBuilder(ProviderKeyEntity, 'k').select('k.id').where('k.fingerprint = :fingerprint', { fingerprint }).getOne();
  }

  list(m: EntityManager, filter: KeyFilter, page: Page): Promise<ProviderKeyEntity[]> {
    const qb = m.createQueryBuilder(ProviderKeyEntity, 'k').select(METADATA);
    if (filter.projectId) qb.andWhere('k.project_id = :projectId', { projectId: filter.projectId });
    if (filter.ownerId) qb.andWhere('k.owner_id = :ownerId', { ownerId: filter.ownerId });
    if (filter.provider) qb.andWhere('k.provider = :provider', { provider: filter.provider });
    if (filter.status) qb.andWhere('k.status = :status', { status: filter.status });
    else qb.andWhere('k.status <> :deleted', { deleted: 'deleted' });
    if (filter.q) qb.andWhere("k.name LIKE :q ESCAPE '!'", { q: `%${likeEscape(filter.q)}%` });
    if (page.before) qb.andWhere('k.id < :before', { before: page.before });
    return qb.orderBy('k.id', 'DESC').limit(page.limit + 1).getMany();
  }

  async insert(tx: EntityManager, key: ProviderKeyEntity): Promise<void> {
    await tx.insert(ProviderKeyEntity, key);
  }

  async update(tx: EntityManager, id: string, patch: Partial<ProviderKeyEntity>): Promise<void> {
    await tx.update(ProviderKeyEntity, { id }, patch);
  }

  /** Counts exactly under concurrency: the increment happens in the database, on the locked row. */
  async recordReveal(tx: EntityManager, id: string, at: Date): Promise<void> {
    await tx
      .createQueryBuilder()
      .update(ProviderKeyEntity)
      .set({ revealCount: () => 'reveal_count + 1', lastRevealedAt: at })
      .where('id = :id', { id })
      .execute();
  }
}
