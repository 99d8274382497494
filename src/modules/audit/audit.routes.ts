import { once } from 'node:events';
import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../http/pagination';
import { parse } from '../../http/validate';
import { ForbiddenError } from '../../errors';
import { can } from '../auth/actor';
import type { AuditService } from './audit.service';
import { exportAuditQuery, listAuditQuery, verifyAuditQuery } from './audit.schemas';

export function auditRoutes(audit: AuditService): Router {
  const r = Router();

  r.get('/', async (req, res) => {
    const { limit, cursor, ...filter } = parse(listAuditQuery, req.query, 'query');
    res.json(await audit.list(actorOf(res), filter, toPage({ limit, cursor })));
  });

  r.get('/export', async (req, res) => {
    const { format, ...filter } = parse(exportAuditQuery, req.query, 'query');
    const chunks = await audit.openExport(actorOf(res), filter, format);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    res.setHeader('Content-Type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
    res.setHeader('Content-Disposition', `attachment; filename="pkv-audit-${stamp}.${format === 'csv' ? 'csv' : 'ndjson'}"`);
    let aborted = false;
    res.on('close', () => (aborted = !res.writableFinished));
    for await (const chunk of chunks) {
      if (aborted) return;
      // Backpressure: wait for the socket to drain so memory stays flat however large the export.
      if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
    }
    res.end();
  });

  r.get('/verify', async (req, res) => {
    const q = parse(verifyAuditQuery, req.query, 'query');
    const actor = actorOf(res);
    if (!can(actor, 'audit:read')) throw new ForbiddenError('Verifying the audit trail needs the audit:read right');
    const expected = q.headSeq !== undefined && q.headHash ? { seq: q.headSeq, hash: q.headHash } : undefined;
    res.json(await audit.chain.verify(expected));
  });

  return r;
}
