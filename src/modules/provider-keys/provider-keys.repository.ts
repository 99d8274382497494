import type { EntityManager } from 'typeorm';
import type { Page } from '../../pagination';
import { isMySQL } from '../../db/statements';
import { ProviderKeyEntity } from './provider-key.entity';

type RawKey = Record<string, unknown>;

const ms = (v: unknown) => (v == null ? null : new Date(Number(v)));
const buf = (v: unknown) => (v == null ? null : Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array));

/** The one mapper of a provider_keys row as the driver returns it (a list row has no sealed columns: they map to null). */
export function keyFromRow(r: RawKey): ProviderKeyEntity {
  return Object.assign(new ProviderKeyEntity(), {
    id: r.id,
    name: r.name,
    provider: r.provider,
    hint: r.hint,
    status: r.status,
    ownerId: r.owner_id,
    projectId: r.project_id,
    remark: r.remark ?? null,
    baseUrl: r.base_url ?? null,
    createdBy: r.created_by,
    createdAt: ms(r.created_at),
    updatedAt: ms(r.updated_at),
    expiresAt: ms(r.expires_at),
    lastRevealedAt: ms(r.last_revealed_at),
    revealCount: Number(r.reveal_count),
    formatVersion: Number(r.format_version),
    kekVersion: r.kek_version == null ? null : Number(r.kek_version),
    wrappedDek: buf(r.wrapped_dek),
    dekIv: buf(r.dek_iv),
    dekTag: buf(r.dek_tag),
    secretCiphertext: buf(r.secret_ciphertext),
    secretIv: buf(r.secret_iv),
    secretTag: buf(r.secret_tag),
    fingerprint: r.fingerprint ?? null,
    healthStatus: r.health_status ?? 'unknown',
    healthCheckedAt: ms(r.health_checked_at),
    healthDetail: r.health_detail ?? null,
    healthKeyRequired: Number(r.health_key_required ?? 0) === 1,
    healthProbeModel: r.health_probe_model ?? null,
    healthNextCheckAt: ms(r.health_next_check_at),
    expiryNoticeDays: r.expiry_notice_days == null ? null : Number(r.expiry_notice_days),
    secretSetAt: ms(r.secret_set_at),
  });
}

export interface KeyFilter {
  projectId?: string;
  ownerId?: string;
  provider?: string;
  status?: string;
  health?: string;
  q?: string;
}

/** Metadata columns only: list pages never load ciphertext. */
const METADATA = 'id, name, provider, hint, status, owner_id, project_id, remark, base_url, created_by, created_at, updated_at, expires_at, last_revealed_at, reveal_count, health_status, health_checked_at, health_detail, health_probe_model, secret_set_at';

// '!' escapes LIKE wildcards the same way on SQLite and MySQL (a backslash literal is read differently by each).
const likeEscape = (s: string) => s.replace(/[!%_]/g, (c) => `!${c}`);

export class ProviderKeysRepository {
  /**
   * One row by id, without ORM hydration (the reveal's hot path). With `forUpdate` the row stays locked until
   * commit on MySQL (SQLite transactions are already serialized).
   */
  async findById(m: EntityManager, id: string, forUpdate = false): Promise<ProviderKeyEntity | null> {
    return (await this.findByIds(m, [id], forUpdate)).get(id) ?? null;
  }

  /** Several rows by id in one statement (a batch of reveals), locked until commit with `forUpdate`. */
  async findByIds(m: EntityManager, ids: string[], forUpdate = false): Promise<Map<string, ProviderKeyEntity>> {
    if (ids.length === 0) return new Map();
    const lock = forUpdate && isMySQL(m) ? ' FOR UPDATE' : '';
    const rows: RawKey[] = await m.query(`SELECT * FROM provider_keys WHERE id IN (${ids.map(() => '?').join(', ')})${lock}`, ids);
    return new Map(rows.map((r) => [String(r.id), keyFromRow(r)]));
  }

  findByFingerprint(m: EntityManager, fingerprint: string): Promise<Pick<ProviderKeyEntity, 'id'> | null> {
    return m.createQueryBuilder(ProviderKeyEntity, 'k').select('k.id').where('k.fingerprint = :fingerprint', { fingerprint }).getOne();
  }

  /** A keyset page, newest first, of metadata columns only (a list never loads ciphertext). */
  async list(m: EntityManager, filter: KeyFilter, page: Page): Promise<ProviderKeyEntity[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (clause: string, value: unknown) => {
      where.push(clause);
      params.push(value);
    };
    if (filter.projectId) add('project_id = ?', filter.projectId);
    if (filter.ownerId) add('owner_id = ?', filter.ownerId);
    if (filter.provider) add('provider = ?', filter.provider);
    if (filter.status) add('status = ?', filter.status);
    else add('status <> ?', 'deleted');
    if (filter.health) add('health_status = ?', filter.health);
    if (filter.q) {
      // Part of the name, or the end of the hint (its last characters, as an owner reads them off a provider's console).
      where.push("(name LIKE ? ESCAPE '!' OR hint LIKE ? ESCAPE '!')");
      params.push(`%${likeEscape(filter.q)}%`, `%${likeEscape(filter.q)}`);
    }
    if (page.before) add('id < ?', page.before);
    params.push(page.limit + 1);
    const rows: RawKey[] = await m.query(`SELECT ${METADATA} FROM provider_keys WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`, params);
    return rows.map(keyFromRow);
  }

  async insert(tx: EntityManager, key: ProviderKeyEntity): Promise<void> {
    await tx.insert(ProviderKeyEntity, key);
  }

  async update(tx: EntityManager, id: string, patch: Partial<ProviderKeyEntity>): Promise<void> {
    await tx.update(ProviderKeyEntity, { id }, patch);
  }

  /**
   * Counts exactly under concurrency: the increments (reveals per key id) happen in the database, on the locked rows,
   * in one statement for the whole batch.
   */
  async addReveals(tx: EntityManager, counts: Map<string, number>, at: Date): Promise<void> {
    const ids = [...counts.keys()];
    const increment = ids.length === 1 ? '?' : `CASE id ${ids.map(() => 'WHEN ? THEN ?').join(' ')} END`;
    const params = ids.length === 1 ? [counts.get(ids[0])] : ids.flatMap((id) => [id, counts.get(id)]);
    await tx.query(`UPDATE provider_keys SET reveal_count = reveal_count + ${increment}, last_revealed_at = ? WHERE id IN (${ids.map(() => '?').join(', ')})`, [...params, at.getTime(), ...ids]);
  }
}
