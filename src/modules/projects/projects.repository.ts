import crypto from 'node:crypto';
import type { EntityManager } from 'typeorm';
import type { Page } from '../../pagination';
import { ProviderKeyEntity } from '../provider-keys/provider-key.entity';
import { ProjectEntity } from './project.entity';

/**
 * Two project names are the same name when they fold alike: compatibility forms (ﬁ, full-width letters) and case
 * ("Äpfel", "äpfel", "ÄPFEL") folded. Hashed, so the database only ever compares ASCII bytes.
 */
export function nameKey(name: string): string {
  const folded = name.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFC');
  return crypto.createHash('sha256').update(folded, 'utf8').digest('hex');
}

export class ProjectsRepository {
  findById(m: EntityManager, id: string): Promise<ProjectEntity | null> {
    return m.findOneBy(ProjectEntity, { id });
  }

  /** The project whose name folds like this one (see nameKey), by one rule on both databases. */
  findByName(m: EntityManager, name: string): Promise<ProjectEntity | null> {
    return m.findOneBy(ProjectEntity, { nameKey: nameKey(name) });
  }

  /** A member sees a project only while it holds one of their live keys. */
  async holdsKeyOf(m: EntityManager, projectId: string, ownerId: string): Promise<boolean> {
    const n = await m
      .createQueryBuilder(ProviderKeyEntity, 'k')
      .where('k.project_id = :projectId AND k.owner_id = :ownerId AND k.status <> :deleted', { projectId, ownerId, deleted: 'deleted' })
      .getCount();
    return n > 0;
  }

  countLiveKeys(m: EntityManager, projectId: string): Promise<number> {
    return m.createQueryBuilder(ProviderKeyEntity, 'k').where('k.project_id = :projectId AND k.status <> :deleted', { projectId, deleted: 'deleted' }).getCount();
  }

  list(m: EntityManager, page: Page, visibleToOwner?: string): Promise<ProjectEntity[]> {
    const qb = m.createQueryBuilder(ProjectEntity, 'p');
    if (visibleToOwner) {
      qb.andWhere(
        'EXISTS (SELECT 1 FROM provider_keys k WHERE k.project_id = p.id AND k.owner_id = :owner AND k.status <> :deleted)',
        { owner: visibleToOwner, deleted: 'deleted' },
      );
    }
    if (page.before) qb.andWhere('p.id < :before', { before: page.before });
    return qb.orderBy('p.id', 'DESC').limit(page.limit + 1).getMany();
  }

  async insert(tx: EntityManager, p: ProjectEntity): Promise<void> {
    await tx.insert(ProjectEntity, p);
  }

  async update(tx: EntityManager, id: string, patch: Partial<ProjectEntity>): Promise<void> {
    await tx.update(ProjectEntity, { id }, patch);
  }

  async delete(tx: EntityManager, id: string): Promise<void> {
    await tx.delete(ProjectEntity, { id });
  }
}
