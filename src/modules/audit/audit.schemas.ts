import { z } from 'zod';
import { isoDate, pageQuery, uuid } from '../../http/validate';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from './audit-event.entity';

export const auditFilterQuery = {
  action: z.enum(AUDIT_ACTIONS).optional(),
  outcome: z.enum(AUDIT_OUTCOMES).optional(),
  actorId: uuid.optional(),
  keyId: uuid.optional(),
  projectId: uuid.optional(),
  from: isoDate.optional(),
  to: isoDate.optional(),
};

export const listAuditQuery = z.strictObject({ ...auditFilterQuery, ...pageQuery });
