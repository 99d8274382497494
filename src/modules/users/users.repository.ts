import type { EntityManager } from 'typeorm';
import type { Page } from '../../http/pagination';
import { RevokedSessionEntity } from '../auth/revoked-session.entity';
import { UserEntity } from './user.entity';

export class UsersRepository {
  findById(m: EntityManager, id: string): Promise<UserEntity | null> {
    return m.findOneBy(UserEntity, { id });
  }

  findByUsername(m: EntityManager, username: string): Promise<UserEntity | null> {
    return m.findOneBy(UserEntity, { username });
  }

  /** The user behind a session and whether that session was logged out, in one round trip. */
  async findForSession(m: EntityManager, id: string, jti: string): Promise<{ user: UserEntity; revoked: boolean } | null> {
    const user = await m
      .createQueryBuilder(UserEntity, 'u')
      .addSelect((sq) => sq.select('COUNT(*)').from(RevokedSessionEntity, 'r').where('r.jti = :jti', { jti }), 'revoked')
      .where('u.id = :id', { id })
      .getRawAndEntities();
    if (user.entities.length === 0) return null;
    return { user: user.entities[0], revoked: Number(user.raw[0].revoked) > 0 };
  }

  async insert(tx: EntityManager, user: UserEntity): Promise<void> {
    await tx.insert(UserEntity, user);
  }

  async update(tx: EntityManager, id: string, patch: Partial<UserEntity>): Promise<void> {
    await tx.update(UserEntity, { id }, patch);
  }

  async bumpSessionEpoch(tx: EntityManager, id: string, passwordHash: string, now: Date): Promise<void> {
    await tx
      .createQueryBuilder()
      .update(UserEntity)
      .set({ passwordHash, updatedAt: now, sessionEpoch: () => 'session_epoch + 1' })
      .where('id = :id', { id })
      .execute();
  }

  countActiveAdmins(m: EntityManager): Promise<number> {
    return m.countBy(UserEntity, { role: 'admin', status: 'active' });
  }

  count(m: EntityManager): Promise<number> {
    return m.count(UserEntity);
  }

  list(m: EntityManager, filter: { role?: string; status?: string }, page: Page): Promise<UserEntity[]> {
    const qb = m.createQueryBuilder(UserEntity, 'u');
    if (filter.role) qb.andWhere('u.role = :role', { role: filter.role });
    if (filter.status) qb.andWhere('u.status = :status', { status: filter.status });
    if (page.before) qb.andWhere('u.id < :before', { before: page.before });
    return qb.orderBy('u.id', 'DESC').limit(page.limit + 1).getMany();
  }
}
