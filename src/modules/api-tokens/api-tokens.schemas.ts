import { z } from 'zod';
import { pageQuery, text, uuid } from '../../http/validate';
import { SCOPES } from '../auth/actor';

const days = z.number({ error: 'must be a whole number of days from 1 to 365' }).int('must be a whole number of days from 1 to 365').min(1, 'must be at least 1').max(365, 'must be at most 365');

export const createTokenBody = z.strictObject({
  name: text(128, { min: 1 }),
  scopes: z.array(z.enum(SCOPES, { error: `must be one of ${SCOPES.join(', ')}` })).min(1, 'must name at least one scope').max(SCOPES.length),
  expiresInDays: days.optional(),
  userId: uuid.optional(),
});

export const renewTokenBody = z.strictObject({ expiresInDays: days.optional() });

export const updateTokenBody = z.strictObject({ name: text(128, { min: 1 }) });

export const listTokensQuery = z.strictObject({ userId: uuid.optional(), ...pageQuery });
