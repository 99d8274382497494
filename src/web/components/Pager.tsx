import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { PageOf } from '../api';
import { useI18n } from '../i18n';

export const PAGE_SIZES = [25, 50, 100];

/**
 * Keyset paging over the API's `{items, nextCursor}` lists: a stack of cursors so "previous" works.
 * `key` identifies the filters: when it changes the list goes back to its first page.
 */
export function usePaged<T>(load: (cursor: string | null, limit: number) => Promise<PageOf<T>>, key: string, initialLimit = 25) {
  const [limit, setLimitState] = useState(initialLimit);
  const [nav, setNav] = useState<{ key: string; stack: Array<string | null> }>({ key, stack: [null] });
  const [data, setData] = useState<PageOf<T> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  const navKey = `${key}|${limit}`;
  // Forget the old filters' pages at once: otherwise going back to earlier filters would reopen their old page.
  if (nav.key !== navKey) setNav({ key: navKey, stack: [null] });
  const stack = useMemo(() => (nav.key === navKey ? nav.stack : [null]), [nav, navKey]);
  const cursor = stack[stack.length - 1];

  // What the data on screen was loaded for: until it matches the page asked for, the list is loading (no render shows
  // the old page's rows as if they were the new one's).
  const wanted = `${navKey}|${cursor ?? ''}|${tick}`;
  const [loadedFor, setLoadedFor] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    setLoading(true);
    loadRef
      .current(cursor, limit)
      .then((d) => {
        if (!live) return;
        setData(d);
        setError(null);
      })
      .catch((e: unknown) => {
        if (live) setError(e);
      })
      .finally(() => {
        if (!live) return;
        setLoading(false);
        setLoadedFor(wanted);
      });
    return () => {
      live = false;
    };
  }, [navKey, cursor, limit, tick, wanted]);
  const busy = loading || loadedFor !== wanted;

  const next = useCallback(() => {
    if (data?.nextCursor) setNav({ key: navKey, stack: [...stack, data.nextCursor] });
  }, [data, navKey, stack]);
  const prev = useCallback(() => {
    if (stack.length > 1) setNav({ key: navKey, stack: stack.slice(0, -1) });
  }, [navKey, stack]);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  const setLimit = useCallback((n: number) => setLimitState(n), []);

  return { items: data?.items ?? [], loading: busy, error, page: stack.length, hasNext: !!data?.nextCursor, hasPrev: stack.length > 1, next, prev, reload, limit, setLimit };
}

export interface PagerState {
  page: number;
  hasNext: boolean;
  hasPrev: boolean;
  next(): void;
  prev(): void;
  limit: number;
  setLimit(n: number): void;
  loading: boolean;
}

export function Pager({ pager }: { pager: PagerState }) {
  const { t } = useI18n();
  return (
    <nav className="pager" aria-label="pagination">
      <button type="button" onClick={pager.prev} disabled={!pager.hasPrev || pager.loading}>
        ← {t('pager.prev')}
      </button>
      <span className="pager-page" data-testid="pager-page">
        {t('pager.page', { n: pager.page })}
      </span>
      <button type="button" onClick={pager.next} disabled={!pager.hasNext || pager.loading} data-testid="pager-next">
        {t('pager.next')} →
      </button>
      <label className="pager-size">
        {t('pager.perPage')}
        <select value={pager.limit} onChange={(e) => pager.setLimit(Number(e.target.value))}>
          {PAGE_SIZES.map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </label>
    </nav>
  );
}
