import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../pagination';
import { parse, parseId } from '../../http/validate';
import type { ProjectsService } from './projects.service';
import { createProjectBody, listProjectsQuery, updateProjectBody } from './projects.schemas';

export function projectsRoutes(projects: ProjectsService): Router {
  const r = Router();

  r.post('/', async (req, res) => {
    res.status(201).json(await projects.create(actorOf(res), parse(createProjectBody, req.body)));
  });

  r.get('/', async (req, res) => {
    res.json(await projects.list(actorOf(res), toPage(parse(listProjectsQuery, req.query, 'query'))));
  });

  r.get('/:id', async (req, res) => {
    res.json(await projects.get(actorOf(res), parseId(req.params.id)));
  });

  r.patch('/:id', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await projects.update(actorOf(res), id, parse(updateProjectBody, req.body)));
  });

  r.delete('/:id', async (req, res) => {
    await projects.delete(actorOf(res), parseId(req.params.id));
    res.status(204).end();
  });

  return r;
}
