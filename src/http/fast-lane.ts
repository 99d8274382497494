import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Express } from 'express';
import parseurl from 'parseurl';
import proxyaddr from 'proxy-addr';
import type { Container } from '../container';
import type { Actor } from '../modules/auth/actor';
import { listAnswer, REVEAL_HEADERS, revealAnswer } from '../modules/provider-keys/provider-keys.routes';
import { requestContext } from '../request-context';
import { logAccess } from './access-log';
import { resolveActor } from './authenticate';
import { answerError } from './error-handler';
import { API_BODY_LIMIT, API_HEADERS } from './api-headers';
import { jsonBody } from './json-body';
import { requestIdFor } from './request-id';
import { SECURITY_HEADERS } from './security-headers';

interface Lane {
  /** The route as express's access line names it. */
  route: string;
  /** Set once the caller is known, before the request is checked (as the express route sets them first). */
  headers?: ReadonlyArray<readonly [string, string]>;
  answer(c: Container, actor: Actor, request: { params: string[]; query: () => unknown; body: unknown }): Promise<unknown>;
}

/** Only the plain form of each route: ids are UUID-shaped, so anything percent-encoded, cased or slashed differently is express's. */
const REVEAL = /^\/api\/v1\/provider-keys\/([0-9A-Za-z-]{1,64})\/reveal$/;
const LIST = /^\/api\/v1\/provider-keys(?:\?|$)/;

const revealLane: Lane = {
  route: '/api/v1/provider-keys/:id/reveal',
  headers: REVEAL_HEADERS,
  answer: (c, actor, { params, body }) => revealAnswer(c.providerKeys, actor, params[0], body),
};
const listLane: Lane = {
  route: '/api/v1/provider-keys',
  answer: (c, actor, { query }) => listAnswer(c.providerKeys, actor, query()),
};

/** Which lane serves a request, if any: a header credential only (a cookie session means CSRF checks, in express). */
function laneOf(req: IncomingMessage): { lane: Lane; params: string[] } | undefined {
  if (req.headers.cookie !== undefined) return undefined;
  const url = req.url ?? '';
  if (req.method === 'POST') {
    const m = REVEAL.exec(url);
    return m ? { lane: revealLane, params: [m[1]] } : undefined;
  }
  // A conditional GET is express's too: `If-None-Match: *` makes res.send answer 304 (fresh), even without an ETag.
  if (req.method === 'GET' && req.headers['if-none-match'] === undefined && LIST.test(url)) return { lane: listLane, params: [] };
  return undefined;
}

/**
 * The fast lane for the vault's two hot paths: a reveal, and a page of the key list. Express costs about as much
 * CPU per request as the whole reveal beside it (its per-request prototype swaps, and some 25 router layers before
 * these routes). So `POST /api/v1/provider-keys/:id/reveal` and `GET /api/v1/provider-keys`, carrying their
 * credential in a header, are served here, by the very same parts in the very same order as express would run them:
 * request id, security headers, access line, no-store, the JSON body parser (body-parser works on a bare node
 * request), authentication, the route's own function (with express's own query parser), and the one error mapping.
 * Anything else, including these routes with a cookie session (CSRF) and a conditional list, is express's, unchanged.
 * tests/api/fast-lane.test.ts sends a corpus of requests down both lanes and compares every answer.
 */
export function withFastLane(app: Express, c: Container): RequestListener {
  const trust = app.get('trust proxy fn') as (addr: string, i: number) => boolean;
  const parseBody = jsonBody(API_BODY_LIMIT);
  const readBody = (req: IncomingMessage, res: ServerResponse) =>
    new Promise<unknown>((resolve, reject) => parseBody(req, res, (err) => (err ? reject(err) : resolve((req as { body?: unknown }).body))));

  const parseQuery = app.get('query parser fn') as (query: string | null) => unknown;
  const serve = async (req: IncomingMessage, res: ServerResponse, { lane, params }: { lane: Lane; params: string[] }, requestId: string) => {
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
      route = lane.route;
      for (const [name, value] of lane.headers ?? []) res.setHeader(name, value);
      // As express's req.query: its own parser ('simple', node:querystring) over parseurl's query.
      const query = () => parseQuery((parseurl(req)?.query as string | null | undefined) ?? null);
      send(res, 200, await lane.answer(c, actor, { params, query, body }));
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
    const m = laneOf(req);
    if (!m) {
      app(req, res);
      return;
    }
    const requestId = requestIdFor(req.headers['x-request-id']);
    res.setHeader('X-Request-Id', requestId);
    for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
    requestContext.run({ requestId }, () =>
      serve(req, res, m, requestId).catch((err: unknown) => {
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
