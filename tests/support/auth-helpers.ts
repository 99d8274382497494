import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { Response } from 'supertest';
import { AUDIENCE, ISSUER } from '../../src/modules/auth/sessions';
import { createApiToken } from './factories';
import type { TestContext, TestUser } from './test-app';
import { setCredentialAsTheVault } from './crypto-helpers';

export type Headers = Record<string, string>;

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
const randomJti = () => crypto.randomBytes(18).toString('base64url');

export interface CraftOptions {
  secret?: Buffer | string;
  algorithm?: jwt.Algorithm;
  issuer?: string;
  audience?: string;
  /** Seconds from now; negative for a token that has already expired. */
  expiresIn?: number;
  ep?: unknown;
  jti?: string;
}

/** A session JWT built by hand with jsonwebtoken; with no options it is exactly what the server would issue. */
export function craftSession(ctx: TestContext, sub: string, o: CraftOptions = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    sub,
    jti: o.jti ?? randomJti(),
    ep: o.ep ?? 0,
    iss: o.issuer ?? ISSUER,
    aud: o.audience ?? AUDIENCE,
    iat: now - 5,
    exp: now + (o.expiresIn ?? 600),
  };
  return jwt.sign(payload, o.secret ?? ctx.config.jwtSecret, { algorithm: o.algorithm ?? 'HS256' });
}

/** An unsigned token (`alg: none`) carrying otherwise valid claims. */
export function unsignedSession(sub: string): string {
  const now = Math.floor(Date.now() / 1000);
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub, jti: randomJti(), ep: 0, iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 600 })}.`;
}

/** Flips one character in the middle of the signature (the last one may only carry padding bits). */
export function tamperSignature(token: string): string {
  const [h, p, s] = token.split('.');
  const i = Math.floor(s.length / 2);
  return `${h}.${p}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
}

/** Keeps header and signature, swaps in another subject: a forged payload. */
export function swapSubject(token: string, sub: string): string {
  const [h, p, s] = token.split('.');
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  return `${h}.${b64url({ ...claims, sub })}.${s}`;
}

export const bearer = (token: string): Headers => ({ Authorization: `Bearer ${token}` });

/** Credentials that must be refused with 401, each differing from an accepted one in one way. */
export const REFUSED_CREDENTIALS = [
  'no credentials',
  'a non-Bearer Authorization scheme',
  'an empty Bearer token',
  'an over-long Bearer token',
  'an expired session JWT',
  'a session JWT with a tampered signature',
  'a session JWT whose payload was edited after signing',
  'an alg:none session JWT',
  'an HS512 session JWT signed with the right secret',
  'a session JWT for another audience',
  'a session JWT from another issuer',
  'a session JWT signed with another secret',
  'a session JWT whose session epoch is not a number',
  'a session JWT for a user that does not exist',
  'a logged-out session',
  'the session of a user disabled after signing in',
  'the API token of a disabled user',
  'a session issued before an admin set a new password',
  'a revoked API token',
  'an expired API token',
  'an API token that was never issued',
  'two different credentials at once',
] as const;
export type RefusedCredential = (typeof REFUSED_CREDENTIALS)[number];

export interface RefusedCredentials {
  headers: Record<RefusedCredential, () => Headers>;
  /** A crafted session that must be accepted: proves the crafted ones fail for the one reason they are built with. */
  control: Headers;
  /** Tokens and passwords these credentials carry, for the log check. */
  secrets: string[];
}

/**
 * Builds dead and forged credentials of admins (so the only possible reason for a refusal is the credential).
 * `admin` must be an active admin; it disables, logs out and revokes through the real API.
 */
export async function refusedCredentials(ctx: TestContext, admin: TestUser): Promise<RefusedCredentials> {
  const victim = await ctx.user('admin');
  const control = bearer(craftSession(ctx, victim.id));

  const otherSession = await ctx.login(victim.username, victim.password);
  expectStatus(await ctx.http().post('/api/v1/auth/logout').set(bearer(otherSession)), 204);

  const disabled = await ctx.user('admin');
  const disabledToken = await createApiToken(ctx, disabled, ['users:read', 'users:write', 'projects:read', 'projects:write']);
  expectStatus(await ctx.http().patch(`/api/v1/users/${disabled.id}`).set(admin.auth).send({ status: 'disabled' }), 200);

  const reset = await ctx.user('admin');
  const newPassword = `pw-reset-${crypto.randomBytes(9).toString('base64url')}`;
  expectStatus(await ctx.http().patch(`/api/v1/users/${reset.id}`).set(admin.auth).send({ password: newPassword }), 200);

  const revoked = await createApiToken(ctx, victim, ['users:read', 'projects:read']);
  expectStatus(await ctx.http().delete(`/api/v1/api-tokens/${revoked.id}`).set(victim.auth), 204);
  const expired = await createApiToken(ctx, victim, ['users:read', 'projects:read']);
  await setCredentialAsTheVault(ctx, 'api_tokens', expired.id, { expires_at: Date.now() - 60_000 });
  const neverIssued = `pkv_${crypto.randomBytes(32).toString('base64url')}`;

  // Functions: crafted tokens are signed afresh (new jti) for every request, so one route cannot use up another's.
  const headers: Record<RefusedCredential, () => Headers> = {
    'no credentials': () => ({}),
    'a non-Bearer Authorization scheme': () => ({ Authorization: `Basic ${Buffer.from(`${victim.username}:${victim.password}`).toString('base64')}` }),
    'an empty Bearer token': () => ({ Authorization: 'Bearer ' }),
    'an over-long Bearer token': () => bearer(`${craftSession(ctx, victim.id)}${'A'.repeat(5000)}`),
    'an expired session JWT': () => bearer(craftSession(ctx, victim.id, { expiresIn: -60 })),
    'a session JWT with a tampered signature': () => bearer(tamperSignature(craftSession(ctx, victim.id))),
    'a session JWT whose payload was edited after signing': () => bearer(swapSubject(craftSession(ctx, reset.id), victim.id)),
    'an alg:none session JWT': () => bearer(unsignedSession(victim.id)),
    'an HS512 session JWT signed with the right secret': () => bearer(craftSession(ctx, victim.id, { algorithm: 'HS512' })),
    'a session JWT for another audience': () => bearer(craftSession(ctx, victim.id, { audience: 'another-api' })),
    'a session JWT from another issuer': () => bearer(craftSession(ctx, victim.id, { issuer: 'someone-else' })),
    'a session JWT signed with another secret': () => bearer(craftSession(ctx, victim.id, { secret: crypto.randomBytes(48) })),
    'a session JWT whose session epoch is not a number': () => bearer(craftSession(ctx, victim.id, { ep: '0' })),
    'a session JWT for a user that does not exist': () => bearer(craftSession(ctx, '01890000-0000-7000-8000-000000000000')),
    'a logged-out session': () => bearer(otherSession),
    'the session of a user disabled after signing in': () => disabled.auth,
    'the API token of a disabled user': () => disabledToken.auth,
    'a session issued before an admin set a new password': () => reset.auth,
    'a revoked API token': () => revoked.auth,
    'an expired API token': () => expired.auth,
    'an API token that was never issued': () => ({ 'X-API-Key': neverIssued }),
    'two different credentials at once': () => ({ ...victim.auth, 'X-API-Key': expired.token }),
  };
  return {
    headers,
    control,
    secrets: [victim.password, victim.token, otherSession, disabled.password, disabled.token, disabledToken.token, reset.password, reset.token, newPassword, revoked.token, expired.token, neverIssued],
  };
}

/** Runs one refused credential against one route: 401, the one error shape, and not a row written anywhere. */
export async function expectRefused(ctx: TestContext, r: RouteCase, headers: Headers): Promise<void> {
  const before = await writeCounts(ctx);
  const res = await call(ctx, r, headers);
  expectError(res, 401, 'unauthorized');
  expect(res.body.error.message).toBe('Authentication required');
  expect(await writeCounts(ctx)).toEqual(before);
}

export function expectStatus(res: Response, status: number): void {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
}

/** The one error shape, with the request id of this response. */
export function expectError(res: Response, status: number, code: string): void {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(Object.keys(res.body).sort()).toEqual(['error']);
  expect(Object.keys(res.body.error).sort()).toEqual(['code', 'details', 'message', 'requestId']);
  expect(typeof res.body.error.message).toBe('string');
  expect(Array.isArray(res.body.error.details)).toBe(true);
  expect(res.body.error.requestId).toBe(res.headers['x-request-id']);
  if (status === 401) expect(res.headers['www-authenticate']).toMatch(/^Bearer\b/);
}

export type Method = 'get' | 'post' | 'patch' | 'delete' | 'put';

export interface RouteCase {
  route: string;
  method: Method;
  path: () => string;
  body?: () => unknown;
}

export function call(ctx: TestContext, r: RouteCase, headers: Headers = {}) {
  const req = ctx.http()[r.method](r.path()).set(headers);
  return r.body ? req.send(r.body() as object) : req;
}

export async function countRows(ctx: TestContext, table: string, where = '1 = 1', params: unknown[] = []): Promise<number> {
  const rows: Array<{ n: number | string }> = await ctx.db.read((m) => m.query(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`, params));
  return Number(rows[0].n);
}

/** Row counts of every table a request could write to: a refused request leaves them all as they were. */
export async function writeCounts(ctx: TestContext): Promise<Record<string, number>> {
  const tables = ['users', 'projects', 'provider_keys', 'api_tokens', 'revoked_sessions', 'audit_events', 'virtual_keys', 'gateway_usage', 'key_health_events', 'webhooks', 'webhook_deliveries', 'webhook_attempts'];
  const out: Record<string, number> = {};
  for (const t of tables) out[t] = await countRows(ctx, t);
  return out;
}

export async function userRow(ctx: TestContext, id: string): Promise<Record<string, unknown>> {
  const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT * FROM users WHERE id = ?', [id]));
  return rows[0];
}

export const strongPassword = () => `pw-${crypto.randomBytes(12).toString('base64url')}`;
export const uniqueName = (prefix: string) => `${prefix}-${crypto.randomBytes(5).toString('hex')}`;

/** Every secret a suite handled; the last test of each file searches the captured log for them. */
export class SecretBook {
  private readonly values = new Set<string>();
  add(...values: Array<string | undefined | null>): void {
    for (const v of values) if (v) this.values.add(v);
  }
  addUser(u: TestUser): void {
    this.add(u.password, u.token);
  }
  /** Those that appear in the text (should be none). */
  foundIn(text: string): string[] {
    return [...this.values].filter((v) => text.includes(v));
  }
  get size(): number {
    return this.values.size;
  }
}

/** Walks a list endpoint with limit and cursor to its end; fails on a cursor loop. */
export async function walk(ctx: TestContext, path: string, headers: Headers, limit: number): Promise<{ pages: Array<Array<Record<string, unknown>>>; items: Array<Record<string, unknown>> }> {
  const pages: Array<Array<Record<string, unknown>>> = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const res: Response = await ctx.http().get(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`).set(headers);
    expectStatus(res, 200);
    expect(Object.keys(res.body).sort()).toEqual(['items', 'nextCursor']);
    expect(res.body.items.length).toBeLessThanOrEqual(limit);
    pages.push(res.body.items);
    cursor = res.body.nextCursor;
    if (pages.length > 1000) throw new Error('cursor never ends');
  } while (cursor);
  return { pages, items: pages.flat() };
}
