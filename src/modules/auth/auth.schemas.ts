import { z } from 'zod';
import { password } from '../users/users.schemas';

export const loginBody = z.strictObject({
  username: z.string().min(1, 'must not be empty').max(128),
  password: z.string().min(1, 'must not be empty').max(1024),
  /** The web console asks for an HttpOnly cookie instead of a token in the body. */
  cookie: z.boolean().optional(),
});

export const changePasswordBody = z
  .strictObject({
    currentPassword: z.string().min(1).max(1024),
    newPassword: password,
  })
  // Keeping a password someone else set would keep it known to them (and clear the flag that says so).
  .refine((b) => b.newPassword !== b.currentPassword, { path: ['newPassword'], message: 'must differ from the current password' });
