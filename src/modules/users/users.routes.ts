import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { toPage } from '../../pagination';
import { parse, parseId } from '../../http/validate';
import type { UsersService } from './users.service';
import { createUserBody, listUsersQuery, updateUserBody } from './users.schemas';

export function usersRoutes(users: UsersService): Router {
  const r = Router();

  r.post('/', async (req, res) => {
    const body = parse(createUserBody, req.body);
    res.status(201).json(await users.create(actorOf(res), body));
  });

  r.get('/', async (req, res) => {
    const { limit, cursor, ...filter } = parse(listUsersQuery, req.query, 'query');
    res.json(await users.list(actorOf(res), filter, toPage({ limit, cursor })));
  });

  r.get('/:id', async (req, res) => {
    res.json(await users.get(actorOf(res), parseId(req.params.id)));
  });

  r.patch('/:id', async (req, res) => {
    const id = parseId(req.params.id);
    const body = parse(updateUserBody, req.body);
    res.json(await users.update(actorOf(res), id, body));
  });

  return r;
}
