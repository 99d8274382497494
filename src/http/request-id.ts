import crypto from 'node:crypto';
import type { RequestHandler } from 'express';
import { requestContext } from '../request-context';

const SAFE_ID = /^[A-Za-z0-9._:-]{8,64}$/;

/** A well-formed incoming X-Request-Id is kept so traces join up across proxies; anything else gets a fresh one. */
export function requestIdFor(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && SAFE_ID.test(incoming) ? incoming : crypto.randomUUID();
}

/** Every response carries X-Request-Id, and every log line written while serving the request names it. */
export const requestId: RequestHandler = (req, res, next) => {
  const id = requestIdFor(req.headers['x-request-id']);
  res.locals.requestId = id;
  res.setHeader('X-Request-Id', id);
  requestContext.run({ requestId: id }, next);
};
