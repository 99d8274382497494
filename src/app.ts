import type { RequestListener } from 'node:http';
import express from 'express';
import cookieParser from 'cookie-parser';
import { consoleRoutes } from './http/console';
import type { Container } from './container';
import { accessLog, routeBase } from './http/access-log';
import { authenticate } from './http/authenticate';
import { errorHandler, notFoundRoute } from './http/error-handler';
import { requestId } from './http/request-id';
import { jsonBody } from './http/json-body';
import { API_BODY_LIMIT, API_HEADERS } from './http/api-headers';
import { withFastLane } from './http/fast-lane';
import { securityHeaders } from './http/security-headers';
import { authRoutes } from './modules/auth/auth.routes';
import { usersRoutes } from './modules/users/users.routes';
import { projectsRoutes } from './modules/projects/projects.routes';
import { providerKeysRoutes } from './modules/provider-keys/provider-keys.routes';
import { apiTokensRoutes } from './modules/api-tokens/api-tokens.routes';
import { auditRoutes } from './modules/audit/audit.routes';

export interface AppState {
  /** False until start-up checks pass, and while shutting down. */
  ready: boolean;
}

/** The express app. It never listens: main.ts does, and tests drive it through supertest. */
export function createApp(c: Container, state: AppState = { ready: true }): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // An ETag is a hash of the body: on a reveal that would publish a fingerprint of the secret.
  app.set('etag', false);
  app.set('query parser', 'simple');
  if (c.config.trustProxy !== undefined) app.set('trust proxy', c.config.trustProxy);

  app.use(requestId);
  app.use(securityHeaders);
  app.use(accessLog(c.logger));

  const health = express.Router();
  health.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  health.get('/readyz', async (_req, res) => {
    const keyringOk = await c.keyring.matches(c.db).catch(() => undefined);
    const dbOk = keyringOk !== undefined;
    const ready = state.ready && dbOk && keyringOk === true;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      database: dbOk ? 'ok' : 'unreachable',
      keyring: !state.ready ? 'pending' : keyringOk === false ? 'mismatch' : dbOk ? 'ok' : 'unknown',
    });
  });
  app.use(health);

  // The fast lane (src/http/fast-lane.ts: the reveal and the key list) runs the same parts as this stack, in this order, without express:
  // a middleware added here or above must be added there too (tests/api/fast-lane.test.ts lists this stack).
  const api = express.Router();
  // First, so that body-parser refusals (400, 413) are no-store too.
  api.use((_req, res, next) => {
    for (const [name, value] of API_HEADERS) res.setHeader(name, value);
    next();
  });
  api.use(health);
  api.use(cookieParser());
  api.use(jsonBody(API_BODY_LIMIT));
  const auth = authenticate(c.auth, c.apiTokens);
  api.use('/auth', routeBase, authRoutes(c.auth, auth));
  api.use('/users', routeBase, auth, usersRoutes(c.users));
  api.use('/projects', routeBase, auth, projectsRoutes(c.projects));
  api.use('/provider-keys', routeBase, auth, providerKeysRoutes(c.providerKeys));
  api.use('/api-tokens', routeBase, auth, apiTokensRoutes(c.apiTokens));
  api.use('/audit-events', routeBase, auth, auditRoutes(c.audit));
  app.use('/api/v1', api);
  app.use(consoleRoutes());

  app.use(notFoundRoute);
  app.use(errorHandler(c.logger));
  return app;
}

/** What the server listens with: the express app behind the fast lane for the reveal and the key list (src/http/fast-lane.ts). */
export function createHandler(c: Container, state: AppState = { ready: true }): RequestListener {
  return withFastLane(createApp(c, state), c);
}
