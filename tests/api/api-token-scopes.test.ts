import crypto from 'node:crypto';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';

const SCOPES = ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read', 'users:read', 'users:write', 'projects:read', 'projects:write', 'metrics:read'];
const allBut = (scope: string) => SCOPES.filter((s) => s !== scope);
const unique = (what: string) => `${what}-${crypto.randomBytes(4).toString('hex')}`;

type Row = Record<string, unknown>;

describe('API token scopes: effective rights are the token’s scopes narrowed by the user’s current role', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;
  let project: { id: string; name: string };

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    member = await ctx.user('member');
    project = await createProject(ctx, admin);
  });
  afterAll(() => ctx.close());

  const one = async (sql: string, params: unknown[]): Promise<Row | undefined> => (await ctx.db.read((m) => m.query(sql, params)))[0];
  const keyRow = (id: string) => one('SELECT * FROM provider_keys WHERE id = ?', [id]);
  const tokenCount = async (): Promise<number> => Number((await one('SELECT COUNT(*) AS n FROM api_tokens', []))!.n);
  const expectForbidden = (res: { status: number; body: { error?: { code: string } } }) => {
    expect(res.status).toBe(403);
    expect(res.body.error!.code).toBe('forbidden');
  };
  /** One token with exactly this scope, and one with every other scope the admin role allows. */
  const pair = async (scope: string) => ({ withIt: (await createApiToken(ctx, admin, [scope])).auth, without: (await createApiToken(ctx, admin, allBut(scope))).auth });

  describe('every route family answers to its scope', () => {
    let key: CreatedKey;
    beforeAll(async () => {
      key = await createKey(ctx, admin, { ownerId: admin.id, projectId: project.id });
    });

    it('provider-keys:read lists and reads keys and their trail; without it, 403', async () => {
      const { withIt, without } = await pair('provider-keys:read');
      const list = await ctx.http().get('/api/v1/provider-keys').set(withIt);
      expect(list.status).toBe(200);
      expect(list.body.items.map((k: Row) => k.id)).toContain(key.id);
      const got = await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(withIt);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ id: key.id, ownerId: admin.id });
      expect(got.body.secret).toBeUndefined();
      expect((await ctx.http().get(`/api/v1/provider-keys/${key.id}/audit-events`).set(withIt)).status).toBe(200);

      expectForbidden(await ctx.http().get('/api/v1/provider-keys').set(without));
      expectForbidden(await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(without));
      // SPEC §3: a key's trail is audit reading too, so audit:read alone opens it; with neither scope, 403.
      expect((await ctx.http().get(`/api/v1/provider-keys/${key.id}/audit-events`).set(without)).status).toBe(200);
      const neither = (await createApiToken(ctx, admin, SCOPES.filter((s) => s !== 'provider-keys:read' && s !== 'audit:read'))).auth;
      expectForbidden(await ctx.http().get(`/api/v1/provider-keys/${key.id}/audit-events`).set(neither));
    });

    it('provider-keys:write adds, edits, rotates and deletes keys, audited via the token; without it, 403 and nothing changes', async () => {
      const { withIt, without } = await pair('provider-keys:write');
      const tokenId = (await ctx.http().get('/api/v1/auth/me').set(withIt)).body.apiTokenId;
      const victim = await createKey(ctx, admin, { ownerId: member.id, projectId: project.id });
      const before = await keyRow(victim.id);

      const refusedName = unique('refused');
      expectForbidden(await ctx.http().post('/api/v1/provider-keys').set(without).send({ ownerId: member.id, projectId: project.id, name: refusedName, provider: 'openai', secret: uniqueSecret() }));
      expectForbidden(await ctx.http().patch(`/api/v1/provider-keys/${victim.id}`).set(without).send({ name: 'renamed by a thief' }));
      expectForbidden(await ctx.http().put(`/api/v1/provider-keys/${victim.id}/secret`).set(without).send({ secret: uniqueSecret() }));
      expectForbidden(await ctx.http().delete(`/api/v1/provider-keys/${victim.id}`).set(without));
      expect(await one('SELECT id FROM provider_keys WHERE name = ?', [refusedName])).toBeUndefined();
      expect(await keyRow(victim.id)).toEqual(before);

      const name = unique('via-token');
      const created = await ctx.http().post('/api/v1/provider-keys').set(withIt).send({ ownerId: member.id, projectId: project.id, name, provider: 'openai', secret: uniqueSecret() });
      expect(created.status).toBe(201);
      expect((await keyRow(created.body.id))!.name).toBe(name);
      const [createdRow] = await auditRows(ctx, { action: 'provider_key.create', keyId: created.body.id });
      expect(createdRow).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'api_token', api_token_id: tokenId });

      expect((await ctx.http().patch(`/api/v1/provider-keys/${victim.id}`).set(withIt).send({ name: 'renamed by automation' })).status).toBe(200);
      expect((await keyRow(victim.id))!.name).toBe('renamed by automation');
      const rotated = await ctx.http().put(`/api/v1/provider-keys/${victim.id}/secret`).set(withIt).send({ secret: uniqueSecret() });
      expect(rotated.status).toBe(200);
      expect((await keyRow(victim.id))!.secret_ciphertext).not.toEqual(before!.secret_ciphertext);
      expect((await ctx.http().delete(`/api/v1/provider-keys/${victim.id}`).set(withIt)).status).toBe(204);
      expect((await keyRow(victim.id))!.status).toBe('deleted');
      for (const action of ['provider_key.update', 'provider_key.rotate', 'provider_key.delete']) {
        const rows = await auditRows(ctx, { action, keyId: victim.id });
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ via: 'api_token', api_token_id: tokenId });
      }
    });

    it('provider-keys:reveal reveals, audited via the token; without it, 403 with a denied audit row and no secret', async () => {
      const { withIt, without } = await pair('provider-keys:reveal');
      const withId = (await ctx.http().get('/api/v1/auth/me').set(withIt)).body.apiTokenId;
      const withoutId = (await ctx.http().get('/api/v1/auth/me').set(without)).body.apiTokenId;

      const refused = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(without).send({});
      expectForbidden(refused);
      expect(JSON.stringify(refused.body)).not.toContain(key.secret);
      const denied = (await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id })).filter((r) => r.api_token_id === withoutId);
      expect(denied).toHaveLength(1);
      expect(denied[0]).toMatchObject({ outcome: 'denied', actor_id: admin.id, via: 'api_token' });
      expect(JSON.parse(String(denied[0].detail))).toMatchObject({ why: 'missing_scope' });

      const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(withIt).send({});
      expect(res.status).toBe(200);
      expect(res.body.secret).toBe(key.secret);
      const allowed = (await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id })).filter((r) => r.api_token_id === withId);
      expect(allowed).toHaveLength(1);
      expect(allowed[0]).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'api_token' });
      expect(Number((await keyRow(key.id))!.reveal_count)).toBe(1);
    });

    it('audit:read reads the audit trail; without it, 403', async () => {
      const { withIt, without } = await pair('audit:read');
      const res = await ctx.http().get('/api/v1/audit-events').set(withIt);
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBeGreaterThan(0);
      expectForbidden(await ctx.http().get('/api/v1/audit-events').set(without));
    });

    it('metrics:read reads the metrics; without it, 403', async () => {
      const { withIt, without } = await pair('metrics:read');
      const res = await ctx.http().get('/api/v1/metrics').set(withIt);
      expect(res.status).toBe(200);
      expect(res.text).toContain('pkv_reveals_total');
      expectForbidden(await ctx.http().get('/api/v1/metrics').set(without));
    });

    it('users:read lists and reads users; without it, 403', async () => {
      const { withIt, without } = await pair('users:read');
      const list = await ctx.http().get('/api/v1/users').set(withIt);
      expect(list.status).toBe(200);
      expect(list.body.items.map((u: Row) => u.id)).toEqual(expect.arrayContaining([admin.id, member.id]));
      expect((await ctx.http().get(`/api/v1/users/${member.id}`).set(withIt)).body).toMatchObject({ id: member.id, role: 'member' });
      expectForbidden(await ctx.http().get('/api/v1/users').set(without));
      expectForbidden(await ctx.http().get(`/api/v1/users/${member.id}`).set(without));
    });

    it('users:write creates and changes users; without it, 403 and nothing changes', async () => {
      const { withIt, without } = await pair('users:write');
      const target = await ctx.user('member');
      const refusedName = unique('refused');
      expectForbidden(await ctx.http().post('/api/v1/users').set(without).send({ username: refusedName, password: 'a-long-enough-password', role: 'admin' }));
      expectForbidden(await ctx.http().patch(`/api/v1/users/${target.id}`).set(without).send({ role: 'admin' }));
      expect(await one('SELECT id FROM users WHERE username = ?', [refusedName])).toBeUndefined();
      expect((await one('SELECT role FROM users WHERE id = ?', [target.id]))!.role).toBe('member');

      // Creating needs the new role's rights too (an auditor's: provider-keys:read, audit:read, users:read, projects:read).
      const asAuditor = (await createApiToken(ctx, admin, ['users:write', 'provider-keys:read', 'audit:read', 'users:read', 'projects:read'])).auth;
      const username = unique('made-by-token');
      expectForbidden(await ctx.http().post('/api/v1/users').set(withIt).send({ username, role: 'auditor' }));
      const created = await ctx.http().post('/api/v1/users').set(asAuditor).send({ username, role: 'auditor' });
      expect(created.status).toBe(201);
      expect((await one('SELECT role FROM users WHERE username = ?', [username]))!.role).toBe('auditor');
      const changed = await ctx.http().patch(`/api/v1/users/${target.id}`).set(withIt).send({ displayName: 'Renamed' });
      expect(changed.status).toBe(200);
      expect((await one('SELECT display_name FROM users WHERE id = ?', [target.id]))!.display_name).toBe('Renamed');
      const [update] = (await auditRows(ctx, { action: 'user.update' })).filter((r) => JSON.parse(String(r.detail)).userId === target.id);
      expect(update).toMatchObject({ via: 'api_token', actor_id: admin.id });
    });

    it('projects:read lists and reads projects; without it, 403', async () => {
      const { withIt, without } = await pair('projects:read');
      const list = await ctx.http().get('/api/v1/projects').set(withIt);
      expect(list.status).toBe(200);
      expect(list.body.items.map((p: Row) => p.id)).toContain(project.id);
      expect((await ctx.http().get(`/api/v1/projects/${project.id}`).set(withIt)).status).toBe(200);
      expectForbidden(await ctx.http().get('/api/v1/projects').set(without));
      expectForbidden(await ctx.http().get(`/api/v1/projects/${project.id}`).set(without));
    });

    it('projects:write creates, renames and deletes projects; without it, 403 and nothing changes', async () => {
      const { withIt, without } = await pair('projects:write');
      const victim = await createProject(ctx, admin);
      const refusedName = unique('refused');
      expectForbidden(await ctx.http().post('/api/v1/projects').set(without).send({ name: refusedName }));
      expectForbidden(await ctx.http().patch(`/api/v1/projects/${victim.id}`).set(without).send({ name: 'stolen' }));
      expectForbidden(await ctx.http().delete(`/api/v1/projects/${victim.id}`).set(without));
      expect(await one('SELECT id FROM projects WHERE name = ?', [refusedName])).toBeUndefined();
      expect((await one('SELECT name FROM projects WHERE id = ?', [victim.id]))!.name).toBe(victim.name);

      const name = unique('made-by-token');
      const created = await ctx.http().post('/api/v1/projects').set(withIt).send({ name });
      expect(created.status).toBe(201);
      expect(await one('SELECT id FROM projects WHERE name = ?', [name])).toEqual({ id: created.body.id });
      expect((await ctx.http().patch(`/api/v1/projects/${victim.id}`).set(withIt).send({ name: `${victim.name}-renamed` })).status).toBe(200);
      expect((await ctx.http().delete(`/api/v1/projects/${victim.id}`).set(withIt)).status).toBe(204);
      expect(await one('SELECT id FROM projects WHERE id = ?', [victim.id])).toBeUndefined();
      const deleted = (await auditRows(ctx, { action: 'project.delete' })).filter((r) => r.project_id === victim.id);
      expect(deleted).toHaveLength(1);
      expect(deleted[0]).toMatchObject({ via: 'api_token', actor_id: admin.id });
    });
  });

  describe('minting within the role', () => {
    it('refuses a member asking for users:write, or any scope beyond the member role, with 400 and stores nothing', async () => {
      const count = await tokenCount();
      const creates = (await auditRows(ctx, { action: 'api_token.create' })).length;
      for (const scope of ['users:write', 'users:read', 'provider-keys:write', 'audit:read', 'projects:write', 'metrics:read']) {
        const res = await ctx.http().post('/api/v1/api-tokens').set(member.auth).send({ name: 'too much', scopes: ['provider-keys:read', scope] });
        expect({ scope, status: res.status }).toEqual({ scope, status: 400 });
        expect(res.body.error.code).toBe('validation_failed');
        expect(res.body.error.message).toContain(scope);
        expect(res.body.token).toBeUndefined();
      }
      const auditor = await ctx.user('auditor');
      const reveal = await ctx.http().post('/api/v1/api-tokens').set(auditor.auth).send({ name: 'peek', scopes: ['provider-keys:reveal'] });
      expect(reveal.status).toBe(400);
      const unknown = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'typo', scopes: ['provider-keys:admin'] });
      expect(unknown.status).toBe(400);
      const none = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'nothing', scopes: [] });
      expect(none.status).toBe(400);
      expect(await tokenCount()).toBe(count);
      expect(await auditRows(ctx, { action: 'api_token.create' })).toHaveLength(creates);

      const fine = await ctx.http().post('/api/v1/api-tokens').set(member.auth).send({ name: 'just right', scopes: ['provider-keys:read', 'provider-keys:reveal', 'projects:read'] });
      expect(fine.status).toBe(201);
    });

    it('lets an admin mint a token for another user with userId, within that user’s role', async () => {
      const other = await ctx.user('member');
      const res = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'for a member', scopes: ['provider-keys:read'], userId: other.id });
      expect(res.status).toBe(201);
      expect(res.body.userId).toBe(other.id);
      const row = await one('SELECT * FROM api_tokens WHERE id = ?', [res.body.id]);
      expect(row).toMatchObject({ user_id: other.id, created_by: admin.id });
      const [created] = (await auditRows(ctx, { action: 'api_token.create' })).filter((r) => JSON.parse(String(r.detail)).tokenId === res.body.id);
      expect(created).toMatchObject({ actor_id: admin.id, via: 'session' });
      expect(JSON.parse(String(created.detail)).userId).toBe(other.id);

      const acting = await ctx.http().get('/api/v1/auth/me').set('X-API-Key', res.body.token);
      expect(acting.body).toMatchObject({ id: other.id, username: other.username, role: 'member', via: 'api_token', scopes: ['provider-keys:read'] });
      expect((await ctx.http().get('/api/v1/api-tokens').set(other.auth)).body.items.map((t: Row) => t.id)).toContain(res.body.id);

      const count = await tokenCount();
      const beyond = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'too much', scopes: ['users:write'], userId: other.id });
      expect(beyond.status).toBe(400);
      const nobody = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'ghost', scopes: ['provider-keys:read'], userId: crypto.randomUUID() });
      expect(nobody.status).toBe(400);
      expect(await tokenCount()).toBe(count);
    });

    it('refuses a non-admin minting for someone else’s userId with 403, and stores nothing', async () => {
      const auditor = await ctx.user('auditor');
      const count = await tokenCount();
      for (const [who, victim] of [[member, admin], [auditor, member]] as const) {
        const res = await ctx.http().post('/api/v1/api-tokens').set(who.auth).send({ name: 'not mine', scopes: ['provider-keys:read'], userId: victim.id });
        expectForbidden(res);
        expect(res.body.token).toBeUndefined();
      }
      expect(await tokenCount()).toBe(count);
      const own = await ctx.http().post('/api/v1/api-tokens').set(member.auth).send({ name: 'mine', scopes: ['provider-keys:read'], userId: member.id });
      expect(own.status).toBe(201);
      expect(own.body.userId).toBe(member.id);
    });
  });

  describe('when the owner changes', () => {
    it('cuts a token’s rights at the next request when its admin owner is lowered to member, and restores them when raised back', async () => {
      const lead = await ctx.user('admin');
      const t = await createApiToken(ctx, lead, ['users:read', 'projects:write', 'provider-keys:read']);
      const scraper = await createApiToken(ctx, lead, ['metrics:read']);
      expect((await ctx.http().get('/api/v1/users').set(t.auth)).status).toBe(200);
      expect((await ctx.http().get('/api/v1/metrics').set(scraper.auth)).status).toBe(200);

      const lowered = await ctx.http().patch(`/api/v1/users/${lead.id}`).set(admin.auth).send({ role: 'member' });
      expect(lowered.status).toBe(200);
      expect((await one('SELECT role FROM users WHERE id = ?', [lead.id]))!.role).toBe('member');
      expectForbidden(await ctx.http().get('/api/v1/users').set(t.auth));
      expectForbidden(await ctx.http().get('/api/v1/metrics').set(scraper.auth));
      const projectName = unique('after-demotion');
      expectForbidden(await ctx.http().post('/api/v1/projects').set(t.auth).send({ name: projectName }));
      expect(await one('SELECT id FROM projects WHERE name = ?', [projectName])).toBeUndefined();
      const keys = await ctx.http().get('/api/v1/provider-keys').set(t.auth);
      expect(keys.status).toBe(200);
      expect(keys.body.items).toEqual([]);
      expect((await ctx.http().get('/api/v1/auth/me').set(t.auth)).body).toMatchObject({ role: 'member', via: 'api_token', scopes: ['users:read', 'projects:write', 'provider-keys:read'], effectiveScopes: ['provider-keys:read'] });
      expect((await one('SELECT scopes FROM api_tokens WHERE id = ?', [t.id]))!.scopes).toBe('users:read projects:write provider-keys:read');

      expect((await ctx.http().patch(`/api/v1/users/${lead.id}`).set(admin.auth).send({ role: 'admin' })).status).toBe(200);
      expect((await ctx.http().get('/api/v1/users').set(t.auth)).status).toBe(200);
      expect((await ctx.http().get('/api/v1/metrics').set(scraper.auth)).status).toBe(200);
    });

    it('stops a disabled user’s token at once with 401', async () => {
      const worker = await ctx.user('member');
      const t = await createApiToken(ctx, worker, ['provider-keys:read']);
      expect((await ctx.http().get('/api/v1/provider-keys').set(t.auth)).status).toBe(200);
      expect((await ctx.http().patch(`/api/v1/users/${worker.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
      expect((await one('SELECT status FROM users WHERE id = ?', [worker.id]))!.status).toBe('disabled');
      for (const carrier of [t.auth, { 'X-API-Key': t.token }]) {
        const res = await ctx.http().get('/api/v1/provider-keys').set(carrier);
        expect(res.status).toBe(401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      }
      const [update] = (await auditRows(ctx, { action: 'user.update' })).filter((r) => JSON.parse(String(r.detail)).userId === worker.id);
      expect(JSON.parse(String(update.detail))).toMatchObject({ status: 'disabled' });
    });

    it('keeps a token working after its owner changes password (tokens are revoked explicitly)', async () => {
      const worker = await ctx.user('member');
      const t = await createApiToken(ctx, worker, ['provider-keys:read']);
      const changed = await ctx.http().post('/api/v1/auth/password').set(worker.auth).send({ currentPassword: worker.password, newPassword: 'a-brand-new-password' });
      expect(changed.status).toBe(204);
      expect((await ctx.http().get('/api/v1/provider-keys').set(worker.auth)).status).toBe(401);
      expect((await ctx.http().get('/api/v1/provider-keys').set(t.auth)).status).toBe(200);
      expect(await one('SELECT revoked_at FROM api_tokens WHERE id = ?', [t.id])).toEqual({ revoked_at: null });
    });
  });

  describe('acting through a token', () => {
    it('audits a member’s reveal made with a token as via api_token with its apiTokenId', async () => {
      const owner = await ctx.user('member');
      const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
      const t = await createApiToken(ctx, owner, ['provider-keys:read', 'provider-keys:reveal']);

      const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set('X-API-Key', t.token).send({});
      expect(res.status).toBe(200);
      expect(res.body.secret).toBe(key.secret);
      expect(res.headers['cache-control']).toBe('no-store');

      const rows = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'success', actor_id: owner.id, actor_role: 'member', via: 'api_token', api_token_id: t.id, owner_id: owner.id });
      const listed = await ctx.http().get(`/api/v1/audit-events?action=provider_key.reveal&keyId=${key.id}`).set(admin.auth);
      expect(listed.status).toBe(200);
      expect(listed.body.items).toHaveLength(1);
      expect(listed.body.items[0]).toMatchObject({ actorId: owner.id, via: 'api_token', apiTokenId: t.id, outcome: 'success' });

      const trail = JSON.stringify(await auditRows(ctx));
      expect(trail).not.toContain(t.token.slice(12));
      expect(trail).not.toContain(key.secret);
      expect(ctx.logText()).not.toContain(t.token.slice(12));
    });

    it('shows who is calling on /auth/me: via api_token with the token’s scopes, or via session without them', async () => {
      const t = await createApiToken(ctx, member, ['provider-keys:read', 'projects:read']);
      const viaToken = await ctx.http().get('/api/v1/auth/me').set(t.auth);
      expect(viaToken.status).toBe(200);
      expect(viaToken.body).toMatchObject({ id: member.id, username: member.username, role: 'member', status: 'active', via: 'api_token', scopes: ['provider-keys:read', 'projects:read'] });

      const viaSession = await ctx.http().get('/api/v1/auth/me').set(member.auth);
      expect(viaSession.status).toBe(200);
      expect(viaSession.body).toMatchObject({ id: member.id, via: 'session' });
      expect(viaSession.body.scopes).toBeUndefined();
    });
  });
});
