import type { IncomingHttpHeaders } from 'node:http';
import { parse as parseCookie } from 'cookie';
import type { Request, RequestHandler, Response } from 'express';
import { ForbiddenError, PasswordChangeRequiredError, UnauthorizedError } from '../errors';
import type { Actor } from '../modules/auth/actor';
import type { ClientInfo } from '../modules/auth/auth.service';

export interface CredentialVerifier {
  authenticateSession(token: string, client: ClientInfo, viaCookie?: boolean): Promise<Actor>;
  checkCsrf(actor: Actor, presented: string | undefined): boolean;
}

/** The web console's session cookie: HttpOnly, SameSite=Strict, Secure when served over TLS. */
export const SESSION_COOKIE = 'pkv_session';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
export interface ApiTokenVerifier {
  authenticate(token: string, client: ClientInfo): Promise<Actor>;
}

export function clientOf(req: Request, res: Response): ClientInfo {
  return { ip: req.ip ?? null, userAgent: req.get('user-agent') ?? null, requestId: String(res.locals.requestId ?? '') || null };
}

/** The credential from `Authorization: Bearer …` or `X-API-Key: pkv_…`; two different ones at once are refused. */
function credentialOf(headers: IncomingHttpHeaders): string | undefined {
  const header = headers.authorization;
  const bearer = header === undefined ? undefined : /^Bearer +([^\s]+) *$/i.exec(header)?.[1];
  if (header !== undefined && bearer === undefined) throw new UnauthorizedError();
  const rawApiKey = headers['x-api-key'];
  const apiKey = (Array.isArray(rawApiKey) ? rawApiKey.join(', ') : rawApiKey)?.trim();
  // X-API-Key carries the vault's own tokens only; a session JWT belongs in Authorization.
  if (apiKey !== undefined && !apiKey.startsWith('pkv_')) throw new UnauthorizedError();
  if (bearer && apiKey && bearer !== apiKey) throw new UnauthorizedError();
  return bearer ?? apiKey;
}

export interface Credentials {
  headers: IncomingHttpHeaders;
  method: string | undefined;
  client: ClientInfo;
}

/** The console's session cookie, read only when no header credential came (scripts never pay for cookie parsing). */
function sessionCookieOf(headers: IncomingHttpHeaders): string | undefined {
  return headers.cookie ? parseCookie(headers.cookie)[SESSION_COOKIE] : undefined;
}

/** The caller, or 401 with one message for every kind of bad credential (403 for a cookie without its CSRF token). */
export async function resolveActor(sessions: CredentialVerifier, apiTokens: ApiTokenVerifier, req: Credentials): Promise<Actor> {
  const header = credentialOf(req.headers);
  const cookie = header ? undefined : sessionCookieOf(req.headers);
  const credential = header ?? cookie;
  if (!credential || credential.length > 4096) throw new UnauthorizedError();
  const actor = cookie
    ? await sessions.authenticateSession(cookie, req.client, true)
    : credential.startsWith('pkv_')
      ? await apiTokens.authenticate(credential, req.client)
      : await sessions.authenticateSession(credential, req.client);
  if (cookie && !SAFE_METHODS.has(req.method ?? '')) {
    const csrf = req.headers['x-csrf-token'];
    if (!sessions.checkCsrf(actor, Array.isArray(csrf) ? csrf.join(', ') : csrf)) throw new ForbiddenError('Missing or wrong CSRF token');
  }
  return actor;
}

/**
 * Resolves the caller into res.locals.actor. A session that must change its password passes only where
 * `duringPasswordChange` says so (who am I, change my password, sign out): whoever chose that password cannot use it.
 */
export function authenticate(sessions: CredentialVerifier, apiTokens: ApiTokenVerifier, opts: { duringPasswordChange?: boolean } = {}): RequestHandler {
  return async (req, res, next) => {
    const actor = await resolveActor(sessions, apiTokens, { headers: req.headers, method: req.method, client: clientOf(req, res) });
    res.locals.actor = actor;
    if (actor.mustChangePassword && !opts.duringPasswordChange) throw new PasswordChangeRequiredError();
    next();
  };
}

export function actorOf(res: Response): Actor {
  const actor = res.locals.actor as Actor | undefined;
  if (!actor) throw new UnauthorizedError();
  return actor;
}
