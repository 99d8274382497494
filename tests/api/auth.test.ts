import crypto from 'node:crypto';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken } from '../support/factories';
import {
  bearer,
  countRows,
  craftSession,
  expectError,
  expectRefused,
  REFUSED_CREDENTIALS,
  refusedCredentials,
  RefusedCredentials,
  RouteCase,
  SecretBook,
  strongPassword,
  userRow,
  writeCounts,
} from '../support/auth-helpers';

const detailOf = (row: Record<string, unknown>) => JSON.parse(String(row.detail ?? 'null'));

describe('/auth', () => {
  let ctx: TestContext;
  let admin: TestUser;
  const book = new SecretBook();

  const signIn = (username: string, password: string) => ctx.http().post('/api/v1/auth/login').send({ username, password });
  const me = (headers: Record<string, string>) => ctx.http().get('/api/v1/auth/me').set(headers);
  const user = async (role: TestUser['role']) => {
    const u = await ctx.user(role);
    book.addUser(u);
    return u;
  };

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await user('admin');
  });
  afterAll(() => ctx.close());

  describe('POST /auth/login', () => {
    it('signs a user in with a Bearer session /auth/me accepts, audited as a successful login', async () => {
      const member = await user('member');
      const res = await signIn(member.username, member.password);
      expect(res.status).toBe(200);
      book.add(res.body.accessToken);
      expect(Object.keys(res.body).sort()).toEqual(['accessToken', 'expiresIn', 'tokenType', 'user']);
      expect(res.body.tokenType).toBe('Bearer');
      expect(res.body.expiresIn).toBe(ctx.config.jwtTtlSeconds);
      expect(res.body.user).toEqual({ id: member.id, username: member.username, displayName: null, role: 'member', status: 'active', mustChangePassword: false, createdAt: expect.any(String), updatedAt: expect.any(String) });
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.text).not.toContain('scrypt');

      const who = await me(bearer(res.body.accessToken));
      expect(who.status).toBe(200);
      expect(who.body).toEqual({ id: member.id, username: member.username, role: 'member', status: 'active', via: 'session' });

      const rows = (await auditRows(ctx, { action: 'auth.login' })).filter((r) => r.actor_id === member.id);
      expect(rows.map((r) => r.outcome)).toEqual(['success', 'success']);
      expect(rows[0]).toMatchObject({ actor_username: member.username, actor_role: 'member', via: 'session', request_id: res.headers['x-request-id'] });
    });

    it('answers an unknown user and a wrong password identically, with 401, and audits both as denied', async () => {
      const member = await user('member');
      const ghost = `ghost-${member.username}`;
      const before = await auditRows(ctx, { action: 'auth.login' });
      const wrong = await signIn(member.username, `${member.password}x`);
      const unknown = await signIn(ghost, member.password);
      for (const res of [wrong, unknown]) {
        expectError(res, 401, 'unauthorized');
        expect(res.body.error.details).toEqual([]);
      }
      expect(unknown.body.error.message).toBe(wrong.body.error.message);
      expect(unknown.headers['www-authenticate']).toBe(wrong.headers['www-authenticate']);
      expect(unknown.text.replace(unknown.body.error.requestId, '')).toBe(wrong.text.replace(wrong.body.error.requestId, ''));

      const after = await auditRows(ctx, { action: 'auth.login' });
      const fresh = after.slice(0, after.length - before.length);
      expect(fresh.map((r) => [r.outcome, r.actor_username, detailOf(r).why])).toEqual([
        ['denied', '(unknown user)', 'unknown_user'],
        ['denied', member.username, 'wrong_password'],
      ]);
      expect(fresh[1].actor_id).toBe(member.id);
      expect(fresh[0].actor_id).toBeNull();
    });

    it('does not put a name that cannot be a username (often a password typed in the wrong field) on record', async () => {
      const typo = `Pa$$ word with spaces ${crypto.randomBytes(6).toString('base64url')}`;
      const before = await auditRows(ctx, { action: 'auth.login' });
      expectError(await signIn(typo, 'whatever-password'), 401, 'unauthorized');
      const after = await auditRows(ctx, { action: 'auth.login' });
      const fresh = after.slice(0, after.length - before.length);
      expect(fresh.map((r) => [r.outcome, r.actor_username, detailOf(r).why])).toEqual([['denied', '(not a valid username)', 'unknown_user']]);
      expect(JSON.stringify(after)).not.toContain(typo.toLowerCase());
      expect(ctx.logText().toLowerCase()).not.toContain(typo.toLowerCase());
    });

    it('refuses a disabled user exactly like a wrong password, audited as denied', async () => {
      const member = await user('member');
      expect((await ctx.http().patch(`/api/v1/users/${member.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
      const disabled = await signIn(member.username, member.password);
      const wrong = await signIn(admin.username, `${admin.password}x`);
      expectError(disabled, 401, 'unauthorized');
      expect(disabled.body.error.message).toBe(wrong.body.error.message);
      const rows = (await auditRows(ctx, { action: 'auth.login' })).filter((r) => r.actor_id === member.id);
      expect(rows[0].outcome).toBe('denied');
      expect(detailOf(rows[0])).toEqual({ why: 'user_disabled' });
    });

    it.each([
      ['a missing password', { username: 'someone' }],
      ['an empty username', { username: '', password: 'whatever-password' }],
      ['a numeric password', { username: 'someone', password: 123456789012 }],
      ['an unknown field', { username: 'someone', password: 'whatever-password', remember: true }],
    ])('rejects %s with 400 before checking any password, auditing nothing', async (_story, body) => {
      const before = await writeCounts(ctx);
      const res = await ctx.http().post('/api/v1/auth/login').send(body);
      expectError(res, 400, 'validation_failed');
      expect(await writeCounts(ctx)).toEqual(before);
    });
  });

  describe('a secret typed into the username field', () => {
    /** Every row of every table, as text (the MySQL rate-limit counters included). */
    async function databaseText(): Promise<string> {
      const tables: Array<{ name: string }> = await ctx.db.read((m) =>
        ctx.kind === 'sqlite' ? m.query("SELECT name FROM sqlite_master WHERE type = 'table'") : m.query('SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE()'),
      );
      const parts: string[] = [];
      for (const { name } of tables) parts.push(JSON.stringify(await ctx.db.read((m) => m.query(`SELECT * FROM \`${name}\``))));
      return parts.join('\n');
    }

    const hex = (n: number) => crypto.randomBytes(n).toString('hex');
    // Shapes of real keys; all but the last two are valid usernames, which is how they used to reach the trail.
    const SECRETS: Array<[string, () => string]> = [
      ['a DeepSeek key', () => `sk-${hex(16)}`],
      ['a Volcengine Ark key', () => crypto.randomUUID()],
      ['a pkv_ API token', () => `pkv_${crypto.randomBytes(32).toString('base64url')}`],
      ['a short high-entropy name', () => `x${crypto.randomBytes(12).toString('base64url')}`],
      ['an OpenAI project key', () => `sk-proj-${crypto.randomBytes(60).toString('base64url')}`],
      ['an Anthropic key with spaces around it', () => ` sk-ant-api03-${crypto.randomBytes(70).toString('base64url')} `],
    ];

    it.each(SECRETS)('records neither %s nor its lower-case form in the trail, the log or any table: only a marker', async (_story, make) => {
      const secret = make();
      ctx.secrets.add('password', secret.trim());
      ctx.secrets.add('password', secret.trim().toLowerCase());
      const before = (await auditRows(ctx, { action: 'auth.login' })).length;
      expectError(await signIn(secret, 'whatever-password'), 401, 'unauthorized');
      const rows = await auditRows(ctx, { action: 'auth.login' });
      const fresh = rows.slice(0, rows.length - before);
      expect(fresh.map((r) => [r.outcome, r.actor_id, detailOf(r).why])).toEqual([['denied', null, 'unknown_user']]);
      expect(['(unknown user)', '(not a valid username)']).toContain(fresh[0].actor_username);
      for (const needle of [secret.trim(), secret.trim().toLowerCase(), secret.trim().slice(4, 20).toLowerCase()]) {
        expect(ctx.logText().toLowerCase()).not.toContain(needle.toLowerCase());
        expect((await databaseText()).toLowerCase()).not.toContain(needle.toLowerCase());
      }
    });

    it('still names an existing user who mistyped their password', async () => {
      const member = await user('member');
      expectError(await signIn(member.username, 'not-the-password'), 401, 'unauthorized');
      const [row] = (await auditRows(ctx, { action: 'auth.login' })).filter((r) => r.actor_id === member.id);
      expect(row).toMatchObject({ outcome: 'denied', actor_username: member.username });
      expect(detailOf(row).why).toBe('wrong_password');
    });
  });

  describe('GET /auth/me', () => {
    it('describes an API token principal with its scopes', async () => {
      const member = await user('member');
      const token = await createApiToken(ctx, member, ['provider-keys:read', 'projects:read']);
      book.add(token.token);
      const res = await me(token.auth);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ id: member.id, username: member.username, role: 'member', status: 'active', via: 'api_token', scopes: ['provider-keys:read', 'projects:read'], effectiveScopes: ['provider-keys:read', 'projects:read'], apiTokenId: token.id });
      const viaHeader = await me({ 'X-API-Key': token.token });
      expect(viaHeader.status).toBe(200);
      expect(viaHeader.body.via).toBe('api_token');
    });

    it('describes auditors and admins by their role', async () => {
      const auditor = await user('auditor');
      expect((await me(auditor.auth)).body).toMatchObject({ id: auditor.id, role: 'auditor', via: 'session' });
      expect((await me(admin.auth)).body).toMatchObject({ id: admin.id, role: 'admin', via: 'session' });
    });
  });

  describe('POST /auth/logout', () => {
    it('revokes only that session: it answers 401 afterwards while another session of the same user keeps working', async () => {
      const member = await user('member');
      const second = await ctx.login(member.username, member.password);
      book.add(second);
      const res = await ctx.http().post('/api/v1/auth/logout').set(member.auth);
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      expectError(await me(member.auth), 401, 'unauthorized');
      expectError(await ctx.http().post('/api/v1/auth/logout').set(member.auth), 401, 'unauthorized');
      expect((await me(bearer(second))).status).toBe(200);

      expect(await countRows(ctx, 'revoked_sessions', 'user_id = ?', [member.id])).toBe(1);
      const rows = (await auditRows(ctx, { action: 'auth.logout' })).filter((r) => r.actor_id === member.id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'success', via: 'session' });
    });

    it('refuses to log out an API token with 403 (tokens are revoked explicitly), and the token keeps working', async () => {
      const token = await createApiToken(ctx, admin, ['users:read']);
      book.add(token.token);
      const before = await countRows(ctx, 'revoked_sessions');
      expectError(await ctx.http().post('/api/v1/auth/logout').set(token.auth), 403, 'forbidden');
      expect(await countRows(ctx, 'revoked_sessions')).toBe(before);
      expect((await me(token.auth)).status).toBe(200);
    });
  });

  describe('POST /auth/password', () => {
    it('refuses a wrong current password with 403, audited as denied, changing nothing', async () => {
      const member = await user('member');
      const before = await userRow(ctx, member.id);
      const res = await ctx.http().post('/api/v1/auth/password').set(member.auth).send({ currentPassword: `${member.password}x`, newPassword: strongPassword() });
      expectError(res, 403, 'forbidden');
      const after = await userRow(ctx, member.id);
      expect(after.password_hash).toBe(before.password_hash);
      expect(Number(after.session_epoch)).toBe(Number(before.session_epoch));
      expect((await me(member.auth)).status).toBe(200);
      const rows = (await auditRows(ctx, { action: 'auth.password_change' })).filter((r) => r.actor_id === member.id);
      expect(rows.map((r) => [r.outcome, detailOf(r).why])).toEqual([['denied', 'wrong_current_password']]);
    });

    it('changes the password: every earlier session dies, the old password stops working, the new one and API tokens work', async () => {
      const member = await user('member');
      const second = await ctx.login(member.username, member.password);
      const token = await createApiToken(ctx, member, ['projects:read']);
      const newPassword = strongPassword();
      book.add(second, token.token, newPassword);
      const before = await userRow(ctx, member.id);

      const res = await ctx.http().post('/api/v1/auth/password').set(member.auth).send({ currentPassword: member.password, newPassword });
      expect(res.status).toBe(204);

      expectError(await me(member.auth), 401, 'unauthorized');
      expectError(await me(bearer(second)), 401, 'unauthorized');
      expectError(await signIn(member.username, member.password), 401, 'unauthorized');
      const fresh = await signIn(member.username, newPassword);
      expect(fresh.status).toBe(200);
      book.add(fresh.body.accessToken);
      expect((await me(bearer(fresh.body.accessToken))).status).toBe(200);
      expect((await me(token.auth)).status).toBe(200);
      expect((await ctx.http().get('/api/v1/projects').set(token.auth)).status).toBe(200);

      const after = await userRow(ctx, member.id);
      expect(after.password_hash).not.toBe(before.password_hash);
      expect(String(after.password_hash)).toMatch(/^scrypt\$/);
      expect(Number(after.session_epoch)).toBe(Number(before.session_epoch) + 1);
      const rows = (await auditRows(ctx, { action: 'auth.password_change' })).filter((r) => r.actor_id === member.id);
      expect(rows.map((r) => r.outcome)).toEqual(['success']);
      expect(String(rows[0].detail ?? '')).not.toContain(newPassword);
    });

    it('refuses a password change through an API token with 403', async () => {
      const member = await user('member');
      const token = await createApiToken(ctx, member, ['projects:read']);
      book.add(token.token);
      const res = await ctx.http().post('/api/v1/auth/password').set(token.auth).send({ currentPassword: member.password, newPassword: strongPassword() });
      expectError(res, 403, 'forbidden');
      expect((await me(member.auth)).status).toBe(200);
    });

    it.each([
      ['a too short new password', (pw: string) => ({ currentPassword: pw, newPassword: 'short' })],
      ['a missing current password', () => ({ newPassword: strongPassword() })],
      ['an unknown field', (pw: string) => ({ currentPassword: pw, newPassword: strongPassword(), logoutOthers: true })],
      ['a numeric new password', (pw: string) => ({ currentPassword: pw, newPassword: 1234567890123 })],
    ])('rejects %s with 400, keeping the old password', async (_story, body) => {
      const member = await user('member');
      const before = await userRow(ctx, member.id);
      expectError(await ctx.http().post('/api/v1/auth/password').set(member.auth).send(body(member.password)), 400, 'validation_failed');
      expect((await userRow(ctx, member.id)).password_hash).toBe(before.password_hash);
      expect((await me(member.auth)).status).toBe(200);
    });
  });

  describe('every role on its own account', () => {
    it.each(['admin', 'member', 'auditor'] as const)('lets a signed-in %s read /auth/me, change their password and log out', async (role) => {
      const u = await user(role);
      expect((await me(u.auth)).body).toEqual({ id: u.id, username: u.username, role, status: 'active', via: 'session' });
      const newPassword = strongPassword();
      book.add(newPassword);
      expect((await ctx.http().post('/api/v1/auth/password').set(u.auth).send({ currentPassword: u.password, newPassword })).status).toBe(204);
      const session = await ctx.login(u.username, newPassword);
      book.add(session);
      expect((await ctx.http().post('/api/v1/auth/logout').set(bearer(session))).status).toBe(204);
      expectError(await me(bearer(session)), 401, 'unauthorized');
      const actions = (await auditRows(ctx)).filter((r) => r.actor_id === u.id && r.outcome === 'success').map((r) => r.action);
      expect(actions).toEqual(['auth.logout', 'auth.login', 'auth.password_change', 'auth.login']);
    });

    it.each([
      ['with no scope for it', ['projects:read']],
      ['with every scope of its role', ['users:read', 'users:write', 'projects:read', 'projects:write', 'provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read']],
    ])('lets an admin API token %s read /auth/me but neither log out nor change the password (403)', async (_story, scopes) => {
      const token = await createApiToken(ctx, admin, scopes);
      book.add(token.token);
      expect((await me(token.auth)).body).toMatchObject({ id: admin.id, via: 'api_token', scopes });
      const before = await writeCounts(ctx);
      expectError(await ctx.http().post('/api/v1/auth/logout').set(token.auth), 403, 'forbidden');
      expect(await writeCounts(ctx)).toEqual(before);
      const res = await ctx.http().post('/api/v1/auth/password').set(token.auth).send({ currentPassword: admin.password, newPassword: strongPassword() });
      expectError(res, 403, 'forbidden');
      expect((await me(admin.auth)).status).toBe(200);
    });
  });

  describe('credentials on every /auth route', () => {
    let creds: RefusedCredentials;
    let target: TestUser;
    const routes: RouteCase[] = [
      { route: 'POST /auth/logout', method: 'post', path: () => '/api/v1/auth/logout' },
      { route: 'GET /auth/me', method: 'get', path: () => '/api/v1/auth/me' },
      { route: 'POST /auth/password', method: 'post', path: () => '/api/v1/auth/password', body: () => ({ currentPassword: target.password, newPassword: 'a-brand-new-password' }) },
    ];

    beforeAll(async () => {
      creds = await refusedCredentials(ctx, admin);
      book.add(...creds.secrets);
      target = await user('admin');
    });

    it('accepts a hand-crafted session signed like the server signs (so each refusal below has exactly one cause)', async () => {
      const res = await me(creds.control);
      expect(res.status).toBe(200);
      expect(res.body.via).toBe('session');
    });

    it('accepts a Bearer scheme written in lower case', async () => {
      expect((await me({ Authorization: `bearer ${target.token}` })).status).toBe(200);
    });

    describe.each(routes.map((r) => [r.route, r] as const))('%s', (_name, r) => {
      it.each(REFUSED_CREDENTIALS)('refuses %s with 401 and WWW-Authenticate: Bearer, writing nothing', async (story) => {
        await expectRefused(ctx, r, creds.headers[story]());
      });
    });

    it('kept the target user password untouched through every refused password change', async () => {
      expect((await signIn(target.username, target.password)).status).toBe(200);
    });

    it('refuses a session whose signature is valid but whose epoch is stale with 401', async () => {
      const row = await userRow(ctx, target.id);
      expect((await me(bearer(craftSession(ctx, target.id, { ep: Number(row.session_epoch) })))).status).toBe(200);
      expectError(await me(bearer(craftSession(ctx, target.id, { ep: Number(row.session_epoch) - 1 }))), 401, 'unauthorized');
    });
  });

  describe('the login rate limit (PKV_LOGIN_RATE_LIMIT=3)', () => {
    let rl: TestContext;
    const rlUser = async (role: TestUser['role']) => {
      const u = await rl.user(role);
      book.addUser(u);
      return u;
    };
    const rlSignIn = (username: string, password: string) => rl.http().post('/api/v1/auth/login').send({ username, password });

    beforeAll(async () => {
      rl = await createTestContext({ PKV_LOGIN_RATE_LIMIT: '3' });
    });
    afterAll(async () => {
      expect(book.foundIn(rl.logText())).toEqual([]);
      await rl.close();
    });

    it('blocks a username from an address after 3 failures with 429 and Retry-After, even with the right password, auditing denied then rate_limited', async () => {
      const member = await rlUser('member');
      for (let i = 0; i < 3; i++) expectError(await rlSignIn(member.username, `wrong-${i}-password`), 401, 'unauthorized');
      const blocked = await rlSignIn(member.username, member.password);
      expectError(blocked, 429, 'rate_limited');
      const retryAfter = Number(blocked.headers['retry-after']);
      expect(Number.isInteger(retryAfter)).toBe(true);
      expect(retryAfter).toBeGreaterThan(0);
      expect(retryAfter).toBeLessThanOrEqual(15 * 60);
      expectError(await rlSignIn(member.username, member.password), 429, 'rate_limited');

      const rows = (await auditRows(rl, { action: 'auth.login' })).filter((r) => r.actor_id === member.id).reverse();
      expect(rows.map((r) => r.outcome)).toEqual(['success', 'denied', 'denied', 'denied', 'rate_limited', 'rate_limited']);
      expect(detailOf(rows[4]).retryAfterSeconds).toBeGreaterThan(0);
    });

    it('blocks probing for unknown usernames the same way', async () => {
      const ghost = 'nobody-here';
      const before = (await auditRows(rl, { action: 'auth.login' })).length;
      for (let i = 0; i < 3; i++) expectError(await rlSignIn(ghost, 'some-password-1'), 401, 'unauthorized');
      const blocked = await rlSignIn(ghost, 'some-password-1');
      expectError(blocked, 429, 'rate_limited');
      expect(blocked.headers['retry-after']).toMatch(/^\d+$/);
      const all = await auditRows(rl, { action: 'auth.login' });
      const rows = all.slice(0, all.length - before);
      expect(rows.map((r) => [r.outcome, r.actor_username, r.actor_id])).toEqual([
        ['rate_limited', '(unknown user)', null],
        ['denied', '(unknown user)', null],
        ['denied', '(unknown user)', null],
        ['denied', '(unknown user)', null],
      ]);
    });

    it('keeps letting other users sign in from the same address', async () => {
      const other = await rlUser('auditor');
      const res = await rlSignIn(other.username, other.password);
      expect(res.status).toBe(200);
      book.add(res.body.accessToken);
    });

    it('forgets earlier failures after a successful sign-in', async () => {
      const member = await rlUser('member');
      for (let i = 0; i < 2; i++) expectError(await rlSignIn(member.username, 'wrong-password-x'), 401, 'unauthorized');
      const ok = await rlSignIn(member.username, member.password);
      expect(ok.status).toBe(200);
      book.add(ok.body.accessToken);
      for (let i = 0; i < 2; i++) expectError(await rlSignIn(member.username, 'wrong-password-y'), 401, 'unauthorized');
      const again = await rlSignIn(member.username, member.password);
      expect(again.status).toBe(200);
      book.add(again.body.accessToken);
    });

    it('rate-limits repeated wrong current passwords on POST /auth/password, audited as rate_limited', async () => {
      const member = await rlUser('member');
      const change = (currentPassword: string) => rl.http().post('/api/v1/auth/password').set(member.auth).send({ currentPassword, newPassword: 'another-good-password' });
      for (let i = 0; i < 3; i++) expectError(await change(`wrong-${i}`), 403, 'forbidden');
      const blocked = await change(member.password);
      expectError(blocked, 429, 'rate_limited');
      expect(blocked.headers['retry-after']).toMatch(/^\d+$/);
      const rows = (await auditRows(rl, { action: 'auth.password_change' })).filter((r) => r.actor_id === member.id);
      expect(rows.map((r) => r.outcome)).toEqual(['rate_limited', 'denied', 'denied', 'denied']);
      expect((await rl.http().get('/api/v1/auth/me').set(member.auth)).status).toBe(200);
    });
  });

  describe('logs', () => {
    it('never carry a password, session token or API token this suite handled', async () => {
      book.addUser(admin);
      expect(book.size).toBeGreaterThan(20);
      expect(book.foundIn(ctx.logText())).toEqual([]);
    });

    it('name /auth routes by pattern in the access log', async () => {
      const lines = ctx.capture.lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'http.access');
      const routes = new Set(lines.map((l) => l.route));
      for (const r of ['/api/v1/auth/login', '/api/v1/auth/me', '/api/v1/auth/logout', '/api/v1/auth/password']) expect(routes.has(r)).toBe(true);
    });
  });
});
