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

export const uuid = z.string().regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a UUID').transform((s) => s.toLowerCase());

/** Free text from people: no control characters except in multi-line fields. */
export const text = (max: number, opts: { min?: number; multiline?: boolean } = {}) =>
  z
    .string()
    .trim()
    .min(opts.min ?? 0, opts.min ? `must not be empty` : undefined)
    .max(max, `must be at most ${max} characters`)
    .refine((s) => !(opts.multiline ? /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/ : /[\u0000-\u001f\u007f]/).test(s), 'must not contain control characters');

export const isoDate = z
  .string()
  .max(40)
  .refine((s) => /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?$/.test(s) && !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 date-time')
  .transform((s) => new Date(s));

export const pageQuery = {
  limit: z
    .string()
    .regex(/^\d{1,3}$/, 'must be a whole number from 1 to 200')
    .transform(Number)
    .refine((n) => n >= 1 && n <= 200, 'must be a whole number from 1 to 200')
    .optional(),
  cursor: z.string().max(200).optional(),
};
