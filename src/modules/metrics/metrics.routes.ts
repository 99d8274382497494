import type { RequestListener } from 'node:http';
import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { parse } from '../../http/validate';
import type { Metrics } from './metrics';
import { metricsQuery } from './metrics.schemas';

/** Mounted at /metrics behind authentication: the scrape for credentials with the metrics:read right. */
export function metricsRoutes(metrics: Metrics): Router {
  const r = Router();

  r.get('/', async (req, res) => {
    parse(metricsQuery, req.query, 'query');
    const text = await metrics.scrapeFor(actorOf(res));
    res.setHeader('Content-Type', metrics.contentType);
    res.send(text);
  });

  return r;
}

/**
 * The separate metrics listener (PKV_METRICS_HOST/PKV_METRICS_PORT): `GET /metrics` and nothing else, without
 * credentials. Who can reach that address can read the figures, so it binds 127.0.0.1 unless configured otherwise.
 */
export function metricsListener(metrics: Metrics): RequestListener {
  return (req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not found: the metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8', Allow: 'GET, HEAD' }).end('Method not allowed\n');
      return;
    }
    metrics.scrape().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': metrics.contentType, 'Content-Length': Buffer.byteLength(text) });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      () => res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('The metrics could not be collected\n'),
    );
  };
}
