import { z } from 'zod';

export const hygieneQuery = z.strictObject({
  days: z
    .string()
    .regex(/^\d{1,4}$/, 'must be a whole number of days from 1 to 3650')
    .transform(Number)
    .refine((n) => n >= 1 && n <= 3650, 'must be a whole number of days from 1 to 3650')
    .optional(),
  format: z.enum(['json', 'csv'], { error: 'must be json or csv' }).optional(),
});
