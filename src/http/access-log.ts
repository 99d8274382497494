import type { RequestHandler } from 'express';
import type { Logger } from '../logger';

/** One line per request: method, route pattern, status, duration, actor. Never headers, bodies or raw URLs. */
export function accessLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const base = typeof res.locals.routeBase === 'string' ? res.locals.routeBase : req.baseUrl;
      const route = req.route?.path ? `${base}${req.route.path === '/' ? '' : req.route.path}` || '/' : '(unmatched)';
      logger.info('request', {
        event: 'http.access',
        method: req.method,
        route,
        status: res.statusCode,
        durationMs: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
        actorId: res.locals.actor?.userId,
        requestId: res.locals.requestId,
      });
    });
    next();
  };
}

/** Remembers where a router is mounted: an error unwinds the routers, resetting req.baseUrl before the line is written. */
export const routeBase: RequestHandler = (req, res, next) => {
  res.locals.routeBase = req.baseUrl;
  next();
};
