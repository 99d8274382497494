import type { EntityManager } from 'typeorm';
import type { Page } from '../../http/pagination';
import type { Statement } from '../../db/database';
import { ProviderKeyEntity } from './provider-key.entity';

type RawKey = Record<string, unknown>;

/** A list row: the metadata columns as the driver returns them (snake_case; times in ms, as numbers or strings). */
export type MetadataRow = { id: string } & RawKey;

const ms = (v: unknown) => (v == null ? null : new Date(Number(v)));
const buf = (v: unknown) => (v == null ? null : Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array));

function fromRaw(r: RawKey): ProviderKeyEntity {
  return Object.assign(new ProviderKeyEntity(), {
    id: r.id,
    name: r.name,
    provider: r.provider,
    hint: r.hint,
    status: r.status,
    ownerId: r.owner_id,
    projectId: r.project_id,
    remark: r.remark ?? null,
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
  });
}

export interface KeyFilter {
  projectId?: string;
  ownerId?: string;
  provider?: string;
  status?: string;
  q?: string;
}

/** Metadata columns only: list pages never load ciphertext. */
const METADATA = 'id, name, provider, hint, status, owner_id, project_id, remark, created_by, created_at, updated_at, expires_at, last_revealed_at, reveal_count';

// '!' escapes LIKE wildcards the same way on SQLite and MySQL (a backslash literal is read differently by each).
const likeEscape = (s: string) => s.replace(/[!%_]/g, (c) => `!${c}`);

export class ProviderKeysRepository {
  /**
   * One row by id, without ORM hydration (the reveal's hot path). With `forUpdate` the row stays locked until
   * commit on MySQL (SQLite transactions are already serialized).
   */
  async findById(m: EntityManager, id: string, forUpdate = false): Promise<ProviderKeyEntity | null> {
    const lock = forUpdate && m.connection.options.type === 'mysql' ? ' FOR UPDATE' : '';
    const rows: RawKey[] = await m.query(`SELECT * FROM provider_keys WHERE id = ?${lock}`, [id]);
    return rows[0] ? fromRaw(rows[0]) : null;
  }

  /** Several rows by id in one statement (a batch of reveals), read with `keysOf`. */
  byIdsStatement(ids: string[]): Statement {
    return { sql: `SELECT * FROM provider_keys WHERE ${ids.length ? `id IN (${ids.map(() => '?').join(', ')})` : '1 = 0'}`, params: ids };
  }

  keysOf(rows: RawKey[]): Map<string, ProviderKeyEntity> {
    return new Map(rows.map((r) => [String(r.id), fromRaw(r)]));
  }

  findByFingerprint(m: EntityManager, fingerprint: string): Promise<Pick<ProviderKeyEntity, 'id'> | null> {
    return m.createQueryBuilder(ProviderKeyEntity, 'k').select('k.id').where('k.fingerprint = :fingerprint', { fingerprint }).getOne();
  }

  /**
   * A keyset page, newest first, as one statement with bound values and its rows as the driver returns them: no ORM
   * query building, hydration or Dates (a hot path; the service maps each row straight to its answer).
   */
  async list(m: EntityManager, filter: KeyFilter, page: Page): Promise<MetadataRow[]> {
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
    if (filter.q) add("name LIKE ? ESCAPE '!'", `%${likeEscape(filter.q)}%`);
    if (page.before) add('id < ?', page.before);
    params.push(page.limit + 1);
    return m.query(`SELECT ${METADATA} FROM provider_keys WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`, params);
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
  revealCountsStatement(counts: Map<string, number>, at: Date): Statement {
    const ids = [...counts.keys()];
    const increment = ids.length === 1 ? '?' : `CASE id ${ids.map(() => 'WHEN ? THEN ?').join(' ')} END`;
    const params = ids.length === 1 ? [counts.get(ids[0])] : ids.flatMap((id) => [id, counts.get(id)]);
    return {
      sql: `UPDATE provider_keys SET reveal_count = reveal_count + ${increment}, last_revealed_at = ? WHERE id IN (${ids.map(() => '?').join(', ')})`,
      params: [...params, at.getTime(), ...ids],
    };
  }
}
