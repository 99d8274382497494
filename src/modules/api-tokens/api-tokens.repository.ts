import type { EntityManager } from 'typeorm';
import type { Page } from '../../http/pagination';
import { UserEntity } from '../users/user.entity';
import { ApiTokenEntity } from './api-token.entity';

export class ApiTokensRepository {
  /** The token and its user's current row in one indexed lookup by hash. */
  async findByHashWithUser(m: EntityManager, tokenHash: string): Promise<{ token: ApiTokenEntity; user: UserEntity } | null> {
    const token = await m
      .createQueryBuilder(ApiTokenEntity, 't')
      .where('t.token_hash = :tokenHash', { tokenHash })
      .getOne();
    if (!token) return null;
    const user = await m.findOneBy(UserEntity, { id: token.userId });
    return user ? { token, user } : null;
  }

  findById(m: EntityManager, id: string): Promise<ApiTokenEntity | null> {
    return m.findOneBy(ApiTokenEntity, { id });
  }

  list(m: EntityManager, userId: string | undefined, page: Page): Promise<ApiTokenEntity[]> {
    const qb = m.createQueryBuilder(ApiTokenEntity, 't');
    if (userId) qb.andWhere('t.user_id = :userId', { userId });
    if (page.before) qb.andWhere('t.id < :before', { before: page.before });
    return qb.orderBy('t.id', 'DESC').limit(page.limit + 1).getMany();
  }

  async insert(tx: EntityManager, t: ApiTokenEntity): Promise<void> {
    await tx.insert(ApiTokenEntity, t);
  }

  async update(tx: EntityManager, id: string, patch: Partial<ApiTokenEntity>): Promise<void> {
    await tx.update(ApiTokenEntity, { id }, patch);
  }

  /** Adds a batch of uses; last-used moves forward only (several processes may flush out of order). */
  async addUsage(tx: EntityManager, id: string, count: number, lastUsedAt: Date, lastUsedIp: string | null): Promise<void> {
    await tx
      .createQueryBuilder()
      .update(ApiTokenEntity)
      .set({ usageCount: () => `usage_count + ${Math.trunc(count)}` })
      .where('id = :id', { id })
      .execute();
    await tx
      .createQueryBuilder()
      .update(ApiTokenEntity)
      .set({ lastUsedAt, lastUsedIp })
      .where('id = :id AND (last_used_at IS NULL OR last_used_at <= :at)', { id, at: lastUsedAt.getTime() })
      .execute();
  }
}
