import type { EntityManager } from 'typeorm';
import type { Page } from '../../pagination';
import { isMySQL } from '../../db/statements';
import type { CredentialMac, SealedField } from '../../crypto/credential-mac';
import { UserEntity } from '../users/user.entity';
import { ApiTokenEntity } from './api-token.entity';

export type TokenAuth = Pick<ApiTokenEntity, 'id' | 'userId' | 'scopes' | 'expiresAt' | 'revokedAt'>;

/** What a token's row MAC covers: every column that decides what it may do, in a fixed order. */
export type SealedApiToken = Pick<ApiTokenEntity, 'id' | 'tokenHash' | 'userId' | 'scopes' | 'createdBy' | 'createdAt' | 'expiresAt' | 'revokedAt'>;

export function apiTokenFields(t: SealedApiToken): SealedField[] {
  return [t.id, t.tokenHash, t.userId, t.scopes, t.createdBy, t.createdAt.getTime(), t.expiresAt.getTime(), t.revokedAt ? t.revokedAt.getTime() : null];
}

/** The columns a change to which re-seals the row (name, prefix and the usage counters are outside the MAC). */
const SEALED_COLUMNS: ReadonlyArray<keyof ApiTokenEntity> = ['tokenHash', 'userId', 'scopes', 'createdBy', 'createdAt', 'expiresAt', 'revokedAt'];

export class ApiTokensRepository {
  constructor(private readonly mac: CredentialMac) {}

  /** Whether the row's MAC holds (constant-time). */
  intact(t: SealedApiToken & Pick<ApiTokenEntity, 'rowMac'>): boolean {
    return this.mac.verifies('api_token', apiTokenFields(t), t.rowMac);
  }

  /** The MAC of the row as it is, for a row the product wrote (or checked against the audit trail: the backfill). */
  macOf(t: SealedApiToken): string {
    return this.mac.of('api_token', apiTokenFields(t));
  }

  /** The token and its user's current row: one indexed lookup by hash, no ORM hydration (hot path); `intact`: its MAC holds. */
  async findByHashWithUser(m: EntityManager, tokenHash: string): Promise<{ token: TokenAuth; user: Pick<UserEntity, 'id' | 'username' | 'role' | 'status'>; intact: boolean } | null> {
    const rows: Array<Record<string, string | number | null>> = await m.query(
      'SELECT t.id, t.token_hash AS tokenHash, t.scopes, t.created_by AS createdBy, t.created_at AS createdAt, t.expires_at AS expiresAt, t.revoked_at AS revokedAt, ' +
        't.row_mac AS rowMac, u.id AS userId, u.username, u.role, u.status FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?',
      [tokenHash],
    );
    const r = rows[0];
    if (!r) return null;
    const token = { id: String(r.id), userId: String(r.userId), scopes: String(r.scopes), expiresAt: new Date(Number(r.expiresAt)), revokedAt: r.revokedAt == null ? null : new Date(Number(r.revokedAt)) };
    const sealed = { ...token, tokenHash: String(r.tokenHash), createdBy: String(r.createdBy), createdAt: new Date(Number(r.createdAt)), rowMac: r.rowMac == null ? null : String(r.rowMac) };
    return {
      token,
      user: { id: String(r.userId), username: String(r.username), role: r.role as UserEntity['role'], status: r.status as UserEntity['status'] },
      intact: this.intact(sealed),
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

  /** Revokes every token of the user not revoked yet (expired ones too: renew would bring them back); returns them. */
  async revokeAllOf(tx: EntityManager, userId: string, now: Date): Promise<ApiTokenEntity[]> {
    const qb = tx.createQueryBuilder(ApiTokenEntity, 't').where('t.user_id = :userId AND t.revoked_at IS NULL', { userId });
    if (isMySQL(tx)) qb.setLock('pessimistic_write');
    const live = await qb.getMany();
    for (const t of live) await this.write(tx, t, { revokedAt: now });
    return live;
  }

  /** Sealed here: the row MAC is computed from the row as written. */
  async insert(tx: EntityManager, t: ApiTokenEntity): Promise<void> {
    t.rowMac = this.macOf(t);
    await tx.insert(ApiTokenEntity, t);
  }

  /**
   * Changes one token, sealing it again when a sealed column changes. The MAC is recomputed only from a row whose MAC
   * held (read locked until commit on MySQL): a row planted or changed in the database keeps its broken MAC, and so
   * stays refused, whatever the product writes to it (a revocation, typically). Callers that would give such a row a
   * new secret or expiry check `intact` first and refuse.
   */
  async update(tx: EntityManager, id: string, patch: Partial<ApiTokenEntity>): Promise<void> {
    if (!SEALED_COLUMNS.some((c) => c in patch)) {
      await tx.update(ApiTokenEntity, { id }, patch);
      return;
    }
    const qb = tx.createQueryBuilder(ApiTokenEntity, 't').where('t.id = :id', { id });
    if (isMySQL(tx)) qb.setLock('pessimistic_write');
    const current = await qb.getOne();
    if (current) await this.write(tx, current, patch);
  }

  private async write(tx: EntityManager, current: ApiTokenEntity, patch: Partial<ApiTokenEntity>): Promise<void> {
    const rowMac = this.intact(current) ? this.macOf({ ...current, ...patch }) : current.rowMac;
    await tx.update(ApiTokenEntity, { id: current.id }, { ...patch, rowMac });
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
