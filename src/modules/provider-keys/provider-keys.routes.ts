import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../pagination';
import { parse, parseId } from '../../http/validate';
import type { ProviderKeysService } from './provider-keys.service';
import { createKeyBody, keyAuditQuery, listKeysQuery, replaceSecretBody, revealBody, updateKeyBody } from './provider-keys.schemas';

export function providerKeysRoutes(keys: ProviderKeysService): Router {
  const r = Router();

  r.post('/', async (req, res) => {
    res.status(201).json(await keys.create(actorOf(res), parse(createKeyBody, req.body)));
  });

  r.get('/', async (req, res) => {
    const { limit, cursor, ...filter } = parse(listKeysQuery, req.query, 'query');
    res.json(await keys.list(actorOf(res), filter, toPage({ limit, cursor })));
  });

  r.get('/:id', async (req, res) => {
    res.json(await keys.get(actorOf(res), parseId(req.params.id)));
  });

  r.patch('/:id', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await keys.update(actorOf(res), id, parse(updateKeyBody, req.body)));
  });

  r.put('/:id/secret', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await keys.replaceSecret(actorOf(res), id, parse(replaceSecretBody, req.body).secret));
  });

  r.delete('/:id', async (req, res) => {
    await keys.delete(actorOf(res), parseId(req.params.id));
    res.status(204).end();
  });

  r.post('/:id/reveal', async (req, res) => {
    // Set before the request is checked, so refusals carry them too: nothing on the way may keep a copy.
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Pragma', 'no-cache');
    const id = parseId(req.params.id);
    const { reason } = parse(revealBody, req.body ?? {});
    res.json(await keys.reveal(actorOf(res), id, reason || undefined));
  });

  r.get('/:id/audit-events', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await keys.auditTrail(actorOf(res), id, toPage(parse(keyAuditQuery, req.query, 'query'))));
  });

  return r;
}
