import { z } from 'zod';
import { isoDate, pageQuery, uuid } from '../../http/validate';
import { ROLES } from '../users/user.entity';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from './audit-event.entity';

const OUTCOME = `(${AUDIT_OUTCOMES.join('|')})`;

export const auditFilterQuery = {
  action: z.enum(AUDIT_ACTIONS).optional(),
  // One outcome, or several separated by commas ("denied,rate_limited").
  outcome: z.string().regex(new RegExp(`^${OUTCOME}(,${OUTCOME})*$`), `must be one or more of ${AUDIT_OUTCOMES.join(', ')}, separated by commas`).optional(),
  actorRole: z.enum(ROLES).optional(),
  // Events on a key by its owner (true) or by anyone else (false).
  byOwner: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
  actorId: uuid.optional(),
  keyId: uuid.optional(),
  projectId: uuid.optional(),
  from: isoDate.optional(),
  to: isoDate.optional(),
};

export const listAuditQuery = z.strictObject({ ...auditFilterQuery, ...pageQuery });

export const exportAuditQuery = z.strictObject({ ...auditFilterQuery, format: z.enum(['csv', 'ndjson']) });

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');
export const verifyAuditQuery = z
  .strictObject({
    headSeq: z.string().regex(/^\d{1,15}$/, 'must be a whole number').transform(Number).optional(),
    headHash: hex64.optional(),
  })
  .refine((q) => (q.headSeq === undefined) === (q.headHash === undefined), 'headSeq and headHash go together');
