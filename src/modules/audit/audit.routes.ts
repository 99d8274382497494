import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../http/pagination';
import { parse } from '../../http/validate';
import type { AuditService } from './audit.service';
import { listAuditQuery } from './audit.schemas';

export function auditRoutes(audit: AuditService): Router {
  const r = Router();

  r.get('/', async (req, res) => {
    const { limit, cursor, ...filter } = parse(listAuditQuery, req.query, 'query');
    res.json(await audit.list(actorOf(res), filter, toPage({ limit, cursor })));
  });

  return r;
}
