import { ValidationError } from './errors';
import { isUuid } from './ids';

export interface Page {
  limit: number;
  /** Exclusive upper bound on id (ids are UUIDv7, so id order is creation order). */
  before?: string;
}

export interface PageResult<T> {
  items: T[];
  nextCursor: string | null;
}

export function toPage(q: { limit?: number; cursor?: string }): Page {
  if (q.cursor === undefined) return { limit: q.limit ?? 50 };
  const id = Buffer.from(q.cursor, 'base64url').toString('utf8');
  if (!isUuid(id)) throw new ValidationError('cursor is not valid', { details: [{ field: 'query.cursor', message: 'not a cursor this API issued' }] });
  return { limit: q.limit ?? 50, before: id };
}

/** Callers fetch limit+1 rows; the extra one only says whether there is a next page. */
export function toPageResult<R extends { id: string }, T>(rows: R[], page: Page, map: (r: R) => T): PageResult<T> {
  const more = rows.length > page.limit;
  const items = more ? rows.slice(0, page.limit) : rows;
  return { items: items.map(map), nextCursor: more ? Buffer.from(items[items.length - 1].id, 'utf8').toString('base64url') : null };
}
