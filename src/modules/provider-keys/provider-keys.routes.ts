import { Router } from 'express';
import { actorOf } from '../../http/authenticate';
import { type PageResult, toPage } from '../../http/pagination';
import { parse, parseId } from '../../http/validate';
import type { Actor } from '../auth/actor';
import type { ProviderKey, ProviderKeysService, Revealed } from './provider-keys.service';
import { createKeyBody, keyAuditQuery, listKeysQuery, replaceSecretBody, revealBody, updateKeyBody } from './provider-keys.schemas';

/** Set on every answer of the reveal route once the caller is known, before the request is checked: nothing on the way may keep a copy. */
export const REVEAL_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['Cache-Control', 'no-store'],
  ['Pragma', 'no-cache'],
];

/** The reveal route's work, shared by its express route and its fast lane (src/http/fast-lane.ts). */
export function revealAnswer(keys: ProviderKeysService, actor: Actor, rawId: string, body: unknown): Promise<Revealed> {
  const id = parseId(rawId);
  const { reason } = parse(revealBody, body ?? {});
  return keys.reveal(actor, id, reason || undefined);
}

/** The list route's work, shared by its express route and its fast lane. */
export function listAnswer(keys: ProviderKeysService, actor: Actor, query: unknown): Promise<PageResult<ProviderKey>> {
  const { limit, cursor, ...filter } = parse(listKeysQuery, query, 'query');
  return keys.list(actor, filter, toPage({ limit, cursor }));
}

export function providerKeysRoutes(keys: ProviderKeysService): Router {
  const r = Router();

  r.post('/', async (req, res) => {
    res.status(201).json(await keys.create(actorOf(res), parse(createKeyBody, req.body)));
  });

  r.get('/', async (req, res) => {
    res.json(await listAnswer(keys, actorOf(res), req.query));
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
    for (const [name, value] of REVEAL_HEADERS) res.setHeader(name, value);
    res.json(await revealAnswer(keys, actorOf(res), req.params.id, req.body));
  });

  r.get('/:id/audit-events', async (req, res) => {
    const id = parseId(req.params.id);
    res.json(await keys.auditTrail(actorOf(res), id, toPage(parse(keyAuditQuery, req.query, 'query'))));
  });

  return r;
}
