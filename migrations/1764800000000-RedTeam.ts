import crypto from 'node:crypto';
import { MigrationInterface, QueryRunner, TableColumn, TableColumnOptions, TableIndex } from 'typeorm';

const column = (q: QueryRunner, options: TableColumnOptions): TableColumn =>
  new TableColumn(q.connection.options.type === 'mysql' && options.type === 'varchar' ? { ...options, charset: 'utf8mb4', collation: 'utf8mb4_unicode_ci' } : options);

/**
 * Frozen copy of projects' nameKey (src/modules/projects/projects.repository.ts) over a name cleaned as
 * src/http/validate.ts cleanText does: a migration must mean the
 * same thing forever, whatever the application's rule becomes later.
 */
const fold = (name: string) =>
  name
    .normalize('NFC')
    .replace(/^[\p{White_Space}\p{Default_Ignorable_Code_Point}]+|[\p{White_Space}\p{Default_Ignorable_Code_Point}]+$/gu, '')
    .normalize('NFKC')
    .toUpperCase()
    .toLowerCase()
    .normalize('NFC');
const sha256 = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

/**
 * Red-team fixes of issue 25:
 * - users.must_change_password: a password chosen by someone else (an admin, the CLI) must be changed at the next
 *   sign-in before the session can do anything else.
 * - projects.name_key: project names are unique by one rule on both databases (NFKC, case folded, hashed so that a
 *   binary comparison decides), replacing the index on `name`, which MySQL's collation compared accent-blind and
 *   SQLite compared byte for byte.
 */
export class RedTeam1764800000000 implements MigrationInterface {
  name = 'RedTeam1764800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('users', column(q, { name: 'must_change_password', type: 'smallint', default: 0 }));

    await q.addColumn('projects', column(q, { name: 'name_key', type: 'varchar', length: '64', isNullable: true }));
    const rows: Array<{ id: string; name: string }> = await q.query('SELECT id, name FROM projects ORDER BY id');
    const seen = new Set<string>();
    for (const r of rows) {
      const key = sha256(fold(r.name));
      // Names that differed under the old rule but fold alike both stay; only new clashes are refused from now on.
      const stored = seen.has(key) ? sha256(`${fold(r.name)}\u0000${r.id}`) : key;
      seen.add(key);
      await q.query('UPDATE projects SET name_key = ? WHERE id = ?', [stored, r.id]);
    }
    await q.changeColumn('projects', 'name_key', column(q, { name: 'name_key', type: 'varchar', length: '64', isNullable: false }));
    await q.dropIndex('projects', 'uq_projects_name');
    await q.createIndex('projects', new TableIndex({ name: 'uq_projects_name_key', columnNames: ['name_key'], isUnique: true }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropIndex('projects', 'uq_projects_name_key');
    await q.createIndex('projects', new TableIndex({ name: 'uq_projects_name', columnNames: ['name'], isUnique: true }));
    await q.dropColumn('projects', 'name_key');
    await q.dropColumn('users', 'must_change_password');
  }
}
