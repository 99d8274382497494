/** Pure formatting shared by both languages (no React, no DOM): unit-tested in tests/unit/web-format.test.ts. */

const fields: Intl.DateTimeFormatOptions = { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'shortOffset' };
const readers = new Map<string, Intl.DateTimeFormat>();

function partsOf(iso: string, timeZone?: string): Record<string, string> {
  const id = timeZone ?? '';
  let f = readers.get(id);
  if (!f) readers.set(id, (f = new Intl.DateTimeFormat('en-US', { ...fields, ...(timeZone ? { timeZone } : {}) })));
  const out: Record<string, string> = {};
  for (const p of f.formatToParts(new Date(iso))) out[p.type] = p.value;
  return out;
}

/** "GMT+8" → "UTC+8", "GMT" or "GMT+0" → "UTC", "GMT+5:30" → "UTC+5:30" (browsers and ICU versions differ). */
function utcName(gmt: string | undefined): string {
  const m = /^(?:GMT|UTC)(?:([+-])(\d{1,2})(?::?(\d\d))?)?$/.exec(gmt ?? 'GMT');
  if (!m) return gmt ?? 'UTC';
  const [, sign, hours, minutes] = m;
  if (!sign || (Number(hours) === 0 && !Number(minutes ?? 0))) return 'UTC';
  return `UTC${sign}${Number(hours)}${minutes && minutes !== '00' ? `:${minutes}` : ''}`;
}

/** `2026-12-04 20:25:59 UTC+8`: unambiguous, sortable, the same in every language; the reader's zone by default. */
export function formatDateTime(iso: string, timeZone?: string): string {
  const p = partsOf(iso, timeZone);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${utcName(p.timeZoneName)}`;
}

export function formatDate(iso: string, timeZone?: string): string {
  const p = partsOf(iso, timeZone);
  return `${p.year}-${p.month}-${p.day}`;
}

/** The offset from UTC at that moment (now by default), as `UTC+8`: the label of a local-time input. */
export function zoneOf(iso?: string | null, timeZone?: string): string {
  return utcName(partsOf(iso ?? new Date().toISOString(), timeZone).timeZoneName);
}

/** The message key of the plural form for `n` (`<key>.one`, `<key>.other`, …), falling back to `.other`. */
export function pluralForm<K extends string>(dict: Record<K, string>, rules: Intl.PluralRules, key: string, n: number): K {
  const form = `${key}.${rules.select(n)}`;
  return (form in dict ? form : `${key}.other`) as K;
}
