import { Fragment, useSyncExternalStore, type HTMLAttributes, type ReactNode } from 'react';
import { useI18n } from '../i18n';

/** Below this width lists turn into cards: a table of eight columns cannot be read on a phone. */
export const NARROW = '(max-width: 600px)';

export function useMediaQuery(query: string): boolean {
  return useSyncExternalStore(
    (onChange) => {
      const m = window.matchMedia(query);
      m.addEventListener('change', onChange);
      return () => m.removeEventListener('change', onChange);
    },
    () => window.matchMedia(query).matches,
  );
}

export interface Column<T> {
  id: string;
  header: string;
  cell(row: T): ReactNode;
  /** Class of the table cell (num, nowrap) and of the card's value. */
  className?: string;
}

type RowAttrs = HTMLAttributes<HTMLElement> & Record<`data-${string}`, string | undefined>;

/**
 * A list of records: a table on wide screens, a column of cards on narrow ones, from one description. The first
 * column is the card's title; the actions stay visible at the bottom of each card. `extra` is an expanded detail.
 */
export function DataTable<T>({
  rows,
  columns,
  rowKey,
  rowAttrs,
  actions,
  extra,
  loading,
  empty,
  label,
  testId,
  className,
}: {
  rows: T[];
  columns: Array<Column<T> | false>;
  rowKey(row: T): string;
  rowAttrs?(row: T): RowAttrs;
  actions?(row: T): ReactNode;
  extra?(row: T): ReactNode;
  loading: boolean;
  empty: ReactNode;
  /** The list's accessible name (the page's heading, usually). */
  label: string;
  testId: string;
  className?: string;
}) {
  const { t } = useI18n();
  const narrow = useMediaQuery(NARROW);
  const cols = columns.filter((c): c is Column<T> => c !== false);
  const span = cols.length + (actions ? 1 : 0);

  if (narrow) {
    const [title, ...rest] = cols;
    return (
      <div className={`cards ${className ?? ''}`} data-testid={testId} aria-busy={loading} aria-label={label} role="region">
        {rows.length > 0 && (
          <ul className="card-list">
            {rows.map((row) => (
              <li key={rowKey(row)} className="card-item" {...rowAttrs?.(row)}>
                <div className="card-title">{title.cell(row)}</div>
                <dl className="card-fields">
                  {rest.map((c) => (
                    <div key={c.id} className="card-field">
                      <dt>{c.header}</dt>
                      <dd className={c.className}>{c.cell(row)}</dd>
                    </div>
                  ))}
                </dl>
                {actions && <div className="card-actions">{actions(row)}</div>}
                {extra?.(row)}
              </li>
            ))}
          </ul>
        )}
        {!loading && rows.length === 0 && <p className="empty">{empty}</p>}
      </div>
    );
  }

  return (
    <div className={`table-wrap ${className ?? ''}`}>
      <table className="table" data-testid={testId} aria-busy={loading} aria-label={label}>
        <thead>
          <tr>
            {cols.map((c) => (
              <th key={c.id} className={c.className?.includes('num') ? 'num' : undefined} scope="col">
                {c.header}
              </th>
            ))}
            {actions && (
              <th scope="col">
                <span className="sr-only">{t('common.actions')}</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => {
            const more = extra?.(row);
            return (
              <Fragment key={rowKey(row)}>
                <tr {...(rowAttrs?.(row) as HTMLAttributes<HTMLTableRowElement>)}>
                  {cols.map((c) => (
                    <td key={c.id} className={c.className}>
                      {c.cell(row)}
                    </td>
                  ))}
                  {actions && <td className="actions-cell">{actions(row)}</td>}
                </tr>
                {more && (
                  <tr className="details-row">
                    <td colSpan={span}>{more}</td>
                  </tr>
                )}
              </Fragment>
            );
          })}
          {!loading && rows.length === 0 && (
            <tr>
              <td colSpan={span} className="empty">
                {empty}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
