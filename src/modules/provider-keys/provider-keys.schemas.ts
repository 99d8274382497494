import { z } from 'zod';
import { cleanText, isoDate, pageQuery, text, uuid } from '../../http/validate';
import { baseUrlProblem, normalizeBaseUrl, PROVIDER_NAMES } from './providers';
import { HEALTH_STATUSES } from './provider-key.entity';

/** The secret's own rules (trim, empty, NUL, size) are applied by the service so they answer 400/413 precisely. */
const secret = z.string({ error: 'must be a string' });

/** Where the gateway sends the key's calls (null: the provider's default). */
const baseUrl = z
  .string({ error: 'must be a string' })
  .max(2048, 'must be at most 2048 characters')
  .superRefine((v, ctx) => {
    const problem = baseUrlProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .transform(normalizeBaseUrl);

/** The opt-in probe of a provider without a free check: a model to ask for one completion token. */
const healthProbe = z.strictObject({ model: z.string({ error: 'must be a string' }).min(1, 'must not be empty').max(128, 'must be at most 128 characters').regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces') });

export const createKeyBody = z.strictObject({
  ownerId: uuid,
  projectId: uuid,
  name: text(128, { min: 1 }),
  provider: z.enum(PROVIDER_NAMES, { error: `must be one of ${PROVIDER_NAMES.join(', ')}` }),
  secret,
  remark: text(1024, { multiline: true }).optional(),
  expiresAt: isoDate.nullable().optional(),
  baseUrl: baseUrl.nullable().optional(),
  healthProbe: healthProbe.nullable().optional(),
});

export const updateKeyBody = z.strictObject({
  name: text(128, { min: 1 }).optional(),
  remark: text(1024, { multiline: true }).nullable().optional(),
  status: z.enum(['active', 'disabled']).optional(),
  ownerId: uuid.optional(),
  projectId: uuid.optional(),
  expiresAt: isoDate.nullable().optional(),
  baseUrl: baseUrl.nullable().optional(),
  healthProbe: healthProbe.nullable().optional(),
  /** Why: required when the owner or baseUrl changes on a key the caller does not own (recorded in the audit row). */
  reason: text(1024, { multiline: true }).optional(),
});

export const replaceSecretBody = z.strictObject({ secret });

export const revealBody = z.strictObject({ reason: text(1024, { multiline: true }).optional() });

export const listKeysQuery = z.strictObject({
  projectId: uuid.optional(),
  ownerId: uuid.optional(),
  provider: z.enum(PROVIDER_NAMES).optional(),
  status: z.enum(['active', 'disabled', 'deleted']).optional(),
  health: z.enum(HEALTH_STATUSES, { error: `must be one of ${HEALTH_STATUSES.join(', ')}` }).optional(),
  q: z.string().overwrite(cleanText).max(128).optional(),
  ...pageQuery,
});

export const keyAuditQuery = z.strictObject({ ...pageQuery });
