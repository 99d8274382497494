import { useEffect, useRef } from 'react';
import { useLocation } from './router';
import { useI18n } from './i18n';

/** The tab title names the page, never any data (a secret must never reach the title or history). */
export function useTitle(page: string): void {
  const { t } = useI18n();
  useEffect(() => {
    document.title = `${page} · ${t('app.short')}`;
  }, [page, t]);
}

/** `?new=1` (a link of the setup path) opens the page's "add" dialog once, for those allowed to add. */
export function useOpenFromQuery(allowed: boolean, open: () => void): void {
  const { path, query } = useLocation();
  const wanted = allowed && query.get('new') === '1';
  const openRef = useRef(open);
  openRef.current = open;
  useEffect(() => {
    if (!wanted) return;
    openRef.current();
    window.history.replaceState(null, '', path);
  }, [wanted, path]);
}
