import { z } from 'zod';
import { password } from '../users/users.schemas';

export const loginBody = z.strictObject({
  username: z.string().min(1, 'must not be empty').max(128),
  password: z.string().min(1, 'must not be empty').max(1024),
});

export const changePasswordBody = z.strictObject({
  currentPassword: z.string().min(1).max(1024),
  newPassword: password,
});
