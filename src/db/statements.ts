import type { EntityManager } from 'typeorm';

/** One SQL statement with its bound values (`?` placeholders only: never a value spliced into the text). */
export interface Statement {
  sql: string;
  params: unknown[];
}

export type Row = Record<string, unknown>;

/**
 * MySQL: rows of bound values as a derived table (`SELECT ? AS a, ? AS b UNION ALL SELECT ?, ?…`), for an UPDATE
 * joined to it on the primary key: one index lookup per row, where a CASE by id walks every arm for every row
 * (n² comparisons per batch). SQLite caps a compound SELECT at 500 terms, so it keeps its CASE.
 */
export function derivedTable(columns: string[], rows: unknown[][]): Statement {
  const first = `SELECT ${columns.map((c) => `? AS ${c}`).join(', ')}`;
  const rest = `SELECT ${columns.map(() => '?').join(', ')}`;
  return { sql: rows.map((_, i) => (i === 0 ? first : rest)).join(' UNION ALL '), params: rows.flat() };
}

/**
 * Runs a write statement in the transaction and returns how many rows it matched. A plain tx.query() cannot tell:
 * TypeORM's better-sqlite3 runner answers it with the last insert rowid, not the count.
 */
export async function execute(tx: EntityManager, sql: string, params: unknown[]): Promise<number | undefined> {
  if (!tx.queryRunner) throw new Error('execute() needs a transactional entity manager');
  const result = await tx.queryRunner.query(sql, params, true);
  return typeof result.affected === 'number' ? result.affected : undefined;
}

export const isMySQL = (m: EntityManager): boolean => m.connection.options.type === 'mysql';
