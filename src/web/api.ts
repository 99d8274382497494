/**
 * The one way the console talks to the vault: a typed openapi-fetch client over same-origin fetch to /api/v1 with the
 * HttpOnly session cookie. Paths, parameters, bodies and answers are typed by src/web/api-schema.d.ts, generated from
 * docs/openapi.json (`npm run openapi`). The CSRF token lives only in this module's memory (never in storage); every
 * state-changing call sends it.
 */

import createClient from 'openapi-fetch';
import type { components, paths } from './api-schema';

/** The API's types, generated from docs/openapi.json (`npm run openapi`): a request or answer that does not match the server does not compile. */
type Schemas = components['schemas'];
export type Me = Schemas['Me'];
export type Role = Me['role'];
export type User = Schemas['User'];
export type Project = Schemas['Project'];
export type ProviderKey = Schemas['ProviderKey'];
export type Revealed = Schemas['RevealedKey'];
export type AuditEvent = Schemas['AuditEvent'];
export type ApiToken = Schemas['ApiToken'];
export type IssuedToken = Schemas['IssuedApiToken'];
export type VerifyResult = Schemas['AuditVerifyResult'];
export type VirtualKey = Schemas['VirtualKey'];
export type IssuedVirtualKey = Schemas['IssuedVirtualKey'];
export type UsageBucket = Schemas['UsageBucket'];
// Key health, the hygiene report and webhooks (docs/health.md, docs/webhooks.md).
export type KeyHealth = Schemas['Health'];
export type HealthStatus = KeyHealth['status'];
export type HealthEvent = Schemas['HealthEvent'];
export type HygieneReport = Schemas['HygieneReport'];
export type HygieneItem = HygieneReport['items'][number];
export type Finding = HygieneItem['finding'];
export type Webhook = Schemas['Webhook'];
export type CreatedWebhook = Schemas['CreatedWebhook'];
export type Delivery = Schemas['WebhookDelivery'];
export const HEALTH_STATUSES = ['valid', 'invalid', 'no_credit', 'rate_limited', 'upstream_error', 'unknown'] as const satisfies readonly HealthStatus[];
export const FINDINGS = ['unhealthy', 'expired', 'expiring', 'unused', 'old', 'owner_disabled', 'project_missing', 'project_empty', 'most_revealed'] as const satisfies readonly Finding[];
/** The events a webhook may subscribe to, as the create body's enum in the document names them (a stored webhook's events are plain strings there). */
export type WebhookEvent = Schemas['CreateWebhookBody']['events'][number];
export const WEBHOOK_EVENTS = ['provider_key.health_changed', 'provider_key.expiring', 'virtual_key.budget_exhausted', 'provider_key.revealed', 'audit.verify_failed', 'audit.checkpoint'] as const satisfies readonly WebhookEvent[];
/** Providers whose keys have no free check: an admin may set a probe that spends one completion token. */
export const PROBE_PROVIDERS: readonly string[] = ['volcengine-ark', 'custom'] satisfies ReadonlyArray<ProviderKey['provider']>;
/** Compile-time: the lists above name every health status, finding and webhook event the API has. */
export const healthListsComplete: [Exclude<HealthStatus, (typeof HEALTH_STATUSES)[number]>, Exclude<Finding, (typeof FINDINGS)[number]>, Exclude<WebhookEvent, (typeof WEBHOOK_EVENTS)[number]>] extends [never, never, never] ? true : false = true;
export interface PageOf<T> {
  items: T[];
  nextCursor: string | null;
}

export { PROVIDERS } from './providers';
export type Scope = ApiToken['scopes'][number];
export const SCOPES = ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read', 'users:read', 'users:write', 'projects:read', 'projects:write', 'metrics:read'] as const satisfies readonly Scope[];
export const ROLE_SCOPES: Record<Role, readonly Scope[]> = {
  admin: SCOPES,
  member: ['provider-keys:read', 'provider-keys:reveal', 'projects:read'],
  auditor: ['provider-keys:read', 'audit:read', 'users:read', 'projects:read'],
};
export const AUDIT_ACTIONS = [
  'auth.login', 'auth.logout', 'auth.password_change', 'user.create', 'user.update',
  'project.create', 'project.update', 'project.delete',
  'provider_key.create', 'provider_key.update', 'provider_key.rotate', 'provider_key.delete', 'provider_key.reveal',
  'provider_key.check', 'provider_key.reseal',
  'api_token.create', 'api_token.regenerate', 'api_token.renew', 'api_token.revoke', 'keyring.rotate', 'audit.export',
  'virtual_key.create', 'virtual_key.revoke',
  'webhook.create', 'webhook.delete',
  'vault.restore',
  'vault.credentials_sealed', 'vault.sealings_upgraded',
] as const satisfies ReadonlyArray<AuditEvent['action']>;
export const AUDIT_OUTCOMES = ['success', 'denied', 'rate_limited', 'error'] as const satisfies ReadonlyArray<AuditEvent['outcome']>;
/** Compile-time: the lists above name every action, outcome and scope the API has. */
export const listsComplete: [Exclude<AuditEvent['action'], (typeof AUDIT_ACTIONS)[number]>, Exclude<AuditEvent['outcome'], (typeof AUDIT_OUTCOMES)[number]>, Exclude<Scope, (typeof SCOPES)[number]>] extends [never, never, never] ? true : false = true;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Array<Record<string, unknown>> = [],
    readonly requestId: string | null = null,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let csrfToken: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called when a request comes back 401: the session ended (expired, signed out elsewhere, password changed). */
export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

/** `?a=1&b=2` from the defined, non-empty values. */
export function qs(params: Record<string, string | number | null | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

export const apiUrl = (path: string) => `/api/v1${path}`;

/** The typed client: `client.GET('/api/v1/users/{id}', { params: { path: { id } } })`; wrap each call in `call()`. */
export const client = createClient<paths>({ baseUrl: '', credentials: 'same-origin', cache: 'no-store', redirect: 'error', headers: { Accept: 'application/json' } });
client.use({
  onRequest({ request }) {
    if (request.method !== 'GET' && csrfToken) request.headers.set('X-CSRF-Token', csrfToken);
    return request;
  },
});

type QueryOf<P extends keyof paths> = paths[P] extends { get: { parameters: { query?: infer Q } } } ? NonNullable<Q> : never;

/**
 * A GET's query parameters as the server reads them: strings, the empty ones left out. Names are checked against the
 * operation; values may be any string (form fields), which the server validates.
 */
export function query<P extends keyof paths>(_path: P, params: { [K in keyof QueryOf<P>]?: string | number | null }): QueryOf<P> {
  return Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => [k, String(v)])) as QueryOf<P>;
}

interface Options {
  /** Do not treat a 401 as "session ended" (sign-in, the initial session probe). */
  quiet401?: boolean;
}

/** The answer of a typed call, or an ApiError carrying the error envelope (status 0 for a network failure). */
export async function call<T>(pending: Promise<{ data?: T; error?: unknown; response: Response }>, opts: Options = {}): Promise<T> {
  let answer: { data?: T; error?: unknown; response: Response };
  try {
    answer = await pending;
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'network error');
  }
  const res = answer.response;
  if (res.ok) return answer.data as T;
  const e = (answer.error as { error?: { code?: string; message?: string; details?: unknown[]; requestId?: string } } | undefined)?.error;
  const retry = Number(res.headers.get('retry-after'));
  const error = new ApiError(
    res.status,
    e?.code ?? `http_${res.status}`,
    e?.message ?? res.statusText,
    Array.isArray(e?.details) ? (e.details as Array<Record<string, unknown>>) : [],
    e?.requestId ?? res.headers.get('x-request-id'),
    Number.isFinite(retry) && retry > 0 ? retry : null,
  );
  if (res.status === 401 && !opts.quiet401) onUnauthorized?.();
  throw error;
}

/** Every page of a list (directories: users, projects); capped so a huge table cannot hang the console. */
export async function listAll<T>(page: (cursor: string | undefined) => Promise<PageOf<T>>, maxPages = 25): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < maxPages; i++) {
    const p = await page(cursor);
    out.push(...p.items);
    cursor = p.nextCursor ?? undefined;
    if (!cursor) break;
  }
  return out;
}
