import crypto from 'node:crypto';
import type { Response } from 'supertest';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { countRows, expectError, expectRefused, Headers, refusedCredentials, REFUSED_CREDENTIALS, RouteCase, walk } from '../support/auth-helpers';

const VK_KEYS = ['id', 'keyId', 'userId', 'name', 'prefix', 'models', 'dailyRequestLimit', 'dailyTokenLimit', 'createdAt', 'expiresAt', 'revokedAt', 'lastUsedAt', 'requestCount'].sort();
const DAY = 86_400_000;
const HOUR = 3_600_000;

type Row = Record<string, unknown>;

describe('virtual keys: POST/GET /provider-keys/:id/virtual-keys, GET/DELETE /virtual-keys/:id', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let auditor: TestUser;
  let project: { id: string };
  let key: CreatedKey;
  let tokens: Record<'ownerReveal' | 'ownerRead' | 'adminReveal' | 'adminWrite' | 'adminWriteReveal' | 'auditorRead', Headers>;

  const create = (keyId: string, auth: Headers, body: Record<string, unknown> = { name: 'ci' }) => ctx.http().post(`/api/v1/provider-keys/${keyId}/virtual-keys`).set(auth).send(body);
  const vkRows = (keyId: string): Promise<Row[]> => ctx.db.read((m) => m.query('SELECT * FROM virtual_keys WHERE key_id = ? ORDER BY id', [keyId]));
  const why = (row: Row) => (row.detail ? JSON.parse(String(row.detail)).why : undefined);
  /** The create audit row this request wrote, found by its request id. */
  const createRow = async (res: Response): Promise<Row> => {
    const rows: Row[] = await ctx.db.read((m) => m.query("SELECT * FROM audit_events WHERE action = 'virtual_key.create' AND request_id = ?", [res.headers['x-request-id']]));
    expect(rows).toHaveLength(1);
    return rows[0];
  };
  const newKey = (fields: Partial<{ ownerId: string; provider: string; baseUrl: string }> = {}) => createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, ...fields });

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin);
    key = await newKey();
    const t = async (as: TestUser, scopes: string[]) => (await createApiToken(ctx, as, scopes)).auth;
    tokens = {
      ownerReveal: await t(owner, ['provider-keys:reveal']),
      ownerRead: await t(owner, ['provider-keys:read']),
      adminReveal: await t(admin, ['provider-keys:reveal']),
      adminWrite: await t(admin, ['provider-keys:write']),
      adminWriteReveal: await t(admin, ['provider-keys:write', 'provider-keys:reveal']),
      auditorRead: await t(auditor, ['provider-keys:read']),
    };
  });
  afterAll(() => ctx.close());

  describe('POST /provider-keys/:id/virtual-keys', () => {
    it('gives the owner a virtual key shown once (pkv_vk_ + 43 base64url), stored only as its SHA-256, with no-store and an audit row', async () => {
      const res = await create(key.id, owner.auth, { name: 'billing job' });
      expect(res.status).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(Object.keys(res.body).sort()).toEqual([...VK_KEYS, 'virtualKey'].sort());
      const vk = res.body.virtualKey as string;
      expect(vk).toMatch(/^pkv_vk_[A-Za-z0-9_-]{43}$/);
      expect(res.body).toMatchObject({ keyId: key.id, userId: owner.id, name: 'billing job', prefix: vk.slice(0, 15), models: null, dailyRequestLimit: null, dailyTokenLimit: null, revokedAt: null, lastUsedAt: null, requestCount: 0 });
      expect(Math.abs(Date.parse(res.body.expiresAt) - Date.parse(res.body.createdAt) - 90 * DAY)).toBeLessThan(1000);

      const [row] = (await vkRows(key.id)).filter((r) => r.id === res.body.id);
      expect(row.token_hash).toBe(crypto.createHash('sha256').update(vk).digest('hex'));
      expect(JSON.stringify(row)).not.toContain(vk.slice(7));
      expect(row).toMatchObject({ bound_owner_id: owner.id, bound_project_id: project.id, bound_upstream: 'https://api.openai.com' });

      const audit = await createRow(res);
      expect(audit).toMatchObject({ outcome: 'success', actor_id: owner.id, key_id: key.id, owner_id: owner.id, project_id: project.id, via: 'session' });
      expect(why(audit)).toBe('owner');
      expect(JSON.parse(String(audit.detail))).toMatchObject({ virtualKeyId: res.body.id, name: 'billing job' });
      expect(JSON.stringify(audit)).not.toContain(vk.slice(7));
    });

    it('keeps models (deduplicated), limits and lifetime as given', async () => {
      const res = await create(key.id, owner.auth, { name: 'limited', models: ['gpt-4o', 'gpt-4o-mini', 'gpt-4o'], dailyRequestLimit: 100, dailyTokenLimit: 50_000, expiresInDays: 7 });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ models: ['gpt-4o', 'gpt-4o-mini'], dailyRequestLimit: 100, dailyTokenLimit: 50_000 });
      expect(Math.abs(Date.parse(res.body.expiresAt) - Date.parse(res.body.createdAt) - 7 * DAY)).toBeLessThan(1000);
      const got = await ctx.http().get(`/api/v1/virtual-keys/${res.body.id}`).set(owner.auth);
      const { virtualKey: _shown, ...rest } = res.body;
      expect(got.body).toEqual(rest);
    });

    it('lets an admin make one for someone else’s key only with a reason (recorded); the refusal is audited', async () => {
      const before = (await vkRows(key.id)).length;
      const refused = await create(key.id, admin.auth, { name: 'on-call' });
      expectError(refused, 400, 'validation_failed');
      const denied = await createRow(refused);
      expect(denied).toMatchObject({ outcome: 'denied', actor_id: admin.id, key_id: key.id });
      expect(why(denied)).toBe('reason_required');
      expect((await vkRows(key.id)).length).toBe(before);

      const res = await create(key.id, admin.auth, { name: 'on-call', reason: 'INC-42: owner on leave' });
      expect(res.status).toBe(201);
      expect(res.body.userId).toBe(admin.id);
      const row = await createRow(res);
      expect(row).toMatchObject({ outcome: 'success', reason: 'INC-42: owner on leave' });
      expect(why(row)).toBe('admin_with_reason');

      const own = await newKey({ ownerId: admin.id });
      expect((await create(own.id, admin.auth)).status).toBe(201);
    });

    it('refuses another member with 404 and an auditor with 403, both audited as denied, nothing made', async () => {
      const before = (await vkRows(key.id)).length;
      const res404 = await create(key.id, other.auth);
      expectError(res404, 404, 'not_found');
      expect(why(await createRow(res404))).toBe('not_owner');
      const res403 = await create(key.id, auditor.auth);
      expectError(res403, 403, 'forbidden');
      expect(why(await createRow(res403))).toBe('auditor');
      expect((await createRow(res403)).outcome).toBe('denied');
      const auditorToken = await create(key.id, tokens.auditorRead);
      expectError(auditorToken, 403, 'forbidden');
      expect((await vkRows(key.id)).length).toBe(before);
    });

    it('lets an API token with provider-keys:reveal make one (audited as the token); without the scope 403, audited', async () => {
      const ok = await create(key.id, tokens.ownerReveal);
      expect(ok.status).toBe(201);
      expect(await createRow(ok)).toMatchObject({ outcome: 'success', via: 'api_token', actor_id: owner.id });
      const refused = await create(key.id, tokens.ownerRead);
      expectError(refused, 403, 'forbidden');
      expect(why(await createRow(refused))).toBe('missing_scope');
      const adminToken = await create(key.id, tokens.adminReveal, { name: 'x', reason: 'token with a reason' });
      expect(adminToken.status).toBe(201);
    });

    it('404 for an unknown or deleted key (audited), 409 for a disabled or expired key or one with no upstream, 400 for a bad id', async () => {
      expectError(await create('01890000-0000-7000-8000-000000000000', owner.auth), 404, 'not_found');
      expectError(await create('not-a-uuid', owner.auth), 400, 'validation_failed');
      const gone = await newKey();
      expect((await ctx.http().delete(`/api/v1/provider-keys/${gone.id}`).set(admin.auth)).status).toBe(204);
      const deleted = await create(gone.id, owner.auth);
      expectError(deleted, 404, 'not_found');
      expect(why(await createRow(deleted))).toBe('key_deleted');
      const off = await newKey();
      expect((await ctx.http().patch(`/api/v1/provider-keys/${off.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
      expectError(await create(off.id, owner.auth), 409, 'key_disabled');
      const old = await newKey();
      await ctx.db.read((m) => m.query('UPDATE provider_keys SET expires_at = ? WHERE id = ?', [Date.now() - 1000, old.id]));
      expectError(await create(old.id, owner.auth), 409, 'key_expired');
      const custom = await newKey({ provider: 'custom' });
      const noUpstream = await create(custom.id, owner.auth);
      expectError(noUpstream, 409, 'conflict');
      expect(why(await createRow(noUpstream))).toBe('no_upstream');
    });

    it('refuses bad input with 400 and details, making nothing', async () => {
      const before = await countRows(ctx, 'virtual_keys');
      const bad: Array<Record<string, unknown>> = [
        {},
        { name: '' },
        { name: 'x', extra: true },
        { name: 'x', expiresInDays: 0 },
        { name: 'x', expiresInDays: 366 },
        { name: 'x', expiresInDays: 1.5 },
        { name: 'x', expiresInDays: '7' },
        { name: 'x', models: [] },
        { name: 'x', models: [''] },
        { name: 'x', models: 'gpt-4o' },
        { name: 'x', models: Array.from({ length: 65 }, (_, i) => `m${i}`) },
        { name: 'x', models: ['a'.repeat(129)] },
        { name: 'x', dailyRequestLimit: 0 },
        { name: 'x', dailyRequestLimit: -5 },
        { name: 'x', dailyRequestLimit: 2.5 },
        { name: 'x', dailyTokenLimit: 1e13 },
        { name: 'x', dailyTokenLimit: null },
        { name: 'x', reason: 'r'.repeat(1025) },
        { name: 'line\nbreak' },
      ];
      for (const body of bad) {
        const res = await create(key.id, owner.auth, body);
        expect({ body, status: res.status, code: res.body?.error?.code }).toEqual({ body, status: 400, code: 'validation_failed' });
        expect(res.body.error.details.length).toBeGreaterThan(0);
      }
      const malformed = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).set('Content-Type', 'application/json').send('{"name":');
      expectError(malformed, 400, 'validation_failed');
      expect(await countRows(ctx, 'virtual_keys')).toBe(before);
    });
  });

  describe('GET /provider-keys/:id/virtual-keys and GET /virtual-keys/:id', () => {
    let mine: { id: string };
    let adminMade: { id: string };
    beforeAll(async () => {
      mine = (await create(key.id, owner.auth, { name: 'mine' })).body;
      adminMade = (await create(key.id, admin.auth, { name: 'admin-made', reason: 'support' })).body;
    });

    it('shows the owner and admins every virtual key of the key, newest first, in pages, never the key itself or a hash', async () => {
      for (const auth of [owner.auth, admin.auth, tokens.ownerReveal]) {
        const { items } = await walk(ctx, `/api/v1/provider-keys/${key.id}/virtual-keys`, auth, 2);
        const ids = items.map((v) => v.id);
        expect(ids).toEqual([...ids].sort().reverse());
        expect(ids).toEqual(expect.arrayContaining([mine.id, adminMade.id]));
        for (const v of items) {
          expect(Object.keys(v).sort()).toEqual(VK_KEYS);
          expect(JSON.stringify(v)).not.toMatch(/virtualKey|tokenHash|token_hash/);
        }
      }
    });

    it('404 for another member, 403 for auditors and tokens without provider-keys:reveal', async () => {
      expectError(await ctx.http().get(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(other.auth), 404, 'not_found');
      expectError(await ctx.http().get(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(auditor.auth), 403, 'forbidden');
      expectError(await ctx.http().get(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(tokens.ownerRead), 403, 'forbidden');
      expectError(await ctx.http().get(`/api/v1/virtual-keys/${mine.id}`).set(other.auth), 404, 'not_found');
      expectError(await ctx.http().get(`/api/v1/virtual-keys/${mine.id}`).set(auditor.auth), 403, 'forbidden');
      expectError(await ctx.http().get(`/api/v1/virtual-keys/${mine.id}`).set(tokens.ownerRead), 403, 'forbidden');
      expectError(await ctx.http().get('/api/v1/virtual-keys/01890000-0000-7000-8000-000000000000').set(admin.auth), 404, 'not_found');
      expectError(await ctx.http().get('/api/v1/virtual-keys/nope').set(admin.auth), 400, 'validation_failed');
      expectError(await ctx.http().get(`/api/v1/provider-keys/${key.id}/virtual-keys?limit=0`).set(owner.auth), 400, 'validation_failed');
    });

    it('shows one virtual key to its maker, the key’s owner and admins', async () => {
      for (const auth of [owner.auth, admin.auth, tokens.ownerReveal, tokens.adminReveal]) {
        expect((await ctx.http().get(`/api/v1/virtual-keys/${adminMade.id}`).set(auth)).body).toMatchObject({ id: adminMade.id, userId: admin.id, keyId: key.id });
      }
    });
  });

  describe('DELETE /virtual-keys/:id', () => {
    it('revokes for good (revokedAt set, audited once); others get 404, auditors and tokens without reveal 403, changing nothing', async () => {
      const made = (await create(key.id, owner.auth, { name: 'to revoke' })).body;
      const del = (auth: Headers) => ctx.http().delete(`/api/v1/virtual-keys/${made.id}`).set(auth);
      expectError(await del(other.auth), 404, 'not_found');
      expectError(await del(auditor.auth), 403, 'forbidden');
      expectError(await del(tokens.ownerRead), 403, 'forbidden');
      expect((await vkRows(key.id)).find((r) => r.id === made.id)!.revoked_at).toBeNull();

      expect((await del(owner.auth)).status).toBe(204);
      const got = await ctx.http().get(`/api/v1/virtual-keys/${made.id}`).set(owner.auth);
      expect(got.body.revokedAt).toEqual(expect.any(String));
      expect((await del(admin.auth)).status).toBe(204);
      const rows = (await auditRows(ctx, { action: 'virtual_key.revoke', keyId: key.id })).filter((r) => JSON.parse(String(r.detail)).virtualKeyId === made.id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ outcome: 'success', actor_id: owner.id });
    });

    it('lets an admin revoke anyone’s, and a token with provider-keys:reveal its user’s', async () => {
      const a = (await create(key.id, owner.auth, { name: 'a' })).body;
      const b = (await create(key.id, owner.auth, { name: 'b' })).body;
      expect((await ctx.http().delete(`/api/v1/virtual-keys/${a.id}`).set(admin.auth)).status).toBe(204);
      expect((await ctx.http().delete(`/api/v1/virtual-keys/${b.id}`).set(tokens.ownerReveal)).status).toBe(204);
    });
  });

  describe('dead and forged credentials', () => {
    it('refuses every virtual-key and usage route with 401 for each kind of bad credential, writing nothing', async () => {
      const refused = await refusedCredentials(ctx, admin);
      for (const s of refused.secrets) ctx.secrets.add('credential', s);
      const made = (await create(key.id, owner.auth, { name: 'target' })).body;
      const routes: RouteCase[] = [
        { route: 'POST /provider-keys/:id/virtual-keys', method: 'post', path: () => `/api/v1/provider-keys/${key.id}/virtual-keys`, body: () => ({ name: 'x', reason: 'x' }) },
        { route: 'GET /provider-keys/:id/virtual-keys', method: 'get', path: () => `/api/v1/provider-keys/${key.id}/virtual-keys` },
        { route: 'GET /provider-keys/:id/usage', method: 'get', path: () => `/api/v1/provider-keys/${key.id}/usage` },
        { route: 'GET /virtual-keys/:id', method: 'get', path: () => `/api/v1/virtual-keys/${made.id}` },
        { route: 'DELETE /virtual-keys/:id', method: 'delete', path: () => `/api/v1/virtual-keys/${made.id}` },
      ];
      expect((await ctx.http().get(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(refused.control)).status).toBe(200);
      for (const r of routes) {
        for (const kind of REFUSED_CREDENTIALS) {
          try {
            await expectRefused(ctx, r, refused.headers[kind]());
          } catch (err) {
            throw new Error(`${r.route} with ${kind}: ${(err as Error).message}`);
          }
        }
      }
      expect((await ctx.http().get(`/api/v1/virtual-keys/${made.id}`).set(owner.auth)).body.revokedAt).toBeNull();
    });
  });

  describe('baseUrl of provider keys', () => {
    const patch = (id: string, auth: Headers, body: Record<string, unknown>) => ctx.http().patch(`/api/v1/provider-keys/${id}`).set(auth).send(body);

    it('is null by default (the provider’s) and kept as given, normalized, on create; lists show it', async () => {
      expect((await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(owner.auth)).body.baseUrl).toBeNull();
      const made = await ctx.http().post('/api/v1/provider-keys').set(admin.auth).send({ name: 'k', provider: 'openai', ownerId: owner.id, projectId: project.id, secret: uniqueSecret(), baseUrl: 'HTTPS://Gateway.Example.com/v1/' });
      expect(made.status).toBe(201);
      expect(made.body.baseUrl).toBe('https://gateway.example.com/v1');
      const listed = await ctx.http().get(`/api/v1/provider-keys?ownerId=${owner.id}&limit=200`).set(admin.auth);
      expect(listed.body.items.find((k: Row) => k.id === made.body.id).baseUrl).toBe('https://gateway.example.com/v1');
      for (const ok of ['http://127.0.0.1:11434/v1', 'http://[::1]:8080', 'https://10.0.0.5/openai']) expect((await patch(made.body.id, admin.auth, { baseUrl: ok, reason: 'ticket OPS-1' })).status).toBe(200);
    });

    it('refuses anything but https:// or http:// to a loopback address, credentials, queries and fragments, with 400', async () => {
      for (const baseUrl of ['http://api.example.com/v1', 'http://localhost:8080', 'http://10.0.0.5', 'ftp://example.com', 'not a url', '/v1', 'https://user:pw@example.com', 'https://example.com/v1?key=x', 'https://example.com/#x', `https://example.com/${'a'.repeat(2050)}`, 5, 'javascript:alert(1)']) {
        const res = await patch(key.id, admin.auth, { baseUrl });
        expect({ baseUrl, status: res.status, code: res.body?.error?.code }).toEqual({ baseUrl, status: 400, code: 'validation_failed' });
      }
      const res = await ctx.http().post('/api/v1/provider-keys').set(admin.auth).send({ name: 'k', provider: 'openai', ownerId: owner.id, projectId: project.id, secret: uniqueSecret(), baseUrl: 'http://example.com' });
      expectError(res, 400, 'validation_failed');
    });

    it('is changed by admins only, audited with the old and new value and a reason; a token needs provider-keys:reveal besides write, since the key goes where it points', async () => {
      const k = await newKey();
      expectError(await patch(k.id, owner.auth, { baseUrl: 'https://evil.example.com' }), 403, 'forbidden');
      expectError(await patch(k.id, tokens.adminWrite, { baseUrl: 'https://evil.example.com' }), 403, 'forbidden');
      expect((await ctx.http().get(`/api/v1/provider-keys/${k.id}`).set(admin.auth)).body.baseUrl).toBeNull();
      expect((await patch(k.id, tokens.adminWrite, { name: 'renamed' })).status).toBe(200);
      // Someone else's key: where it is sent is its owner's to decide, so an admin gives a reason (400 without, nothing changed).
      for (const auth of [admin.auth, tokens.adminWriteReveal]) {
        const refused = await patch(k.id, auth, { baseUrl: 'https://proxy.example.com/v1' });
        expectError(refused, 400, 'validation_failed');
        expect(refused.body.error.details).toEqual([{ field: 'body.reason', message: 'required when changing the owner or baseUrl of another user’s key' }]);
      }
      expect((await ctx.http().get(`/api/v1/provider-keys/${k.id}`).set(admin.auth)).body.baseUrl).toBeNull();
      expect(await auditRows(ctx, { action: 'provider_key.update', keyId: k.id })).toHaveLength(1); // the rename only
      const res = await patch(k.id, tokens.adminWriteReveal, { baseUrl: 'https://proxy.example.com/v1', reason: 'the owner asked for the EU proxy' });
      expect(res.status).toBe(200);
      const [row] = await auditRows(ctx, { action: 'provider_key.update', keyId: k.id });
      expect(row.reason).toBe('the owner asked for the EU proxy');
      expect(JSON.parse(String(row.detail))).toMatchObject({ changed: ['baseUrl'], fromBaseUrl: null, baseUrl: 'https://proxy.example.com/v1' });
      // A reason given for a change that does not touch baseUrl is not recorded as one.
      expect((await patch(k.id, admin.auth, { name: 'renamed again', reason: 'ignored' })).status).toBe(200);
      expect((await auditRows(ctx, { action: 'provider_key.update', keyId: k.id }))[0].reason).toBeNull();
      expect((await patch(k.id, admin.auth, { baseUrl: null, reason: 'back to the default' })).body.baseUrl).toBeNull();
      // The admin's own key needs no reason.
      const mine = await createKey(ctx, admin, { ownerId: admin.id, projectId: project.id });
      expect((await patch(mine.id, admin.auth, { baseUrl: 'https://proxy.example.com/v1' })).status).toBe(200);
    });

    it('ends the key’s virtual keys (revokedAt, counted in the audit row) when its baseUrl changes (even to another path on the same host), it moves or is deleted', async () => {
      const k = await newKey();
      const a = (await create(k.id, owner.auth)).body;
      expect((await patch(k.id, admin.auth, { name: 'renamed' })).status).toBe(200);
      expect((await ctx.http().get(`/api/v1/virtual-keys/${a.id}`).set(owner.auth)).body.revokedAt).toBeNull();
      expect((await patch(k.id, admin.auth, { baseUrl: 'https://api.openai.com/v2', reason: 'ticket OPS-1' })).status).toBe(200);
      expect((await ctx.http().get(`/api/v1/virtual-keys/${a.id}`).set(owner.auth)).body.revokedAt).toEqual(expect.any(String));
      const [row] = await auditRows(ctx, { action: 'provider_key.update', keyId: k.id });
      expect(JSON.parse(String(row.detail))).toMatchObject({ revokedVirtualKeys: 1 });

      const b = (await create(k.id, owner.auth)).body;
      expect((await patch(k.id, admin.auth, { ownerId: other.id, reason: 'ticket OPS-2' })).status).toBe(200);
      expect((await ctx.http().get(`/api/v1/virtual-keys/${b.id}`).set(admin.auth)).body.revokedAt).toEqual(expect.any(String));
      const c = (await create(k.id, other.auth)).body;
      expect((await ctx.http().delete(`/api/v1/provider-keys/${k.id}`).set(admin.auth)).status).toBe(204);
      expect((await ctx.http().get(`/api/v1/virtual-keys/${c.id}`).set(admin.auth)).body.revokedAt).toEqual(expect.any(String));
      const [deleted] = await auditRows(ctx, { action: 'provider_key.delete', keyId: k.id });
      expect(JSON.parse(String(deleted.detail))).toMatchObject({ revokedVirtualKeys: 1 });
    });
  });

  describe('GET /provider-keys/:id/usage', () => {
    let used: CreatedKey;
    let vkId: string;
    const now = Date.now();
    const hourStart = now - (now % HOUR);
    const record = (at: number, status: number, prompt: number | null, completion: number | null) =>
      ctx.container.gateway.usage.record({ at: new Date(at), virtualKeyId: vkId, keyId: used.id, userId: owner.id, model: 'gpt-test', status, latencyMs: 5, promptTokens: prompt, completionTokens: completion, requestBytes: 10, responseBytes: 20 });
    const usage = (query: string, auth: Headers = owner.auth) => ctx.http().get(`/api/v1/provider-keys/${used.id}/usage${query}`).set(auth);

    beforeAll(async () => {
      used = await newKey();
      vkId = (await create(used.id, owner.auth)).body.id;
      record(hourStart - 2 * HOUR + 10, 200, 10, 5);
      record(hourStart - 2 * HOUR + 20, 429, null, null);
      record(hourStart - 2 * HOUR + 30, 200, 7, 3);
      record(hourStart + 5, 502, null, null);
      await ctx.container.gateway.usage.flush();
      record(hourStart + 6, 200, 1, 2); // not flushed yet: the route flushes first
    });

    it('sums calls, errors and tokens per hour, oldest first, every bucket present', async () => {
      const res = await usage(`?from=${new Date(hourStart - 3 * HOUR).toISOString()}&to=${new Date(hourStart + 30 * 60_000).toISOString()}&granularity=hour`);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body)).toEqual(['items']);
      expect(res.body.items).toEqual([
        { start: new Date(hourStart - 3 * HOUR).toISOString(), requests: 0, errors: 0, promptTokens: 0, completionTokens: 0 },
        { start: new Date(hourStart - 2 * HOUR).toISOString(), requests: 3, errors: 1, promptTokens: 17, completionTokens: 8 },
        { start: new Date(hourStart - HOUR).toISOString(), requests: 0, errors: 0, promptTokens: 0, completionTokens: 0 },
        { start: new Date(hourStart).toISOString(), requests: 2, errors: 1, promptTokens: 1, completionTokens: 2 },
      ]);
    });

    it('sums per UTC day, by default over the last 30 days', async () => {
      const res = await usage('?granularity=day');
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBeGreaterThanOrEqual(30);
      expect(res.body.items.every((i: Row) => String(i.start).endsWith('T00:00:00.000Z'))).toBe(true);
      const total = res.body.items.reduce((n: number, i: Row) => n + Number(i.requests), 0);
      expect(total).toBe(5);
    });

    it('is for the key’s owner, admins and auditors (tokens: provider-keys:read); another member 404, a token without read 403', async () => {
      for (const auth of [owner.auth, admin.auth, auditor.auth, tokens.ownerRead, tokens.auditorRead]) expect((await usage('', auth)).status).toBe(200);
      expectError(await usage('', other.auth), 404, 'not_found');
      expectError(await usage('', tokens.ownerReveal), 403, 'forbidden');
      expectError(await ctx.http().get('/api/v1/provider-keys/01890000-0000-7000-8000-000000000000/usage').set(admin.auth), 404, 'not_found');
    });

    it('400 for bad queries: unknown field, bad granularity or date, from not before to, too many buckets', async () => {
      for (const q of ['?granularity=minute', '?from=yesterday', '?x=1', `?from=${new Date(now).toISOString()}&to=${new Date(now - DAY).toISOString()}`, `?from=${new Date(now - 60 * DAY).toISOString()}&granularity=hour`]) {
        const res = await usage(q);
        expect({ q, status: res.status, code: res.body?.error?.code }).toEqual({ q, status: 400, code: 'validation_failed' });
      }
    });
  });
});
