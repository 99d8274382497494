import { z } from 'zod';

/** `GET /metrics` takes no parameters: an unknown one is a 400, as on every other route. */
export const metricsQuery = z.strictObject({});
