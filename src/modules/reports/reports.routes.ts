import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { parse } from '../../http/validate';
import type { HygieneService } from './hygiene.service';
import { hygieneQuery } from './reports.schemas';

export const DEFAULT_HYGIENE_DAYS = 90;

/** Mounted at /reports. */
export function reportsRoutes(hygiene: HygieneService): Router {
  const r = Router();

  r.get('/hygiene', async (req, res) => {
    const q = parse(hygieneQuery, req.query, 'query');
    const report = await hygiene.report(actorOf(res), q.days ?? DEFAULT_HYGIENE_DAYS);
    if (q.format !== 'csv') return void res.json(report);
    const stamp = report.generatedAt.replace(/[:.]/g, '-');
    res.setHeader('Content-Type', 'text/csv; charset=utf-8');
    res.setHeader('Content-Disposition', `attachment; filename="pkv-hygiene-${stamp}.csv"`);
    res.send(hygiene.toCsv(report));
  });

  return r;
}
