import { Router, RequestHandler } from 'express';
import { actorOf, clientOf, SESSION_COOKIE } from '../../http/authenticate';
import { parse } from '../../http/validate';
import type { AuthService } from './auth.service';
import { SCOPES } from './actor';
import { changePasswordBody, loginBody } from './auth.schemas';

export function authRoutes(auth: AuthService, authenticate: RequestHandler): Router {
  const r = Router();

  r.post('/login', async (req, res) => {
    const body = parse(loginBody, req.body);
    const result = await auth.login(body.username, body.password, clientOf(req, res));
    res.setHeader('Cache-Control', 'no-store');
    if (body.cookie) {
      // The console's session is never readable by page scripts: the token goes only into an HttpOnly cookie.
      res.cookie(SESSION_COOKIE, result.accessToken, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: '/api/v1', maxAge: result.expiresIn * 1000 });
      res.json({ tokenType: 'Cookie', expiresIn: result.expiresIn, user: result.user, csrfToken: auth.csrfForJti(result.jti) });
      return;
    }
    res.json({ accessToken: result.accessToken, tokenType: result.tokenType, expiresIn: result.expiresIn, user: result.user });
  });

  r.post('/logout', authenticate, async (req, res) => {
    await auth.logout(actorOf(res));
    res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: '/api/v1' });
    res.status(204).end();
  });

  r.get('/me', authenticate, (_req, res) => {
    const a = actorOf(res);
    const csrfToken = auth.csrfTokenFor(a);
    res.json({
      id: a.userId,
      username: a.username,
      role: a.role,
      status: 'active',
      via: a.via,
      ...(a.mustChangePassword ? { mustChangePassword: true } : {}),
      // scopes: what the token was granted; effectiveScopes: what it may do now (narrowed by the user's current role).
      ...(a.tokenScopes ? { scopes: a.tokenScopes, effectiveScopes: SCOPES.filter((s) => a.rights.has(s)), apiTokenId: a.apiTokenId } : {}),
      ...(csrfToken ? { csrfToken } : {}),
    });
  });

  r.post('/password', authenticate, async (req, res) => {
    const body = parse(changePasswordBody, req.body);
    await auth.changePassword(actorOf(res), body.currentPassword, body.newPassword);
    res.status(204).end();
  });

  return r;
}
