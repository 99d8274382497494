import { MigrationInterface, QueryRunner, TableColumn, TableColumnOptions } from 'typeorm';

const mysql = (q: QueryRunner) => q.connection.options.type === 'mysql';
/** utf8mb4 on MySQL/MariaDB whatever the database's default, as every text column of the earlier migrations. */
const rowMac = (q: QueryRunner): TableColumnOptions => ({ name: 'row_mac', type: 'varchar', length: '64', isNullable: true, ...(mysql(q) ? { charset: 'utf8mb4', collation: 'utf8mb4_unicode_ci' } : {}) });

/**
 * A keyed MAC on every credential row (virtual keys, API tokens), under a key derived from the audit key: a database
 * writer can no longer plant or widen one. Nullable: rows from before are sealed once by the first start after this
 * (after checking each against the audit trail), which records `vault.credentials_sealed`; from then on a row without
 * a MAC is refused.
 */
export class CredentialMacs1764840000000 implements MigrationInterface {
  name = 'CredentialMacs1764840000000';

  async up(q: QueryRunner): Promise<void> {
    for (const t of ['virtual_keys', 'api_tokens']) await q.addColumn(t, new TableColumn(rowMac(q)));
  }

  async down(q: QueryRunner): Promise<void> {
    for (const t of ['virtual_keys', 'api_tokens']) await q.dropColumn(t, 'row_mac');
  }
}
