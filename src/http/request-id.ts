import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import { requestContext } from '../request-context';

const SAFE_ID = /^[A-Za-z0-9._:-]{8,64}$/;

/** Every response carries X-Request-Id; a well-formed incoming one is kept so traces join up across proxies. */
export const requestId: RequestHandler = (req, res, next) => {
  const incoming = req.get('x-request-id');
  const id = incoming && SAFE_ID.test(incoming) ? incoming : crypto.randomUUID();
  res.locals.requestId = id;
  res.setHeader('X-Request-Id', id);
  requestContext.run({ requestId: id }, next);
};
