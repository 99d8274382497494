import { z } from 'zod';
import { isoDate, pageQuery, text, uuid } from '../../http/validate';
import { PROVIDER_NAMES } from './providers';

/** The secret's own rules (trim, empty, NUL, size) are applied by the service so they answer 400/413 precisely. */
const secret = z.string({ error: 'must be a string' });

export const createKeyBody = z.strictObject({
  ownerId: uuid,
  projectId: uuid,
  name: text(128, { min: 1 }),
  provider: z.enum(PROVIDER_NAMES, { error: `must be one of ${PROVIDER_NAMES.join(', ')}` }),
  secret,
  remark: text(1024, { multiline: true }).optional(),
  expiresAt: isoDate.nullable().optional(),
});

export const updateKeyBody = z.strictObject({
  name: text(128, { min: 1 }).optional(),
  remark: text(1024, { multiline: true }).nullable().optional(),
  status: z.enum(['active', 'disabled']).optional(),
  ownerId: uuid.optional(),
  projectId: uuid.optional(),
  expiresAt: isoDate.nullable().optional(),
});

export const replaceSecretBody = z.strictObject({ secret });

export const revealBody = z.strictObject({ reason: text(1024, { multiline: true }).optional() });

export const listKeysQuery = z.strictObject({
  projectId: uuid.optional(),
  ownerId: uuid.optional(),
  provider: z.enum(PROVIDER_NAMES).optional(),
  status: z.enum(['active', 'disabled', 'deleted']).optional(),
  q: z.string().trim().max(128).optional(),
  ...pageQuery,
});

export const keyAuditQuery = z.strictObject({ ...pageQuery });
