import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken } from '../support/factories';
import {
  bearer,
  countRows,
  expectError,
  expectRefused,
  Headers,
  REFUSED_CREDENTIALS,
  refusedCredentials,
  RefusedCredentials,
  RouteCase,
  SecretBook,
  strongPassword,
  uniqueName,
  userRow,
  walk,
  writeCounts,
} from '../support/auth-helpers';

const detailOf = (row: Record<string, unknown>) => JSON.parse(String(row.detail ?? 'null'));
const USER_KEYS = ['createdAt', 'displayName', 'id', 'mustChangePassword', 'role', 'status', 'updatedAt', 'username'];

describe('/users', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;
  let auditor: TestUser;
  let subject: TestUser;
  const tokens: Record<string, { id: string; token: string; auth: Headers }> = {};
  const book = new SecretBook();

  const user = async (role: TestUser['role']) => {
    const u = await ctx.user(role);
    book.addUser(u);
    return u;
  };
  const me = (headers: Headers) => ctx.http().get('/api/v1/auth/me').set(headers);
  const patch = (id: string, body: object, headers: Headers = admin.auth) => ctx.http().patch(`/api/v1/users/${id}`).set(headers).send(body);
  const userAudit = async (action: string, userId: string) => (await auditRows(ctx, { action })).filter((r) => detailOf(r)?.userId === userId);

  /** Who asks, by story; resolved at call time because users are made in beforeAll. */
  const as: Record<string, () => Headers> = {
    'an admin session': () => admin.auth,
    'an admin API token with users:write': () => tokens.adminWrite.auth,
    'an admin API token with users:read': () => tokens.adminRead.auth,
    'an admin API token without any users scope': () => tokens.adminProjects.auth,
    'an auditor session': () => auditor.auth,
    'an auditor API token with users:read': () => tokens.auditorRead.auth,
    'a member session': () => member.auth,
    'a member API token': () => tokens.member.auth,
  };

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await user('admin');
    member = await user('member');
    auditor = await user('auditor');
    subject = await user('member');
    tokens.adminWrite = await createApiToken(ctx, admin, ['users:write']);
    tokens.adminRead = await createApiToken(ctx, admin, ['users:read']);
    tokens.adminProjects = await createApiToken(ctx, admin, ['projects:read', 'projects:write']);
    tokens.auditorRead = await createApiToken(ctx, auditor, ['users:read']);
    tokens.member = await createApiToken(ctx, member, ['projects:read', 'provider-keys:read']);
    for (const t of Object.values(tokens)) book.add(t.token);
  });
  afterAll(() => ctx.close());

  describe('POST /users', () => {
    it('lets an admin session create a user: 201, a scrypt hash stored, user.create audited, no hash returned, the password to be changed at first sign-in', async () => {
      const username = uniqueName('new.user');
      const password = strongPassword();
      book.add(password);
      const res = await ctx.http().post('/api/v1/users').set(admin.auth).send({ username, password, role: 'auditor', displayName: 'New Person' });
      expect(res.status).toBe(201);
      expect(Object.keys(res.body).sort()).toEqual(USER_KEYS);
      expect(res.body).toMatchObject({ username, role: 'auditor', status: 'active', displayName: 'New Person', mustChangePassword: true });
      expect(res.text).not.toContain('scrypt');

      const row = await userRow(ctx, res.body.id);
      expect(row).toMatchObject({ username, role: 'auditor', status: 'active', display_name: 'New Person' });
      expect(Number(row.must_change_password)).toBe(1);
      expect(String(row.password_hash)).toMatch(/^scrypt\$ln=\d+,r=8,p=1\$/);
      expect(String(row.password_hash)).not.toContain(password);

      const [audit] = await userAudit('user.create', res.body.id);
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'session', api_token_id: null });
      expect(detailOf(audit)).toEqual({ userId: res.body.id, username, role: 'auditor', firstSignIn: 'must_change_password' });
      expect(String(audit.detail)).not.toContain(password);

      const signIn = await ctx.http().post('/api/v1/auth/login').send({ username, password });
      expect(signIn.status).toBe(200);
      expect(signIn.body.user.mustChangePassword).toBe(true);
      book.add(signIn.body.accessToken);
    });

    it('lets an admin API token create a user only without a password and in a role whose rights it holds: 201, an account nobody can sign in to yet', async () => {
      const asAuditor = await createApiToken(ctx, admin, ['users:write', 'provider-keys:read', 'audit:read', 'users:read', 'projects:read']);
      book.add(asAuditor.token);
      const username = uniqueName('token.made');
      const res = await ctx.http().post('/api/v1/users').set(asAuditor.auth).send({ username, role: 'auditor', displayName: 'Made By Script' });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ username, role: 'auditor', status: 'active', mustChangePassword: false });
      const row = await userRow(ctx, res.body.id);
      expect(String(row.password_hash)).not.toMatch(/^scrypt\$/);
      const [audit] = await userAudit('user.create', res.body.id);
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'api_token', api_token_id: asAuditor.id });
      expect(detailOf(audit)).toMatchObject({ firstSignIn: 'no_password' });
      // No password was ever set: nothing signs in, not even the stored marker itself.
      for (const guess of [String(row.password_hash), 'a-long-enough-password']) {
        expectError(await ctx.http().post('/api/v1/auth/login').send({ username, password: guess }), 401, 'unauthorized');
      }
      const denied = (await auditRows(ctx, { action: 'auth.login' })).filter((r) => r.actor_id === res.body.id);
      expect(denied.map((r) => [r.outcome, detailOf(r).why])).toEqual([['denied', 'no_password'], ['denied', 'no_password']]);
    });

    it.each(['an admin API token with users:read', 'an admin API token without any users scope', 'an auditor session', 'an auditor API token with users:read', 'a member session', 'a member API token'])(
      'refuses %s creating a user, with 403, creating nothing',
      async (who) => {
        const username = uniqueName('nope');
        const before = await writeCounts(ctx);
        const res = await ctx.http().post('/api/v1/users').set(as[who]()).send({ username, password: strongPassword(), role: 'admin' });
        expectError(res, 403, 'forbidden');
        expect(await writeCounts(ctx)).toEqual(before);
        expect(await countRows(ctx, 'users', 'username = ?', [username])).toBe(0);
      },
    );

    it('answers 409 to a duplicate username, keeping the first user untouched', async () => {
      const before = await userRow(ctx, subject.id);
      const audits = await countRows(ctx, 'audit_events', "action = 'user.create'");
      const res = await ctx.http().post('/api/v1/users').set(admin.auth).send({ username: subject.username, password: strongPassword(), role: 'admin' });
      expectError(res, 409, 'conflict');
      expect(await countRows(ctx, 'users', 'username = ?', [subject.username])).toBe(1);
      expect(await userRow(ctx, subject.id)).toEqual(before);
      expect(await countRows(ctx, 'audit_events', "action = 'user.create'")).toBe(audits);
    });

    it.each([
      ['a password shorter than 12 characters', { password: 'short-pw' }],
      ['a username with a space', { username: 'two words' }],
      ['a username of two characters', { username: 'ab' }],
      ['an unknown role', { role: 'owner' }],
      ['a status (not settable on create)', { status: 'disabled' }],
      ['a display name with control characters', { displayName: 'bell\u0007' }],
      ['a numeric username', { username: 12345 }],
    ])('rejects %s with 400, creating nothing', async (_story, override) => {
      const body = { username: uniqueName('bad'), password: strongPassword(), role: 'member', ...override };
      const before = await writeCounts(ctx);
      const res = await ctx.http().post('/api/v1/users').set(admin.auth).send(body);
      expectError(res, 400, 'validation_failed');
      expect(res.body.error.details.length).toBeGreaterThan(0);
      expect(res.text).not.toContain(body.password as string);
      expect(await writeCounts(ctx)).toEqual(before);
    });
  });

  describe('GET /users', () => {
    it.each(['an admin session', 'an admin API token with users:read', 'an auditor session', 'an auditor API token with users:read'])('lets %s list users, never with a password hash', async (who) => {
      const res = await ctx.http().get('/api/v1/users?limit=200').set(as[who]());
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBe(await countRows(ctx, 'users'));
      for (const u of res.body.items) expect(Object.keys(u).sort()).toEqual(USER_KEYS);
      expect(res.body.items.map((u: { id: string }) => u.id)).toEqual(expect.arrayContaining([admin.id, member.id, auditor.id]));
      expect(res.text).not.toContain('scrypt');
    });

    it.each(['an admin API token with users:write', 'an admin API token without any users scope', 'a member session', 'a member API token'])('refuses %s listing users, with 403', async (who) => {
      const res = await ctx.http().get('/api/v1/users').set(as[who]());
      expectError(res, 403, 'forbidden');
      expect(res.text).not.toContain(admin.username);
    });

    it('filters by role and status', async () => {
      const gone = await user('auditor');
      expect((await patch(gone.id, { status: 'disabled' })).status).toBe(200);
      const auditors = await ctx.http().get('/api/v1/users?role=auditor&limit=200').set(admin.auth);
      expect(auditors.status).toBe(200);
      expect(auditors.body.items.length).toBe(await countRows(ctx, 'users', "role = 'auditor'"));
      expect(auditors.body.items.every((u: { role: string }) => u.role === 'auditor')).toBe(true);
      const disabled = await ctx.http().get('/api/v1/users?status=disabled&role=auditor').set(auditor.auth);
      expect(disabled.body.items.map((u: { id: string }) => u.id)).toEqual([gone.id]);
    });

    it('walks every user newest first with limit and cursor, without duplicates', async () => {
      const made: string[] = [];
      for (let i = 0; i < 5; i++) made.push((await user('member')).id);
      const { pages, items } = await walk(ctx, '/api/v1/users', admin.auth, 2);
      const ids = items.map((u) => u.id as string);
      const all: Array<{ id: string }> = await ctx.db.read((m) => m.query('SELECT id FROM users'));
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort()).toEqual(all.map((r) => r.id).sort());
      expect(pages.slice(0, -1).every((p) => p.length === 2)).toBe(true);
      const created = items.map((u) => Date.parse(u.createdAt as string));
      expect(created).toEqual([...created].sort((a, b) => b - a));
      expect(ids.filter((id) => made.includes(id))).toEqual([...made].reverse());
      expect(ids[0]).toBe(made[made.length - 1]);
    });
  });

  describe('GET /users/:id', () => {
    it.each(['an admin session', 'an admin API token with users:read', 'an auditor session', 'an auditor API token with users:read'])('lets %s read a user, without its hash', async (who) => {
      const res = await ctx.http().get(`/api/v1/users/${subject.id}`).set(as[who]());
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(USER_KEYS);
      expect(res.body).toMatchObject({ id: subject.id, username: subject.username, role: 'member' });
      expect(res.text).not.toContain('scrypt');
    });

    it.each(['an admin API token with users:write', 'an admin API token without any users scope', 'a member session', 'a member API token'])('refuses %s reading a user, with 403', async (who) => {
      expectError(await ctx.http().get(`/api/v1/users/${subject.id}`).set(as[who]()), 403, 'forbidden');
    });

    it('refuses a member reading even their own user, with 403 (members read themselves through /auth/me)', async () => {
      expectError(await ctx.http().get(`/api/v1/users/${member.id}`).set(member.auth), 403, 'forbidden');
      expect((await me(member.auth)).body.id).toBe(member.id);
    });

    it('answers 404 for a user that does not exist', async () => {
      expectError(await ctx.http().get('/api/v1/users/01890000-0000-7000-8000-000000000000').set(admin.auth), 404, 'not_found');
    });

    it('accepts an id written in upper case', async () => {
      const res = await ctx.http().get(`/api/v1/users/${subject.id.toUpperCase()}`).set(admin.auth);
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(subject.id);
    });
  });

  describe('PATCH /users/:id', () => {
    it('lets an admin session change a user, storing it and auditing user.update with what changed', async () => {
      const displayName = uniqueName('Display');
      const res = await patch(subject.id, { displayName, role: 'auditor' });
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(USER_KEYS);
      expect(res.body).toMatchObject({ id: subject.id, displayName, role: 'auditor', status: 'active' });
      expect(res.text).not.toContain('scrypt');
      expect(await userRow(ctx, subject.id)).toMatchObject({ display_name: displayName, role: 'auditor' });
      const [audit] = await userAudit('user.update', subject.id);
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'session' });
      expect(detailOf(audit)).toMatchObject({ userId: subject.id, changed: ['displayName', 'role'], role: 'auditor' });
      expect((await patch(subject.id, { role: 'member', displayName: null })).body).toMatchObject({ role: 'member', displayName: null });
    });

    it('writes nothing and audits nothing for a change that changes nothing', async () => {
      const before = await userRow(ctx, subject.id);
      const audits = (await userAudit('user.update', subject.id)).length;
      const res = await patch(subject.id, { role: before.role, status: before.status });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id: subject.id, role: before.role, status: before.status });
      expect((await patch(subject.id, {})).status).toBe(200);
      expect(await userRow(ctx, subject.id)).toEqual(before);
      expect((await userAudit('user.update', subject.id)).length).toBe(audits);
    });

    it('lets an admin API token with users:write change a display name, audited via the token', async () => {
      const displayName = uniqueName('Display');
      const res = await patch(subject.id, { displayName }, as['an admin API token with users:write']());
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id: subject.id, displayName });
      expect(await userRow(ctx, subject.id)).toMatchObject({ display_name: displayName });
      const [audit] = await userAudit('user.update', subject.id);
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'api_token' });
      expect(detailOf(audit)).toMatchObject({ userId: subject.id, changed: ['displayName'] });
    });

    it('refuses an admin API token with users:write changing a role or setting a password (no account takeover by token), with 403, changing nothing', async () => {
      const token = as['an admin API token with users:write']();
      const row = await userRow(ctx, subject.id);
      const before = await writeCounts(ctx);
      expectError(await patch(subject.id, { role: 'admin' }, token), 403, 'forbidden');
      expectError(await patch(subject.id, { password: 'a-new-password-123' }, token), 403, 'forbidden');
      expect(await userRow(ctx, subject.id)).toEqual(row);
      expect(await writeCounts(ctx)).toEqual(before);
    });

    it.each(['an admin API token with users:read', 'an admin API token without any users scope', 'an auditor session', 'an auditor API token with users:read', 'a member session', 'a member API token'])(
      'refuses %s changing a user, with 403, changing nothing',
      async (who) => {
        const before = await writeCounts(ctx);
        const row = await userRow(ctx, subject.id);
        expectError(await patch(subject.id, { role: 'admin', displayName: 'Taken Over' }, as[who]()), 403, 'forbidden');
        expect(await userRow(ctx, subject.id)).toEqual(row);
        expect(await writeCounts(ctx)).toEqual(before);
      },
    );

    it('refuses a member promoting themselves, with 403', async () => {
      expectError(await patch(member.id, { role: 'admin' }, member.auth), 403, 'forbidden');
      expect((await userRow(ctx, member.id)).role).toBe('member');
    });

    it('answers 404 for a user that does not exist, writing nothing', async () => {
      const before = await writeCounts(ctx);
      expectError(await patch('01890000-0000-7000-8000-000000000000', { displayName: 'x' }), 404, 'not_found');
      expect(await writeCounts(ctx)).toEqual(before);
    });

    it('ends every session of a user whose password an admin sets; their API tokens keep working and the new password signs in', async () => {
      const target = await user('member');
      const second = await ctx.login(target.username, target.password);
      const token = await createApiToken(ctx, target, ['projects:read']);
      const password = strongPassword();
      book.add(second, token.token, password);
      const before = await userRow(ctx, target.id);

      const res = await patch(target.id, { password });
      expect(res.status).toBe(200);
      expect(res.text).not.toContain(password);
      expect(res.text).not.toContain('scrypt');

      expectError(await me(target.auth), 401, 'unauthorized');
      expectError(await me(bearer(second)), 401, 'unauthorized');
      expect((await me(token.auth)).status).toBe(200);
      expectError(await ctx.http().post('/api/v1/auth/login').send({ username: target.username, password: target.password }), 401, 'unauthorized');
      const fresh = await ctx.http().post('/api/v1/auth/login').send({ username: target.username, password });
      expect(fresh.status).toBe(200);
      book.add(fresh.body.accessToken);

      const after = await userRow(ctx, target.id);
      expect(after.password_hash).not.toBe(before.password_hash);
      expect(Number(after.session_epoch)).toBe(Number(before.session_epoch) + 1);
      const [audit] = await userAudit('user.update', target.id);
      expect(detailOf(audit).changed).toEqual(['password']);
      expect(String(audit.detail)).not.toContain(password);
    });

    it('cuts a disabled user off at their next request, session and API token alike, refuses their sign-in, and lets them back when re-enabled', async () => {
      const target = await user('auditor');
      const token = await createApiToken(ctx, target, ['users:read']);
      book.add(token.token);
      expect((await ctx.http().get('/api/v1/users').set(target.auth)).status).toBe(200);

      const res = await patch(target.id, { status: 'disabled' });
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('disabled');
      expect((await userRow(ctx, target.id)).status).toBe('disabled');
      const [audit] = await userAudit('user.update', target.id);
      expect(detailOf(audit)).toMatchObject({ changed: ['status'], status: 'disabled' });

      expectError(await ctx.http().get('/api/v1/users').set(target.auth), 401, 'unauthorized');
      expectError(await ctx.http().get('/api/v1/users').set(token.auth), 401, 'unauthorized');
      expectError(await ctx.http().post('/api/v1/auth/login').send({ username: target.username, password: target.password }), 401, 'unauthorized');

      expect((await patch(target.id, { status: 'active' })).status).toBe(200);
      const back = await ctx.http().post('/api/v1/auth/login').send({ username: target.username, password: target.password });
      expect(back.status).toBe(200);
      book.add(back.body.accessToken);
    });

    it('narrows a demoted admin at their next request: session and API token lose users:write', async () => {
      const target = await user('admin');
      const token = await createApiToken(ctx, target, ['users:read', 'users:write']);
      book.add(token.token);
      expect((await patch(subject.id, { displayName: 'by the soon-demoted' }, token.auth)).status).toBe(200);

      expect((await patch(target.id, { role: 'member' })).status).toBe(200);
      expect((await me(target.auth)).body.role).toBe('member');
      const before = await userRow(ctx, subject.id);
      expectError(await patch(subject.id, { displayName: 'after demotion' }, target.auth), 403, 'forbidden');
      expectError(await patch(subject.id, { displayName: 'after demotion' }, token.auth), 403, 'forbidden');
      expectError(await ctx.http().get('/api/v1/users').set(token.auth), 403, 'forbidden');
      expect(await userRow(ctx, subject.id)).toEqual(before);
    });

    it.each([
      ['a role nobody has', { role: 'root' }],
      ['a status of deleted', { status: 'deleted' }],
      ['a short password', { password: 'short' }],
      ['a username (not changeable)', { username: 'renamed' }],
      ['a role of null', { role: null }],
      ['a display name that is a number', { displayName: 42 }],
    ])('rejects %s with 400, changing nothing', async (_story, body) => {
      const before = await userRow(ctx, subject.id);
      expectError(await patch(subject.id, body), 400, 'validation_failed');
      expect(await userRow(ctx, subject.id)).toEqual(before);
    });
  });

  describe('the last active admin', () => {
    let solo: TestContext;
    let only: TestUser;

    beforeAll(async () => {
      solo = await createTestContext();
      only = await solo.user('admin');
      book.addUser(only);
    });
    afterAll(async () => {
      expect(book.foundIn(solo.logText())).toEqual([]);
      await solo.close();
    });

    const soloPatch = (id: string, body: object, headers: Headers = only.auth) => solo.http().patch(`/api/v1/users/${id}`).set(headers).send(body);
    const updates = () => countRows(solo, 'audit_events', "action = 'user.update'");

    it('refuses to demote or disable the last active admin, with 409, changing nothing', async () => {
      const row = await userRow(solo, only.id);
      const audits = await updates();
      for (const body of [{ role: 'member' }, { role: 'auditor' }, { status: 'disabled' }, { role: 'member', status: 'disabled' }]) {
        expectError(await soloPatch(only.id, body), 409, 'conflict');
      }
      expect(await userRow(solo, only.id)).toEqual(row);
      expect(await updates()).toBe(audits);
      expect((await solo.http().get('/api/v1/auth/me').set(only.auth)).body.role).toBe('admin');
    });

    it('does not count a disabled admin as another admin', async () => {
      const password = strongPassword();
      book.add(password);
      const created = await solo.http().post('/api/v1/users').set(only.auth).send({ username: uniqueName('second.admin'), password, role: 'admin' });
      expect(created.status).toBe(201);
      expect((await soloPatch(created.body.id, { status: 'disabled' })).status).toBe(200);
      expectError(await soloPatch(only.id, { role: 'member' }), 409, 'conflict');
      expect((await userRow(solo, only.id)).role).toBe('admin');

      expect((await soloPatch(created.body.id, { status: 'active' })).status).toBe(200);
      const res = await soloPatch(only.id, { role: 'member' });
      expect(res.status).toBe(200);
      expect((await userRow(solo, only.id)).role).toBe('member');

      // The password was chosen by the first admin: the second changes it before doing anything else.
      const first = await solo.login(created.body.username, password);
      expectError(await soloPatch(created.body.id, { status: 'disabled' }, bearer(first)), 403, 'password_change_required');
      const own = strongPassword();
      book.add(first, own);
      expect((await solo.http().post('/api/v1/auth/password').set(bearer(first)).send({ currentPassword: password, newPassword: own })).status).toBe(204);
      const second = await solo.login(created.body.username, own);
      book.add(second);
      expectError(await soloPatch(created.body.id, { status: 'disabled' }, bearer(second)), 409, 'conflict');
      expect((await userRow(solo, created.body.id)).status).toBe('active');
    });
  });

  describe('two admins demoting or disabling each other at once', () => {
    let duo: TestContext;
    let a: TestUser;
    let b: TestUser;

    beforeAll(async () => {
      duo = await createTestContext();
      a = await duo.user('admin');
      b = await duo.user('admin');
      book.addUser(a);
      book.addUser(b);
    });
    afterAll(async () => {
      expect(book.foundIn(duo.logText())).toEqual([]);
      await duo.close();
    });

    const activeAdmins = () => countRows(duo, 'users', "role = 'admin' AND status = 'active'");

    it('always leaves one active admin: exactly one of the two wins, round after round (the admin rows are read locked)', async () => {
      const auth: Record<'a' | 'b', Headers> = { a: a.auth, b: b.auth };
      for (let round = 0; round < 30; round++) {
        const body = round % 2 === 0 ? { role: 'member' } : { status: 'disabled' };
        const [byA, byB] = await Promise.all([
          duo.http().patch(`/api/v1/users/${b.id}`).set(auth.a).send(body),
          duo.http().patch(`/api/v1/users/${a.id}`).set(auth.b).send(body),
        ]);
        const statuses = [byA.status, byB.status];
        expect({ round, admins: await activeAdmins() }).toEqual({ round, admins: 1 });
        expect({ round, winners: statuses.filter((x) => x === 200).length }).toEqual({ round, winners: 1 });
        // The loser was refused as the last admin (409) or, once demoted, for lacking users:write (403).
        expect(statuses.every((x) => [200, 403, 409].includes(x))).toBe(true);

        const [winner, loser] = byA.status === 200 ? (['a', 'b'] as const) : (['b', 'a'] as const);
        const loserUser = loser === 'a' ? a : b;
        const back = await duo.http().patch(`/api/v1/users/${loserUser.id}`).set(auth[winner]).send({ role: 'admin', status: 'active' });
        expect(back.status).toBe(200);
        // Disabling ended the loser's session: sign in again for the next round.
        if ('status' in body) {
          const token = await duo.login(loserUser.username, loserUser.password);
          book.add(token);
          auth[loser] = bearer(token);
        }
        expect(await activeAdmins()).toBe(2);
      }
    });
  });

  describe('credentials on every /users route', () => {
    let creds: RefusedCredentials;
    const routes: RouteCase[] = [
      { route: 'POST /users', method: 'post', path: () => '/api/v1/users', body: () => ({ username: uniqueName('forged'), password: 'a-long-enough-password', role: 'admin' }) },
      { route: 'GET /users', method: 'get', path: () => '/api/v1/users' },
      { route: 'GET /users/:id', method: 'get', path: () => `/api/v1/users/${subject.id}` },
      { route: 'PATCH /users/:id', method: 'patch', path: () => `/api/v1/users/${subject.id}`, body: () => ({ role: 'admin', status: 'disabled' }) },
    ];

    beforeAll(async () => {
      creds = await refusedCredentials(ctx, admin);
      book.add(...creds.secrets);
    });

    it('accepts a hand-crafted admin session signed like the server signs (so each refusal below has exactly one cause)', async () => {
      expect((await ctx.http().get(`/api/v1/users/${subject.id}`).set(creds.control)).status).toBe(200);
    });

    describe.each(routes.map((r) => [r.route, r] as const))('%s', (_name, r) => {
      it.each(REFUSED_CREDENTIALS)('refuses %s with 401 and WWW-Authenticate: Bearer, writing nothing', async (story) => {
        await expectRefused(ctx, r, creds.headers[story]());
      });
    });

    it('left the target user as it was', async () => {
      expect(await userRow(ctx, subject.id)).toMatchObject({ role: 'member', status: 'active' });
    });
  });

  describe('logs', () => {
    it('never carry a password, session token or API token this suite handled', () => {
      expect(book.size).toBeGreaterThan(20);
      expect(book.foundIn(ctx.logText())).toEqual([]);
    });
  });
});
