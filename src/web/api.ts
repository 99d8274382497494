/**
 * The one way the console talks to the vault: same-origin fetch to /api/v1 with the HttpOnly session cookie.
 * The CSRF token lives only in this module's memory (never in storage); every state-changing call sends it.
 */

export type Role = 'admin' | 'member' | 'auditor';

export interface Me {
  id: string;
  username: string;
  role: Role;
  status: string;
  via: 'session' | 'api_token';
  csrfToken?: string;
}

export interface User {
  id: string;
  username: string;
  displayName: string | null;
  role: Role;
  status: 'active' | 'disabled';
  createdAt: string;
  updatedAt: string;
}

export interface Project {
  id: string;
  name: string;
  description: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ProviderKey {
  id: string;
  name: string;
  provider: string;
  hint: string;
  status: 'active' | 'disabled' | 'deleted';
  ownerId: string;
  projectId: string;
  remark: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  expiresAt: string | null;
  lastRevealedAt: string | null;
  revealCount: number;
}

export interface Revealed {
  id: string;
  secret: string;
  hint: string;
  revealedAt: string;
}

export interface AuditEvent {
  id: string;
  seq: number | null;
  at: string;
  action: string;
  outcome: string;
  actorId: string | null;
  actorUsername: string | null;
  actorRole: string | null;
  via: string | null;
  apiTokenId: string | null;
  keyId: string | null;
  projectId: string | null;
  ownerId: string | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  reason: string | null;
  detail: Record<string, unknown> | null;
}

export interface ApiToken {
  id: string;
  name: string;
  prefix: string;
  userId: string;
  scopes: string[];
  createdAt: string;
  expiresAt: string;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
  usageCount: number;
  revokedAt: string | null;
}

export interface IssuedToken {
  id: string;
  name: string;
  prefix: string;
  userId: string;
  scopes: string[];
  expiresAt: string;
  token: string;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  head: { seq: number; hash: string };
  unsealed: number;
  firstBadId?: string | null;
  reason?: string;
}

export interface PageOf<T> {
  items: T[];
  nextCursor: string | null;
}

export const PROVIDERS = ['volcengine-ark', 'openai', 'anthropic', 'deepseek', 'azure-openai', 'google', 'custom'] as const;
export const SCOPES = ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read', 'users:read', 'users:write', 'projects:read', 'projects:write'] as const;
export const ROLE_SCOPES: Record<Role, readonly string[]> = {
  admin: SCOPES,
  member: ['provider-keys:read', 'provider-keys:reveal', 'projects:read'],
  auditor: ['provider-keys:read', 'audit:read', 'users:read', 'projects:read'],
};
export const AUDIT_ACTIONS = [
  'auth.login', 'auth.logout', 'auth.password_change', 'user.create', 'user.update',
  'project.create', 'project.update', 'project.delete',
  'provider_key.create', 'provider_key.update', 'provider_key.rotate', 'provider_key.delete', 'provider_key.reveal',
  'api_token.create', 'api_token.regenerate', 'api_token.renew', 'api_token.revoke', 'keyring.rotate', 'audit.export',
] as const;
export const AUDIT_OUTCOMES = ['success', 'denied', 'rate_limited', 'error'] as const;

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

interface Options {
  body?: unknown;
  /** Do not treat a 401 as "session ended" (sign-in, the initial session probe). */
  quiet401?: boolean;
  signal?: AbortSignal;
}

export async function api<T>(method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, opts: Options = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(apiUrl(path), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: 'same-origin',
      cache: 'no-store',
      redirect: 'error',
      signal: opts.signal,
    });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'network error');
  }
  if (res.status === 204) return undefined as T;
  const data: unknown = await res.json().catch(() => null);
  if (res.ok) return data as T;
  const e = (data as { error?: { code?: string; message?: string; details?: unknown[]; requestId?: string } } | null)?.error;
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
export async function listAll<T>(path: string, maxPages = 25): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < maxPages; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page: PageOf<T> = await api<PageOf<T>>('GET', `${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...page.items);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  return out;
}
