import { MigrationInterface, QueryRunner, Table, TableColumnOptions, TableIndex, TableOptions } from 'typeorm';

const id = (name = 'id'): TableColumnOptions => ({ name, type: 'varchar', length: '36', isPrimary: name === 'id' });
const str = (name: string, length: number, nullable = false): TableColumnOptions => ({ name, type: 'varchar', length: String(length), isNullable: nullable });
const ms = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'bigint', isNullable: nullable });
const blob = (name: string, nullable = true): TableColumnOptions => ({ name, type: 'blob', isNullable: nullable });

/**
 * On MySQL/MariaDB every text column is utf8mb4, whatever the database's default (upstream MariaDB's is latin1):
 * otherwise a name, reason or user agent outside latin1 is refused or stored as '?', and the audit row holding it
 * no longer matches its MAC, so verify would report tampering that never happened.
 */
function table(q: QueryRunner, options: TableOptions): Table {
  if (q.connection.options.type !== 'mysql') return new Table(options);
  const text = (c: TableColumnOptions) => c.type === 'varchar' || c.type === 'text';
  return new Table({ ...options, columns: options.columns?.map((c) => (text(c) ? { ...c, charset: 'utf8mb4', collation: 'utf8mb4_unicode_ci' } : c)) });
}

/** One schema for SQLite and MySQL/MariaDB: portable types only, timestamps as UTC epoch milliseconds. */
export class Initial1763900000000 implements MigrationInterface {
  name = 'Initial1763900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.createTable(
      table(q, {
        name: 'users',
        columns: [
          id(),
          str('username', 64),
          str('display_name', 128, true),
          str('role', 16),
          str('status', 16),
          str('password_hash', 255),
          { name: 'session_epoch', type: 'int', default: 0 },
          ms('created_at'),
          ms('updated_at'),
        ],
        indices: [new TableIndex({ name: 'uq_users_username', columnNames: ['username'], isUnique: true })],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'projects',
        columns: [id(), str('name', 128), str('description', 1024, true), ms('created_at'), ms('updated_at')],
        indices: [new TableIndex({ name: 'uq_projects_name', columnNames: ['name'], isUnique: true })],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'revoked_sessions',
        columns: [{ name: 'jti', type: 'varchar', length: '64', isPrimary: true }, id('user_id'), ms('expires_at')],
        indices: [new TableIndex({ name: 'ix_revoked_sessions_expires', columnNames: ['expires_at'] })],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'provider_keys',
        columns: [
          id(),
          str('name', 128),
          str('provider', 32),
          str('hint', 64),
          str('status', 16),
          id('owner_id'),
          id('project_id'),
          str('remark', 1024, true),
          id('created_by'),
          ms('created_at'),
          ms('updated_at'),
          ms('expires_at', true),
          ms('last_revealed_at', true),
          { name: 'reveal_count', type: 'int', default: 0 },
          { name: 'format_version', type: 'smallint' },
          { name: 'kek_version', type: 'int', isNullable: true },
          blob('wrapped_dek'),
          blob('dek_iv'),
          blob('dek_tag'),
          blob('secret_ciphertext'),
          blob('secret_iv'),
          blob('secret_tag'),
          str('fingerprint', 64, true),
        ],
        // No foreign key to projects: a project whose keys are all deleted may go; the tombstones keep its id.
        foreignKeys: [
          { name: 'fk_provider_keys_owner', columnNames: ['owner_id'], referencedTableName: 'users', referencedColumnNames: ['id'] },
        ],
        indices: [
          new TableIndex({ name: 'uq_provider_keys_fingerprint', columnNames: ['fingerprint'], isUnique: true }),
          new TableIndex({ name: 'ix_provider_keys_owner', columnNames: ['owner_id', 'id'] }),
          new TableIndex({ name: 'ix_provider_keys_project', columnNames: ['project_id', 'id'] }),
          new TableIndex({ name: 'ix_provider_keys_status', columnNames: ['status', 'id'] }),
          new TableIndex({ name: 'ix_provider_keys_kek', columnNames: ['kek_version'] }),
        ],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'api_tokens',
        columns: [
          id(),
          id('user_id'),
          str('name', 128),
          str('prefix', 16),
          str('token_hash', 64),
          str('scopes', 512),
          id('created_by'),
          ms('created_at'),
          ms('expires_at'),
          ms('last_used_at', true),
          str('last_used_ip', 64, true),
          { name: 'usage_count', type: 'bigint', default: 0 },
          ms('revoked_at', true),
        ],
        foreignKeys: [{ name: 'fk_api_tokens_user', columnNames: ['user_id'], referencedTableName: 'users', referencedColumnNames: ['id'] }],
        indices: [
          new TableIndex({ name: 'uq_api_tokens_hash', columnNames: ['token_hash'], isUnique: true }),
          new TableIndex({ name: 'ix_api_tokens_user', columnNames: ['user_id', 'id'] }),
        ],
      }),
    );

    // No foreign keys: audit rows outlive anything they mention and must never wait on a parent row's lock.
    await q.createTable(
      table(q, {
        name: 'audit_events',
        columns: [
          id(),
          { name: 'seq', type: 'bigint', isNullable: true },
          str('chain_hash', 64, true),
          str('row_mac', 64),
          ms('at'),
          str('action', 48),
          str('outcome', 16),
          str('actor_id', 36, true),
          str('actor_username', 64, true),
          str('actor_role', 16, true),
          str('via', 16, true),
          str('api_token_id', 36, true),
          str('key_id', 36, true),
          str('project_id', 36, true),
          str('owner_id', 36, true),
          str('ip', 64, true),
          str('user_agent', 512, true),
          str('request_id', 64, true),
          str('reason', 1024, true),
          { name: 'detail', type: 'text', isNullable: true },
        ],
        indices: [
          new TableIndex({ name: 'uq_audit_events_seq', columnNames: ['seq'], isUnique: true }),
          new TableIndex({ name: 'ix_audit_events_at', columnNames: ['at'] }),
          new TableIndex({ name: 'ix_audit_events_action', columnNames: ['action', 'id'] }),
          new TableIndex({ name: 'ix_audit_events_actor', columnNames: ['actor_id', 'id'] }),
          new TableIndex({ name: 'ix_audit_events_key', columnNames: ['key_id', 'id'] }),
          new TableIndex({ name: 'ix_audit_events_project', columnNames: ['project_id', 'id'] }),
        ],
      }),
    );

    // One row: the newest sealed link. Only the sealer locks it; request transactions never touch it.
    await q.createTable(
      table(q, {
        name: 'audit_chain_head',
        columns: [{ name: 'id', type: 'int', isPrimary: true }, { name: 'seq', type: 'bigint' }, str('hash', 64), ms('updated_at')],
      }),
    );
    await q.query(`INSERT INTO audit_chain_head (id, seq, hash, updated_at) VALUES (1, 0, '${'0'.repeat(64)}', 0)`);

    // Shared rate-limit counters when several instances serve one MySQL database (rate-limiter-flexible's layout).
    await q.createTable(
      table(q, {
        name: 'pkv_rate_limits',
        columns: [{ name: 'key', type: 'varchar', length: '255', isPrimary: true }, { name: 'points', type: 'int', default: 0 }, ms('expire', true)],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'kek_canaries',
        columns: [{ name: 'kek_version', type: 'int', isPrimary: true }, blob('iv', false), blob('tag', false), blob('ciphertext', false), ms('created_at')],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'system_keys',
        columns: [
          { name: 'name', type: 'varchar', length: '32', isPrimary: true },
          { name: 'kek_version', type: 'int' },
          blob('iv', false),
          blob('tag', false),
          blob('wrapped', false),
          ms('created_at'),
        ],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['system_keys', 'kek_canaries', 'pkv_rate_limits', 'audit_chain_head', 'audit_events', 'api_tokens', 'provider_keys', 'revoked_sessions', 'projects', 'users']) {
      await q.dropTable(t);
    }
  }
}
