import { z } from 'zod';
import { isoDate, pageQuery, text } from '../../http/validate';

const days = z.number({ error: 'must be a whole number of days from 1 to 365' }).int('must be a whole number of days from 1 to 365').min(1, 'must be at least 1').max(365, 'must be at most 365');
const limit = (max: number) => z.number({ error: `must be a whole number from 1 to ${max}` }).int(`must be a whole number from 1 to ${max}`).min(1, 'must be at least 1').max(max, `must be at most ${max}`);

export const createVirtualKeyBody = z.strictObject({
  name: text(128, { min: 1 }),
  expiresInDays: days.optional(),
  models: z.array(text(128, { min: 1 })).min(1, 'must name at least one model (leave it out for any model)').max(64, 'must name at most 64 models').optional(),
  dailyRequestLimit: limit(1_000_000_000).optional(),
  dailyTokenLimit: limit(1_000_000_000_000).optional(),
  reason: text(1024, { multiline: true }).optional(),
});

export const listVirtualKeysQuery = z.strictObject({ ...pageQuery });

export const usageQuery = z.strictObject({
  from: isoDate.optional(),
  to: isoDate.optional(),
  granularity: z.enum(['hour', 'day'], { error: 'must be hour or day' }).optional(),
});
