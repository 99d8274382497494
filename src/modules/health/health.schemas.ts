import { z } from 'zod';
import { pageQuery } from '../../http/validate';

export const healthHistoryQuery = z.strictObject({ ...pageQuery });
