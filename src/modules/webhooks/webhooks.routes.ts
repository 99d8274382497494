import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { parse, parseId } from '../../http/validate';
import { toPage } from '../../pagination';
import type { WebhooksService } from './webhooks.service';
import { createWebhookBody, listWebhooksQuery } from './webhooks.schemas';

/** Mounted at /webhooks: admin sessions only (see assertManages). */
export function webhooksRoutes(webhooks: WebhooksService): Router {
  const r = Router();

  r.post('/', async (req, res) => {
    // The answer may hold a generated secret, shown once: set first, so every answer carries it.
    res.setHeader('Cache-Control', 'no-store');
    res.status(201).json(await webhooks.create(actorOf(res), parse(createWebhookBody, req.body)));
  });

  r.get('/', async (req, res) => {
    res.json(await webhooks.list(actorOf(res), toPage(parse(listWebhooksQuery, req.query, 'query'))));
  });

  r.get('/:id', async (req, res) => {
    res.json(await webhooks.get(actorOf(res), parseId(req.params.id)));
  });

  r.delete('/:id', async (req, res) => {
    await webhooks.delete(actorOf(res), parseId(req.params.id));
    res.status(204).end();
  });

  r.get('/:id/deliveries', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await webhooks.deliveries(actorOf(res), id, toPage(parse(listWebhooksQuery, req.query, 'query'))));
  });

  return r;
}
