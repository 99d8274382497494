import { z } from 'zod';
import { SCOPES, type Scope } from '../modules/auth/actor';
import { changePasswordBody, loginBody } from '../modules/auth/auth.schemas';
import { createUserBody, listUsersQuery, updateUserBody } from '../modules/users/users.schemas';
import { createProjectBody, listProjectsQuery, updateProjectBody } from '../modules/projects/projects.schemas';
import { createKeyBody, keyAuditQuery, listKeysQuery, replaceSecretBody, revealBody, updateKeyBody } from '../modules/provider-keys/provider-keys.schemas';
import { createTokenBody, listTokensQuery, renewTokenBody, updateTokenBody } from '../modules/api-tokens/api-tokens.schemas';
import { exportAuditQuery, listAuditQuery, verifyAuditQuery } from '../modules/audit/audit.schemas';
import { createVirtualKeyBody, listVirtualKeysQuery, usageQuery } from '../modules/gateway/virtual-keys.schemas';
import { healthHistoryQuery } from '../modules/health/health.schemas';
import { hygieneQuery } from '../modules/reports/reports.schemas';
import { createWebhookBody, listWebhooksQuery } from '../modules/webhooks/webhooks.schemas';
import { metricsQuery } from '../modules/metrics/metrics.schemas';
import { ERROR_CODES, STATUS } from '../http/error-handler';
import * as views from './responses';

/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the zod schemas the routes validate with (request bodies
 * and queries) and those of ./responses.ts (answers), through zod's own JSON Schema output (draft 2020-12, the
 * dialect of OpenAPI 3.1). Served at GET /api/v1/openapi.json and written to docs/openapi.json by `npm run openapi`;
 * a test fails when that file is stale, and the API tests check every answer they receive against it.
 */

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
/** none: public; session: signed-in sessions only (API tokens 403); token: sessions, or API tokens with `scopes`. */
type Auth = 'none' | 'session' | { scopes: Scope[] };
type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 429 | 500 | 502 | 503 | 504;

interface Success {
  status: number;
  description: string;
  /** A component name of ./responses.ts (or a page of one), or a schema given inline; absent: no body. */
  body?: z.ZodType;
  /** Non-JSON bodies: media types and a description (export, CSV report). */
  media?: Record<string, string>;
  headers?: Record<string, string>;
}

interface Route {
  method: Method;
  path: string;
  id: string;
  tag: string;
  summary: string;
  description?: string;
  auth: Auth;
  body?: z.ZodType;
  bodyOptional?: boolean;
  query?: z.ZodObject;
  ok: Success[];
  /** Statuses beyond the ones every route of its kind can answer (see errorsOf). */
  errors?: ErrorStatus[];
}

const tokenScopes = (...scopes: Scope[]): Auth => ({ scopes });
const json = (status: number, description: string, body?: z.ZodType): Success => ({ status, description, body });
const noContent = (description = 'Done; no body'): Success => ({ status: 204, description });

/** Lists answer a page: `{items, nextCursor}`. */
const pages = {
  UserPage: views.page(views.UserView),
  ProjectPage: views.page(views.ProjectView),
  ProviderKeyPage: views.page(views.ProviderKeyView),
  AuditEventPage: views.page(views.AuditEventView),
  HealthEventPage: views.page(views.HealthEventView),
  VirtualKeyPage: views.page(views.VirtualKeyView),
  ApiTokenPage: views.page(views.ApiTokenView),
  WebhookPage: views.page(views.WebhookView),
  WebhookDeliveryPage: views.page(views.DeliveryView),
};
const UsageReport = z.object({ items: z.array(views.UsageBucketView) });

const ROUTES: Route[] = [
  // Auth
  { method: 'post', path: '/auth/login', id: 'login', tag: 'auth', summary: 'Sign in', auth: 'none', body: loginBody, ok: [json(200, 'A session: a bearer token, or with `cookie: true` an HttpOnly cookie and its CSRF token', views.LoginView)], errors: [401, 429],
    description: 'Unknown user and wrong password answer alike; 429 after repeated failures. `user.mustChangePassword`: the session may only read /auth/me, change its password and sign out.' },
  { method: 'post', path: '/auth/logout', id: 'logout', tag: 'auth', summary: 'Sign out: the session stops working everywhere', auth: 'session', ok: [noContent()], description: 'Answered during a forced password change too. An API token is not a session (403).' },
  { method: 'get', path: '/auth/me', id: 'getMe', tag: 'auth', summary: 'Who am I', auth: tokenScopes(), ok: [json(200, 'The caller', views.MeView)] },
  { method: 'post', path: '/auth/password', id: 'changePassword', tag: 'auth', summary: 'Change my password', auth: 'session', body: changePasswordBody, ok: [noContent('Changed; sessions issued before stop working')], errors: [429] },
  // Users
  { method: 'post', path: '/users', id: 'createUser', tag: 'users', summary: 'Create a user', auth: tokenScopes('users:write'), body: createUserBody, ok: [json(201, 'The user', views.UserView)], errors: [409] },
  { method: 'get', path: '/users', id: 'listUsers', tag: 'users', summary: 'List users', auth: tokenScopes('users:read'), query: listUsersQuery, ok: [json(200, 'A page of users', pages.UserPage)] },
  { method: 'get', path: '/users/{id}', id: 'getUser', tag: 'users', summary: 'Get a user', auth: tokenScopes('users:read'), ok: [json(200, 'The user', views.UserView)] },
  { method: 'patch', path: '/users/{id}', id: 'updateUser', tag: 'users', summary: 'Change a user', auth: tokenScopes('users:write'), body: updateUserBody, ok: [json(200, 'The user', views.UserView)], errors: [409],
    description: 'Disabling ends the user’s sessions and revokes their API tokens for good; the last active admin cannot be demoted or disabled (409).' },
  // Projects
  { method: 'post', path: '/projects', id: 'createProject', tag: 'projects', summary: 'Create a project', auth: tokenScopes('projects:write'), body: createProjectBody, ok: [json(201, 'The project', views.ProjectView)], errors: [409] },
  { method: 'get', path: '/projects', id: 'listProjects', tag: 'projects', summary: 'List projects', auth: tokenScopes('projects:read'), query: listProjectsQuery, ok: [json(200, 'A page of projects', pages.ProjectPage)] },
  { method: 'get', path: '/projects/{id}', id: 'getProject', tag: 'projects', summary: 'Get a project', auth: tokenScopes('projects:read'), ok: [json(200, 'The project', views.ProjectView)] },
  { method: 'patch', path: '/projects/{id}', id: 'updateProject', tag: 'projects', summary: 'Change a project', auth: tokenScopes('projects:write'), body: updateProjectBody, ok: [json(200, 'The project', views.ProjectView)], errors: [409] },
  { method: 'delete', path: '/projects/{id}', id: 'deleteProject', tag: 'projects', summary: 'Delete a project', auth: tokenScopes('projects:write'), ok: [noContent()], errors: [409], description: '409 while the project holds live keys.' },
  // Provider keys
  { method: 'post', path: '/provider-keys', id: 'createProviderKey', tag: 'provider-keys', summary: 'Store a provider key', auth: tokenScopes('provider-keys:write'), body: createKeyBody, ok: [json(201, 'The key’s metadata (never the secret)', views.ProviderKeyView)], errors: [409],
    description: 'The secret is trimmed, non-empty, without NUL, at most 16 KiB (413 above); a secret already stored is 409.' },
  { method: 'get', path: '/provider-keys', id: 'listProviderKeys', tag: 'provider-keys', summary: 'List provider keys', auth: tokenScopes('provider-keys:read'), query: listKeysQuery, ok: [json(200, 'A page of keys (members: their own)', pages.ProviderKeyPage)] },
  { method: 'get', path: '/provider-keys/{id}', id: 'getProviderKey', tag: 'provider-keys', summary: 'Get a key’s metadata', auth: tokenScopes('provider-keys:read'), ok: [json(200, 'The key', views.ProviderKeyView)] },
  { method: 'patch', path: '/provider-keys/{id}', id: 'updateProviderKey', tag: 'provider-keys', summary: 'Change a key’s metadata', auth: tokenScopes('provider-keys:write'), body: updateKeyBody, ok: [json(200, 'The key', views.ProviderKeyView)], errors: [409],
    description: 'Through an API token, changing `ownerId` or `baseUrl` also needs `provider-keys:reveal`. Changing `baseUrl` of a key you do not own needs a `reason` (kept in the audit row). A new owner, project or `baseUrl` re-seals the secret (its sealing is bound to them) and revokes the key’s virtual keys.' },
  { method: 'put', path: '/provider-keys/{id}/secret', id: 'replaceProviderKeySecret', tag: 'provider-keys', summary: 'Rotate: store a new secret', auth: tokenScopes('provider-keys:write'), body: replaceSecretBody, ok: [json(200, 'The key, with its new hint', views.ProviderKeyView)], errors: [409] },
  { method: 'delete', path: '/provider-keys/{id}', id: 'deleteProviderKey', tag: 'provider-keys', summary: 'Delete a key (its secret is destroyed; a tombstone stays)', auth: tokenScopes('provider-keys:write'), ok: [noContent()], errors: [409] },
  { method: 'post', path: '/provider-keys/{id}/reveal', id: 'revealProviderKey', tag: 'provider-keys', summary: 'Reveal the secret (audited)', auth: tokenScopes('provider-keys:reveal'), body: revealBody, bodyOptional: true,
    ok: [{ ...json(200, 'The secret; `Cache-Control: no-store`', views.RevealedView), headers: { Pragma: 'no-cache' } }], errors: [409, 429],
    description: 'Owner, or an admin giving a `reason` for someone else’s key. Disabled keys 409 `key_disabled`, expired 409 `key_expired`; rate limited per user and per IP (429).' },
  { method: 'get', path: '/provider-keys/{id}/audit-events', id: 'listProviderKeyAuditEvents', tag: 'provider-keys', summary: 'The key’s audit trail', auth: tokenScopes('provider-keys:read'), query: keyAuditQuery, ok: [json(200, 'A page of events', pages.AuditEventPage)],
    description: 'Owner, admins, auditors (API tokens: `provider-keys:read` or `audit:read`).' },
  { method: 'post', path: '/provider-keys/{id}/check', id: 'checkProviderKey', tag: 'health', summary: 'Check the key’s health now', auth: tokenScopes('provider-keys:reveal'), ok: [json(200, 'The health found', views.HealthView)], errors: [409, 429],
    description: 'Owner or admin. Every request, allowed or refused, writes a `provider_key.check` audit row, committed before the key is sent to its upstream. Rate limited per user (four times `PKV_REVEAL_RATE_LIMIT` a minute, their API tokens included) and per client address.' },
  { method: 'get', path: '/provider-keys/{id}/health', id: 'listProviderKeyHealth', tag: 'health', summary: 'The key’s health history', auth: tokenScopes('provider-keys:read'), query: healthHistoryQuery, ok: [json(200, 'A page of health events', pages.HealthEventPage)] },
  { method: 'post', path: '/provider-keys/{id}/virtual-keys', id: 'createVirtualKey', tag: 'gateway', summary: 'Make a virtual key for the gateway', auth: tokenScopes('provider-keys:reveal'), body: createVirtualKeyBody, bodyOptional: true,
    ok: [json(201, 'The virtual key, with its secret shown this once', views.IssuedVirtualKeyView)], errors: [409], description: 'Exactly who may reveal the key may make one (docs/gateway.md).' },
  { method: 'get', path: '/provider-keys/{id}/virtual-keys', id: 'listVirtualKeys', tag: 'gateway', summary: 'The key’s virtual keys', auth: tokenScopes('provider-keys:reveal'), query: listVirtualKeysQuery, ok: [json(200, 'A page of virtual keys', pages.VirtualKeyPage)] },
  { method: 'get', path: '/provider-keys/{id}/usage', id: 'getProviderKeyUsage', tag: 'gateway', summary: 'The key’s gateway usage per hour or day', auth: tokenScopes('provider-keys:read'), query: usageQuery, ok: [json(200, 'Buckets, oldest first', UsageReport)] },
  { method: 'get', path: '/virtual-keys/{id}', id: 'getVirtualKey', tag: 'gateway', summary: 'Get a virtual key', auth: tokenScopes('provider-keys:reveal'), ok: [json(200, 'The virtual key', views.VirtualKeyView)] },
  { method: 'delete', path: '/virtual-keys/{id}', id: 'revokeVirtualKey', tag: 'gateway', summary: 'Revoke a virtual key for good', auth: tokenScopes('provider-keys:reveal'), ok: [noContent()] },
  // API tokens
  { method: 'post', path: '/api-tokens', id: 'createApiToken', tag: 'api-tokens', summary: 'Create an API token', auth: 'session', body: createTokenBody, ok: [json(201, 'The token, shown this once', views.IssuedTokenView)] },
  { method: 'get', path: '/api-tokens', id: 'listApiTokens', tag: 'api-tokens', summary: 'List API tokens', auth: tokenScopes(), query: listTokensQuery, ok: [json(200, 'A page of tokens', pages.ApiTokenPage)] },
  { method: 'get', path: '/api-tokens/{id}', id: 'getApiToken', tag: 'api-tokens', summary: 'Get an API token', auth: tokenScopes(), ok: [json(200, 'The token (never its secret)', views.ApiTokenView)] },
  { method: 'patch', path: '/api-tokens/{id}', id: 'renameApiToken', tag: 'api-tokens', summary: 'Rename an API token', auth: 'session', body: updateTokenBody, ok: [json(200, 'The token', views.ApiTokenView)], errors: [409] },
  { method: 'post', path: '/api-tokens/{id}/regenerate', id: 'regenerateApiToken', tag: 'api-tokens', summary: 'Issue a new secret (the old one dies at once)', auth: 'session', ok: [json(200, 'The token, its new secret shown this once', views.IssuedTokenView)], errors: [409] },
  { method: 'post', path: '/api-tokens/{id}/renew', id: 'renewApiToken', tag: 'api-tokens', summary: 'Set a new expiry, keeping the secret', auth: 'session', body: renewTokenBody, bodyOptional: true, ok: [json(200, 'The token', views.ApiTokenView)], errors: [409] },
  { method: 'delete', path: '/api-tokens/{id}', id: 'revokeApiToken', tag: 'api-tokens', summary: 'Revoke an API token for good', auth: tokenScopes(), ok: [noContent()], errors: [409] },
  // Audit
  { method: 'get', path: '/audit-events', id: 'listAuditEvents', tag: 'audit', summary: 'Search the audit trail', auth: tokenScopes('audit:read'), query: listAuditQuery, ok: [json(200, 'A page of events, newest first', pages.AuditEventPage)] },
  { method: 'get', path: '/audit-events/export', id: 'exportAuditEvents', tag: 'audit', summary: 'Export the audit trail (streamed)', auth: tokenScopes('audit:read'), query: exportAuditQuery, errors: [429],
    ok: [{ status: 200, description: 'A file (`Content-Disposition: attachment`)', media: { 'text/csv': 'CSV, UTF-8 with a byte order mark', 'application/x-ndjson': 'One JSON event per line' } }] },
  { method: 'get', path: '/audit-events/verify', id: 'verifyAuditEvents', tag: 'audit', summary: 'Verify the hash chain', auth: tokenScopes('audit:read'), query: verifyAuditQuery, ok: [json(200, 'The result', views.VerifyResultView)], errors: [429] },
  // Reports
  { method: 'get', path: '/reports/hygiene', id: 'getHygieneReport', tag: 'reports', summary: 'Keys to clean up', auth: tokenScopes('audit:read'), query: hygieneQuery,
    ok: [{ status: 200, description: 'The report (JSON, or CSV with `format=csv`)', body: views.HygieneReportView, media: { 'text/csv': 'CSV, with `format=csv`' } }] },
  // Webhooks
  { method: 'post', path: '/webhooks', id: 'createWebhook', tag: 'webhooks', summary: 'Subscribe a URL to events', auth: 'session', body: createWebhookBody, ok: [json(201, 'The webhook (a generated secret shown this once)', views.CreatedWebhookView)] },
  { method: 'get', path: '/webhooks', id: 'listWebhooks', tag: 'webhooks', summary: 'List webhooks', auth: 'session', query: listWebhooksQuery, ok: [json(200, 'A page of webhooks', pages.WebhookPage)] },
  { method: 'get', path: '/webhooks/{id}', id: 'getWebhook', tag: 'webhooks', summary: 'Get a webhook', auth: 'session', ok: [json(200, 'The webhook', views.WebhookView)] },
  { method: 'delete', path: '/webhooks/{id}', id: 'deleteWebhook', tag: 'webhooks', summary: 'Delete a webhook', auth: 'session', ok: [noContent()] },
  { method: 'get', path: '/webhooks/{id}/deliveries', id: 'listWebhookDeliveries', tag: 'webhooks', summary: 'A webhook’s deliveries', auth: 'session', query: listWebhooksQuery, ok: [json(200, 'A page of deliveries', pages.WebhookDeliveryPage)] },
  // Metrics
  { method: 'get', path: '/metrics', id: 'getMetrics', tag: 'metrics', summary: 'Prometheus metrics', auth: tokenScopes('metrics:read'), query: metricsQuery,
    ok: [{ status: 200, description: 'The Prometheus text exposition format (no ids, no secrets)', media: { 'text/plain': 'Prometheus text format 0.0.4' } }],
    description: 'Admins, and API tokens with `metrics:read`. Or, without credentials, a separate listener (`PKV_METRICS_PORT`, docs/operations.md).' },
];

const STATUS_TEXT: Record<ErrorStatus, string> = {
  400: 'Bad input: a body, query or path parameter that does not validate, malformed JSON, a duplicate key, a body that is not JSON',
  401: 'No credential, or one that is malformed, unknown, expired or revoked (with `WWW-Authenticate: Bearer`)',
  403: 'Not allowed: the role or the token’s scopes do not allow it, a missing CSRF token, or a password that must be changed first',
  404: 'No such resource, or one the caller may not see',
  409: 'Conflicts with the current state',
  413: 'The request body is too large',
  429: 'Too many requests (with `Retry-After`)',
  500: 'Internal error (a stored value failed its integrity check): nothing was returned',
  502: 'The provider could not be reached',
  503: 'The database (or another dependency) is unavailable',
  504: 'The provider did not answer in time',
};
const ERROR_NAMES: Record<ErrorStatus, string> = {
  400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 413: 'PayloadTooLarge',
  429: 'TooManyRequests', 500: 'InternalError', 502: 'BadGateway', 503: 'Unavailable', 504: 'GatewayTimeout',
};

/** The error envelope, its `code` narrowed to those of one status. */
function errorEnvelope(codes: readonly string[]) {
  return z.object({
    error: z.object({
      code: z.enum(codes as [string, ...string[]]),
      message: z.string(),
      requestId: z.string().describe('The X-Request-Id of this answer'),
      details: z.array(z.unknown()).describe('For validation_failed: `{field, message}` per problem (never the values)'),
    }),
  });
}
const codesOf = (status: number) => ERROR_CODES.filter((c) => STATUS[c] === status);

/** What a route of its kind can answer beside its own statuses. */
function errorsOf(r: Route): ErrorStatus[] {
  const statuses = new Set<ErrorStatus>([400, 413, 500, 503, ...(r.errors ?? [])]);
  if (r.auth !== 'none') statuses.add(401).add(403);
  if (r.auth === 'none' && r.errors?.includes(401)) statuses.add(401);
  if (r.path.includes('{id}')) statuses.add(404);
  return [...statuses].sort();
}

type Json = Record<string, unknown>;

/** zod → JSON Schema (2020-12), without the `$schema` a component does not carry. */
function schemaOf(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', reused: 'inline' }) as Json;
  return rest;
}

function parametersOf(r: Route): Json[] {
  const params: Json[] = [];
  if (r.path.includes('{id}')) params.push({ $ref: '#/components/parameters/Id' });
  for (const [name, prop] of Object.entries(r.query?.shape ?? {})) {
    const schema = schemaOf(prop as z.ZodType, 'input');
    const { description, ...rest } = schema;
    params.push({ name, in: 'query', required: !(prop as z.ZodType).safeParse(undefined).success, schema: rest, ...(description ? { description } : {}) });
  }
  return params;
}

function securityOf(r: Route, method: Method): Json[] | undefined {
  if (r.auth === 'none') return [];
  const cookie = method === 'get' ? { cookieSession: [] } : { cookieSession: [], csrfToken: [] };
  const sessions = [{ bearerSession: [] }, cookie];
  if (r.auth === 'session') return sessions;
  return [...sessions, { apiToken: r.auth.scopes }, { apiKeyHeader: r.auth.scopes }];
}

function authText(r: Route): string {
  if (r.auth === 'none') return 'No credential needed.';
  if (r.auth === 'session') return 'Signed-in sessions only: API tokens are refused (403).';
  return r.auth.scopes.length ? `API tokens need ${r.auth.scopes.map((s) => `\`${s}\``).join(' and ')}.` : 'Any credential; API tokens need no particular scope.';
}

function operationOf(r: Route, bodies: Map<z.ZodType, string>, responses: Map<z.ZodType, string>): Json {
  const op: Json = {
    operationId: r.id,
    tags: [r.tag],
    summary: r.summary,
    description: [r.description, authText(r)].filter(Boolean).join('\n\n'),
    security: securityOf(r, r.method),
  };
  if (r.auth !== 'none' && r.auth !== 'session') op['x-scopes'] = r.auth.scopes;
  const params = parametersOf(r);
  if (params.length) op.parameters = params;
  if (r.body) {
    op.requestBody = { required: !r.bodyOptional, content: { 'application/json': { schema: { $ref: `#/components/schemas/${bodies.get(r.body)}` } } } };
  }
  const out: Json = {};
  for (const s of r.ok) {
    const content: Json = {};
    if (s.body) content['application/json'] = { schema: responses.has(s.body) ? { $ref: `#/components/schemas/${responses.get(s.body)}` } : schemaOf(s.body, 'output') };
    for (const [type, description] of Object.entries(s.media ?? {})) content[type] = { schema: { type: 'string', description } };
    out[String(s.status)] = {
      description: s.description,
      ...(s.headers ? { headers: Object.fromEntries(Object.entries(s.headers).map(([h, v]) => [h, { schema: { type: 'string', const: v } }])) } : {}),
      ...(Object.keys(content).length ? { content } : {}),
    };
  }
  for (const status of errorsOf(r)) out[String(status)] = { $ref: `#/components/responses/${ERROR_NAMES[status]}` };
  op.responses = out;
  return op;
}

/** The request body schemas, named for components (CreateUserBody, …). */
const BODY_NAMES: Array<[z.ZodType, string]> = [
  [loginBody, 'LoginBody'], [changePasswordBody, 'ChangePasswordBody'],
  [createUserBody, 'CreateUserBody'], [updateUserBody, 'UpdateUserBody'],
  [createProjectBody, 'CreateProjectBody'], [updateProjectBody, 'UpdateProjectBody'],
  [createKeyBody, 'CreateProviderKeyBody'], [updateKeyBody, 'UpdateProviderKeyBody'], [replaceSecretBody, 'ReplaceSecretBody'], [revealBody, 'RevealBody'],
  [createVirtualKeyBody, 'CreateVirtualKeyBody'],
  [createTokenBody, 'CreateApiTokenBody'], [updateTokenBody, 'RenameApiTokenBody'], [renewTokenBody, 'RenewApiTokenBody'],
  [createWebhookBody, 'CreateWebhookBody'],
];

/** The answers, named for components. */
const RESPONSE_NAMES: Array<[z.ZodType, string]> = [
  [views.UserView, 'User'], [views.ProjectView, 'Project'], [views.ProviderKeyView, 'ProviderKey'], [views.RevealedView, 'RevealedKey'],
  [views.HealthView, 'Health'], [views.HealthEventView, 'HealthEvent'], [views.ApiTokenView, 'ApiToken'], [views.IssuedTokenView, 'IssuedApiToken'],
  [views.AuditEventView, 'AuditEvent'], [views.VerifyResultView, 'AuditVerifyResult'], [views.VirtualKeyView, 'VirtualKey'],
  [views.IssuedVirtualKeyView, 'IssuedVirtualKey'], [views.UsageBucketView, 'UsageBucket'], [views.HygieneReportView, 'HygieneReport'],
  [views.WebhookView, 'Webhook'], [views.CreatedWebhookView, 'CreatedWebhook'], [views.DeliveryView, 'WebhookDelivery'],
  [views.LoginView, 'LoginResult'], [views.MeView, 'Me'], [UsageReport, 'UsageReport'],
  ...Object.entries(pages).map(([name, schema]): [z.ZodType, string] => [schema, name]),
];

/** A registry per direction: request schemas are described as accepted (input), answers as sent (output). */
function components(names: Array<[z.ZodType, string]>, io: 'input' | 'output'): Json {
  const registry = z.registry<{ id: string }>();
  for (const [schema, id] of names) registry.add(schema, { id });
  const { schemas } = z.toJSONSchema(registry, { io, unrepresentable: 'any', uri: (id) => `#/components/schemas/${id}` }) as { schemas: Record<string, Json> };
  return Object.fromEntries(Object.entries(schemas).map(([id, { $schema: _s, $id: _i, ...rest }]) => [id, rest]));
}

const HEALTH_OK = z.object({ status: z.literal('ok') });
const READY = z.object({ status: z.enum(['ready', 'unavailable']), database: z.enum(['ok', 'unreachable']), keyring: z.enum(['ok', 'mismatch', 'pending', 'unknown']) });

function probes(prefix: string): Record<string, Json> {
  const tag = 'probes';
  return {
    [`${prefix}/healthz`]: { get: { operationId: `healthz${prefix ? 'Api' : ''}`, tags: [tag], summary: 'Liveness: the process answers', security: [], responses: { '200': { description: 'Alive', content: { 'application/json': { schema: schemaOf(HEALTH_OK, 'output') } } } } } },
    [`${prefix}/readyz`]: {
      get: {
        operationId: `readyz${prefix ? 'Api' : ''}`, tags: [tag], summary: 'Readiness: the database answers and the keyring matches', security: [],
        responses: {
          '200': { description: 'Ready', content: { 'application/json': { schema: schemaOf(READY, 'output') } } },
          '503': { description: 'Not ready (starting, shutting down, database unreachable, keyring mismatch)', content: { 'application/json': { schema: schemaOf(READY, 'output') } } },
        },
      },
    },
  };
}

const GATEWAY_REFUSALS: ErrorStatus[] = [400, 401, 403, 409, 413, 429, 500, 502, 503, 504];
const GATEWAY_METHODS: Method[] = ['get', 'post', 'put', 'patch', 'delete'];

function gatewayPath(): Json {
  const item: Json = {
    parameters: [{ name: 'path', in: 'path', required: true, description: 'The rest of the URL, slashes included: forwarded to `baseUrl + path` with the query, byte for byte', schema: { type: 'string' } }],
  };
  for (const method of GATEWAY_METHODS) {
    const responses: Json = {
      default: { description: 'The provider’s answer, passed through with its status, headers (less hop-by-hop, cookies, redirects, caching) and body, the key masked out of both' },
    };
    for (const status of GATEWAY_REFUSALS) responses[String(status)] = { $ref: `#/components/responses/${ERROR_NAMES[status]}` };
    item[method] = {
      operationId: `gateway${method[0].toUpperCase()}${method.slice(1)}`,
      tags: ['gateway'],
      summary: 'Call the provider with a virtual key',
      description:
        'The vault checks the virtual key, opens the real key in memory, presents it upstream the provider’s way and streams the answer back with the key masked out (docs/gateway.md). ' +
        'The listed statuses are the vault’s own refusals, in the error envelope whose `requestId` is the answer’s `X-Request-Id`; any other answer is the provider’s.',
      security: [{ virtualKey: [] }, { virtualKeyHeader: [] }, { virtualKeyAzure: [] }, { virtualKeyGoogle: [] }],
      ...(method === 'get' || method === 'delete' ? {} : { requestBody: { required: false, content: { '*/*': { schema: {} } } } }),
      responses,
    };
  }
  return { '/gateway/{path}': item };
}

export const API_BASE = '/api/v1';

export function buildOpenApiDocument(): Json {
  const bodies = new Map(BODY_NAMES);
  const responses = new Map(RESPONSE_NAMES);
  const paths: Record<string, Json> = {
    [`${API_BASE}/openapi.json`]: {
      get: { operationId: 'getOpenApiDocument', tags: ['meta'], summary: 'This document', security: [], responses: { '200': { description: 'The OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } } } },
    },
  };
  for (const r of ROUTES) {
    const path = `${API_BASE}${r.path}`;
    paths[path] ??= {};
    paths[path][r.method] = operationOf(r, bodies, responses);
  }
  Object.assign(paths, probes(''), probes(API_BASE), gatewayPath());
  const errorResponses = Object.fromEntries(
    (Object.keys(ERROR_NAMES) as unknown as ErrorStatus[]).map((status) => {
      const headers: Json = {};
      if (Number(status) === 401) headers['WWW-Authenticate'] = { schema: { type: 'string' }, description: '`Bearer realm="pkv"`' };
      if (Number(status) === 429) headers['Retry-After'] = { schema: { type: 'string' }, description: 'Seconds' };
      return [ERROR_NAMES[status], { description: STATUS_TEXT[status], ...(Object.keys(headers).length ? { headers } : {}), content: { 'application/json': { schema: schemaOf(errorEnvelope(codesOf(Number(status))), 'output') } } }];
    }),
  );
  return {
    openapi: '3.1.0',
    info: {
      title: 'provider-key-vault API',
      version: '1',
      description:
        'The HTTP API of provider-key-vault (docs/api.md) and the refusals of its gateway (docs/gateway.md). Generated from the zod schemas the routes validate with: `npm run openapi` rewrites docs/openapi.json. Every answer carries `X-Request-Id`; API answers carry `Cache-Control: no-store`.',
      license: { name: 'UNLICENSED', identifier: 'UNLICENSED' },
    },
    servers: [{ url: '/', description: 'The vault itself' }],
    tags: [
      { name: 'auth', description: 'Sessions' }, { name: 'users', description: 'IAM users' }, { name: 'projects', description: 'Projects' },
      { name: 'provider-keys', description: 'Provider keys and the reveal' }, { name: 'health', description: 'Key health' },
      { name: 'gateway', description: 'Virtual keys, usage and the gateway' }, { name: 'api-tokens', description: 'The vault’s own API tokens' },
      { name: 'audit', description: 'The audit trail' }, { name: 'reports', description: 'Reports' }, { name: 'webhooks', description: 'Signed webhooks' }, { name: 'metrics', description: 'Prometheus metrics' },
      { name: 'probes', description: 'Liveness and readiness' }, { name: 'meta', description: 'This document' },
    ],
    paths,
    components: {
      schemas: { ...components(BODY_NAMES, 'input'), ...components(RESPONSE_NAMES, 'output') },
      responses: errorResponses,
      parameters: { Id: { name: 'id', in: 'path', required: true, description: 'A UUID', schema: { type: 'string', format: 'uuid' } } },
      securitySchemes: {
        bearerSession: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'A session from POST /api/v1/auth/login' },
        cookieSession: { type: 'apiKey', in: 'cookie', name: 'pkv_session', description: 'The console’s HttpOnly session cookie (POST /api/v1/auth/login with `cookie: true`)' },
        csrfToken: { type: 'apiKey', in: 'header', name: 'X-CSRF-Token', description: 'With the cookie, on every request but GET/HEAD/OPTIONS: the `csrfToken` of the login answer or of /auth/me' },
        apiToken: { type: 'http', scheme: 'bearer', bearerFormat: 'pkv_…', description: `An API token (\`pkv_\` + 43 characters) in Authorization; the scopes listed per operation: ${SCOPES.join(', ')}` },
        apiKeyHeader: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'An API token (`pkv_…`) in X-API-Key instead of Authorization' },
        virtualKey: { type: 'http', scheme: 'bearer', bearerFormat: 'pkv_vk_…', description: 'Gateway: a virtual key, as the OpenAI SDK sends it' },
        virtualKeyHeader: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'Gateway: a virtual key, as the Anthropic SDK sends it' },
        virtualKeyAzure: { type: 'apiKey', in: 'header', name: 'api-key', description: 'Gateway: a virtual key, as the Azure OpenAI SDK sends it' },
        virtualKeyGoogle: { type: 'apiKey', in: 'header', name: 'x-goog-api-key', description: 'Gateway: a virtual key, as Google’s SDK sends it' },
      },
    },
  };
}

let cached: string | undefined;
/** The document as served and written: built once per process (it depends on code only). */
export function openApiJson(): string {
  cached ??= `${JSON.stringify(buildOpenApiDocument(), null, 2)}\n`;
  return cached;
}
