import crypto from 'node:crypto';
import fs from 'node:fs';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken } from '../support/factories';
import { setCredentialAsTheVault } from '../support/crypto-helpers';

const TOKEN_SHAPE = /^pkv_[A-Za-z0-9_-]{43}$/;
const LOOPBACK = /^(::ffff:)?127\.0\.0\.1$/;
const DAY_MS = 86_400_000;
const sha256 = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');
/** The part of a token that no list, row or log may ever show (the first 12 characters are the display prefix). */
const tail = (token: string) => token.slice(12);
const num = (v: unknown) => (v == null ? null : Number(v));

type Row = Record<string, unknown>;

describe('API tokens', () => {
  let ctx: TestContext;
  let admin: TestUser;

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
  });
  afterAll(() => ctx.close());

  const tokenRow = async (id: string): Promise<Row | undefined> => (await ctx.db.read((m) => m.query('SELECT * FROM api_tokens WHERE id = ?', [id])))[0];
  const tokenCount = async (): Promise<number> => Number((await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM api_tokens')))[0].n);
  const setExpiry = (id: string, at: number) => setCredentialAsTheVault(ctx, 'api_tokens', id, { expires_at: at });
  const tokenAudit = async (action: string, tokenId: string): Promise<Row[]> =>
    (await auditRows(ctx, { action })).filter((r) => r.detail && JSON.parse(String(r.detail)).tokenId === tokenId);
  const me = (credential: Record<string, string>) => ctx.http().get('/api/v1/auth/me').set(credential);
  const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

  /** Every row of every table, as text: a token's plaintext must be in none of them. */
  async function databaseText(): Promise<string> {
    const tables: Array<{ name: string }> = await ctx.db.read((m) =>
      ctx.kind === 'sqlite' ? m.query("SELECT name FROM sqlite_master WHERE type = 'table'") : m.query('SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE()'),
    );
    const parts: string[] = [];
    for (const { name } of tables) {
      const rows = await ctx.db.read((m) => m.query(`SELECT * FROM \`${name}\``));
      parts.push(JSON.stringify(rows, (_k, v) => (v && v.type === 'Buffer' && Array.isArray(v.data) ? Buffer.from(v.data).toString('latin1') : v)));
    }
    if (ctx.kind === 'sqlite') {
      const file = ctx.tdb.url.slice('sqlite:'.length);
      for (const f of [file, `${file}-wal`]) if (fs.existsSync(f)) parts.push(fs.readFileSync(f).toString('latin1'));
    }
    return parts.join('\n');
  }

  describe('the life of a token: create, list, get, rename, renew, regenerate, revoke', () => {
    it('shows a new token once in the pkv_ shape and stores only its SHA-256 and a 12-character prefix', async () => {
      const before = Date.now();
      const res = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'ci deploy', scopes: ['provider-keys:read', 'projects:read'], expiresInDays: 30 });
      const after = Date.now();

      expect(res.status).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(Object.keys(res.body).sort()).toEqual(['expiresAt', 'id', 'name', 'prefix', 'scopes', 'token', 'userId']);
      const { id, token, prefix } = res.body;
      expect(token).toMatch(TOKEN_SHAPE);
      expect(prefix).toBe(token.slice(0, 12));
      expect(res.body).toMatchObject({ name: 'ci deploy', userId: admin.id, scopes: ['provider-keys:read', 'projects:read'] });
      const expiresAt = Date.parse(res.body.expiresAt);
      expect(expiresAt).toBeGreaterThanOrEqual(before + 30 * DAY_MS);
      expect(expiresAt).toBeLessThanOrEqual(after + 30 * DAY_MS);

      const row = await tokenRow(id);
      expect(row).toBeDefined();
      expect(row!.token_hash).toBe(sha256(token));
      expect(row!.prefix).toBe(prefix);
      expect(row!.user_id).toBe(admin.id);
      expect(row!.created_by).toBe(admin.id);
      expect(row!.scopes).toBe('provider-keys:read projects:read');
      expect(num(row!.expires_at)).toBe(expiresAt);
      expect(num(row!.usage_count)).toBe(0);
      expect(row!.revoked_at).toBeNull();

      const created = await tokenAudit('api_token.create', id);
      expect(created).toHaveLength(1);
      expect(created[0]).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'session' });
      expect(JSON.parse(String(created[0].detail))).toMatchObject({ userId: admin.id, name: 'ci deploy', scopes: ['provider-keys:read', 'projects:read'] });

      const used = await me(bearer(token));
      expect(used.status).toBe(200);
      expect(used.body).toMatchObject({ id: admin.id, via: 'api_token' });

      const stored = await databaseText();
      expect(stored).toContain(sha256(token));
      expect(stored).not.toContain(token);
      expect(stored).not.toContain(tail(token));
      expect(JSON.stringify(await auditRows(ctx))).not.toContain(tail(token));

      const again = await ctx.http().get(`/api/v1/api-tokens/${id}`).set(admin.auth);
      expect(again.status).toBe(200);
      expect(again.body.token).toBeUndefined();
      expect(JSON.stringify(again.body)).not.toContain(tail(token));
    });

    it('lists and gets a token without its secret, and renames it with PATCH {name} only', async () => {
      const t = await createApiToken(ctx, admin, ['audit:read']);
      const list = await ctx.http().get('/api/v1/api-tokens').set(admin.auth);
      expect(list.status).toBe(200);
      expect(list.body.nextCursor).toBeNull();
      const listed = list.body.items.find((i: Row) => i.id === t.id);
      expect(Object.keys(listed).sort()).toEqual(['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'lastUsedIp', 'name', 'prefix', 'revokedAt', 'scopes', 'usageCount', 'userId']);
      expect(JSON.stringify(list.body)).not.toContain(tail(t.token));
      expect(JSON.stringify(list.body)).not.toContain(sha256(t.token));

      const got = await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(admin.auth);
      expect(got.status).toBe(200);
      expect(got.body).toEqual({ ...listed, id: t.id, name: 'test token', prefix: t.token.slice(0, 12), userId: admin.id, scopes: ['audit:read'], usageCount: 0, lastUsedAt: null, lastUsedIp: null, revokedAt: null });

      const renamed = await ctx.http().patch(`/api/v1/api-tokens/${t.id}`).set(admin.auth).send({ name: 'nightly audit export' });
      expect(renamed.status).toBe(200);
      expect(renamed.body).toMatchObject({ id: t.id, name: 'nightly audit export', scopes: ['audit:read'] });
      expect((await tokenRow(t.id))!.name).toBe('nightly audit export');

      for (const body of [{ scopes: ['audit:read', 'users:write'] }, { name: 'x', scopes: ['users:write'] }, { expiresAt: '2099-01-01T00:00:00Z' }, { name: '' }, { userId: crypto.randomUUID() }]) {
        const res = await ctx.http().patch(`/api/v1/api-tokens/${t.id}`).set(admin.auth).send(body);
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('validation_failed');
      }
      const row = await tokenRow(t.id);
      expect(row).toMatchObject({ name: 'nightly audit export', scopes: 'audit:read', user_id: admin.id });
      expect((await me(t.auth)).status).toBe(200);
    });

    it('renews a token: the same secret keeps working with a new expiry, even one that had run out', async () => {
      const t = await createApiToken(ctx, admin, ['users:read'], { expiresInDays: 1 });
      await setExpiry(t.id, Date.now() - 60_000);
      expect((await me(t.auth)).status).toBe(401);

      const before = Date.now();
      const res = await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth).send({ expiresInDays: 30 });
      const after = Date.now();
      expect(res.status).toBe(200);
      expect(res.body.token).toBeUndefined();
      const expiresAt = Date.parse(res.body.expiresAt);
      expect(expiresAt).toBeGreaterThanOrEqual(before + 30 * DAY_MS);
      expect(expiresAt).toBeLessThanOrEqual(after + 30 * DAY_MS);
      const row = await tokenRow(t.id);
      expect(num(row!.expires_at)).toBe(expiresAt);
      expect(row!.token_hash).toBe(sha256(t.token));
      expect((await me(t.auth)).status).toBe(200);

      const renewed = await tokenAudit('api_token.renew', t.id);
      expect(renewed).toHaveLength(1);
      expect(renewed[0]).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'session' });
      expect(JSON.parse(String(renewed[0].detail)).expiresAt).toBe(res.body.expiresAt);

      const byDefault = await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth);
      expect(byDefault.status).toBe(200);
      expect(Date.parse(byDefault.body.expiresAt) - Date.now()).toBeGreaterThan(90 * DAY_MS - 60_000);
      expect(Date.parse(byDefault.body.expiresAt) - Date.now()).toBeLessThanOrEqual(90 * DAY_MS);
      expect(num((await tokenRow(t.id))!.expires_at)).toBe(Date.parse(byDefault.body.expiresAt));
      expect(await tokenAudit('api_token.renew', t.id)).toHaveLength(2);
    });

    it('regenerates a token: the new secret works and the old one is dead at once', async () => {
      const t = await createApiToken(ctx, admin, ['projects:read'], { expiresInDays: 10 });
      const rowBefore = await tokenRow(t.id);
      expect((await me(t.auth)).status).toBe(200);

      const res = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(admin.auth).send();
      expect(res.status).toBe(200);
      expect(res.headers['cache-control']).toBe('no-store');
      const fresh: string = res.body.token;
      expect(fresh).toMatch(TOKEN_SHAPE);
      expect(fresh).not.toBe(t.token);
      expect(res.body).toMatchObject({ id: t.id, prefix: fresh.slice(0, 12), scopes: ['projects:read'], userId: admin.id });

      const old = await me(t.auth);
      expect(old.status).toBe(401);
      expect(old.headers['www-authenticate']).toMatch(/^Bearer/);
      const now = await me(bearer(fresh));
      expect(now.status).toBe(200);
      expect(now.body).toMatchObject({ via: 'api_token', apiTokenId: t.id });

      const row = await tokenRow(t.id);
      expect(row!.token_hash).toBe(sha256(fresh));
      expect(row!.prefix).toBe(fresh.slice(0, 12));
      expect(row!.expires_at).toEqual(rowBefore!.expires_at);
      expect(row!.scopes).toBe('projects:read');
      expect(row!.revoked_at).toBeNull();

      const regenerated = await tokenAudit('api_token.regenerate', t.id);
      expect(regenerated).toHaveLength(1);
      expect(regenerated[0]).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'session' });
      const trail = JSON.stringify(await auditRows(ctx));
      expect(trail).not.toContain(tail(t.token));
      expect(trail).not.toContain(tail(fresh));
    });

    it('refuses to regenerate an expired token (the new secret would be born dead) with 409; renew, then regenerate works', async () => {
      const t = await createApiToken(ctx, admin, ['provider-keys:read']);
      await setExpiry(t.id, Date.now() - 1000);
      const before = await tokenRow(t.id);
      const res = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(admin.auth).send();
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({ code: 'conflict', message: expect.stringMatching(/expired; renew it first/) });
      expect(res.body.token).toBeUndefined();
      expect((await tokenRow(t.id))!.token_hash).toBe(before!.token_hash);
      expect(await tokenAudit('api_token.regenerate', t.id)).toHaveLength(0);
      expect((await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth).send({ expiresInDays: 1 })).status).toBe(200);
      const again = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(admin.auth).send();
      expect(again.status).toBe(200);
      expect((await me(bearer(again.body.token))).status).toBe(200);
    });

    it('revokes a token with DELETE for good: 204, the row stays with revokedAt, and no route revives it', async () => {
      const t = await createApiToken(ctx, admin, ['provider-keys:read']);
      expect((await me(t.auth)).status).toBe(200);

      const del = await ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(admin.auth);
      expect(del.status).toBe(204);
      expect(del.text).toBe('');
      const revoked = await tokenRow(t.id);
      expect(revoked).toBeDefined();
      const revokedAt = num(revoked!.revoked_at);
      expect(revokedAt).toBeGreaterThan(Date.now() - 60_000);
      expect((await me(t.auth)).status).toBe(401);

      const got = await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(admin.auth);
      expect(got.status).toBe(200);
      expect(Date.parse(got.body.revokedAt)).toBe(revokedAt);

      const renew = await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth).send({ expiresInDays: 30 });
      expect(renew.status).toBe(409);
      const regen = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(admin.auth).send();
      expect(regen.status).toBe(409);
      expect(regen.body.token).toBeUndefined();
      for (const body of [{ revokedAt: null }, { name: 'back to life', revokedAt: null }]) {
        const res = await ctx.http().patch(`/api/v1/api-tokens/${t.id}`).set(admin.auth).send(body);
        expect(res.status).toBe(400);
      }
      const rename = await ctx.http().patch(`/api/v1/api-tokens/${t.id}`).set(admin.auth).send({ name: 'still revoked' });
      expect([200, 409]).toContain(rename.status);
      if (rename.status === 200) expect(Date.parse(rename.body.revokedAt)).toBe(revokedAt);
      const twice = await ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(admin.auth);
      expect(twice.status).toBe(204);

      const row = await tokenRow(t.id);
      expect(num(row!.revoked_at)).toBe(revokedAt);
      expect(row!.token_hash).toBe(revoked!.token_hash);
      expect(row!.expires_at).toEqual(revoked!.expires_at);
      expect((await me(t.auth)).status).toBe(401);
      expect((await ctx.http().get('/api/v1/provider-keys').set('X-API-Key', t.token)).status).toBe(401);

      const revokes = await tokenAudit('api_token.revoke', t.id);
      expect(revokes).toHaveLength(1);
      expect(revokes[0]).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'session' });
      expect(await tokenAudit('api_token.renew', t.id)).toHaveLength(0);
      expect(await tokenAudit('api_token.regenerate', t.id)).toHaveLength(0);
    });
  });

  describe('who sees which tokens', () => {
    it('lets an admin list everyone’s tokens or one user’s with ?userId=, and members and auditors only their own', async () => {
      const member = await ctx.user('member');
      const auditor = await ctx.user('auditor');
      const adminToken = await createApiToken(ctx, admin, ['users:read']);
      const memberToken = await createApiToken(ctx, member, ['provider-keys:read']);
      const auditorToken = await createApiToken(ctx, auditor, ['audit:read']);
      const ids = (res: { body: { items: Row[] } }) => res.body.items.map((i) => i.id);

      const all = await ctx.http().get('/api/v1/api-tokens?limit=200').set(admin.auth);
      expect(all.status).toBe(200);
      expect(ids(all)).toEqual(expect.arrayContaining([adminToken.id, memberToken.id, auditorToken.id]));
      const one = await ctx.http().get(`/api/v1/api-tokens?userId=${member.id}`).set(admin.auth);
      expect(ids(one)).toEqual([memberToken.id]);
      expect((await ctx.http().get(`/api/v1/api-tokens/${memberToken.id}`).set(admin.auth)).status).toBe(200);

      const own = await ctx.http().get('/api/v1/api-tokens').set(member.auth);
      expect(own.status).toBe(200);
      expect(ids(own)).toEqual([memberToken.id]);
      expect(ids(await ctx.http().get(`/api/v1/api-tokens?userId=${member.id}`).set(member.auth))).toEqual([memberToken.id]);
      const others = await ctx.http().get(`/api/v1/api-tokens?userId=${admin.id}`).set(member.auth);
      expect(others.status).toBe(200);
      expect(others.body).toEqual({ items: [], nextCursor: null });
      expect((await ctx.http().get(`/api/v1/api-tokens/${adminToken.id}`).set(member.auth)).status).toBe(404);

      expect(ids(await ctx.http().get('/api/v1/api-tokens').set(auditor.auth))).toEqual([auditorToken.id]);
      expect((await ctx.http().get(`/api/v1/api-tokens?userId=${member.id}`).set(auditor.auth)).body.items).toEqual([]);
      const hidden = await ctx.http().get(`/api/v1/api-tokens/${memberToken.id}`).set(auditor.auth);
      expect(hidden.status).toBe(404);
      expect(hidden.body.error.code).toBe('not_found');
    });

    it('answers 404 to a member touching another member’s token on any route, and changes nothing', async () => {
      const owner = await ctx.user('member');
      const stranger = await ctx.user('member');
      const t = await createApiToken(ctx, owner, ['provider-keys:read'], { expiresInDays: 5 });
      const before = await tokenRow(t.id);

      const attempts = [
        ctx.http().patch(`/api/v1/api-tokens/${t.id}`).set(stranger.auth).send({ name: 'mine now' }),
        ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(stranger.auth).send({ expiresInDays: 300 }),
        ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(stranger.auth).send(),
        ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(stranger.auth),
      ];
      for (const res of await Promise.all(attempts)) {
        expect(res.status).toBe(404);
        expect(res.body.token).toBeUndefined();
      }
      expect(await tokenRow(t.id)).toEqual(before);
      expect((await me(t.auth)).status).toBe(200);
      for (const action of ['api_token.renew', 'api_token.regenerate', 'api_token.revoke']) expect(await tokenAudit(action, t.id)).toHaveLength(0);
    });
  });

  describe('what an API token may not do to API tokens', () => {
    it('refuses a token minting, regenerating, renewing or renaming tokens with 403, yet lets it revoke itself', async () => {
      const all = ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read', 'users:read', 'users:write', 'projects:read', 'projects:write'];
      const t = await createApiToken(ctx, admin, all);
      const other = await createApiToken(ctx, admin, ['audit:read']);
      const count = await tokenCount();
      const before = await tokenRow(t.id);

      for (const carrier of [t.auth, { 'X-API-Key': t.token }]) {
        const mint = await ctx.http().post('/api/v1/api-tokens').set(carrier).send({ name: 'offspring', scopes: ['audit:read'] });
        expect(mint.status).toBe(403);
        expect(mint.body.error.code).toBe('forbidden');
        expect(mint.body.token).toBeUndefined();
      }
      const forOther = await ctx.http().post('/api/v1/api-tokens').set(t.auth).send({ name: 'offspring', scopes: ['audit:read'], userId: admin.id });
      expect(forOther.status).toBe(403);
      for (const id of [t.id, other.id]) {
        const regen = await ctx.http().post(`/api/v1/api-tokens/${id}/regenerate`).set(t.auth).send();
        expect(regen.status).toBe(403);
        expect(regen.body.token).toBeUndefined();
        expect((await ctx.http().post(`/api/v1/api-tokens/${id}/renew`).set(t.auth).send({ expiresInDays: 365 })).status).toBe(403);
        expect((await ctx.http().patch(`/api/v1/api-tokens/${id}`).set(t.auth).send({ name: 'hijacked' })).status).toBe(403);
      }
      expect(await tokenCount()).toBe(count);
      const after = await tokenRow(t.id);
      expect({ ...after, usage_count: null, last_used_at: null, last_used_ip: null }).toEqual({ ...before, usage_count: null, last_used_at: null, last_used_ip: null });
      expect((await tokenRow(other.id))!.token_hash).toBe(sha256(other.token));
      for (const action of ['api_token.renew', 'api_token.regenerate']) expect(await tokenAudit(action, t.id)).toHaveLength(0);

      const list = await ctx.http().get('/api/v1/api-tokens').set(t.auth);
      expect(list.status).toBe(200);

      const revoke = await ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(t.auth);
      expect(revoke.status).toBe(204);
      expect(num((await tokenRow(t.id))!.revoked_at)).not.toBeNull();
      expect((await me(t.auth)).status).toBe(401);
      const revokes = await tokenAudit('api_token.revoke', t.id);
      expect(revokes).toHaveLength(1);
      expect(revokes[0]).toMatchObject({ actor_id: admin.id, via: 'api_token', api_token_id: t.id });
    });
  });

  describe('expiresInDays', () => {
    it.each([0, 366, 1.5, '10', -1, null, 'ninety'])('refuses expiresInDays %p with 400 on create and renew, storing nothing', async (days) => {
      const t = await createApiToken(ctx, admin, ['audit:read'], { expiresInDays: 3 });
      const count = await tokenCount();
      const creates = (await auditRows(ctx, { action: 'api_token.create' })).length;

      const create = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'bad days', scopes: ['audit:read'], expiresInDays: days });
      expect(create.status).toBe(400);
      expect(create.body.error.code).toBe('validation_failed');
      expect(create.body.error.details[0].field).toBe('body.expiresInDays');
      expect(create.body.token).toBeUndefined();
      expect(await tokenCount()).toBe(count);
      expect(await auditRows(ctx, { action: 'api_token.create' })).toHaveLength(creates);

      const before = await tokenRow(t.id);
      const renew = await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth).send({ expiresInDays: days });
      expect(renew.status).toBe(400);
      expect(renew.body.error.code).toBe('validation_failed');
      expect((await tokenRow(t.id))!.expires_at).toEqual(before!.expires_at);
      expect(await tokenAudit('api_token.renew', t.id)).toHaveLength(0);
    });

    it('defaults to 90 days and accepts the bounds 1 and 365', async () => {
      for (const [extra, days] of [[{}, 90], [{ expiresInDays: 1 }, 1], [{ expiresInDays: 365 }, 365]] as const) {
        const before = Date.now();
        const res = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: `for ${days} days`, scopes: ['users:read'], ...extra });
        const after = Date.now();
        expect(res.status).toBe(201);
        const expiresAt = Date.parse(res.body.expiresAt);
        expect(expiresAt).toBeGreaterThanOrEqual(before + days * DAY_MS);
        expect(expiresAt).toBeLessThanOrEqual(after + days * DAY_MS);
        expect(num((await tokenRow(res.body.id))!.expires_at)).toBe(expiresAt);
      }
    });
  });

  describe('presenting a token', () => {
    it('accepts a token as Authorization: Bearer or as X-API-Key, and the same token in both', async () => {
      const t = await createApiToken(ctx, admin, ['users:read']);
      for (const carrier of [bearer(t.token), { 'X-API-Key': t.token }, { Authorization: `bearer ${t.token}` }, { ...bearer(t.token), 'X-API-Key': t.token }]) {
        const res = await ctx.http().get('/api/v1/users').set(carrier);
        expect(res.status).toBe(200);
        expect(res.body.items.map((u: Row) => u.id)).toContain(admin.id);
      }
    });

    it('refuses two different credentials at once with 401, whichever they are', async () => {
      const a = await createApiToken(ctx, admin, ['users:read']);
      const b = await createApiToken(ctx, admin, ['users:read']);
      for (const carriers of [
        { ...bearer(a.token), 'X-API-Key': b.token },
        { ...admin.auth, 'X-API-Key': a.token },
        { ...bearer(a.token), 'X-API-Key': admin.token },
      ]) {
        const res = await ctx.http().get('/api/v1/users').set(carriers);
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe('unauthorized');
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      }
    });

    it('answers a malformed, unknown, expired or revoked token, or one of a disabled user, alike: 401, one code and message, WWW-Authenticate', async () => {
      const holder = await ctx.user('member');
      const good = await createApiToken(ctx, admin, ['users:read']);
      const expired = await createApiToken(ctx, admin, ['users:read']);
      await setExpiry(expired.id, Date.now() - 1);
      const revoked = await createApiToken(ctx, admin, ['users:read']);
      expect((await ctx.http().delete(`/api/v1/api-tokens/${revoked.id}`).set(admin.auth)).status).toBe(204);
      const disabled = await createApiToken(ctx, holder, ['provider-keys:read']);
      expect((await ctx.http().patch(`/api/v1/users/${holder.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);

      const flipped = good.token.slice(0, -1) + (good.token.endsWith('A') ? 'B' : 'A');
      const bad: Record<string, string> = {
        'too short': 'pkv_abc',
        'bad characters': `pkv_${'!'.repeat(43)}`,
        'one character too many': `${good.token}A`,
        'one character changed': flipped,
        'never issued': `pkv_${crypto.randomBytes(32).toString('base64url')}`,
        'prefix only': good.token.slice(0, 12),
        expired: expired.token,
        revoked: revoked.token,
        'disabled owner': disabled.token,
      };
      const seen = new Set<string>();
      for (const [what, token] of Object.entries(bad)) {
        for (const carrier of [bearer(token), { 'X-API-Key': token }]) {
          const res = await ctx.http().get('/api/v1/users').set(carrier);
          expect({ what, status: res.status }).toEqual({ what, status: 401 });
          expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
          expect(res.body.error.details).toEqual([]);
          expect(res.body.error.requestId).toBe(res.headers['x-request-id']);
          seen.add(JSON.stringify({ code: res.body.error.code, message: res.body.error.message }));
        }
      }
      expect([...seen]).toEqual([JSON.stringify({ code: 'unauthorized', message: 'Authentication required' })]);
      expect((await ctx.http().get('/api/v1/users').set(good.auth)).status).toBe(200);
    });
  });

  describe('usage counters', () => {
    /** Runs n requests, at most `width` in flight at once. */
    async function pooled<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
      const out: T[] = new Array(n);
      let next = 0;
      await Promise.all(
        Array.from({ length: width }, async () => {
          while (next < n) {
            const i = next++;
            out[i] = await fn(i);
          }
        }),
      );
      return out;
    }

    it('counts 500 concurrent uses exactly, costs no write per request, and flushes the count, time and IP', async () => {
      const member = await ctx.user('member');
      const t = await createApiToken(ctx, member, ['provider-keys:read']);
      const started = Date.now();

      const first = await pooled(250, 25, (i) => (i % 2 ? me(t.auth) : ctx.http().get('/api/v1/provider-keys').set('X-API-Key', t.token)));
      expect(first.map((r) => r.status)).toEqual(new Array(250).fill(200));
      const unflushed = await tokenRow(t.id);
      expect(num(unflushed!.usage_count)).toBe(0);
      expect(unflushed!.last_used_at).toBeNull();
      expect(unflushed!.last_used_ip).toBeNull();
      const pending = await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(member.auth);
      expect(pending.body.usageCount).toBe(250);
      expect(pending.body.lastUsedIp).toMatch(LOOPBACK);

      // The rest with flushes racing the requests: nothing may be lost or counted twice.
      const second = await pooled(250, 25, async (i) => {
        if (i % 50 === 0) void ctx.container.usage.flush();
        return me(t.auth);
      });
      expect(second.map((r) => r.status)).toEqual(new Array(250).fill(200));
      const merged = await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(member.auth);
      expect(merged.body.usageCount).toBe(500);

      await ctx.container.usage.flush();
      const finished = Date.now();
      const row = await tokenRow(t.id);
      expect(num(row!.usage_count)).toBe(500);
      expect(num(row!.last_used_at)).toBeGreaterThanOrEqual(started);
      expect(num(row!.last_used_at)).toBeLessThanOrEqual(finished);
      expect(row!.last_used_ip).toMatch(LOOPBACK);

      const got = await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(member.auth);
      expect(got.body).toMatchObject({ usageCount: 500, lastUsedIp: row!.last_used_ip });
      expect(Date.parse(got.body.lastUsedAt)).toBe(num(row!.last_used_at));

      expect((await me(t.auth)).status).toBe(200);
      expect((await ctx.http().get(`/api/v1/api-tokens/${t.id}`).set(member.auth)).body.usageCount).toBe(501);
      expect(num((await tokenRow(t.id))!.usage_count)).toBe(500);
      await ctx.container.usage.flush();
      expect(num((await tokenRow(t.id))!.usage_count)).toBe(501);
    });

    it('counts a refused request too (the token was used), but not a rejected credential', async () => {
      const member = await ctx.user('member');
      const t = await createApiToken(ctx, member, ['provider-keys:read']);
      expect((await ctx.http().get('/api/v1/users').set(t.auth)).status).toBe(403);
      expect((await ctx.http().get('/api/v1/users').set(bearer(`${t.token}x`))).status).toBe(401);
      await ctx.container.usage.flush();
      expect(num((await tokenRow(t.id))!.usage_count)).toBe(1);
    });
  });

  describe('secrets in logs', () => {
    it('never writes a token’s plaintext to the log or the audit trail, across its whole life', async () => {
      const member = await ctx.user('member');
      const t = await createApiToken(ctx, member, ['provider-keys:read', 'provider-keys:reveal']);
      expect((await me(t.auth)).status).toBe(200);
      expect((await ctx.http().get('/api/v1/provider-keys').set('X-API-Key', t.token)).status).toBe(200);
      expect((await ctx.http().get('/api/v1/users').set(t.auth)).status).toBe(403);
      expect((await ctx.http().get('/api/v1/users').set(bearer(`${t.token}x`))).status).toBe(401);
      const regen = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(member.auth).send();
      expect(regen.status).toBe(200);
      const fresh: string = regen.body.token;
      expect((await me(bearer(fresh))).status).toBe(200);
      expect((await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(member.auth).send({ expiresInDays: 7 })).status).toBe(200);
      expect((await ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(bearer(fresh))).status).toBe(204);
      expect((await me(bearer(fresh))).status).toBe(401);
      await ctx.container.usage.flush();

      const log = ctx.logText();
      expect(log).toContain('api_token.create');
      expect(log).toContain('api_token.revoke');
      const trail = JSON.stringify(await auditRows(ctx));
      for (const token of [t.token, fresh]) {
        expect(log).not.toContain(tail(token));
        expect(log).not.toContain(sha256(token));
        expect(trail).not.toContain(tail(token));
        expect(trail).not.toContain(sha256(token));
      }
    });
  });
});
