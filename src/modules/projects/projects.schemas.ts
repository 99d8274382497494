import { z } from 'zod';
import { pageQuery, text } from '../../http/validate';

export const createProjectBody = z.strictObject({
  name: text(128, { min: 1 }),
  description: text(1024, { multiline: true }).optional(),
});

export const updateProjectBody = z.strictObject({
  name: text(128, { min: 1 }).optional(),
  description: text(1024, { multiline: true }).nullable().optional(),
});

export const listProjectsQuery = z.strictObject({ ...pageQuery });
