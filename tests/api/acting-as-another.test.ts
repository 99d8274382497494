import crypto from 'node:crypto';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject } from '../support/factories';
import { bearer, expectError, Headers, SecretBook, strongPassword, uniqueName, userRow } from '../support/auth-helpers';
import { cliActor } from '../../src/modules/auth/actor';
import { setCredentialAsTheVault } from '../support/crypto-helpers';

type Row = Record<string, unknown>;
const detailOf = (row: Row) => JSON.parse(String(row.detail ?? 'null'));
const sha256 = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

/**
 * No path hands one person a credential that acts as someone else: a token acts as its user, a session as the user
 * whose password opened it, so neither may come from anybody but that user (or the operator at the host).
 */
describe('nobody gets a credential that acts as another user', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let otherAdmin: TestUser;
  let member: TestUser;
  let auditor: TestUser;
  let project: { id: string };
  const book = new SecretBook();

  const user = async (role: TestUser['role']) => {
    const u = await ctx.user(role);
    book.addUser(u);
    return u;
  };
  const me = (headers: Headers) => ctx.http().get('/api/v1/auth/me').set(headers);
  const tokenRow = async (id: string): Promise<Row> => (await ctx.db.read((m) => m.query('SELECT * FROM api_tokens WHERE id = ?', [id])))[0];
  const tokenAudit = async (action: string, tokenId: string) => (await auditRows(ctx, { action })).filter((r) => detailOf(r)?.tokenId === tokenId);
  const reveal = (id: string, headers: Headers, body: object = {}) => ctx.http().post(`/api/v1/provider-keys/${id}/reveal`).set(headers).send(body);
  const signIn = (username: string, password: string) => ctx.http().post('/api/v1/auth/login').send({ username, password });

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '1000' });
    admin = await user('admin');
    otherAdmin = await user('admin');
    member = await user('member');
    auditor = await user('auditor');
    project = await createProject(ctx, admin);
  });
  afterAll(() => ctx.close());

  describe('POST /api-tokens/:id/regenerate', () => {
    it('refuses an admin regenerating a member’s reveal token with 403: no new secret, the old one unchanged and working, nothing audited', async () => {
      const key = await createKey(ctx, admin, { ownerId: member.id, projectId: project.id });
      const hers = await createApiToken(ctx, member, ['provider-keys:read', 'provider-keys:reveal']);
      book.add(hers.token);
      const before = await tokenRow(hers.id);

      const res = await ctx.http().post(`/api/v1/api-tokens/${hers.id}/regenerate`).set(admin.auth).send();
      expectError(res, 403, 'forbidden');
      expect(res.body.error.message).toMatch(/own user/);
      expect(res.text).not.toMatch(/pkv_/);
      expect(await tokenRow(hers.id)).toEqual(before);
      expect(await tokenAudit('api_token.regenerate', hers.id)).toEqual([]);

      // The only reveals of her key are still her own.
      expect((await reveal(key.id, hers.auth)).status).toBe(200);
      const reveals = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
      expect(reveals.map((r) => [r.actor_id, r.via, r.outcome])).toEqual([[member.id, 'api_token', 'success']]);
    });

    it.each([
      ['another admin’s token', () => otherAdmin, ['provider-keys:read', 'provider-keys:reveal', 'users:write']],
      ['an auditor’s token', () => auditor, ['audit:read']],
      ['a member’s token without the reveal scope', () => member, ['provider-keys:read']],
    ] as const)('refuses an admin regenerating %s with 403, whatever its scopes', async (_story, owner, scopes) => {
      const t = await createApiToken(ctx, owner(), [...scopes]);
      book.add(t.token);
      const res = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(admin.auth).send();
      expectError(res, 403, 'forbidden');
      expect((await tokenRow(t.id)).token_hash).toBe(sha256(t.token));
      expect((await me(t.auth)).status).toBe(200);
    });

    it('lets each user regenerate their own token (admins included), audited as them', async () => {
      for (const owner of [member, admin, auditor]) {
        const t = await createApiToken(ctx, owner, ['provider-keys:read']);
        const res = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(owner.auth).send();
        expect(res.status).toBe(200);
        book.add(t.token, res.body.token);
        expect(res.body).toMatchObject({ id: t.id, userId: owner.id });
        expect((await me(t.auth)).status).toBe(401);
        expect((await me(bearer(res.body.token))).body).toMatchObject({ id: owner.id, via: 'api_token' });
        const [row] = await tokenAudit('api_token.regenerate', t.id);
        expect(row).toMatchObject({ actor_id: owner.id, via: 'session', outcome: 'success' });
      }
    });

    it('still lets an admin see, rename, renew and revoke anyone’s token, none of which hands over a secret', async () => {
      const t = await createApiToken(ctx, member, ['provider-keys:read', 'provider-keys:reveal']);
      book.add(t.token);
      const renamed = await ctx.http().patch(`/api/v1/api-tokens/${t.id}`).set(admin.auth).send({ name: 'looked at by admin' });
      const renewed = await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth).send({ expiresInDays: 5 });
      const read = await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(admin.auth);
      for (const res of [renamed, renewed, read]) {
        expect(res.status).toBe(200);
        expect(res.body.token).toBeUndefined();
        expect(res.text).not.toContain(t.token.slice(12));
      }
      expect((await ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(admin.auth)).status).toBe(204);
      expect((await me(t.auth)).status).toBe(401);
      expect(await tokenAudit('api_token.revoke', t.id)).toEqual([expect.objectContaining({ actor_id: admin.id })]);
    });

    it('still refuses an admin minting a reveal token for someone else, and refuses minting any token for a disabled user', async () => {
      expect((await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'as her', scopes: ['provider-keys:reveal'], userId: member.id })).status).toBe(400);
      const gone = await user('member');
      expect((await ctx.http().patch(`/api/v1/users/${gone.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
      const res = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'for a disabled user', scopes: ['provider-keys:read'], userId: gone.id });
      expectError(res, 400, 'validation_failed');
      expect(res.body.error.details).toEqual([{ field: 'body.userId', message: 'the user is disabled' }]);
      const [{ n }] = await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = ?', [gone.id]));
      expect(Number(n)).toBe(0);
    });
  });

  describe('POST /users through an API token', () => {
    it('refuses a users:write token creating an auditor with a password of its choosing (the finding): 403, nobody created, nobody signs in', async () => {
      const writer = await createApiToken(ctx, admin, ['users:write']);
      book.add(writer.token);
      const username = uniqueName('sneaky.auditor');
      const password = strongPassword();
      book.add(password);
      const res = await ctx.http().post('/api/v1/users').set(writer.auth).send({ username, role: 'auditor', password });
      expectError(res, 403, 'forbidden');
      expect(res.body.error.message).toMatch(/cannot choose a password/);
      expect(await ctx.db.read((m) => m.query('SELECT id FROM users WHERE username = ?', [username]))).toEqual([]);
      expectError(await signIn(username, password), 401, 'unauthorized');
      expect((await auditRows(ctx, { action: 'user.create' })).filter((r) => detailOf(r).username === username)).toEqual([]);
    });

    it.each([
      ['a member', 'member', ['users:write', 'projects:read'], /lacks provider-keys:read, provider-keys:reveal/],
      ['an auditor', 'auditor', ['users:write', 'users:read', 'projects:read', 'provider-keys:read'], /lacks audit:read/],
      ['an admin', 'admin', ['users:write', 'users:read', 'audit:read', 'projects:read', 'projects:write', 'provider-keys:read', 'provider-keys:write'], /cannot create admins/],
    ] as const)('refuses a token creating %s without every right of that role, even with no password', async (_story, role, scopes, message) => {
      const t = await createApiToken(ctx, admin, [...scopes]);
      book.add(t.token);
      const username = uniqueName('grown');
      const res = await ctx.http().post('/api/v1/users').set(t.auth).send({ username, role });
      expectError(res, 403, 'forbidden');
      expect(res.body.error.message).toMatch(message);
      expect(await ctx.db.read((m) => m.query('SELECT id FROM users WHERE username = ?', [username]))).toEqual([]);
    });

    it('lets a token holding a role’s rights create that role without a password; the account signs in only once an admin sets one, which must then be changed', async () => {
      const t = await createApiToken(ctx, admin, ['users:write', 'provider-keys:read', 'provider-keys:reveal', 'projects:read']);
      book.add(t.token);
      const username = uniqueName('provisioned');
      const created = await ctx.http().post('/api/v1/users').set(t.auth).send({ username, role: 'member' });
      expect(created.status).toBe(201);
      expectError(await signIn(username, 'a-long-enough-password'), 401, 'unauthorized');

      // The token cannot finish the job: setting a password needs a signed-in admin.
      expectError(await ctx.http().patch(`/api/v1/users/${created.body.id}`).set(t.auth).send({ password: 'a-long-enough-password' }), 403, 'forbidden');
      const first = strongPassword();
      book.add(first);
      expect((await ctx.http().patch(`/api/v1/users/${created.body.id}`).set(admin.auth).send({ password: first })).body.mustChangePassword).toBe(true);
      const session = await signIn(username, first);
      expect(session.status).toBe(200);
      book.add(session.body.accessToken);
      expectError(await ctx.http().get('/api/v1/provider-keys').set(bearer(session.body.accessToken)), 403, 'password_change_required');
    });
  });

  describe('a password someone else chose', () => {
    /** A fresh member whose password an admin has just set; returns the password and a session opened with it. */
    const resetByAdmin = async () => {
      const victim = await user('member');
      const key = await createKey(ctx, admin, { ownerId: victim.id, projectId: project.id });
      const known = strongPassword();
      book.add(known);
      const res = await ctx.http().patch(`/api/v1/users/${victim.id}`).set(admin.auth).send({ password: known });
      expect(res.status).toBe(200);
      const login = await signIn(victim.username, known);
      expect(login.status).toBe(200);
      book.add(login.body.accessToken);
      return { victim, key, known, login, session: bearer(login.body.accessToken) };
    };

    it('is flagged when an admin sets it: stored, audited, and said at sign-in and by /auth/me', async () => {
      const { victim, login, session } = await resetByAdmin();
      expect(Number((await userRow(ctx, victim.id)).must_change_password)).toBe(1);
      expect(login.body.user.mustChangePassword).toBe(true);
      const [update] = (await auditRows(ctx, { action: 'user.update' })).filter((r) => detailOf(r).userId === victim.id);
      expect(update).toMatchObject({ actor_id: admin.id });
      expect(detailOf(update)).toMatchObject({ changed: ['password'], mustChangePassword: true });
      const [signedIn] = (await auditRows(ctx, { action: 'auth.login' })).filter((r) => r.actor_id === victim.id);
      expect(detailOf(signedIn)).toEqual({ mustChangePassword: true });
      const whoami = await me(session);
      expect(whoami.status).toBe(200);
      expect(whoami.body).toMatchObject({ id: victim.id, via: 'session', mustChangePassword: true });
    });

    it('opens a session that can do nothing but change the password or sign out: every other route is 403 password_change_required, writing nothing', async () => {
      const { victim, key, session } = await resetByAdmin();
      const before = await auditRows(ctx);
      const attempts = [
        reveal(key.id, session),
        ctx.http().get('/api/v1/provider-keys').set(session),
        ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(session),
        ctx.http().get(`/api/v1/provider-keys/${key.id}/audit-events`).set(session),
        ctx.http().post('/api/v1/api-tokens').set(session).send({ name: 'keep access', scopes: ['provider-keys:reveal'] }),
        ctx.http().get('/api/v1/api-tokens').set(session),
        ctx.http().get('/api/v1/projects').set(session),
        ctx.http().get(`/api/v1/users/${victim.id}`).set(session),
        ctx.http().get('/api/v1/audit-events').set(session),
      ];
      for (const res of await Promise.all(attempts)) {
        expectError(res, 403, 'password_change_required');
        expect(res.text).not.toContain(key.secret);
      }
      expect(await auditRows(ctx)).toHaveLength(before.length);
      const [{ n }] = await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = ?', [victim.id]));
      expect(Number(n)).toBe(0);
    });

    it('is restricted the same way through the console’s cookie session', async () => {
      const { victim, known } = await resetByAdmin();
      const login = await ctx.http().post('/api/v1/auth/login').send({ username: victim.username, password: known, cookie: true });
      expect(login.status).toBe(200);
      expect(login.body.user.mustChangePassword).toBe(true);
      const cookie = login.headers['set-cookie'];
      const csrf = login.body.csrfToken as string;
      const whoami = await ctx.http().get('/api/v1/auth/me').set('Cookie', cookie);
      expect(whoami.body).toMatchObject({ mustChangePassword: true, csrfToken: csrf });
      expectError(await ctx.http().post('/api/v1/api-tokens').set('Cookie', cookie).set('X-CSRF-Token', csrf).send({ name: 'x', scopes: ['provider-keys:read'] }), 403, 'password_change_required');
      expect((await ctx.http().post('/api/v1/auth/logout').set('Cookie', cookie).set('X-CSRF-Token', csrf)).status).toBe(204);
    });

    it('is lifted once the user changes it: the restricted session ends, the new password opens a full session, the change is audited as required', async () => {
      const { victim, key, known, session } = await resetByAdmin();
      const own = strongPassword();
      book.add(own);
      expect((await ctx.http().post('/api/v1/auth/password').set(session).send({ currentPassword: known, newPassword: own })).status).toBe(204);
      expect((await me(session)).status).toBe(401);
      expectError(await signIn(victim.username, known), 401, 'unauthorized');
      const fresh = await signIn(victim.username, own);
      expect(fresh.status).toBe(200);
      book.add(fresh.body.accessToken);
      expect(fresh.body.user.mustChangePassword).toBe(false);
      expect(Number((await userRow(ctx, victim.id)).must_change_password)).toBe(0);
      expect((await reveal(key.id, bearer(fresh.body.accessToken))).status).toBe(200);
      expect((await me(bearer(fresh.body.accessToken))).body.mustChangePassword).toBeUndefined();
      const [changed] = (await auditRows(ctx, { action: 'auth.password_change' })).filter((r) => r.actor_id === victim.id);
      expect(changed).toMatchObject({ outcome: 'success', via: 'session' });
      expect(detailOf(changed)).toEqual({ wasRequired: true });
    });

    it('cannot be "changed" to itself: 400, the flag stays, the session stays restricted', async () => {
      const { victim, known, session } = await resetByAdmin();
      const res = await ctx.http().post('/api/v1/auth/password').set(session).send({ currentPassword: known, newPassword: known });
      expectError(res, 400, 'validation_failed');
      expect(res.body.error.details).toEqual([{ field: 'body.newPassword', message: 'must differ from the current password' }]);
      expect(Number((await userRow(ctx, victim.id)).must_change_password)).toBe(1);
      expectError(await ctx.http().get('/api/v1/projects').set(session), 403, 'password_change_required');
    });

    it('leaves the user’s own API tokens working (they were theirs, not the admin’s)', async () => {
      const victim = await user('member');
      const key = await createKey(ctx, admin, { ownerId: victim.id, projectId: project.id });
      const own = await createApiToken(ctx, victim, ['provider-keys:reveal']);
      book.add(own.token);
      const known = strongPassword();
      book.add(known);
      expect((await ctx.http().patch(`/api/v1/users/${victim.id}`).set(admin.auth).send({ password: known })).status).toBe(200);
      expect((await reveal(key.id, own.auth)).status).toBe(200);
    });

    it('is not flagged when admins set their own password, or a user changes theirs', async () => {
      const self = await user('admin');
      const mine = strongPassword();
      book.add(mine);
      const res = await ctx.http().patch(`/api/v1/users/${self.id}`).set(self.auth).send({ password: mine });
      expect(res.body.mustChangePassword).toBe(false);
      const login = await signIn(self.username, mine);
      book.add(login.body.accessToken);
      expect(login.body.user.mustChangePassword).toBe(false);
      expect((await ctx.http().get('/api/v1/users').set(bearer(login.body.accessToken))).status).toBe(200);
    });

    it('is flagged when the operator resets it at the host (the CLI’s reset-password)', async () => {
      const u = await user('member');
      const reset = strongPassword();
      book.add(reset);
      await ctx.container.users.resetPassword(cliActor(null), u.username, reset);
      const login = await signIn(u.username, reset);
      book.add(login.body.accessToken);
      expect(login.body.user.mustChangePassword).toBe(true);
      expectError(await ctx.http().get('/api/v1/projects').set(bearer(login.body.accessToken)), 403, 'password_change_required');
    });
  });

  describe('disabling and enabling a user', () => {
    it('revokes every API token of the user for good, audited per token; enabling them again revives none', async () => {
      const u = await user('member');
      const live = await createApiToken(ctx, u, ['provider-keys:read', 'provider-keys:reveal']);
      const expired = await createApiToken(ctx, u, ['provider-keys:read']);
      const adminMade = await createApiToken(ctx, admin, ['provider-keys:read'], { userId: u.id });
      book.add(live.token, expired.token, adminMade.token);
      await setCredentialAsTheVault(ctx, 'api_tokens', expired.id, { expires_at: Date.now() - 1000 });

      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
      for (const t of [live, expired, adminMade]) {
        expect((await tokenRow(t.id)).revoked_at).not.toBeNull();
        const [row] = await tokenAudit('api_token.revoke', t.id);
        expect(row).toMatchObject({ actor_id: admin.id, outcome: 'success' });
        expect(detailOf(row)).toMatchObject({ tokenId: t.id, userId: u.id, why: 'user_disabled' });
      }

      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ status: 'active' })).status).toBe(200);
      for (const t of [live, adminMade]) expect((await me(t.auth)).status).toBe(401);
      // Renewing the one that had expired does not bring it back either.
      expect((await ctx.http().post(`/api/v1/api-tokens/${expired.id}/renew`).set(admin.auth).send({ expiresInDays: 30 })).status).toBe(409);
      expect((await me(expired.auth)).status).toBe(401);
      const fresh = await signIn(u.username, u.password);
      expect(fresh.status).toBe(200);
      book.add(fresh.body.accessToken);
    });

    it('through a users:write token disables a member the same way (tokens revoked), and still cannot touch admins', async () => {
      const u = await user('member');
      const t = await createApiToken(ctx, u, ['provider-keys:read']);
      const writer = await createApiToken(ctx, admin, ['users:write']);
      book.add(t.token, writer.token);
      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(writer.auth).send({ status: 'disabled' })).status).toBe(200);
      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(writer.auth).send({ status: 'active' })).status).toBe(200);
      expect((await me(t.auth)).status).toBe(401);
      expectError(await ctx.http().patch(`/api/v1/users/${otherAdmin.id}`).set(writer.auth).send({ status: 'disabled' }), 403, 'forbidden');
    });
  });

  it('never logged a password, session or token this file handled', () => {
    expect(book.size).toBeGreaterThan(20);
    expect(book.foundIn(ctx.logText())).toEqual([]);
  });
});
