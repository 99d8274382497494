import { z } from 'zod';
import { pageQuery, text } from '../../http/validate';
import { ROLES, USER_STATUSES } from './user.entity';

export const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$/;

export const username = z
  .string()
  .regex(USERNAME, 'must be 3–64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit');

export const password = z
  .string()
  .min(12, 'must be at least 12 characters')
  .max(1024, 'must be at most 1024 characters')
  .refine((s) => !s.includes('\u0000'), 'must not contain NUL');

export const createUserBody = z.strictObject({
  username,
  password: password.optional(),
  role: z.enum(ROLES),
  displayName: text(128).optional(),
});

export const updateUserBody = z.strictObject({
  displayName: text(128).nullable().optional(),
  role: z.enum(ROLES).optional(),
  status: z.enum(USER_STATUSES).optional(),
  password: password.optional(),
});

export const listUsersQuery = z.strictObject({
  role: z.enum(ROLES).optional(),
  status: z.enum(USER_STATUSES).optional(),
  ...pageQuery,
});
