import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../pagination';
import { parse, parseId } from '../../http/validate';
import type { ApiTokensService } from './api-tokens.service';
import { createTokenBody, listTokensQuery, renewTokenBody, updateTokenBody } from './api-tokens.schemas';

export function apiTokensRoutes(tokens: ApiTokensService): Router {
  const r = Router();

  r.post('/', async (req, res) => {
    const body = parse(createTokenBody, req.body);
    res.setHeader('Cache-Control', 'no-store');
    res.status(201).json(await tokens.create(actorOf(res), body));
  });

  r.get('/', async (req, res) => {
    const { userId, ...page } = parse(listTokensQuery, req.query, 'query');
    res.json(await tokens.list(actorOf(res), userId, toPage(page)));
  });

  r.get('/:id', async (req, res) => {
    res.json(await tokens.get(actorOf(res), parseId(req.params.id)));
  });

  r.patch('/:id', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await tokens.rename(actorOf(res), id, parse(updateTokenBody, req.body).name));
  });

  r.post('/:id/regenerate', async (req, res) => {
    const id = parseId(req.params.id);
    res.setHeader('Cache-Control', 'no-store');
    res.json(await tokens.regenerate(actorOf(res), id));
  });

  r.post('/:id/renew', async (req, res) => {
    const id = parseId(req.params.id);
    const { expiresInDays } = parse(renewTokenBody, req.body ?? {});
    res.json(await tokens.renew(actorOf(res), id, expiresInDays));
  });

  r.delete('/:id', async (req, res) => {
    await tokens.revoke(actorOf(res), parseId(req.params.id));
    res.status(204).end();
  });

  return r;
}
