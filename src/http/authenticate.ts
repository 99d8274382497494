import type { Request, RequestHandler, Response } from 'express';
import { ForbiddenError, UnauthorizedError } from '../errors';
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
function credentialOf(req: Request): string | undefined {
  const header = req.get('authorization');
  const bearer = header === undefined ? undefined : /^Bearer +([^\s]+) *$/i.exec(header)?.[1];
  if (header !== undefined && bearer === undefined) throw new UnauthorizedError();
  const apiKey = req.get('x-api-key')?.trim();
  // X-API-Key carries the vault's own tokens only; a session JWT belongs in Authorization.
  if (apiKey !== undefined && !apiKey.startsWith('pkv_')) throw new UnauthorizedError();
  if (bearer && apiKey && bearer !== apiKey) throw new UnauthorizedError();
  return bearer ?? apiKey;
}

/** Resolves the caller into res.locals.actor, or answers 401 with one message for every kind of bad credential. */
export function authenticate(sessions: CredentialVerifier, apiTokens: ApiTokenVerifier): RequestHandler {
  return async (req, res, next) => {
    const header = credentialOf(req);
    const cookie = header ? undefined : (req.cookies as Record<string, string> | undefined)?.[SESSION_COOKIE];
    const credential = header ?? cookie;
    if (!credential || credential.length > 4096) throw new UnauthorizedError();
    const client = clientOf(req, res);
    const actor = cookie
      ? await sessions.authenticateSession(cookie, client, true)
      : credential.startsWith('pkv_')
        ? await apiTokens.authenticate(credential, client)
        : await sessions.authenticateSession(credential, client);
    if (cookie && !SAFE_METHODS.has(req.method) && !sessions.checkCsrf(actor, req.get('x-csrf-token'))) {
      throw new ForbiddenError('Missing or wrong CSRF token');
    }
    res.locals.actor = actor;
    next();
  };
}

export function actorOf(res: Response): Actor {
  const actor = res.locals.actor as Actor | undefined;
  if (!actor) throw new UnauthorizedError();
  return actor;
}
