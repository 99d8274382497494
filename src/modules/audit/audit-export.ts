import { stringify } from 'csv-stringify/sync';
import type { AuditEvent } from './audit.service';

export const EXPORT_COLUMNS = [
  'id', 'seq', 'at', 'action', 'outcome', 'actorId', 'actorUsername', 'actorRole', 'via', 'apiTokenId',
  'keyId', 'projectId', 'ownerId', 'ip', 'userAgent', 'requestId', 'reason', 'detail',
] as const;

/** A cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP CSV injection guidance). */
export function neutraliseFormula(value: string): string {
  return /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  return neutraliseFormula(typeof v === 'string' ? v : JSON.stringify(v));
}

export function csvHeader(): string {
  return stringify([EXPORT_COLUMNS as unknown as string[]], { record_delimiter: 'windows' });
}

/** RFC 4180 quoting (commas, quotes, newlines) by csv-stringify; formula guard on every text cell. */
export function csvRows(events: AuditEvent[]): string {
  return stringify(
    events.map((e) => EXPORT_COLUMNS.map((c) => cell(e[c]))),
    { record_delimiter: 'windows', quoted_match: /[\r\n,"]/ },
  );
}

export function ndjsonRows(events: AuditEvent[]): string {
  return events.map((e) => JSON.stringify(e)).join('\n') + (events.length ? '\n' : '');
}
