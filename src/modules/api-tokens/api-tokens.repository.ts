import type { EntityManager } from 'typeorm';
import type { Page } from '../../http/pagination';
import { UserEntity } from '../users/user.entity';
import { ApiTokenEntity } from './api-token.entity';

export type TokenAuth = Pick<ApiTokenEntity, 'id' | 'userId' | 'scopes' | 'expiresAt' | 'revokedAt'>;

export class ApiTokensRepository {
  /** The token and its user's current row: one indexed lookup by hash, no ORM hydration (hot path). */
  async findByHashWithUser(m: EntityManager, tokenHash: string): Promise<{ token: TokenAuth; user: Pick<UserEntity, 'id' | 'username' | 'role' | 'status'> } | null> {
    const rows: Array<Record<string, string | number | null>> = await m.query(
      'SELECT t.id, t.scopes, t.expires_at AS expiresAt, t.revoked_at AS revokedAt, u.id AS userId, u.username, u.role, u.status ' +
        'FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?',
      [tokenHash],
    );
    const r = rows[0];
    if (!r) return null;
    return {
      token: { id: String(r.id), userId: String(r.userId), scopes: String(r.scopes), expiresAt: new Date(Number(r.expiresAt)), revokedAt: r.revokedAt == null ? null : new Date(Number(r.revokedAt)) },
      user: { id: String(r.userId), username: String(r.username), role: r.role as UserEntity['role'], status: r.status as UserEntity['status'] },
    };
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
