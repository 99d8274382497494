import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Express } from 'express';
import proxyaddr from 'proxy-addr';
import type { Container } from '../container';
import type { Actor } from '../modules/auth/actor';
import { REVEAL_HEADERS, revealAnswer } from '../modules/provider-keys/provider-keys.routes';
import { requestContext } from '../request-context';
import { logAccess } from './access-log';
import { resolveActor } from './authenticate';
import { answerError } from './error-handler';
import { API_BODY_LIMIT, API_HEADERS } from './api-headers';
import { jsonBody } from './json-body';
import { requestIdFor } from './request-id';
import { SECURITY_HEADERS } from './security-headers';

/** Only the plain form of the route: ids are UUID-shaped, so anything percent-encoded, cased or slashed differently is express's. */
const REVEAL = /^\/api\/v1\/provider-keys\/([0-9A-Za-z-]{1,64})\/reveal$/;
const REVEAL_ROUTE = '/api/v1/provider-keys/:id/reveal';

/**
 * The reveal's fast lane. Express costs about as much CPU per request as the whole reveal beside it (its
 * per-request prototype swaps, and some 25 router layers before this route), and the reveal is the vault's hot path.
 * So a `POST /api/v1/provider-keys/:id/reveal` carrying its credential in a header is served here, by the very same
 * parts in the very same order as express would run them: request id, security headers, access line, no-store,
 * the JSON body parser (body-parser works on a bare node request), authentication, the route's own function, and
 * the one error mapping. Anything else, including the same route with a cookie session (CSRF), is express's,
 * unchanged. tests/api/fast-lane.test.ts sends a corpus of requests down both lanes and compares every answer.
 */
export function withFastLane(app: Express, c: Container): RequestListener {
  const trust = app.get('trust proxy fn') as (addr: string, i: number) => boolean;
  const parseBody = jsonBody(API_BODY_LIMIT);
  const readBody = (req: IncomingMessage, res: ServerResponse) =>
    new Promise<unknown>((resolve, reject) => parseBody(req, res, (err) => (err ? reject(err) : resolve((req as { body?: unknown }).body))));

  const serve = async (req: IncomingMessage, res: ServerResponse, rawId: string, requestId: string) => {
    const started = process.hrtime.bigint();
    let route = '(unmatched)';
    let actor: Actor | undefined;
    res.on('finish', () => logAccess(c.logger, { method: req.method, route, status: res.statusCode, started, actorId: actor?.userId, requestId }));
    for (const [name, value] of API_HEADERS) res.setHeader(name, value);
    try {
      const body = await readBody(req, res);
      const ua = req.headers['user-agent'];
      actor = await resolveActor(c.auth, c.apiTokens, {
        headers: req.headers,
        cookie: undefined,
        method: req.method,
        client: { ip: proxyaddr(req, trust) ?? null, userAgent: ua ?? null, requestId },
      });
      route = REVEAL_ROUTE;
      for (const [name, value] of REVEAL_HEADERS) res.setHeader(name, value);
      send(res, 200, await revealAnswer(c.providerKeys, actor, rawId, body));
    } catch (err) {
      const answer = answerError(c.logger, err, requestId, req.method);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      for (const [name, value] of answer.headers) res.setHeader(name, value);
      send(res, answer.status, answer.body);
    }
  };

  return (req, res) => {
    const m = req.method === 'POST' && req.headers.cookie === undefined ? REVEAL.exec(req.url ?? '') : null;
    if (!m) {
      app(req, res);
      return;
    }
    const requestId = requestIdFor(req.headers['x-request-id']);
    res.setHeader('X-Request-Id', requestId);
    for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
    requestContext.run({ requestId }, () =>
      serve(req, res, m[1], requestId).catch((err: unknown) => {
        // Only a fault in writing the answer itself gets here; like express, drop the connection rather than guess.
        c.logger.error('request failed', { event: 'request.error', code: 'internal', errorName: (err as Error | undefined)?.name, method: req.method });
        res.destroy();
      }),
    );
  };
}

/** As express's res.json: the same bytes and the same Content-Type. */
function send(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}
