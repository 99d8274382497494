import type { RequestHandler } from 'express';

/** The largest JSON body the API reads. */
export const API_BODY_LIMIT = '64kb';

/** On every /api/v1 answer, body-parser refusals (400, 413) included: API answers are never cached. */
export const apiHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader('Cache-Control', 'no-store');
  next();
};
