import crypto from 'node:crypto';
import type { Response } from 'supertest';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createProject } from '../support/factories';
import { expectError, Headers, Method, SecretBook, strongPassword, uniqueName, writeCounts } from '../support/auth-helpers';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MISSING_ID = '01890000-0000-7000-8000-000000000000';

describe('HTTP hygiene', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;
  let project: { id: string; name: string };
  const book = new SecretBook();

  const api = (method: Method, path: string, headers: Headers = admin.auth) => ctx.http()[method](`/api/v1${path}`).set(headers);

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    member = await ctx.user('member');
    book.addUser(admin);
    book.addUser(member);
    project = await createProject(ctx, admin, uniqueName('hygiene'));
  });
  afterAll(() => ctx.close());

  /** One response of every kind the API gives (closures: the users and project exist once beforeAll ran). */
  const apiKinds: Record<string, () => Promise<Response>> = {
    'a 200 list': () => api('get', '/projects'),
    'a 200 read': () => api('get', `/projects/${project.id}`),
    'a 201 create': () => api('post', '/projects').send({ name: uniqueName('kind') }),
    'a 200 /auth/me': () => api('get', '/auth/me'),
    'a 200 login': () => ctx.http().post('/api/v1/auth/login').send({ username: member.username, password: member.password }),
    'a 204 logout': async () => api('post', '/auth/logout', { Authorization: `Bearer ${await ctx.login(member.username, member.password)}` }),
    'a 400 validation error': () => api('post', '/projects').send({ name: '' }),
    'a 400 malformed JSON body': () => api('post', '/projects').set('Content-Type', 'application/json').send('{"name": '),
    'a 400 bad path id': () => api('get', '/projects/not-a-uuid'),
    'a 401 without credentials': () => api('get', '/users', {}),
    'a 403': () => api('get', '/users', member.auth),
    'a 404 missing project': () => api('get', `/projects/${MISSING_ID}`),
    'a 404 unknown API route': () => api('get', '/no-such-thing'),
    'a 409 duplicate': () => api('post', '/projects').send({ name: project.name }),
    'a 413 oversize body': () => api('post', '/projects').send({ name: 'x'.repeat(70 * 1024) }),
    'a 200 /api/v1/healthz': () => ctx.http().get('/api/v1/healthz'),
  };
  const outsideKinds: Record<string, () => Promise<Response>> = {
    'a 200 /healthz': () => ctx.http().get('/healthz'),
    'a 200 /readyz': () => ctx.http().get('/readyz'),
    'a 404 outside the API': () => ctx.http().get('/no-such-page'),
  };
  const KINDS = Object.keys(apiKinds);
  const ALL_KINDS = [...KINDS, ...Object.keys(outsideKinds)];
  const sent = new Map<string, Promise<Response>>();
  /** Each kind is requested once; the header checks below all look at that one response. */
  const send = (story: string): Promise<Response> => {
    if (!sent.has(story)) {
      sent.set(
        story,
        (apiKinds[story] ?? outsideKinds[story])().then((res) => {
          if (res.body?.accessToken) book.add(res.body.accessToken);
          return res;
        }),
      );
    }
    return sent.get(story)!;
  };

  it.each(ALL_KINDS)('probes %s response with the status its name says', async (story) => {
    expect((await send(story)).status).toBe(Number(/^a (\d{3})/.exec(story)![1]));
  });

  describe('X-Request-Id', () => {
    it.each(ALL_KINDS)('is on %s response, and an error envelope carries the same id', async (story) => {
      const res = await send(story);
      expect(res.headers['x-request-id']).toMatch(UUID);
      if (res.status >= 400) expect(res.body.error.requestId).toBe(res.headers['x-request-id']);
    });

    it('echoes a well-formed incoming id and records it on the audit row', async () => {
      const id = `trace-${crypto.randomBytes(6).toString('hex')}`;
      const res = await api('post', '/projects').set('X-Request-Id', id).send({ name: uniqueName('traced') });
      expect(res.status).toBe(201);
      expect(res.headers['x-request-id']).toBe(id);
      const [row] = (await auditRows(ctx, { action: 'project.create' })).filter((r) => r.project_id === res.body.id);
      expect(row.request_id).toBe(id);
      const err = await api('get', `/projects/${MISSING_ID}`).set('X-Request-Id', id);
      expect(err.headers['x-request-id']).toBe(id);
      expect(err.body.error.requestId).toBe(id);
    });

    it.each([
      ['too short', 'abc'],
      ['too long', 'a'.repeat(65)],
      ['with spaces', 'has some spaces in it'],
      ['with markup', '<script>alert(1)</script>'],
      ['with a CRLF-free header injection attempt', 'abcdefgh;Set-Cookie=x'],
    ])('replaces an incoming id that is %s with its own', async (_story, incoming) => {
      const res = await api('get', '/projects').set('X-Request-Id', incoming);
      expect(res.status).toBe(200);
      expect(res.headers['x-request-id']).toMatch(UUID);
      expect(res.headers['x-request-id']).not.toBe(incoming);
    });

    it('gives every request its own id', async () => {
      const a = await api('get', '/projects');
      const b = await api('get', '/projects');
      expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);
    });
  });

  describe('security headers', () => {
    it.each(ALL_KINDS)('come from helmet on %s response', async (story) => {
      const res = await send(story);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['x-frame-options']).toBeDefined();
      expect(res.headers['cross-origin-opener-policy']).toBe('same-origin');
      expect(res.headers['content-security-policy']).toContain("default-src 'self'");
      expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(res.headers['x-powered-by']).toBeUndefined();
    });

    it.each(KINDS)('never include an ETag on %s API response', async (story) => {
      const res = await send(story);
      expect(res.headers.etag).toBeUndefined();
    });

    it.each([
      ['If-None-Match with a guessed tag', { 'If-None-Match': '"abc"' }],
      ['If-None-Match with a weak tag', { 'If-None-Match': 'W/"abc"' }],
      ['If-Modified-Since now', { 'If-Modified-Since': new Date().toUTCString() }],
    ])('answer a conditional GET (%s) with the full body, never 304', async (_story, headers) => {
      const res = await api('get', `/projects/${project.id}`).set(headers);
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(project.id);
    });

    it.each(KINDS)('mark %s API response Cache-Control: no-store', async (story) => {
      const res = await send(story);
      expect(res.headers['cache-control']).toBe('no-store');
    });

    it('answer JSON with an explicit charset', async () => {
      const res = await api('get', '/projects');
      expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    });
  });

  describe('health', () => {
    it('answers GET /healthz with 200 without credentials', async () => {
      const res = await ctx.http().get('/healthz');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ status: 'ok' });
    });

    it('answers GET /readyz with 200 while the database answers and the keyring matches', async () => {
      const res = await ctx.http().get('/readyz');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ status: 'ready', database: 'ok', keyring: 'ok' });
    });

    it('answers under /api/v1 too', async () => {
      expect((await ctx.http().get('/api/v1/healthz')).status).toBe(200);
      expect((await ctx.http().get('/api/v1/readyz')).status).toBe(200);
    });
  });

  describe('unknown routes', () => {
    it.each([
      ['GET', '/api/v1/no-such-thing', true],
      ['GET', '/api/v1/no-such-thing', false],
      ['POST', '/api/v1/no-such-thing', false],
      ['GET', '/no-such-page', false],
      ['PUT', '/api/v1/projects', true],
      ['DELETE', '/api/v1/users', true],
      ['POST', '/api/v1/auth/no-such-action', false],
      ['GET', '/api/v2/projects', true],
    ])('answer %s %s (credentials: %s) with the 404 envelope', async (method, path, withAuth) => {
      const req = ctx.http()[method.toLowerCase() as Method](path);
      const res = await (withAuth ? req.set(admin.auth) : req);
      expectError(res, 404, 'not_found');
    });
  });

  describe('console assets', () => {
    it.each([
      ['a missing asset', '/assets/no-such-file.js', 404],
      ['a missing nested asset', '/assets/deep/no-such-file.css', 404],
      ['the folder itself', '/assets/', 404],
      ['an encoded climb out of the folder', '/assets/..%2f..%2fpackage.json', 404],
      ['an encoded dot-dot climb', '/assets/%2e%2e/%2e%2e/package.json', 404],
      ['a backslash climb', '/assets/..%5c..%5cpackage.json', 404],
      ['a NUL byte', '/assets/index.js%00.css', 400],
    ])('answer %s (%s) with the error envelope, %i, and write no error line (anyone could repeat it)', async (_what, path, status) => {
      const before = ctx.capture.lines.length;
      const res = await ctx.http().get(path);
      expectError(res, status, status === 404 ? 'not_found' : 'validation_failed');
      expect(ctx.capture.lines.slice(before).filter((l) => /"level":"error"/.test(l))).toEqual([]);
    });
  });

  describe('bad input on every body', () => {
    interface BodyRoute {
      route: string;
      method: Method;
      path: () => string;
      auth: () => Headers;
      valid: () => Record<string, unknown>;
      /** A field and a value of the wrong type. */
      wrongType: Record<string, unknown>;
      /** Whether `{}` is missing required fields. */
      requires: boolean;
    }
    let target: TestUser;
    const bodyRoutes: BodyRoute[] = [
      { route: 'POST /auth/login', method: 'post', path: () => '/api/v1/auth/login', auth: () => ({}), valid: () => ({ username: member.username, password: member.password }), wrongType: { username: ['a'] }, requires: true },
      { route: 'POST /auth/password', method: 'post', path: () => '/api/v1/auth/password', auth: () => target.auth, valid: () => ({ currentPassword: target.password, newPassword: strongPassword() }), wrongType: { newPassword: { length: 20 } }, requires: true },
      { route: 'POST /users', method: 'post', path: () => '/api/v1/users', auth: () => admin.auth, valid: () => ({ username: uniqueName('body'), password: strongPassword(), role: 'member' }), wrongType: { role: 1 }, requires: true },
      { route: 'PATCH /users/:id', method: 'patch', path: () => `/api/v1/users/${target.id}`, auth: () => admin.auth, valid: () => ({ displayName: 'Valid Name' }), wrongType: { status: true }, requires: false },
      { route: 'POST /projects', method: 'post', path: () => '/api/v1/projects', auth: () => admin.auth, valid: () => ({ name: uniqueName('body') }), wrongType: { description: 12 }, requires: true },
      { route: 'PATCH /projects/:id', method: 'patch', path: () => `/api/v1/projects/${project.id}`, auth: () => admin.auth, valid: () => ({ description: 'valid' }), wrongType: { name: { first: 'x' } }, requires: false },
    ];
    type Sent = { contentType?: string; encoding?: string; raw?: string; json?: unknown };
    const cases: Array<[string, number, string, (r: BodyRoute) => Sent | undefined]> = [
      ['malformed JSON', 400, 'validation_failed', () => ({ contentType: 'application/json', raw: '{"name": "unterminated' })],
      ['JSON with a trailing comma', 400, 'validation_failed', () => ({ contentType: 'application/json', raw: '{"name": "x",}' })],
      ['a JSON array instead of an object', 400, 'validation_failed', () => ({ contentType: 'application/json', raw: '[]' })],
      ['a bare JSON string', 400, 'validation_failed', () => ({ contentType: 'application/json', raw: '"name"' })],
      ['a JSON null', 400, 'validation_failed', () => ({ contentType: 'application/json', raw: 'null' })],
      ['deeply nested arrays', 400, 'validation_failed', () => ({ contentType: 'application/json', raw: `${'['.repeat(20000)}${']'.repeat(20000)}` })],
      ['an unknown field', 400, 'validation_failed', (r) => ({ json: { ...r.valid(), isAdmin: true } })],
      ['a key given twice', 400, 'validation_failed', (r) => ({ contentType: 'application/json', raw: JSON.stringify(r.valid()).replace(/^\{("[^"]+"):/, '{$1:"first",$1:') })],
      ['a __proto__ field', 400, 'validation_failed', (r) => ({ contentType: 'application/json', raw: JSON.stringify(r.valid()).replace(/^\{/, '{"__proto__":{"role":"admin"},') })],
      ['a field of the wrong type', 400, 'validation_failed', (r) => ({ json: { ...r.valid(), ...r.wrongType } })],
      ['an empty object where fields are required', 400, 'validation_failed', (r) => (r.requires ? { json: {} } : undefined)],
      ['no body at all', 400, 'validation_failed', () => ({})],
      ['a text/plain body', 400, 'validation_failed', (r) => ({ contentType: 'text/plain', raw: JSON.stringify(r.valid()) })],
      ['a form-encoded body', 400, 'validation_failed', () => ({ contentType: 'application/x-www-form-urlencoded', raw: 'name=x&username=y' })],
      ['an unsupported charset', 400, 'validation_failed', (r) => ({ contentType: 'application/json; charset=latin1', raw: JSON.stringify(r.valid()) })],
      ['a body claiming gzip that is not', 400, 'validation_failed', (r) => ({ contentType: 'application/json', encoding: 'gzip', raw: JSON.stringify(r.valid()) })],
      ['an unknown content encoding', 400, 'validation_failed', (r) => ({ contentType: 'application/json', encoding: 'x-secret', raw: JSON.stringify(r.valid()) })],
      ['a body over 64 KiB', 413, 'payload_too_large', (r) => ({ json: { ...r.valid(), padding: 'p'.repeat(66 * 1024) } })],
    ];

    beforeAll(async () => {
      target = await ctx.user('admin');
      book.addUser(target);
    });

    describe.each(bodyRoutes.map((r) => [r.route, r] as const))('%s', (_name, r) => {
      it('accepts its valid body (the refusals below are about the body alone)', async () => {
        const res = await ctx.http()[r.method](r.path()).set(r.auth()).send(r.valid());
        expect(res.status).toBeLessThan(300);
        if (res.body?.accessToken) book.add(res.body.accessToken);
        if (r.route === 'POST /auth/password') {
          // That changed the password and ended the session: start again with a fresh user.
          target = await ctx.user('admin');
          book.addUser(target);
        }
      });

      it.each(cases.map(([story, status, code, build]) => [story, status, code, build] as const))('answers %s with %i %s, never 500, writing nothing', async (_story, status, code, build) => {
        const sent = build(r);
        if (!sent) return;
        const before = await writeCounts(ctx);
        let req = ctx.http()[r.method](r.path()).set(r.auth());
        if (sent.contentType) req = req.set('Content-Type', sent.contentType);
        if (sent.encoding) req = req.set('Content-Encoding', sent.encoding);
        const res = await (sent.raw !== undefined ? req.send(sent.raw) : sent.json !== undefined ? req.send(sent.json as object) : req);
        expectError(res, status, code);
        expect(await writeCounts(ctx)).toEqual(before);
      });
    });
  });

  describe('bad ids in paths', () => {
    const idRoutes: Array<[string, Method, (id: string) => string, object | undefined]> = [
      ['GET /users/:id', 'get', (id) => `/api/v1/users/${id}`, undefined],
      ['PATCH /users/:id', 'patch', (id) => `/api/v1/users/${id}`, { displayName: 'x' }],
      ['GET /projects/:id', 'get', (id) => `/api/v1/projects/${id}`, undefined],
      ['PATCH /projects/:id', 'patch', (id) => `/api/v1/projects/${id}`, { description: 'x' }],
      ['DELETE /projects/:id', 'delete', (id) => `/api/v1/projects/${id}`, undefined],
    ];
    const badIds: Array<[string, string]> = [
      ['a word', 'not-a-uuid'],
      ['a number', '12345'],
      ['a UUID with a trailing character', `${MISSING_ID}x`],
      ['a UUID without dashes', MISSING_ID.replace(/-/g, '')],
      ['a UUID with a non-hex digit', MISSING_ID.replace(/0$/, 'g')],
      ['an SQL fragment', encodeURIComponent("' OR '1'='1")],
      ['an encoded NUL', '%00'],
      ['broken percent-encoding', '%E0%A4%A'],
      ['a 300-character id', 'a'.repeat(300)],
    ];
    describe.each(idRoutes)('%s', (_route, method, path, body) => {
      it.each(badIds)('answers %s with 400 validation_failed, writing nothing', async (_story, id) => {
        const before = await writeCounts(ctx);
        const req = ctx.http()[method](path(id)).set(admin.auth);
        const res = await (body ? req.send(body) : req);
        expectError(res, 400, 'validation_failed');
        expect(await writeCounts(ctx)).toEqual(before);
      });
    });
  });

  describe('bad limit and cursor', () => {
    const lists = ['/users', '/projects'];
    const badQueries: Array<[string, string]> = [
      ['limit=0', 'limit=0'],
      ['limit=201', 'limit=201'],
      ['a negative limit', 'limit=-1'],
      ['a fractional limit', 'limit=1.5'],
      ['a word as limit', 'limit=ten'],
      ['an empty limit', 'limit='],
      ['an exponent as limit', 'limit=1e2'],
      ['a huge limit', 'limit=99999999999999999999'],
      ['limit given twice', 'limit=1&limit=2'],
      ['a garbage cursor', 'cursor=zzz'],
      ['a cursor that is a bare UUID', `cursor=${MISSING_ID}`],
      ['a cursor encoding something else', `cursor=${Buffer.from('1 OR 1=1').toString('base64url')}`],
      ['a cursor longer than 200 characters', `cursor=${'A'.repeat(201)}`],
      ['cursor given twice', `cursor=${Buffer.from(MISSING_ID).toString('base64url')}&cursor=x`],
      ['an unknown query parameter', 'sort=name'],
      ['a nested query parameter', 'limit[a]=1'],
    ];
    describe.each(lists)('GET %s', (list) => {
      it.each(badQueries)('answers %s with 400 validation_failed', async (_story, query) => {
        expectError(await api('get', `${list}?${query}`), 400, 'validation_failed');
      });

      it('accepts limit=1 and limit=200', async () => {
        const one = await api('get', `${list}?limit=1`);
        expect(one.status).toBe(200);
        expect(one.body.items).toHaveLength(1);
        expect(typeof one.body.nextCursor).toBe('string');
        expect((await api('get', `${list}?limit=200`)).status).toBe(200);
      });

      it('answers a cursor it issued with the next page, and the default page size is 50', async () => {
        const first = await api('get', `${list}?limit=1`);
        const next = await api('get', `${list}?limit=1&cursor=${first.body.nextCursor}`);
        expect(next.status).toBe(200);
        expect(next.body.items[0]?.id).not.toBe(first.body.items[0].id);
        const all = await api('get', list);
        expect(all.body.items.length).toBeLessThanOrEqual(50);
      });
    });
  });

  describe('logs', () => {
    it('name the route pattern in access lines, never the raw URL, ids or query strings', async () => {
      const user = await ctx.user('member');
      book.addUser(user);
      const marker = `q${crypto.randomBytes(6).toString('hex')}`;
      const requests: Array<[string, () => ReturnType<typeof api>, string, string, number]> = [
        ['r1', () => api('get', `/projects/${project.id}?probe=${marker}`), 'GET', '/api/v1/projects/:id', 200],
        ['r2', () => api('get', `/projects/${project.id}`), 'GET', '/api/v1/projects/:id', 200],
        ['r3', () => api('get', `/projects/${MISSING_ID}`), 'GET', '/api/v1/projects/:id', 404],
        ['r4', () => api('get', `/projects/bad-${marker}`), 'GET', '/api/v1/projects/:id', 400],
        ['r5', () => api('patch', `/users/${user.id}`).send({ displayName: 'Logged' }), 'PATCH', '/api/v1/users/:id', 200],
        ['r6', () => api('patch', `/users/${user.id}`).send({ role: 'root' }), 'PATCH', '/api/v1/users/:id', 400],
        ['r7', () => api('get', `/users?limit=1&cursor=${marker}`), 'GET', '/api/v1/users', 400],
        ['r8', () => api('get', '/users?limit=1'), 'GET', '/api/v1/users', 200],
        ['r9', () => api('post', '/projects').send({ name: project.name }), 'POST', '/api/v1/projects', 409],
        ['r10', () => api('delete', `/projects/${MISSING_ID}`), 'DELETE', '/api/v1/projects/:id', 404],
        ['r11', () => api('get', `/users/${user.id}`, member.auth), 'GET', '/api/v1/users/:id', 403],
      ];
      const prefix = `acc-${crypto.randomBytes(4).toString('hex')}`;
      for (const [tag, send, , , status] of requests) {
        const res = await send().set('X-Request-Id', `${prefix}-${tag}`);
        expect(`${tag} ${res.status}`).toBe(`${tag} ${status}`);
      }
      const access = ctx.capture.lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'http.access');
      for (const [tag, , method, route, status] of requests) {
        const line = access.find((l) => l.requestId === `${prefix}-${tag}`);
        expect({ tag, method: line?.method, route: line?.route, status: line?.status }).toEqual({ tag, method, route, status });
        const text = JSON.stringify(line);
        expect(text).not.toContain(marker);
        expect(text).not.toContain(project.id);
        expect(text).not.toContain(user.id);
        expect(text).not.toContain('?');
      }
      for (const line of access) expect(Object.keys(line).sort()).toEqual(expect.arrayContaining(['method', 'route', 'status', 'durationMs', 'requestId']));
      expect(ctx.logText()).not.toContain(marker);
    });

    it('never recorded a server error for any of the requests above', () => {
      const lines = ctx.capture.lines.map((l) => JSON.parse(l));
      expect(lines.filter((l) => l.event === 'request.error')).toEqual([]);
      expect(lines.filter((l) => l.event === 'http.access' && l.status >= 500)).toEqual([]);
    });

    it('never carry a password, session token or header this suite sent', () => {
      expect(book.foundIn(ctx.logText())).toEqual([]);
      expect(ctx.logText()).not.toMatch(/Bearer /);
      expect(ctx.logText()).not.toMatch(/authorization/i);
    });
  });
});
