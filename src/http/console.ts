import fs from 'node:fs';
import path from 'node:path';
import express, { type ErrorRequestHandler, Router } from 'express';
import { NotFoundError } from '../errors';

/** Where `npm run build` puts the web console (the same place from src/ under tests and from dist/src/). */
export const CONSOLE_DIR = path.resolve(__dirname, '..', '..', __dirname.includes(`${path.sep}dist${path.sep}`) ? '' : 'dist', 'web');

/** Serves the built console at `/`: hashed assets cached for good, index.html never stored, SPA routes fall back to it. */
export function consoleRoutes(dir = CONSOLE_DIR): Router {
  const r = Router();
  const index = path.join(dir, 'index.html');
  r.use('/assets', express.static(path.join(dir, 'assets'), { immutable: true, maxAge: '365d', index: false, fallthrough: false }), assetMiss);
  r.use(express.static(dir, { index: false, maxAge: 0, setHeaders: (res, file) => file.endsWith('.html') && res.setHeader('Cache-Control', 'no-store') }));
  r.get(/^\/(?!api\/|healthz$|readyz$).*/, (req, res, next) => {
    // Only page loads, which ask for text/html explicitly: API clients and probes without an Accept header keep the 404 envelope.
    if (!/\btext\/html\b/i.test(req.get('accept') ?? '') || !fs.existsSync(index)) return next();
    // no-store, not no-cache: it also keeps the page out of the back/forward cache, which would restore a signed-in
    // page (and a shown secret) after sign-out. The page itself blanks on pagehide for browsers that cache it anyway.
    res.setHeader('Cache-Control', 'no-store');
    res.sendFile(index);
  });
  return r;
}

/**
 * serve-static answers a missing asset (404) and a path it refuses, such as one climbing out with `..` (403), with an
 * error of its own; both are a plain miss, answered like every other unknown path (404 envelope, nothing logged).
 */
const assetMiss: ErrorRequestHandler = (err, _req, _res, next) => {
  const status = (err as { status?: number; statusCode?: number }).status ?? (err as { statusCode?: number }).statusCode;
  next(status === 404 || status === 403 ? new NotFoundError('No such asset') : err);
};
