import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { en, type MessageKey } from './en';
import { zh } from './zh';
import { formatDate, formatDateTime, pluralForm, zoneOf } from './format';

export type Lang = 'en' | 'zh';
export type { MessageKey };
export type T = (key: MessageKey, params?: Record<string, string | number>) => string;

const DICTS: Record<Lang, Record<MessageKey, string>> = { en, zh };
/** Only the language choice is remembered in localStorage; nothing else the console handles ever is. */
const STORAGE_KEY = 'pkv.lang';

function initialLang(): Lang {
  try {
    const saved = window.localStorage.getItem(STORAGE_KEY);
    if (saved === 'en' || saved === 'zh') return saved;
  } catch {
    // storage disabled: fall through to the browser's preference
  }
  return (navigator.languages ?? [navigator.language]).some((l) => /^zh\b/i.test(l)) ? 'zh' : 'en';
}

export function translate(lang: Lang, key: MessageKey, params?: Record<string, string | number>): string {
  const template = DICTS[lang][key] ?? en[key] ?? key;
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m));
}

/** Keys with plural forms (`<base>.one`, `<base>.other`), chosen by Intl.PluralRules for the count. */
type PluralKey = MessageKey extends infer K ? (K extends `${infer B}.other` ? B : never) : never;

interface I18n {
  lang: Lang;
  setLang(lang: Lang): void;
  t: T;
  /** `tn('audit.unsealed', 1, …)`: the form for the count ("1 newer event is…", "2 newer events are…"); `{n}` is the count. */
  tn(key: PluralKey, n: number, params?: Record<string, string | number>): string;
  /** `2026-12-04 20:25:59 UTC+8`: the reader's time zone, named, the same in every language. */
  dateTime(iso: string | null | undefined): string;
  date(iso: string | null | undefined): string;
  /** The reader's offset from UTC at that moment (now by default), as `UTC+8`, for labels of local-time inputs. */
  zone(iso?: string | null): string;
  number(n: number): string;
}

const Ctx = createContext<I18n | null>(null);

export function I18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(initialLang);
  const setLang = useCallback((l: Lang) => {
    setLangState(l);
    try {
      window.localStorage.setItem(STORAGE_KEY, l);
    } catch {
      // not remembered; still switched
    }
  }, []);
  useEffect(() => {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  }, [lang]);
  const value = useMemo<I18n>(() => {
    const locale = lang === 'zh' ? 'zh-CN' : 'en-GB';
    const nf = new Intl.NumberFormat(locale);
    const plural = new Intl.PluralRules(locale);
    return {
      lang,
      setLang,
      t: (key, params) => translate(lang, key, params),
      tn: (key, n, params) => translate(lang, pluralForm(DICTS[lang], plural, key, n), { n: nf.format(n), ...params }),
      dateTime: (iso) => (iso ? formatDateTime(iso) : ''),
      date: (iso) => (iso ? formatDate(iso) : ''),
      zone: (iso) => zoneOf(iso),
      number: (n) => nf.format(n),
    };
  }, [lang, setLang]);
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useI18n(): I18n {
  const v = useContext(Ctx);
  if (!v) throw new Error('useI18n outside I18nProvider');
  return v;
}

export function LanguageSwitch() {
  const { lang, setLang, t } = useI18n();
  return (
    <label className="lang-switch">
      <span className="sr-only">{t('lang.label')}</span>
      <select value={lang} onChange={(e) => setLang(e.target.value as Lang)} aria-label={t('lang.label')} data-testid="lang-switch">
        <option value="zh">简体中文</option>
        <option value="en">English</option>
      </select>
    </label>
  );
}
