import type { RequestListener } from 'node:http';
import express from 'express';
import helmet from 'helmet';
import { consoleRoutes } from './http/console';
import type { Container } from './container';
import { accessLog, routeBase } from './http/access-log';
import { authenticate } from './http/authenticate';
import { errorHandler, notFoundRoute } from './http/error-handler';
import { requestId } from './http/request-id';
import { jsonBody } from './http/json-body';
import { API_BODY_LIMIT, apiHeaders } from './http/api-headers';
import { SECURITY_POLICY } from './http/security-headers';
import { authRoutes } from './modules/auth/auth.routes';
import { usersRoutes } from './modules/users/users.routes';
import { projectsRoutes } from './modules/projects/projects.routes';
import { providerKeysRoutes } from './modules/provider-keys/provider-keys.routes';
import { apiTokensRoutes } from './modules/api-tokens/api-tokens.routes';
import { auditRoutes } from './modules/audit/audit.routes';
import { keyGatewayRoutes, virtualKeysRoutes } from './modules/gateway/virtual-keys.routes';
import { gatewayHandler } from './modules/gateway/gateway.handler';
import { isGatewayUrl } from './modules/gateway/upstream';
import { keyHealthRoutes } from './modules/health/health.routes';
import { webhooksRoutes } from './modules/webhooks/webhooks.routes';
import { reportsRoutes } from './modules/reports/reports.routes';
import { openApiJson } from './openapi/document';
import { metricsRoutes } from './modules/metrics/metrics.routes';

export interface AppState {
  /** False until start-up checks pass, and while shutting down. */
  ready: boolean;
}

/** The express app: the one request path of every route. It never listens: main.ts does, and tests drive it through supertest. */
export function createApp(c: Container, state: AppState = { ready: true }): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // An ETag is a hash of the body: on a reveal that would publish a fingerprint of the secret.
  app.set('etag', false);
  app.set('query parser', 'simple');
  if (c.config.trustProxy !== undefined) app.set('trust proxy', c.config.trustProxy);

  app.use(requestId);
  app.use(helmet(SECURITY_POLICY));
  app.use(accessLog(c.logger));

  const health = express.Router();
  health.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  health.get('/readyz', async (_req, res) => {
    const keyringOk = await c.keyring.matches().catch(() => undefined);
    const dbOk = keyringOk !== undefined;
    const ready = state.ready && dbOk && keyringOk === true;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      database: dbOk ? 'ok' : 'unreachable',
      keyring: !state.ready ? 'pending' : keyringOk === false ? 'mismatch' : dbOk ? 'ok' : 'unknown',
    });
  });
  app.use(health);

  const api = express.Router();
  // First, so that body-parser refusals (400, 413) are no-store too.
  api.use(apiHeaders);
  api.use(health);
  // The API's contract holds no data: anyone may read it.
  api.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openApiJson());
  });
  api.use(jsonBody(API_BODY_LIMIT));
  const auth = authenticate(c.auth, c.apiTokens);
  const authDuringPasswordChange = authenticate(c.auth, c.apiTokens, { duringPasswordChange: true });
  // The hot routes first: a reveal or a key list walks past no other router.
  api.use('/provider-keys', routeBase, auth, providerKeysRoutes(c.providerKeys), keyGatewayRoutes(c.virtualKeys), keyHealthRoutes(c.health));
  api.use('/auth', routeBase, authRoutes(c.auth, authDuringPasswordChange));
  api.use('/users', routeBase, auth, usersRoutes(c.users));
  api.use('/projects', routeBase, auth, projectsRoutes(c.projects));
  api.use('/api-tokens', routeBase, auth, apiTokensRoutes(c.apiTokens));
  api.use('/audit-events', routeBase, auth, auditRoutes(c.audit));
  api.use('/virtual-keys', routeBase, auth, virtualKeysRoutes(c.virtualKeys));
  api.use('/webhooks', routeBase, auth, webhooksRoutes(c.webhooks));
  api.use('/reports', routeBase, auth, reportsRoutes(c.hygiene));
  api.use('/metrics', routeBase, auth, metricsRoutes(c.metrics));
  app.use('/api/v1', api);
  app.use(consoleRoutes());

  app.use(notFoundRoute);
  app.use(errorHandler(c.logger));
  return app;
}

/**
 * What the server listens with: `/gateway/…` goes to the gateway's own handler (a data plane that streams, outside
 * express), everything else to the express app.
 */
export function createHandler(c: Container, state: AppState = { ready: true }, app: RequestListener = createApp(c, state)): RequestListener {
  const gateway = gatewayHandler(c.gateway, c.logger);
  return (req, res) => (isGatewayUrl(req.url) ? gateway(req, res) : app(req, res));
}
