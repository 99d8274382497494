import { MigrationInterface, QueryRunner, Table, TableColumn, TableColumnOptions, TableIndex, TableOptions } from 'typeorm';

const id = (name = 'id'): TableColumnOptions => ({ name, type: 'varchar', length: '36', isPrimary: name === 'id' });
const str = (name: string, length: number, nullable = false): TableColumnOptions => ({ name, type: 'varchar', length: String(length), isNullable: nullable });
const ms = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'bigint', isNullable: nullable });

const mysql = (q: QueryRunner) => q.connection.options.type === 'mysql';
const utf8mb4 = (c: TableColumnOptions): TableColumnOptions => (c.type === 'varchar' || c.type === 'text' ? { ...c, charset: 'utf8mb4', collation: 'utf8mb4_unicode_ci' } : c);

/** Text columns are utf8mb4 on MySQL/MariaDB whatever the database's default, as in the Initial migration. */
function table(q: QueryRunner, options: TableOptions): Table {
  return new Table(mysql(q) ? { ...options, columns: options.columns?.map(utf8mb4) } : options);
}

/** The gateway: where a provider key is used (base_url), the virtual keys that use it, and what each call spent. */
export class Gateway1764820000000 implements MigrationInterface {
  name = 'Gateway1764820000000';

  async up(q: QueryRunner): Promise<void> {
    const baseUrl: TableColumnOptions = str('base_url', 2048, true);
    await q.addColumn('provider_keys', new TableColumn(mysql(q) ? utf8mb4(baseUrl) : baseUrl));

    await q.createTable(
      table(q, {
        name: 'virtual_keys',
        columns: [
          id(),
          id('key_id'),
          id('user_id'),
          str('name', 128),
          str('prefix', 16),
          str('token_hash', 64),
          // JSON array of model names; null: any model.
          { name: 'models', type: 'text', isNullable: true },
          { name: 'daily_request_limit', type: 'bigint', isNullable: true },
          { name: 'daily_token_limit', type: 'bigint', isNullable: true },
          // What the virtual key was made for: a key that moved or points at another host no longer honours it.
          id('bound_owner_id'),
          id('bound_project_id'),
          str('bound_upstream', 512),
          ms('created_at'),
          ms('expires_at'),
          ms('revoked_at', true),
          ms('last_used_at', true),
          { name: 'request_count', type: 'bigint', default: 0 },
        ],
        foreignKeys: [
          { name: 'fk_virtual_keys_key', columnNames: ['key_id'], referencedTableName: 'provider_keys', referencedColumnNames: ['id'] },
          { name: 'fk_virtual_keys_user', columnNames: ['user_id'], referencedTableName: 'users', referencedColumnNames: ['id'] },
        ],
        indices: [
          new TableIndex({ name: 'uq_virtual_keys_hash', columnNames: ['token_hash'], isUnique: true }),
          new TableIndex({ name: 'ix_virtual_keys_key', columnNames: ['key_id', 'id'] }),
          new TableIndex({ name: 'ix_virtual_keys_user', columnNames: ['user_id', 'id'] }),
        ],
      }),
    );

    // One row per forwarded call, written in batches. No foreign keys: a batch insert must never wait on a parent's lock.
    await q.createTable(
      table(q, {
        name: 'gateway_usage',
        columns: [
          id(),
          ms('at'),
          id('virtual_key_id'),
          id('key_id'),
          id('user_id'),
          str('model', 128, true),
          { name: 'status', type: 'int' },
          { name: 'latency_ms', type: 'int' },
          { name: 'prompt_tokens', type: 'bigint', isNullable: true },
          { name: 'completion_tokens', type: 'bigint', isNullable: true },
          { name: 'request_bytes', type: 'bigint', default: 0 },
          { name: 'response_bytes', type: 'bigint', default: 0 },
        ],
        indices: [
          // GET /provider-keys/:id/usage: a range of one key's calls, bucketed, without reading the rows.
          new TableIndex({ name: 'ix_gateway_usage_key_at', columnNames: ['key_id', 'at', 'status', 'prompt_tokens', 'completion_tokens'] }),
          // A virtual key's daily budget: today's calls and tokens, without reading the rows.
          new TableIndex({ name: 'ix_gateway_usage_vk_at', columnNames: ['virtual_key_id', 'at', 'prompt_tokens', 'completion_tokens'] }),
        ],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropTable('gateway_usage');
    await q.dropTable('virtual_keys');
    await q.dropColumn('provider_keys', 'base_url');
  }
}
