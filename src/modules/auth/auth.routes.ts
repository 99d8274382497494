import { Router, RequestHandler } from 'express';
import { actorOf, clientOf } from '../../http/authenticate';
import { parse } from '../../http/validate';
import type { AuthService } from './auth.service';
import { changePasswordBody, loginBody } from './auth.schemas';

export function authRoutes(auth: AuthService, authenticate: RequestHandler): Router {
  const r = Router();

  r.post('/login', async (req, res) => {
    const body = parse(loginBody, req.body);
    const result = await auth.login(body.username, body.password, clientOf(req, res));
    res.setHeader('Cache-Control', 'no-store');
    res.json({ accessToken: result.accessToken, tokenType: result.tokenType, expiresIn: result.expiresIn, user: result.user });
  });

  r.post('/logout', authenticate, async (_req, res) => {
    await auth.logout(actorOf(res));
    res.status(204).end();
  });

  r.get('/me', authenticate, (_req, res) => {
    const a = actorOf(res);
    res.json({ id: a.userId, username: a.username, role: a.role, status: 'active', via: a.via, ...(a.tokenScopes ? { scopes: a.tokenScopes, apiTokenId: a.apiTokenId } : {}) });
  });

  r.post('/password', authenticate, async (req, res) => {
    const body = parse(changePasswordBody, req.body);
    await auth.changePassword(actorOf(res), body.currentPassword, body.newPassword);
    res.status(204).end();
  });

  return r;
}
