import { useEffect } from 'react';
import { useI18n } from './i18n';

/** The tab title names the page, never any data (a secret must never reach the title or history). */
export function useTitle(page: string): void {
  const { t } = useI18n();
  useEffect(() => {
    document.title = `${page} · ${t('app.short')}`;
  }, [page, t]);
}
