import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { parse, parseId } from '../../http/validate';
import { toPage } from '../../pagination';
import type { HealthService } from './health.service';
import { healthHistoryQuery } from './health.schemas';

/** Mounted under /provider-keys, after that router: a key's active check and its health history. */
export function keyHealthRoutes(health: HealthService): Router {
  const r = Router();

  r.post('/:id/check', async (req, res) => {
    res.json(await health.check(actorOf(res), parseId(req.params.id)));
  });

  r.get('/:id/health', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await health.history(actorOf(res), id, toPage(parse(healthHistoryQuery, req.query, 'query'))));
  });

  return r;
}
