import type { EntityManager } from 'typeorm';
import type { Page } from '../../pagination';
import { execute, isMySQL } from '../../db/statements';
import type { CredentialMac, SealedField } from '../../crypto/credential-mac';
import type { Role, UserStatus } from '../users/user.entity';
import type { ProviderKeyEntity } from '../provider-keys/provider-key.entity';
import { keyFromRow } from '../provider-keys/provider-keys.repository';
import { VirtualKeyEntity } from './virtual-key.entity';

/** What a gateway call needs to decide: the virtual key, its user's current row and its provider key's current row. */
export interface GatewayGrant {
  vk: Pick<VirtualKeyEntity, 'id' | 'userId' | 'dailyRequestLimit' | 'dailyTokenLimit' | 'expiresAt' | 'revokedAt' | 'boundOwnerId' | 'boundProjectId' | 'boundUpstream'> & { models: string[] | null };
  user: { id: string; username: string; role: Role; status: UserStatus };
  key: ProviderKeyEntity;
  /** Whether the virtual key's row MAC holds: false for a row planted or changed in the database (or never sealed). */
  intact: boolean;
}

/** What a virtual key's row MAC covers: every column that decides what it may do, in a fixed order. */
export type SealedVirtualKey = Pick<
  VirtualKeyEntity,
  'id' | 'tokenHash' | 'keyId' | 'userId' | 'models' | 'dailyRequestLimit' | 'dailyTokenLimit' | 'boundOwnerId' | 'boundProjectId' | 'boundUpstream' | 'createdAt' | 'expiresAt' | 'revokedAt'
>;

export function virtualKeyFields(v: SealedVirtualKey): SealedField[] {
  return [
    v.id, v.tokenHash, v.keyId, v.userId, v.models, v.dailyRequestLimit, v.dailyTokenLimit, v.boundOwnerId, v.boundProjectId, v.boundUpstream,
    v.createdAt.getTime(), v.expiresAt.getTime(), v.revokedAt ? v.revokedAt.getTime() : null,
  ];
}

const num = (v: unknown) => (v == null ? null : Number(v));
const ms = (v: unknown) => (v == null ? null : new Date(Number(v)));

export function parseModels(text: string | null): string[] | null {
  return text == null ? null : (JSON.parse(text) as string[]);
}

export class VirtualKeysRepository {
  constructor(private readonly mac: CredentialMac) {}

  /** Whether the row's MAC holds (constant-time). */
  intact(v: SealedVirtualKey & Pick<VirtualKeyEntity, 'rowMac'>): boolean {
    return this.mac.verifies('virtual_key', virtualKeyFields(v), v.rowMac);
  }

  /** The MAC of the row as it is, for a row the product wrote (or checked against the audit trail: the backfill). */
  macOf(v: SealedVirtualKey): string {
    return this.mac.of('virtual_key', virtualKeyFields(v));
  }

  /** One statement: the virtual key by hash, joined to its user and provider key as they are now (no cache: revocation is seen at once). */
  async findGrant(m: EntityManager, tokenHash: string): Promise<GatewayGrant | null> {
    const rows: Array<Record<string, unknown>> = await m.query(
      'SELECT k.*, v.id AS vk_id, v.user_id AS vk_user_id, v.models AS vk_models, v.daily_request_limit AS vk_daily_request_limit, ' +
        'v.daily_token_limit AS vk_daily_token_limit, v.expires_at AS vk_expires_at, v.revoked_at AS vk_revoked_at, v.bound_owner_id AS vk_bound_owner_id, ' +
        'v.bound_project_id AS vk_bound_project_id, v.bound_upstream AS vk_bound_upstream, v.token_hash AS vk_token_hash, v.key_id AS vk_key_id, ' +
        'v.created_at AS vk_created_at, v.row_mac AS vk_row_mac, u.username AS user_username, u.role AS user_role, u.status AS user_status ' +
        'FROM virtual_keys v JOIN users u ON u.id = v.user_id JOIN provider_keys k ON k.id = v.key_id WHERE v.token_hash = ?',
      [tokenHash],
    );
    const r = rows[0];
    if (!r) return null;
    const sealed: SealedVirtualKey = {
      id: String(r.vk_id),
      tokenHash: String(r.vk_token_hash),
      keyId: String(r.vk_key_id),
      userId: String(r.vk_user_id),
      models: r.vk_models == null ? null : String(r.vk_models),
      dailyRequestLimit: num(r.vk_daily_request_limit),
      dailyTokenLimit: num(r.vk_daily_token_limit),
      boundOwnerId: String(r.vk_bound_owner_id),
      boundProjectId: String(r.vk_bound_project_id),
      boundUpstream: String(r.vk_bound_upstream),
      createdAt: new Date(Number(r.vk_created_at)),
      expiresAt: new Date(Number(r.vk_expires_at)),
      revokedAt: ms(r.vk_revoked_at),
    };
    const { tokenHash: _h, keyId: _k, createdAt: _c, models, ...vk } = sealed;
    return {
      vk: { ...vk, models: parseModels(models) },
      user: { id: sealed.userId, username: String(r.user_username), role: r.user_role as Role, status: r.user_status as UserStatus },
      key: keyFromRow(r),
      intact: this.intact({ ...sealed, rowMac: r.vk_row_mac == null ? null : String(r.vk_row_mac) }),
    };
  }

  findById(m: EntityManager, id: string): Promise<VirtualKeyEntity | null> {
    return m.findOneBy(VirtualKeyEntity, { id });
  }

  /** A keyset page of one provider key's virtual keys, newest first. */
  listForKey(m: EntityManager, keyId: string, page: Page): Promise<VirtualKeyEntity[]> {
    const qb = m.createQueryBuilder(VirtualKeyEntity, 'v').where('v.key_id = :keyId', { keyId });
    if (page.before) qb.andWhere('v.id < :before', { before: page.before });
    return qb.orderBy('v.id', 'DESC').limit(page.limit + 1).getMany();
  }

  /** Sealed here: the row MAC is computed from the row as written. */
  async insert(tx: EntityManager, row: VirtualKeyEntity): Promise<void> {
    row.rowMac = this.macOf(row);
    await tx.insert(VirtualKeyEntity, row);
  }

  async revoke(tx: EntityManager, id: string, at: Date): Promise<void> {
    await this.revokeWhere(tx, 'v.id = :id', { id }, at);
  }

  /** Ends every live virtual key of a provider key (it moved, points elsewhere, or was deleted); returns how many. */
  async revokeForKey(tx: EntityManager, keyId: string, at: Date): Promise<number> {
    return (await this.revokeWhere(tx, 'v.key_id = :keyId', { keyId }, at)).length;
  }

  /** Ends every live virtual key a user made (the user was disabled); returns them, to be audited one by one. */
  async revokeAllOf(tx: EntityManager, userId: string, at: Date): Promise<VirtualKeyEntity[]> {
    return this.revokeWhere(tx, 'v.user_id = :userId', { userId }, at);
  }

  /**
   * Sets revoked_at on the live rows matching `where` (locked until commit on MySQL) and seals each again, so the
   * revocation is part of its MAC: clearing revoked_at in the database breaks it. A row whose MAC did not hold keeps
   * its broken MAC (revoked all the same): the product never seals fields it did not check.
   */
  private async revokeWhere(tx: EntityManager, where: string, params: Record<string, string>, at: Date): Promise<VirtualKeyEntity[]> {
    const qb = tx.createQueryBuilder(VirtualKeyEntity, 'v').where(`${where} AND v.revoked_at IS NULL`, params);
    if (isMySQL(tx)) qb.setLock('pessimistic_write');
    const live = await qb.getMany();
    for (const v of live) {
      const rowMac = this.intact(v) ? this.macOf({ ...v, revokedAt: at }) : v.rowMac;
      await execute(tx, 'UPDATE virtual_keys SET revoked_at = ?, row_mac = ? WHERE id = ? AND revoked_at IS NULL', [at.getTime(), rowMac, v.id]);
    }
    return live;
  }

  /** Claims the budget-exhausted notice of one virtual key for one UTC day (once, across instances). */
  async claimBudgetNotice(tx: EntityManager, id: string, day: number): Promise<boolean> {
    return (await execute(tx, 'UPDATE virtual_keys SET budget_notified_day = ? WHERE id = ? AND (budget_notified_day IS NULL OR budget_notified_day < ?)', [day, id, day])) === 1;
  }

  /** Adds a batch of calls; last-used moves forward only (several instances may flush out of order). */
  async addUse(tx: EntityManager, id: string, count: number, lastUsedAt: Date): Promise<void> {
    await tx.query('UPDATE virtual_keys SET request_count = request_count + ? WHERE id = ?', [Math.trunc(count), id]);
    await tx.query('UPDATE virtual_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)', [lastUsedAt.getTime(), id, lastUsedAt.getTime()]);
  }
}
