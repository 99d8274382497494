import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject } from '../support/factories';

/** Findings of the independent security review, each pinned so it cannot come back. */
describe('security review regressions', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_LOGIN_RATE_LIMIT: '5' });
    admin = await ctx.user('admin');
    member = await ctx.user('member');
  });
  afterAll(() => ctx.close());

  it('charges each sign-in attempt before the password check, so 30 parallel wrong guesses meet the limit of 5', async () => {
    const victim = await ctx.user('member');
    const results = await Promise.all(
      Array.from({ length: 30 }, () => ctx.http().post('/api/v1/auth/login').send({ username: victim.username, password: 'wrong-password-guess' })),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(5);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(25);
    expect(results.find((r) => r.status === 429)!.headers['retry-after']).toMatch(/^\d+$/);
    const limited = (await auditRows(ctx, { action: 'auth.login' })).filter((r) => r.outcome === 'rate_limited' && r.actor_username === victim.username);
    expect(limited.length).toBeGreaterThanOrEqual(25);
  });

  it('does not look up look-alike usernames that MySQL collations would match (trailing space, accents, full-width)', async () => {
    const u = await ctx.user('member', 'victimname');
    for (const name of ['victimname ', 'víctimname', 'ｖｉｃｔｉｍｎａｍｅ']) {
      const res = await ctx.http().post('/api/v1/auth/login').send({ username: name, password: u.password });
      expect(res.status).toBe(401);
    }
    expect((await ctx.http().post('/api/v1/auth/login').send({ username: 'VictimName', password: u.password })).status).toBe(200);
  });

  it('refuses an admin minting a reveal-scoped token for another user (it would reveal as them, with no reason on record)', async () => {
    const res = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'as member', scopes: ['provider-keys:reveal'], userId: member.id });
    expect(res.status).toBe(400);
    const [{ n }] = await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = ?', [member.id]));
    expect(Number(n)).toBe(0);
    const readOnly = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'read for member', scopes: ['provider-keys:read'], userId: member.id });
    expect(readOnly.status).toBe(201);
  });

  it('refuses a users:write token creating an admin, changing a role or setting a password', async () => {
    const token = await createApiToken(ctx, admin, ['users:write', 'users:read']);
    const created = await ctx.http().post('/api/v1/users').set(token.auth).send({ username: 'tokenmadeadmin', password: 'a-long-password-1', role: 'admin' });
    expect(created.status).toBe(403);
    expect((await ctx.http().patch(`/api/v1/users/${member.id}`).set(token.auth).send({ role: 'admin' })).status).toBe(403);
    expect((await ctx.http().patch(`/api/v1/users/${member.id}`).set(token.auth).send({ password: 'another-password-1' })).status).toBe(403);
    const [row] = await ctx.db.read((m) => m.query('SELECT role FROM users WHERE id = ?', [member.id]));
    expect(row.role).toBe('member');
    // Creating a member needs a member's rights, and never with a password the token's holder would know.
    expect((await ctx.http().post('/api/v1/users').set(token.auth).send({ username: 'tokenmademember', role: 'member' })).status).toBe(403);
    const memberMaker = await createApiToken(ctx, admin, ['users:write', 'provider-keys:read', 'provider-keys:reveal', 'projects:read']);
    expect((await ctx.http().post('/api/v1/users').set(memberMaker.auth).send({ username: 'tokenmademember', password: 'a-long-password-1', role: 'member' })).status).toBe(403);
    expect((await ctx.http().post('/api/v1/users').set(memberMaker.auth).send({ username: 'tokenmademember', role: 'member' })).status).toBe(201);
  });

  it('keeps an admin’s token without users:write to its own tokens: it neither lists nor revokes anyone else’s', async () => {
    const memberToken = await createApiToken(ctx, member, ['provider-keys:read']);
    const adminToken = await createApiToken(ctx, admin, ['projects:read']);
    const list = await ctx.http().get('/api/v1/api-tokens').set(adminToken.auth);
    expect(list.status).toBe(200);
    expect(list.body.items.every((t: { userId: string }) => t.userId === admin.id)).toBe(true);
    expect((await ctx.http().delete(`/api/v1/api-tokens/${memberToken.id}`).set(adminToken.auth)).status).toBe(404);
    expect((await ctx.http().get('/api/v1/auth/me').set(memberToken.auth)).status).toBe(200);
  });

  it('answers a non-ASCII CSRF header on a cookie session with 403, not 500', async () => {
    const login = await ctx.http().post('/api/v1/auth/login').send({ username: member.username, password: member.password, cookie: true });
    const cookie = login.headers['set-cookie'];
    const res = await ctx.http().post('/api/v1/auth/logout').set('Cookie', cookie).set('X-CSRF-Token', Buffer.from([0xe9, 0x61]).toString('latin1'));
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('forbidden');
  });

  it('does not bring back a session issued before the user was disabled when they are enabled again', async () => {
    const u = await ctx.user('member');
    expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
    expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ status: 'active' })).status).toBe(200);
    expect((await ctx.http().get('/api/v1/auth/me').set(u.auth)).status).toBe(401);
    const fresh = await ctx.login(u.username, u.password);
    expect((await ctx.http().get('/api/v1/auth/me').set('Authorization', `Bearer ${fresh}`)).status).toBe(200);
  });
  it('refuses a token without provider-keys:reveal handing a key to another owner (the new owner could reveal it)', async () => {
    const project = await createProject(ctx, admin);
    const key = await createKey(ctx, admin, { ownerId: member.id, projectId: project.id });
    const other = await ctx.user('member');
    const writer = await createApiToken(ctx, admin, ['users:write', 'provider-keys:write', 'provider-keys:read']);
    const moved = await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(writer.auth).send({ ownerId: other.id });
    expect(moved.status).toBe(403);
    expect(moved.body.error.message).toMatch(/provider-keys:reveal/);
    const [row] = await ctx.db.read((m) => m.query('SELECT owner_id FROM provider_keys WHERE id = ?', [key.id]));
    expect(row.owner_id).toBe(member.id);
    expect((await auditRows(ctx, { action: 'provider_key.update', keyId: key.id })).length).toBe(0);
    // The same token may still rename the key; a token that may reveal may also reassign.
    expect((await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(writer.auth).send({ name: 'renamed by token' })).status).toBe(200);
    const revealer = await createApiToken(ctx, admin, ['provider-keys:write', 'provider-keys:reveal']);
    // Someone else's key: the move takes a reason (400 without), kept in the audit row.
    const unreasoned = await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(revealer.auth).send({ ownerId: other.id });
    expect({ status: unreasoned.status, field: unreasoned.body.error?.details?.[0]?.field }).toEqual({ status: 400, field: 'body.reason' });
    expect((await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(revealer.auth).send({ ownerId: other.id, reason: 'member left the team' })).status).toBe(200);
    const [moveRow] = await auditRows(ctx, { action: 'provider_key.update', keyId: key.id });
    expect(moveRow).toMatchObject({ reason: 'member left the team' });
  });

  it('refuses a users:write token disabling or enabling an admin', async () => {
    const second = await ctx.user('admin');
    const token = await createApiToken(ctx, admin, ['users:write', 'users:read']);
    expect((await ctx.http().patch(`/api/v1/users/${second.id}`).set(token.auth).send({ status: 'disabled' })).status).toBe(403);
    const [row] = await ctx.db.read((m) => m.query('SELECT status FROM users WHERE id = ?', [second.id]));
    expect(row.status).toBe('active');
    expect((await ctx.http().get('/api/v1/auth/me').set(second.auth)).status).toBe(200);
    const plain = await ctx.user('member');
    expect((await ctx.http().patch(`/api/v1/users/${plain.id}`).set(token.auth).send({ status: 'disabled' })).status).toBe(200);
  });

  it('takes only pkv_ tokens in X-API-Key: a session JWT there is 401', async () => {
    const res = await ctx.http().get('/api/v1/auth/me').set('X-API-Key', member.token);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    expect((await ctx.http().get('/api/v1/auth/me').set(member.auth)).status).toBe(200);
  });

  it('never shows usage counters going backwards while flushes run under concurrent use', async () => {
    const t = await createApiToken(ctx, member, ['provider-keys:read']);
    let last = 0;
    let backwards = 0;
    const uses = Array.from({ length: 200 }, () => ctx.http().get('/api/v1/auth/me').set(t.auth));
    const watch = (async () => {
      for (let i = 0; i < 60; i++) {
        if (i % 3 === 0) void ctx.container.usage.flush();
        const got = await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(member.auth);
        if (got.body.usageCount < last) backwards++;
        last = got.body.usageCount;
      }
    })();
    expect((await Promise.all(uses)).every((r) => r.status === 200)).toBe(true);
    await watch;
    expect(backwards).toBe(0);
    await ctx.container.usage.flush();
    expect((await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(member.auth)).body.usageCount).toBe(200 + 0);
  });

  describe('behind a proxy that is trusted blindly (PKV_TRUST_PROXY=true)', () => {
    let proxied: TestContext;
    beforeAll(async () => {
      proxied = await createTestContext({ PKV_TRUST_PROXY: 'true' });
    });
    afterAll(() => proxied.close());

    it('clips an oversized client address, so one request cannot stop usage counting for every token', async () => {
      const u = await proxied.user('member');
      const a = await createApiToken(proxied, u, ['provider-keys:read']);
      const b = await createApiToken(proxied, u, ['provider-keys:read']);
      const huge = `${'9'.repeat(300)}, 10.0.0.1`;
      expect((await proxied.http().get('/api/v1/auth/me').set(a.auth).set('X-Forwarded-For', huge)).status).toBe(200);
      expect((await proxied.http().get('/api/v1/auth/me').set(b.auth)).status).toBe(200);
      await proxied.container.usage.flush();
      const rows = await proxied.db.read((m) => m.query('SELECT id, usage_count, last_used_ip FROM api_tokens WHERE id IN (?, ?)', [a.id, b.id]));
      const byId = new Map(rows.map((r: { id: string }) => [r.id, r]));
      expect(Number((byId.get(a.id) as { usage_count: unknown }).usage_count)).toBe(1);
      expect(Number((byId.get(b.id) as { usage_count: unknown }).usage_count)).toBe(1);
      expect(String((byId.get(a.id) as { last_used_ip: unknown }).last_used_ip).length).toBeLessThanOrEqual(64);
      expect(proxied.logText()).not.toContain('api_token.usage_flush_failed');
    });
  });
});
