import type { EntityManager } from 'typeorm';
import type { Page } from '../../pagination';
import { isMySQL } from '../../db/statements';
import { Role, UserEntity, UserStatus } from './user.entity';

export type SessionUser = Pick<UserEntity, 'id' | 'username' | 'role' | 'status' | 'sessionEpoch' | 'mustChangePassword'>;

export class UsersRepository {
  findById(m: EntityManager, id: string): Promise<UserEntity | null> {
    return m.findOneBy(UserEntity, { id });
  }

  /** The row locked until commit on MySQL (SQLite's write transactions already run one at a time). */
  findByIdLocked(tx: EntityManager, id: string): Promise<UserEntity | null> {
    const qb = tx.createQueryBuilder(UserEntity, 'u').where('u.id = :id', { id });
    if (isMySQL(tx)) qb.setLock('pessimistic_write');
    return qb.getOne();
  }

  /** Usernames are stored lower-case, so lookups ignore case alike on SQLite and MySQL. */
  findByUsername(m: EntityManager, username: string): Promise<UserEntity | null> {
    return m.findOneBy(UserEntity, { username: username.toLowerCase() });
  }

  /** The user behind a session and whether that session was logged out: one round trip, no ORM hydration (hot path). */
  async findForSession(m: EntityManager, id: string, jti: string): Promise<{ user: SessionUser; revoked: boolean } | null> {
    const rows: Array<{ id: string; username: string; role: Role; status: UserStatus; epoch: number | string; must: number | string; revoked: number | string }> = await m.query(
      'SELECT u.id, u.username, u.role, u.status, u.session_epoch AS epoch, u.must_change_password AS must, (SELECT COUNT(*) FROM revoked_sessions r WHERE r.jti = ?) AS revoked FROM users u WHERE u.id = ?',
      [jti, id],
    );
    const r = rows[0];
    if (!r) return null;
    return { user: { id: r.id, username: r.username, role: r.role, status: r.status, sessionEpoch: Number(r.epoch), mustChangePassword: Number(r.must) === 1 }, revoked: Number(r.revoked) > 0 };
  }

  async insert(tx: EntityManager, user: UserEntity): Promise<void> {
    await tx.insert(UserEntity, user);
  }

  async update(tx: EntityManager, id: string, patch: Partial<UserEntity>): Promise<void> {
    await tx.update(UserEntity, { id }, patch);
  }

  /** A new password ends every session issued before it; `mustChange` when someone other than the user chose it. */
  async setPassword(tx: EntityManager, id: string, passwordHash: string, mustChange: boolean, now: Date): Promise<void> {
    await tx
      .createQueryBuilder()
      .update(UserEntity)
      .set({ passwordHash, mustChangePassword: mustChange, updatedAt: now, sessionEpoch: () => 'session_epoch + 1' })
      .where('id = :id', { id })
      .execute();
  }

  async endSessions(tx: EntityManager, id: string, now: Date): Promise<void> {
    await tx
      .createQueryBuilder()
      .update(UserEntity)
      .set({ updatedAt: now, sessionEpoch: () => 'session_epoch + 1' })
      .where('id = :id', { id })
      .execute();
  }

  /**
   * The active admins, their rows locked until commit on MySQL: two admins demoting each other at once must not both
   * see two admins (READ COMMITTED would let them). SQLite's write transactions already run one at a time.
   */
  async countActiveAdminsLocked(tx: EntityManager): Promise<number> {
    const qb = tx.createQueryBuilder(UserEntity, 'u').select('u.id').where('u.role = :role AND u.status = :status', { role: 'admin', status: 'active' });
    if (isMySQL(tx)) qb.setLock('pessimistic_write');
    return (await qb.getMany()).length;
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
