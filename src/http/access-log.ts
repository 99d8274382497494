import type { RequestHandler } from 'express';
import type { Logger } from '../logger';

export interface AccessLine {
  method: string | undefined;
  route: string;
  status: number;
  /** process.hrtime.bigint() when the request arrived. */
  started: bigint;
  actorId: string | undefined;
  requestId: string | undefined;
}

/** One line per request: method, route pattern, status, duration, actor. Never headers, bodies or raw URLs. */
export function logAccess(logger: Logger, line: AccessLine): void {
  logger.info('request', {
    event: 'http.access',
    method: line.method,
    route: line.route,
    status: line.status,
    durationMs: Number((process.hrtime.bigint() - line.started) / 1000n) / 1000,
    actorId: line.actorId,
    requestId: line.requestId,
  });
}

export function accessLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const base = typeof res.locals.routeBase === 'string' ? res.locals.routeBase : req.baseUrl;
      const route = req.route?.path ? `${base}${req.route.path === '/' ? '' : req.route.path}` || '/' : '(unmatched)';
      logAccess(logger, { method: req.method, route, status: res.statusCode, started, actorId: res.locals.actor?.userId, requestId: res.locals.requestId });
    });
    next();
  };
}

/** Remembers where a router is mounted: an error unwinds the routers, resetting req.baseUrl before the line is written. */
export const routeBase: RequestHandler = (req, res, next) => {
  res.locals.routeBase = req.baseUrl;
  next();
};
