import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../pagination';
import { parse, parseId } from '../../http/validate';
import type { VirtualKeysService } from './virtual-keys.service';
import { createVirtualKeyBody, listVirtualKeysQuery, usageQuery } from './virtual-keys.schemas';

/** Mounted under /provider-keys, after that router: a key's virtual keys and its gateway usage. */
export function keyGatewayRoutes(virtualKeys: VirtualKeysService): Router {
  const r = Router();

  r.post('/:id/virtual-keys', async (req, res) => {
    // Set first, so refusals carry it too: the answer holds a credential shown once.
    res.setHeader('Cache-Control', 'no-store');
    const id = parseId(req.params.id);
    const { reason, ...input } = parse(createVirtualKeyBody, req.body ?? {});
    res.status(201).json(await virtualKeys.create(actorOf(res), id, { ...input, reason: reason || undefined }));
  });

  r.get('/:id/virtual-keys', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await virtualKeys.list(actorOf(res), id, toPage(parse(listVirtualKeysQuery, req.query, 'query'))));
  });

  r.get('/:id/usage', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await virtualKeys.keyUsage(actorOf(res), id, parse(usageQuery, req.query, 'query')));
  });

  return r;
}

/** Mounted at /virtual-keys. */
export function virtualKeysRoutes(virtualKeys: VirtualKeysService): Router {
  const r = Router();

  r.get('/:id', async (req, res) => {
    res.json(await virtualKeys.get(actorOf(res), parseId(req.params.id)));
  });

  r.delete('/:id', async (req, res) => {
    await virtualKeys.revoke(actorOf(res), parseId(req.params.id));
    res.status(204).end();
  });

  return r;
}
