import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Router, type Response } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../pagination';
import { parse } from '../../http/validate';
import type { Actor } from '../auth/actor';
import type { AuditFilter } from './audit.repository';
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
    const actor = actorOf(res);
    await audit.withJobSlot(actor, () => streamExport(actor, filter, format, res));
  });

  async function streamExport(actor: Actor, filter: AuditFilter, format: 'csv' | 'ndjson', res: Response): Promise<void> {
    const chunks = await audit.openExport(actor, filter, format);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    res.setHeader('Content-Type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8');
    res.setHeader('Content-Disposition', `attachment; filename="pkv-audit-${stamp}.${format === 'csv' ? 'csv' : 'ndjson'}"`);
    try {
      // pipeline() applies backpressure (memory stays flat however large the export) and stops reading on a disconnect.
      // One batch buffered at most (each is up to a thousand rows): a stalled client holds little memory.
      await pipeline(Readable.from(chunks, { highWaterMark: 1 }), res);
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE') return; // the client went away
      throw err;
    }
  }

  r.get('/verify', async (req, res) => {
    const q = parse(verifyAuditQuery, req.query, 'query');
    const actor = actorOf(res);
    const expected = q.headSeq !== undefined && q.headHash ? { seq: q.headSeq, hash: q.headHash } : undefined;
    res.json(await audit.withJobSlot(actor, () => audit.verify(actor, expected)));
  });

  return r;
}
