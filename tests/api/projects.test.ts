import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import {
  countRows,
  expectError,
  expectRefused,
  Headers,
  REFUSED_CREDENTIALS,
  refusedCredentials,
  RefusedCredentials,
  RouteCase,
  SecretBook,
  uniqueName,
  walk,
  writeCounts,
} from '../support/auth-helpers';

const detailOf = (row: Record<string, unknown>) => JSON.parse(String(row.detail ?? 'null'));
const PROJECT_KEYS = ['createdAt', 'description', 'id', 'name', 'updatedAt'];
type Project = { id: string; name: string };

describe('/projects', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;
  let otherMember: TestUser;
  let auditor: TestUser;
  /** Holds a key of `member`. */
  let mine: Project;
  /** Holds only a key of `otherMember`. */
  let theirs: Project;
  /** Holds no key. */
  let empty: Project;
  const tokens: Record<string, { id: string; token: string; auth: Headers }> = {};
  const book = new SecretBook();

  const user = async (role: TestUser['role']) => {
    const u = await ctx.user(role);
    book.addUser(u);
    return u;
  };
  const key = async (owner: TestUser, project: Project): Promise<CreatedKey> => {
    const k = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
    book.add(k.secret);
    return k;
  };
  const deleteKey = async (k: CreatedKey) => expect((await ctx.http().delete(`/api/v1/provider-keys/${k.id}`).set(admin.auth)).status).toBe(204);
  const projectRow = async (id: string): Promise<Record<string, unknown> | undefined> => (await ctx.db.read((m) => m.query('SELECT * FROM projects WHERE id = ?', [id])))[0];
  const projectAudit = async (action: string, projectId: string) => (await auditRows(ctx, { action })).filter((r) => r.project_id === projectId);
  const ids = (items: Array<{ id: string }>) => items.map((p) => p.id);

  const as: Record<string, () => Headers> = {
    'an admin session': () => admin.auth,
    'an admin API token with projects:write': () => tokens.adminWrite.auth,
    'an admin API token with projects:read': () => tokens.adminRead.auth,
    'an admin API token without any projects scope': () => tokens.adminUsers.auth,
    'an auditor session': () => auditor.auth,
    'an auditor API token with projects:read': () => tokens.auditorRead.auth,
    'a member session': () => member.auth,
    'a member API token with projects:read': () => tokens.memberRead.auth,
    'a member API token without projects:read': () => tokens.memberKeys.auth,
  };

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await user('admin');
    member = await user('member');
    otherMember = await user('member');
    auditor = await user('auditor');
    mine = await createProject(ctx, admin, uniqueName('mine'));
    theirs = await createProject(ctx, admin, uniqueName('theirs'));
    empty = await createProject(ctx, admin, uniqueName('empty'));
    await key(member, mine);
    await key(otherMember, mine);
    await key(otherMember, theirs);
    tokens.adminWrite = await createApiToken(ctx, admin, ['projects:write']);
    tokens.adminRead = await createApiToken(ctx, admin, ['projects:read']);
    tokens.adminUsers = await createApiToken(ctx, admin, ['users:read', 'users:write']);
    tokens.auditorRead = await createApiToken(ctx, auditor, ['projects:read']);
    tokens.memberRead = await createApiToken(ctx, member, ['projects:read']);
    tokens.memberKeys = await createApiToken(ctx, member, ['provider-keys:read']);
    for (const t of Object.values(tokens)) book.add(t.token);
  });
  afterAll(() => ctx.close());

  describe('POST /projects', () => {
    it.each(['an admin session', 'an admin API token with projects:write'])('lets %s create a project: 201, stored, audited as project.create', async (who) => {
      const name = uniqueName('Created');
      const res = await ctx.http().post('/api/v1/projects').set(as[who]()).send({ name, description: 'line one\nline two' });
      expect(res.status).toBe(201);
      expect(Object.keys(res.body).sort()).toEqual(PROJECT_KEYS);
      expect(res.body).toMatchObject({ name, description: 'line one\nline two' });
      expect(await projectRow(res.body.id)).toMatchObject({ name, description: 'line one\nline two' });
      const [audit] = await projectAudit('project.create', res.body.id);
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, via: who.includes('token') ? 'api_token' : 'session', api_token_id: who.includes('token') ? tokens.adminWrite.id : null });
      expect(detailOf(audit)).toEqual({ name });
    });

    it('trims the name it stores', async () => {
      const name = uniqueName('spaced');
      const res = await ctx.http().post('/api/v1/projects').set(admin.auth).send({ name: `  ${name}\t` });
      expect(res.status).toBe(201);
      expect((await projectRow(res.body.id))?.name).toBe(name);
    });

    it.each(['an admin API token with projects:read', 'an admin API token without any projects scope', 'an auditor session', 'an auditor API token with projects:read', 'a member session', 'a member API token with projects:read'])(
      'refuses %s creating a project, with 403, creating nothing',
      async (who) => {
        const name = uniqueName('nope');
        const before = await writeCounts(ctx);
        expectError(await ctx.http().post('/api/v1/projects').set(as[who]()).send({ name }), 403, 'forbidden');
        expect(await writeCounts(ctx)).toEqual(before);
        expect(await countRows(ctx, 'projects', 'name = ?', [name])).toBe(0);
      },
    );

    it('answers 409 to a duplicate name, keeping the first project', async () => {
      const before = await writeCounts(ctx);
      expectError(await ctx.http().post('/api/v1/projects').set(admin.auth).send({ name: mine.name }), 409, 'conflict');
      expectError(await ctx.http().post('/api/v1/projects').set(admin.auth).send({ name: ` ${mine.name} ` }), 409, 'conflict');
      expect(await writeCounts(ctx)).toEqual(before);
      expect(await countRows(ctx, 'projects', 'name = ?', [mine.name])).toBe(1);
    });

    it.each([
      ['an empty name', { name: '' }],
      ['a name of only spaces', { name: '   ' }],
      ['a name longer than 128 characters', { name: 'n'.repeat(129) }],
      ['a name with a newline', { name: 'two\nlines' }],
      ['a numeric name', { name: 7 }],
      ['a description longer than 1024 characters', { name: 'fine', description: 'd'.repeat(1025) }],
      ['a missing name', { description: 'no name' }],
      ['an unknown field', { name: 'fine', ownerId: '01890000-0000-7000-8000-000000000000' }],
    ])('rejects %s with 400, creating nothing', async (_story, body) => {
      const before = await writeCounts(ctx);
      const res = await ctx.http().post('/api/v1/projects').set(admin.auth).send(body);
      expectError(res, 400, 'validation_failed');
      expect(res.body.error.details.length).toBeGreaterThan(0);
      expect(await writeCounts(ctx)).toEqual(before);
    });
  });

  describe('GET /projects', () => {
    it.each(['an admin session', 'an admin API token with projects:read', 'an auditor session', 'an auditor API token with projects:read'])('lets %s list every project', async (who) => {
      const res = await ctx.http().get('/api/v1/projects?limit=200').set(as[who]());
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBe(await countRows(ctx, 'projects'));
      expect(ids(res.body.items)).toEqual(expect.arrayContaining([mine.id, theirs.id, empty.id]));
      for (const p of res.body.items) expect(Object.keys(p).sort()).toEqual(PROJECT_KEYS);
    });

    it.each(['a member session', 'a member API token with projects:read'])('shows %s only the projects holding their own keys', async (who) => {
      const res = await ctx.http().get('/api/v1/projects').set(as[who]());
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ items: [expect.objectContaining({ id: mine.id, name: mine.name })], nextCursor: null });
    });

    it.each(['an admin API token with projects:write', 'an admin API token without any projects scope', 'a member API token without projects:read'])('refuses %s listing projects, with 403', async (who) => {
      const res = await ctx.http().get('/api/v1/projects').set(as[who]());
      expectError(res, 403, 'forbidden');
      expect(res.text).not.toContain(mine.name);
    });

    it('walks every project newest first with limit and cursor, without duplicates', async () => {
      const made: string[] = [];
      for (let i = 0; i < 7; i++) made.push((await createProject(ctx, admin, uniqueName(`page${i}`))).id);
      const { pages, items } = await walk(ctx, '/api/v1/projects', admin.auth, 3);
      const got = items.map((p) => p.id as string);
      const all: Array<{ id: string }> = await ctx.db.read((m) => m.query('SELECT id FROM projects'));
      expect(new Set(got).size).toBe(got.length);
      expect([...got].sort()).toEqual(all.map((r) => r.id).sort());
      expect(pages.slice(0, -1).every((p) => p.length === 3)).toBe(true);
      expect(pages[pages.length - 1].length).toBeGreaterThan(0);
      const created = items.map((p) => Date.parse(p.createdAt as string));
      expect(created).toEqual([...created].sort((a, b) => b - a));
      expect(got.slice(0, 7)).toEqual([...made].reverse());
    });

    it('pages a member through their own projects only', async () => {
      const extra = await createProject(ctx, admin, uniqueName('mine-too'));
      const k = await key(member, extra);
      const { items } = await walk(ctx, '/api/v1/projects', member.auth, 1);
      expect(ids(items as Project[])).toEqual([extra.id, mine.id]);
      await deleteKey(k);
      expect(ids((await ctx.http().get('/api/v1/projects').set(member.auth)).body.items)).toEqual([mine.id]);
    });
  });

  describe('GET /projects/:id', () => {
    it.each(['an admin session', 'an admin API token with projects:read', 'an auditor session', 'an auditor API token with projects:read'])('lets %s read any project', async (who) => {
      for (const p of [mine, theirs, empty]) {
        const res = await ctx.http().get(`/api/v1/projects/${p.id}`).set(as[who]());
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ id: p.id, name: p.name });
      }
    });

    it.each(['a member session', 'a member API token with projects:read'])('lets %s read a project holding their key, and answers 404 for the others', async (who) => {
      expect((await ctx.http().get(`/api/v1/projects/${mine.id}`).set(as[who]())).status).toBe(200);
      for (const p of [theirs, empty]) {
        const res = await ctx.http().get(`/api/v1/projects/${p.id}`).set(as[who]());
        expectError(res, 404, 'not_found');
        expect(res.text).not.toContain(p.name);
      }
    });

    it('answers a member 404 for an invisible project exactly as for one that does not exist', async () => {
      const invisible = await ctx.http().get(`/api/v1/projects/${theirs.id}`).set(member.auth);
      const missing = await ctx.http().get('/api/v1/projects/01890000-0000-7000-8000-000000000000').set(member.auth);
      expect(invisible.body.error.message).toBe(missing.body.error.message);
      expect(invisible.status).toBe(missing.status);
    });

    it.each(['an admin API token with projects:write', 'an admin API token without any projects scope', 'a member API token without projects:read'])('refuses %s reading a project, with 403', async (who) => {
      expectError(await ctx.http().get(`/api/v1/projects/${mine.id}`).set(as[who]()), 403, 'forbidden');
    });

    it('hides a project from its member once their last key in it is deleted', async () => {
      const p = await createProject(ctx, admin, uniqueName('fading'));
      const k = await key(member, p);
      expect((await ctx.http().get(`/api/v1/projects/${p.id}`).set(member.auth)).status).toBe(200);
      await deleteKey(k);
      expectError(await ctx.http().get(`/api/v1/projects/${p.id}`).set(member.auth), 404, 'not_found');
    });

    it('answers 404 for a project that does not exist', async () => {
      expectError(await ctx.http().get('/api/v1/projects/01890000-0000-7000-8000-000000000000').set(admin.auth), 404, 'not_found');
    });
  });

  describe('PATCH /projects/:id', () => {
    it.each(['an admin session', 'an admin API token with projects:write'])('lets %s rename and describe a project, stored and audited as project.update', async (who) => {
      const p = await createProject(ctx, admin, uniqueName('before'));
      const name = uniqueName('after');
      const res = await ctx.http().patch(`/api/v1/projects/${p.id}`).set(as[who]()).send({ name, description: 'now described' });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id: p.id, name, description: 'now described' });
      expect(await projectRow(p.id)).toMatchObject({ name, description: 'now described' });
      const [audit] = await projectAudit('project.update', p.id);
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, via: who.includes('token') ? 'api_token' : 'session' });
      expect(detailOf(audit).changed).toEqual(['name', 'description']);

      const cleared = await ctx.http().patch(`/api/v1/projects/${p.id}`).set(admin.auth).send({ description: null });
      expect(cleared.body.description).toBeNull();
      expect((await projectRow(p.id))?.description).toBeNull();
    });

    it('keeps a project its own name', async () => {
      const res = await ctx.http().patch(`/api/v1/projects/${empty.id}`).set(admin.auth).send({ name: empty.name });
      expect(res.status).toBe(200);
      expect((await projectRow(empty.id))?.name).toBe(empty.name);
    });

    it('answers 409 to a rename onto another project’s name, changing nothing', async () => {
      const row = await projectRow(empty.id);
      const before = await writeCounts(ctx);
      expectError(await ctx.http().patch(`/api/v1/projects/${empty.id}`).set(admin.auth).send({ name: mine.name }), 409, 'conflict');
      expect(await projectRow(empty.id)).toEqual(row);
      expect(await writeCounts(ctx)).toEqual(before);
    });

    it.each(['an admin API token with projects:read', 'an admin API token without any projects scope', 'an auditor session', 'an auditor API token with projects:read', 'a member session', 'a member API token with projects:read'])(
      'refuses %s changing a project it can see, with 403, changing nothing',
      async (who) => {
        const row = await projectRow(mine.id);
        const before = await writeCounts(ctx);
        expectError(await ctx.http().patch(`/api/v1/projects/${mine.id}`).set(as[who]()).send({ name: uniqueName('hijacked') }), 403, 'forbidden');
        expect(await projectRow(mine.id)).toEqual(row);
        expect(await writeCounts(ctx)).toEqual(before);
      },
    );

    it('answers a member 404 for changing a project they cannot see', async () => {
      const row = await projectRow(theirs.id);
      expectError(await ctx.http().patch(`/api/v1/projects/${theirs.id}`).set(member.auth).send({ name: uniqueName('hijacked') }), 404, 'not_found');
      expect(await projectRow(theirs.id)).toEqual(row);
    });

    it.each([
      ['an empty name', { name: '' }],
      ['a null name', { name: null }],
      ['an unknown field', { createdAt: '2020-01-01T00:00:00Z' }],
      ['a description that is a list', { description: ['a'] }],
    ])('rejects %s with 400, changing nothing', async (_story, body) => {
      const row = await projectRow(empty.id);
      expectError(await ctx.http().patch(`/api/v1/projects/${empty.id}`).set(admin.auth).send(body), 400, 'validation_failed');
      expect(await projectRow(empty.id)).toEqual(row);
    });

    it('answers 404 for a project that does not exist', async () => {
      expectError(await ctx.http().patch('/api/v1/projects/01890000-0000-7000-8000-000000000000').set(admin.auth).send({ name: 'whatever' }), 404, 'not_found');
    });
  });

  describe('DELETE /projects/:id', () => {
    it('answers 409 while the project holds live keys (disabled ones too), and deletes it once they are all deleted', async () => {
      const p = await createProject(ctx, admin, uniqueName('doomed'));
      const active = await key(member, p);
      const disabled = await key(otherMember, p);
      expect((await ctx.http().patch(`/api/v1/provider-keys/${disabled.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);

      const refused = await ctx.http().delete(`/api/v1/projects/${p.id}`).set(admin.auth);
      expectError(refused, 409, 'conflict');
      expect(await projectRow(p.id)).toBeDefined();
      await deleteKey(active);
      expectError(await ctx.http().delete(`/api/v1/projects/${p.id}`).set(admin.auth), 409, 'conflict');
      expect(await projectRow(p.id)).toBeDefined();
      expect(await projectAudit('project.delete', p.id)).toEqual([]);

      await deleteKey(disabled);
      const res = await ctx.http().delete(`/api/v1/projects/${p.id}`).set(admin.auth);
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      expect(await projectRow(p.id)).toBeUndefined();
      const audits = await projectAudit('project.delete', p.id);
      expect(audits).toHaveLength(1);
      expect(audits[0]).toMatchObject({ outcome: 'success', actor_id: admin.id });
      expect(detailOf(audits[0])).toEqual({ name: p.name });

      expectError(await ctx.http().get(`/api/v1/projects/${p.id}`).set(admin.auth), 404, 'not_found');
      expectError(await ctx.http().delete(`/api/v1/projects/${p.id}`).set(admin.auth), 404, 'not_found');
      expect(await countRows(ctx, 'provider_keys', 'project_id = ?', [p.id])).toBe(2);
      const again = await ctx.http().post('/api/v1/projects').set(admin.auth).send({ name: p.name });
      expect(again.status).toBe(201);
    });

    it('lets an admin API token with projects:write delete an empty project', async () => {
      const p = await createProject(ctx, admin, uniqueName('empty-doomed'));
      expect((await ctx.http().delete(`/api/v1/projects/${p.id}`).set(tokens.adminWrite.auth)).status).toBe(204);
      expect(await projectRow(p.id)).toBeUndefined();
      const [audit] = await projectAudit('project.delete', p.id);
      expect(audit).toMatchObject({ via: 'api_token', api_token_id: tokens.adminWrite.id });
    });

    it.each(['an admin API token with projects:read', 'an admin API token without any projects scope', 'an auditor session', 'an auditor API token with projects:read', 'a member session', 'a member API token with projects:read'])(
      'refuses %s deleting a project it can see, with 403, deleting nothing',
      async (who) => {
        const row = await projectRow(mine.id);
        const before = await writeCounts(ctx);
        expectError(await ctx.http().delete(`/api/v1/projects/${mine.id}`).set(as[who]()), 403, 'forbidden');
        expect(await projectRow(mine.id)).toEqual(row);
        expect(await writeCounts(ctx)).toEqual(before);
      },
    );

    it('answers a member 404 for deleting a project they cannot see, deleting nothing', async () => {
      const p = await createProject(ctx, admin, uniqueName('unseen'));
      expectError(await ctx.http().delete(`/api/v1/projects/${p.id}`).set(member.auth), 404, 'not_found');
      expect(await projectRow(p.id)).toBeDefined();
    });

    it('answers 404 for a project that does not exist', async () => {
      expectError(await ctx.http().delete('/api/v1/projects/01890000-0000-7000-8000-000000000000').set(admin.auth), 404, 'not_found');
    });
  });

  describe('credentials on every /projects route', () => {
    let creds: RefusedCredentials;
    let target: Project;
    const routes: RouteCase[] = [
      { route: 'POST /projects', method: 'post', path: () => '/api/v1/projects', body: () => ({ name: uniqueName('forged') }) },
      { route: 'GET /projects', method: 'get', path: () => '/api/v1/projects' },
      { route: 'GET /projects/:id', method: 'get', path: () => `/api/v1/projects/${target.id}` },
      { route: 'PATCH /projects/:id', method: 'patch', path: () => `/api/v1/projects/${target.id}`, body: () => ({ name: uniqueName('forged') }) },
      { route: 'DELETE /projects/:id', method: 'delete', path: () => `/api/v1/projects/${target.id}` },
    ];

    beforeAll(async () => {
      creds = await refusedCredentials(ctx, admin);
      book.add(...creds.secrets);
      target = await createProject(ctx, admin, uniqueName('target'));
    });

    it('accepts a hand-crafted admin session signed like the server signs (so each refusal below has exactly one cause)', async () => {
      expect((await ctx.http().get(`/api/v1/projects/${target.id}`).set(creds.control)).status).toBe(200);
    });

    describe.each(routes.map((r) => [r.route, r] as const))('%s', (_name, r) => {
      it.each(REFUSED_CREDENTIALS)('refuses %s with 401 and WWW-Authenticate: Bearer, writing nothing', async (story) => {
        await expectRefused(ctx, r, creds.headers[story]());
      });
    });

    it('left the target project as it was', async () => {
      expect(await projectRow(target.id)).toMatchObject({ name: target.name });
    });
  });

  describe('logs', () => {
    it('never carry a password, session token, API token or provider secret this suite handled', () => {
      expect(book.size).toBeGreaterThan(20);
      expect(book.foundIn(ctx.logText())).toEqual([]);
    });
  });
});
