import helmet from 'helmet';
import type { RequestHandler } from 'express';

/** helmet with the console's strict policy: no inline script or style, nothing from elsewhere (the console ships every byte itself). */
export const securityHeadersMiddleware = helmet({
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      'default-src': ["'self'"],
      'script-src': ["'self'"],
      'style-src': ["'self'"],
      'img-src': ["'self'", 'data:'],
      'font-src': ["'self'"],
      'connect-src': ["'self'"],
      'object-src': ["'none'"],
      'base-uri': ["'none'"],
      'form-action': ["'self'"],
      'frame-ancestors': ["'none'"],
    },
  },
  frameguard: { action: 'deny' },
});

/**
 * What helmet sets, captured once: with a fixed policy (no nonces) its headers are the same on every response, and
 * setting them from this list costs one loop instead of helmet's dozen middlewares per request. A test compares the
 * list with a live helmet response.
 */
export const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = (() => {
  const set = new Map<string, string>();
  const res = {
    setHeader: (name: string, value: unknown) => set.set(name, String(value)),
    removeHeader: (name: string) => set.delete(name),
    getHeader: () => undefined,
    locals: {},
  };
  let called = false;
  (securityHeadersMiddleware as unknown as (req: unknown, res: unknown, next: (err?: unknown) => void) => void)({ headers: {}, method: 'GET' }, res, (err) => {
    if (err) throw err;
    called = true;
  });
  if (!called || set.size === 0) throw new Error('helmet did not set its headers synchronously');
  return [...set].map(([name, value]) => [name, value] as const);
})();

export const securityHeaders: RequestHandler = (_req, res, next) => {
  for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
  // helmet's removal of X-Powered-By is covered by app.disable('x-powered-by').
  next();
};
