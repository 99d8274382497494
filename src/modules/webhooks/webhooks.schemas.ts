import { z } from 'zod';
import { pageQuery } from '../../http/validate';
import { NOTIFICATION_EVENTS } from '../../notifications';
import { baseUrlProblem } from '../provider-keys/providers';

/** The rule of a key's baseUrl: https, or http to a loopback address; no credentials, query or fragment. */
const url = z
  .string({ error: 'must be a string' })
  .max(2048, 'must be at most 2048 characters')
  .superRefine((v, ctx) => {
    const problem = baseUrlProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

export const createWebhookBody = z.strictObject({
  url,
  events: z
    .array(z.enum(NOTIFICATION_EVENTS, { error: `must be one of ${NOTIFICATION_EVENTS.join(', ')}` }), { error: 'must be a list of event names' })
    .min(1, 'must name at least one event')
    .max(NOTIFICATION_EVENTS.length * 2),
  secret: z
    .string({ error: 'must be a string' })
    .min(16, 'must be at least 16 characters')
    .max(256, 'must be at most 256 characters')
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
    .optional(),
});

export const listWebhooksQuery = z.strictObject({ ...pageQuery });
