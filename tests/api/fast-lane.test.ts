import crypto from 'node:crypto';
import express from 'express';
import request, { Response } from 'supertest';
import { withFastLane } from '../../src/http/fast-lane';
import { SECURITY_HEADERS, securityHeadersMiddleware } from '../../src/http/security-headers';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { bearer, REFUSED_CREDENTIALS, refusedCredentials, RefusedCredentials } from '../support/auth-helpers';

type Agent = ReturnType<typeof request>;
type Case = { name: string; lane: 'reveal' | 'list'; send: (agent: Agent) => request.Test };

/** Headers that differ between any two answers (or belong to the connection), left out of the comparison. */
const VOLATILE = new Set(['date', 'x-request-id', 'connection', 'keep-alive']);

/**
 * The fast lane serves POST /api/v1/provider-keys/:id/reveal and GET /api/v1/provider-keys outside express. Every
 * request of the corpus below goes once down express alone and once down the fast lane, on one database: same
 * status, same headers, same body, same audit row, same access line.
 */
describe('the fast lane answers exactly as express does', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let auditor: TestUser;
  let key: CreatedKey;
  let refused: RefusedCredentials;
  let revealToken: { token: string; auth: { Authorization: string } };
  let readToken: { token: string; auth: { Authorization: string } };
  let projectId: string;
  let cursor: string;

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '100000', PKV_LOG_LEVEL: 'info' });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    auditor = await ctx.user('auditor');
    const project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
    projectId = project.id;
    // A second page to point a cursor at, and another member's key the owner must not see listed.
    await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, name: 'second 100%_key' });
    await createKey(ctx, admin, { ownerId: other.id, projectId: project.id });
    cursor = (await ctx.http().get('/api/v1/provider-keys?limit=1').set(admin.auth).expect(200)).body.nextCursor;
    refused = await refusedCredentials(ctx, admin);
    refused.secrets.forEach((s) => ctx.secrets.add('refused credential', s));
    revealToken = await createApiToken(ctx, owner, ['provider-keys:reveal']);
    readToken = await createApiToken(ctx, owner, ['provider-keys:read']);
  });
  afterAll(() => ctx?.close());

  /** Express without the fast lane, behind the same leak-check tap as ctx.http(). */
  const expressAlone = () => request(ctx.secrets.tap(ctx.app));
  const path = (id = key.id) => `/api/v1/provider-keys/${id}/reveal`;
  const post = (agent: Agent, id?: string) => agent.post(path(id));

  const missing = crypto.randomUUID();
  const list = (agent: Agent, query = '') => agent.get(`/api/v1/provider-keys${query}`);
  const listCases = (): Array<Omit<Case, 'lane'>> => [
    { name: 'the owner, session, no query', send: (a) => list(a).set(owner.auth) },
    { name: 'the owner, a project filter and a page of 50', send: (a) => list(a, `?projectId=${projectId}&limit=50`).set(owner.auth) },
    { name: 'the owner, a page of one (a next cursor)', send: (a) => list(a, '?limit=1').set(owner.auth) },
    { name: 'the owner, from a cursor', send: (a) => list(a, `?limit=1&cursor=${cursor}`).set(owner.auth) },
    { name: "the owner, asking for another member's keys", send: (a) => list(a, `?ownerId=${other.id}`).set(owner.auth) },
    { name: 'the owner, API token with provider-keys:read', send: (a) => list(a).set(readToken.auth) },
    { name: 'the owner, API token in X-API-Key', send: (a) => list(a).set({ 'X-API-Key': readToken.token }) },
    { name: 'the owner, API token without provider-keys:read', send: (a) => list(a).set(revealToken.auth) },
    { name: 'an admin, every filter', send: (a) => list(a, `?projectId=${projectId}&ownerId=${owner.id}&provider=openai&status=active&q=100%25_`).set(admin.auth) },
    { name: 'an admin, deleted keys', send: (a) => list(a, '?status=deleted').set(admin.auth) },
    { name: 'another member', send: (a) => list(a).set(other.auth) },
    { name: 'an auditor', send: (a) => list(a).set(auditor.auth) },
    { name: 'an empty query string', send: (a) => list(a, '?').set(admin.auth) },
    { name: 'an unknown parameter', send: (a) => list(a, '?color=red').set(admin.auth) },
    { name: 'a repeated parameter', send: (a) => list(a, '?limit=1&limit=2').set(admin.auth) },
    { name: 'a limit that is not a number', send: (a) => list(a, '?limit=lots').set(admin.auth) },
    { name: 'a limit over the maximum', send: (a) => list(a, '?limit=100000').set(admin.auth) },
    { name: 'a cursor this API did not issue', send: (a) => list(a, '?cursor=bm90LWEtY3Vyc29y').set(admin.auth) },
    { name: 'a project id that is not an id', send: (a) => list(a, '?projectId=1%27%20OR%201=1').set(admin.auth) },
    { name: 'an unknown provider', send: (a) => list(a, '?provider=nope').set(admin.auth) },
    { name: 'an over-long search', send: (a) => list(a, `?q=${'q'.repeat(200)}`).set(admin.auth) },
    { name: 'a malformed percent-encoding', send: (a) => list(a, '?q=%E0%A4%A').set(admin.auth) },
    { name: 'a plus for a space', send: (a) => list(a, '?q=second+100').set(admin.auth) },
    { name: 'a JSON body on a GET', send: (a) => list(a).set(admin.auth).set('Content-Type', 'application/json').send('{}') },
    { name: 'a malformed JSON body on a GET', send: (a) => list(a).set(admin.auth).set('Content-Type', 'application/json').send('{"x":') },
    { name: 'an X-Request-Id to keep', send: (a) => list(a).set(owner.auth).set('X-Request-Id', `trace-${crypto.randomBytes(6).toString('hex')}`) },
    { name: 'If-None-Match: * (express answers 304)', send: (a) => list(a).set(owner.auth).set('If-None-Match', '*') },
    { name: 'If-None-Match with an entity tag', send: (a) => list(a).set(owner.auth).set('If-None-Match', '"abc"') },
    { name: 'If-Modified-Since', send: (a) => list(a).set(owner.auth).set('If-Modified-Since', new Date(Date.now() + 3600_000).toUTCString()) },
    ...REFUSED_CREDENTIALS.map((c) => ({ name: `refused: ${c}`, send: (a: Agent) => list(a).set(refused.headers[c]()) })),
  ];
  const cases = (): Case[] => [...revealCases().map((c) => ({ ...c, lane: 'reveal' as const })), ...listCases().map((c) => ({ ...c, lane: 'list' as const }))];
  const revealCases = (): Array<Omit<Case, 'lane'>> => [
    { name: 'the owner, session, empty object', send: (a) => post(a).set(owner.auth).send({}) },
    { name: 'the owner, session, no body at all', send: (a) => post(a).set(owner.auth) },
    { name: 'the owner with a reason', send: (a) => post(a).set(owner.auth).send({ reason: 'rotating the gateway' }) },
    { name: 'the owner, API token with the scope', send: (a) => post(a).set(revealToken.auth).send({}) },
    { name: 'the owner, API token in X-API-Key', send: (a) => post(a).set({ 'X-API-Key': revealToken.token }).send({}) },
    { name: 'the owner, API token without the scope', send: (a) => post(a).set(readToken.auth).send({}) },
    { name: 'an admin without a reason', send: (a) => post(a).set(admin.auth).send({}) },
    { name: 'an admin with a reason', send: (a) => post(a).set(admin.auth).send({ reason: 'incident 42' }) },
    { name: 'another member', send: (a) => post(a).set(other.auth).send({}) },
    { name: 'an auditor', send: (a) => post(a).set(auditor.auth).send({ reason: 'curious' }) },
    { name: 'a key that does not exist', send: (a) => post(a, missing).set(owner.auth).send({}) },
    { name: 'an id that is not an id', send: (a) => post(a, 'not-an-id').set(owner.auth).send({}) },
    { name: 'an unknown field', send: (a) => post(a).set(owner.auth).send({ reason: 'x', extra: 1 }) },
    { name: 'a reason of the wrong type', send: (a) => post(a).set(owner.auth).send({ reason: 42 }) },
    { name: 'an over-long reason', send: (a) => post(a).set(admin.auth).send({ reason: 'r'.repeat(5000) }) },
    { name: 'a JSON array', send: (a) => post(a).set(owner.auth).set('Content-Type', 'application/json').send('[]') },
    { name: 'a JSON string at the top', send: (a) => post(a).set(owner.auth).set('Content-Type', 'application/json').send('"x"') },
    { name: 'malformed JSON', send: (a) => post(a).set(owner.auth).set('Content-Type', 'application/json').send('{"reason":') },
    { name: 'a repeated key', send: (a) => post(a).set(admin.auth).set('Content-Type', 'application/json').send('{"reason":"a","reason":"b"}') },
    { name: 'an unpaired surrogate', send: (a) => post(a).set(admin.auth).set('Content-Type', 'application/json').send('{"reason":"\\ud800"}') },
    { name: 'bytes that are not UTF-8', send: (a) => post(a).set(admin.auth).set('Content-Type', 'application/json').send(Buffer.from([0x7b, 0x22, 0x72, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])) },
    { name: 'a text/plain body', send: (a) => post(a).set(owner.auth).set('Content-Type', 'text/plain').send('reason') },
    { name: 'a form body', send: (a) => post(a).set(owner.auth).type('form').send({ reason: 'x' }) },
    { name: 'a body over the limit', send: (a) => post(a).set(admin.auth).send({ reason: 'r'.repeat(70 * 1024) }) },
    { name: 'an explicit UTF-8 charset', send: (a) => post(a).set(owner.auth).set('Content-Type', 'application/json; charset=utf-8').send('{}') },
    { name: 'a Latin-1 charset', send: (a) => post(a).set(owner.auth).set('Content-Type', 'application/json; charset=iso-8859-1').send('{}') },
    { name: 'an X-Request-Id to keep', send: (a) => post(a).set(owner.auth).set('X-Request-Id', `trace-${crypto.randomBytes(6).toString('hex')}`).send({}) },
    { name: 'an X-Request-Id to replace', send: (a) => post(a).set(owner.auth).set('X-Request-Id', 'bad id!').send({}) },
    ...REFUSED_CREDENTIALS.map((c) => ({ name: `refused: ${c}`, send: (a: Agent) => post(a).set(refused.headers[c]()).send({}) })),
  ];

  const headersOf = (res: Response) => Object.fromEntries(Object.entries(res.headers).filter(([k]) => !VOLATILE.has(k)));
  const bodyOf = (res: Response) => {
    const body = structuredClone(res.body) as { error?: { requestId?: string }; revealedAt?: string };
    if (body.error?.requestId) body.error.requestId = '<id>';
    if (body.revealedAt) body.revealedAt = '<time>';
    return body;
  };
  const auditOf = async (res: Response) => {
    const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT action, outcome, actor_id, actor_role, via, key_id, owner_id, project_id, reason, detail, ip, user_agent FROM audit_events WHERE request_id = ?', [res.headers['x-request-id']]));
    return rows;
  };
  const accessOf = (res: Response) =>
    ctx.capture.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.event === 'http.access' && l.requestId === res.headers['x-request-id'])
      .map(({ method, route, status, actorId }) => ({ method, route, status, actorId }));

  it.each(cases().map((c) => [c.lane, c.name, c] as const))('%s: %s', async (_lane, _name, c) => {
    const viaExpress = await c.send(expressAlone());
    const viaFastLane = await c.send(ctx.http());
    expect(viaFastLane.status).toBe(viaExpress.status);
    expect(bodyOf(viaFastLane)).toEqual(bodyOf(viaExpress));
    expect(headersOf(viaFastLane)).toEqual(headersOf(viaExpress));
    const idKind = (res: Response) => (String(res.headers['x-request-id']).startsWith('trace-') ? 'kept' : /^[0-9a-f-]{36}$/.test(String(res.headers['x-request-id'])) ? 'fresh' : 'other');
    expect(idKind(viaFastLane)).toBe(idKind(viaExpress));
    expect(await auditOf(viaFastLane)).toEqual(await auditOf(viaExpress));
    const line = accessOf(viaFastLane);
    expect(line).toHaveLength(1);
    expect(line).toEqual(accessOf(viaExpress));
  });

  it('mirrors the express middleware on its routes: one added there must be added to the fast lane too', () => {
    type Layer = { name: string; rawPath?: string; route?: unknown; handle: { stack?: Layer[] } };
    /** The middleware express runs for a path, in order (routes and routers mounted elsewhere left out). */
    const onPath = (stack: Layer[], path: string): string[] =>
      stack.flatMap((l) => {
        const mount = l.rawPath ?? '/';
        if (l.route || !(mount === '/' || path === mount || path.startsWith(`${mount}/`))) return [];
        return l.handle.stack ? onPath(l.handle.stack, mount === '/' ? path : path.slice(mount.length)) : [l.name];
      });
    const app = ctx.app as unknown as { router: { stack: Layer[] } };
    const lanes = [`/api/v1/provider-keys/${key.id}/reveal`, '/api/v1/provider-keys'];
    expect(lanes.map((p) => onPath(app.router.stack, p))).toEqual(lanes.map(() => [
      'requestId',
      'securityHeaders',
      '<anonymous>', // access log
      '<anonymous>', // Cache-Control: no-store
      'cookieParser', // the fast lane takes no request with a Cookie header
      '<anonymous>', // JSON body
      'routeBase',
      '<anonymous>', // authenticate
      // then the route; past it, only what answers when nothing did (the console, 404, the error handler)
      'serveStatic',
      'notFoundRoute',
      '<anonymous>',
    ]));
  });

  it('covers answers of every kind: success, refusals, bad input and bad credentials', async () => {
    const statuses = { reveal: new Set<number>(), list: new Set<number>() };
    for (const c of cases()) statuses[c.lane].add((await c.send(ctx.http())).status);
    expect([...statuses.reveal].sort()).toEqual([200, 400, 401, 403, 404, 413]);
    expect([...statuses.list].sort()).toEqual([200, 304, 400, 401, 403]);
  });

  it("lists what express lists: the owner's keys only, newest first, paged by the same cursor", async () => {
    const res = await list(ctx.http(), `?projectId=${projectId}`).set(owner.auth);
    expect(res.status).toBe(200);
    expect(res.body.items.map((k: { ownerId: string }) => k.ownerId)).toEqual([owner.id, owner.id]);
    expect(res.body.items.map((k: { name: string }) => k.name)[0]).toBe('second 100%_key');
    expect(res.body.items[1]).toEqual(expect.objectContaining({ id: key.id, hint: key.hint, createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) }));
    expect(JSON.stringify(res.body)).not.toContain(key.secret);
    const next = await list(ctx.http(), `?limit=1&cursor=${cursor}`).set(admin.auth);
    expect(next.body.items).toHaveLength(1);
    expect(next.body.items[0].id < Buffer.from(cursor, 'base64url').toString()).toBe(true);
  });

  it('reveals the stored secret, once the audit row is committed', async () => {
    const res = await post(ctx.http()).set(owner.auth).send({});
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: key.id, secret: key.secret, hint: key.hint, revealedAt: expect.any(String) });
    expect(await auditOf(res)).toEqual([expect.objectContaining({ action: 'provider_key.reveal', outcome: 'success', actor_id: owner.id, key_id: key.id })]);
  });

  it('answers 429 with Retry-After as express does, once the allowance is spent', async () => {
    const limited = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '2' });
    try {
      const a = await limited.user('admin');
      const o = await limited.user('member');
      const k = await createKey(limited, a, { ownerId: o.id, projectId: (await createProject(limited, a)).id });
      for (let i = 0; i < 2; i++) expect((await limited.http().post(`/api/v1/provider-keys/${k.id}/reveal`).set(o.auth).send({})).status).toBe(200);
      const viaFastLane = await limited.http().post(`/api/v1/provider-keys/${k.id}/reveal`).set(o.auth).send({});
      const viaExpress = await request(limited.secrets.tap(limited.app)).post(`/api/v1/provider-keys/${k.id}/reveal`).set(o.auth).send({});
      expect(viaFastLane.status).toBe(429);
      expect(viaFastLane.headers['retry-after']).toMatch(/^\d+$/);
      expect(bodyOf(viaFastLane)).toEqual(bodyOf(viaExpress));
      expect(Object.keys(headersOf(viaFastLane)).sort()).toEqual(Object.keys(headersOf(viaExpress)).sort());
      expect(await limited.db.read((m) => m.query("SELECT outcome FROM audit_events WHERE request_id = ?", [viaFastLane.headers['x-request-id']]))).toEqual([{ outcome: 'rate_limited' }]);
    } finally {
      await limited.close();
    }
  });
});

describe('which requests take the fast lane', () => {
  let ctx: TestContext;
  let owner: TestUser;
  let key: CreatedKey;
  /** Express stands in as a teapot: whatever the lane does not serve answers 418. */
  let lane: Agent;

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '100000' });
    const admin = await ctx.user('admin');
    owner = await ctx.user('member');
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: (await createProject(ctx, admin)).id });
    const teapot = express();
    teapot.use((_req, res) => {
      res.status(418).end();
    });
    lane = request(withFastLane(teapot, ctx.container));
  });
  afterAll(() => ctx?.close());

  it('serves the plain route with a header credential, whether session or API token', async () => {
    expect((await lane.post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({})).status).toBe(200);
    const token = await createApiToken(ctx, owner, ['provider-keys:reveal']);
    expect((await lane.post(`/api/v1/provider-keys/${key.id}/reveal`).set({ 'X-API-Key': token.token })).status).toBe(200);
    expect((await lane.post(`/api/v1/provider-keys/${key.id}/reveal`)).status).toBe(401);
  });

  it('serves the plain key list, with or without a query string', async () => {
    const res = await lane.get('/api/v1/provider-keys').set(owner.auth);
    expect(res.status).toBe(200);
    expect(res.body.items.map((k: { id: string }) => k.id)).toEqual([key.id]);
    expect((await lane.get('/api/v1/provider-keys?limit=1').set(owner.auth)).status).toBe(200);
    expect((await lane.get('/api/v1/provider-keys?limit=nope').set(owner.auth)).status).toBe(400);
    expect((await lane.get('/api/v1/provider-keys')).status).toBe(401);
  });

  it.each([
    ['a cookie session (CSRF is checked in express)', (a: Agent) => a.post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).set('Cookie', 'pkv_session=x')],
    ['another method', (a: Agent) => a.get(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth)],
    ['a query string', (a: Agent) => a.post(`/api/v1/provider-keys/${key.id}/reveal?x=1`).set(owner.auth)],
    ['a trailing slash', (a: Agent) => a.post(`/api/v1/provider-keys/${key.id}/reveal/`).set(owner.auth)],
    ['another case', (a: Agent) => a.post(`/API/v1/provider-keys/${key.id}/reveal`).set(owner.auth)],
    ['a percent-encoded id', (a: Agent) => a.post(`/api/v1/provider-keys/${encodeURIComponent(`${key.id}/x`)}/reveal`).set(owner.auth)],
    ['another route', (a: Agent) => a.post(`/api/v1/provider-keys/${key.id}/secret`).set(owner.auth)],
    ['the key itself', (a: Agent) => a.get(`/api/v1/provider-keys/${key.id}`).set(owner.auth)],
    ['the list with a cookie session', (a: Agent) => a.get('/api/v1/provider-keys').set(owner.auth).set('Cookie', 'pkv_session=x')],
    ['the list with a trailing slash', (a: Agent) => a.get('/api/v1/provider-keys/?limit=1').set(owner.auth)],
    ['the list in another case', (a: Agent) => a.get('/api/v1/Provider-Keys').set(owner.auth)],
    ['the list by HEAD', (a: Agent) => a.head('/api/v1/provider-keys').set(owner.auth)],
    ['a conditional list (If-None-Match)', (a: Agent) => a.get('/api/v1/provider-keys').set(owner.auth).set('If-None-Match', '*')],
    ['the list by POST (a paste)', (a: Agent) => a.post('/api/v1/provider-keys').set(owner.auth).send({})],
    ['a longer name', (a: Agent) => a.get('/api/v1/provider-keysx').set(owner.auth)],
    ['another collection', (a: Agent) => a.get('/api/v1/api-tokens').set(owner.auth)],
  ])('leaves %s to express', async (_name, send) => {
    expect((await send(lane)).status).toBe(418);
  });

  it('answers with bearer credentials of one request, not of another', async () => {
    const res = await lane.post(`/api/v1/provider-keys/${key.id}/reveal`).set(bearer(`${owner.token}x`)).send({});
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('unauthorized');
  });
});

describe('security headers', () => {
  it('are what helmet itself sets, on express and fast-lane answers alike', async () => {
    const live = express();
    live.use(securityHeadersMiddleware);
    live.get('/', (_req, res) => {
      res.end();
    });
    const res = await request(live).get('/');
    const fromHelmet = Object.fromEntries(Object.entries(res.headers).filter(([k]) => !['date', 'connection', 'keep-alive', 'content-length', 'x-powered-by'].includes(k)));
    expect(Object.fromEntries(SECURITY_HEADERS.map(([k, v]) => [k.toLowerCase(), v]))).toEqual(fromHelmet);
    expect(fromHelmet['content-security-policy']).toContain("default-src 'self'");
    expect(fromHelmet['x-frame-options']).toBe('DENY');
  });
});
