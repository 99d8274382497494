import { stringify } from 'csv-stringify/sync';

export const EXPORT_COLUMNS = [
  'id', 'seq', 'at', 'action', 'outcome', 'actorId', 'actorUsername', 'actorRole', 'via', 'apiTokenId',
  'keyId', 'keyName', 'projectId', 'projectName', 'ownerId', 'ownerUsername', 'ip', 'userAgent', 'requestId', 'reason', 'detail',
] as const;
/** What an export needs of an audit event: its columns (the service's ExportedEvent has them). */
export type ExportRow = Record<(typeof EXPORT_COLUMNS)[number], unknown>;

/**
 * Spreadsheets run a field that starts with = + - @ (or their full-width forms) as a formula, and a field starts
 * wherever the reader's separator falls: at the cell's start, but also after a ; | tab or space inside it when the
 * file is opened with another separator than ours. So every trigger at the start of a cell or after whitespace, a
 * separator or a quote gets an apostrophe before it, and a cell starting with tab or CR gets one in front (OWASP CSV
 * injection guidance). NDJSON keeps the exact text.
 */
const TRIGGER_AT_FIELD_START = /(^|[\s,;|"])([=+\-@\uff1d\uff0b\uff0d\uff20])/g;

export function neutraliseFormula(value: string): string {
  const guarded = value.replace(TRIGGER_AT_FIELD_START, "$1'$2");
  return /^[\t\r]/.test(guarded) ? `'${guarded}` : guarded;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  return neutraliseFormula(typeof v === 'string' ? v : JSON.stringify(v));
}

export function csvHeader(): string {
  return stringify([EXPORT_COLUMNS as unknown as string[]], { record_delimiter: 'windows' });
}

/** RFC 4180 quoting by csv-stringify (and of cells holding other common separators); formula guard on every text cell. */
export function csvRows(events: ExportRow[]): string {
  return stringify(
    events.map((e) => EXPORT_COLUMNS.map((c) => cell(e[c]))),
    { record_delimiter: 'windows', quoted_match: /[\r\n,";|\t]/ },
  );
}

/**
 * Byte order mark at the head of every CSV export (audit, hygiene): Excel reads a CSV file without one in the machine's
 * legacy code page, garbling Chinese names.
 */
export const UTF8_BOM = '\ufeff';

/** Any table as CSV, quoted and formula-guarded exactly like the audit export (the hygiene report uses it). */
export function csvTable<T extends object>(columns: ReadonlyArray<keyof T & string>, rows: readonly T[]): string {
  return stringify([[...columns], ...rows.map((r) => columns.map((c) => cell(r[c])))], { record_delimiter: 'windows', quoted_match: /[\r\n,";|\t]/ });
}

export function ndjsonRows(events: ExportRow[]): string {
  return events.map((e) => JSON.stringify(e)).join('\n') + (events.length ? '\n' : '');
}
