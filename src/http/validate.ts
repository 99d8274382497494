import { z } from 'zod';
import { ValidationError } from '../errors';
import { isUuid } from '../ids';

/** Parses untrusted input against a zod schema, or throws ValidationError listing each problem (never the values). */
export function parse<S extends z.ZodType>(schema: S, input: unknown, where = 'body'): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const details = result.error.issues.slice(0, 20).map((i) => ({
    field: [where, ...i.path.map(String)].join('.'),
    message: i.message,
  }));
  throw new ValidationError(`Invalid ${where}: ${details[0].field}: ${details[0].message}`, { details });
}

export function parseId(value: unknown, name = 'id'): string {
  if (!isUuid(value)) throw new ValidationError(`${name} must be a UUID`, { details: [{ field: `path.${name}`, message: 'must be a UUID' }] });
  return value.toLowerCase();
}

export const uuid = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID')
  .transform((s) => s.toLowerCase())
  .describe('A UUID');

/** Reorders what a reader sees (U+202E turns "gpj.exe" into "exe.jpg"): refused in every free-text field. */
const BIDI_CONTROL = /\p{Bidi_Control}/u;
/** Renders as nothing: zero-width spaces and joiners, soft hyphen, word joiner, BOM, Hangul fillers, tags. */
const IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;
/** Joiners and emoji presentation selectors shape visible text (Persian, emoji): kept inside a name. */
const SHAPING = new Set(['\u200c', '\u200d', '\ufe0e', '\ufe0f']);
/** Spaces and invisible characters, bidi controls apart: those are refused wherever they are, never quietly dropped. */
const BLANK = '(?:(?!\\p{Bidi_Control})[\\p{White_Space}\\p{Default_Ignorable_Code_Point}\\u2800])';
const EDGES = new RegExp(`^${BLANK}+|${BLANK}+$`, 'gu');
const INVISIBLE = new RegExp(BLANK, 'gu');

/**
 * One rule for every piece of free text people send (names, display names, remarks, descriptions, reasons): NFC, so
 * one name has one stored form on both databases; trimmed of spaces and invisible characters at both ends; text made
 * only of invisible characters counts as empty (so "\u200B" is no reason); bidirectional controls are refused, and
 * in single-line names so is any other invisible character.
 */
export function cleanText(raw: string): string {
  const s = raw.normalize('NFC').replace(EDGES, '');
  return s.replace(INVISIBLE, '') === '' ? '' : s;
}

function hiddenIn(s: string): boolean {
  for (const m of s.matchAll(IGNORABLE)) if (!SHAPING.has(m[0]) && !BIDI_CONTROL.test(m[0])) return true;
  return false;
}

/** Free text from people: cleaned by cleanText, no control characters except line breaks and tabs in multi-line fields. */
export const text = (max: number, opts: { min?: number; multiline?: boolean } = {}) =>
  z
    .string()
    .overwrite(cleanText)
    .min(opts.min ?? 0, opts.min ? `must not be empty` : undefined)
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !(opts.multiline ? /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/ : /[\u0000-\u001f\u007f-\u009f]/).test(s), 'must not contain control characters')
    .refine((s) => !BIDI_CONTROL.test(s), 'must not contain bidirectional control characters')
    .refine((s) => opts.multiline || !hiddenIn(s), 'must not contain invisible characters');

export const isoDate = z
  .string()
  .max(40)
  .refine((s) => /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?$/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 date-time')
  .transform((s) => new Date(s))
  .describe('ISO-8601: a date (2026-01-31, midnight UTC) or a date-time with a zone (2026-01-31T08:00:00Z)');

export const pageQuery = {
  limit: z
    .string()
    .regex(/^\d{1,3}$/, 'must be a whole number from 1 to 200')
    .transform(Number)
    .refine((n) => n >= 1 && n <= 200, 'must be a whole number from 1 to 200')
    .describe('Page size, 1–200 (default 50)')
    .optional(),
  cursor: z.string().max(200).describe('The `nextCursor` of the previous page').optional(),
};
