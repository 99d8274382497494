import fs from 'node:fs';
import path from 'node:path';
import express, { Router } from 'express';

/** Where `npm run build` puts the web console (the same place from src/ under tests and from dist/src/). */
export const CONSOLE_DIR = path.resolve(__dirname, '..', '..', __dirname.includes(`${path.sep}dist${path.sep}`) ? '' : 'dist', 'web');

/** Serves the built console at `/`: hashed assets cached for good, index.html never cached, SPA routes fall back to it. */
export function consoleRoutes(dir = CONSOLE_DIR): Router {
  const r = Router();
  const index = path.join(dir, 'index.html');
  r.use('/assets', express.static(path.join(dir, 'assets'), { immutable: true, maxAge: '365d', index: false, fallthrough: false }));
  r.use(express.static(dir, { index: false, maxAge: 0 }));
  r.get(/^\/(?!api\/|healthz$|readyz$).*/, (req, res, next) => {
    // Only page loads, which ask for text/html explicitly: API clients and probes without an Accept header keep the 404 envelope.
    if (!/\btext\/html\b/i.test(req.get('accept') ?? '') || !fs.existsSync(index)) return next();
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(index);
  });
  return r;
}
