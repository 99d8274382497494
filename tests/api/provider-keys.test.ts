import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Response } from 'supertest';
import { createTestContext, dbKind, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, uniqueSecret } from '../support/factories';
import { firstLeak, setCredentialAsTheVault, storedKey, StoredKeyRow, storedNeedles } from '../support/crypto-helpers';
import { SessionTokens } from '../../src/modules/auth/sessions';

const METADATA_KEYS = ['id', 'name', 'provider', 'hint', 'status', 'ownerId', 'projectId', 'remark', 'baseUrl', 'createdBy', 'createdAt', 'updatedAt', 'expiresAt', 'lastRevealedAt', 'revealCount', 'health', 'healthProbe'].sort();
const EVENT_KEYS = ['id', 'seq', 'at', 'action', 'outcome', 'actorId', 'actorUsername', 'actorRole', 'via', 'apiTokenId', 'keyId', 'projectId', 'ownerId', 'ip', 'userAgent', 'requestId', 'reason', 'detail'].sort();

type Auth = Record<string, string>;
type Method = 'get' | 'post' | 'patch' | 'put' | 'delete';

const itSqlite = dbKind() === 'sqlite' ? it : it.skip;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('provider keys', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let auditor: TestUser;
  let project: { id: string; name: string };
  let tokens: Record<'adminAll' | 'adminRead' | 'adminWrite' | 'ownerRead' | 'ownerReveal' | 'auditorAudit' | 'auditorRead', Auth>;
  /** Every secret pasted successfully in this file: none may ever reach the database file in plaintext. */
  const pasted: string[] = [];

  const call = (method: Method, path: string, auth: Auth, body?: unknown) => {
    const req = ctx.http()[method](`/api/v1${path}`).set(auth);
    return body === undefined ? req : req.send(body as object);
  };

  const paste = async (as: Auth, fields: Record<string, unknown>) => {
    const res = await call('post', '/provider-keys', as, { name: 'key', provider: 'openai', ownerId: owner.id, projectId: project.id, ...fields });
    if (res.status === 201 && typeof fields.secret === 'string') pasted.push(fields.secret.trim());
    return res;
  };

  const newKey = async (fields: { ownerId?: string; projectId?: string; secret?: string; provider?: string; name?: string } = {}) => {
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, ...fields });
    pasted.push(key.secret);
    return key;
  };

  const count = async (sql: string, params: unknown[]): Promise<number> => {
    const rows: Array<{ n: number | string }> = await ctx.db.read((m) => m.query(sql, params));
    return Number(rows[0].n);
  };

  const successRows = (action: string, keyId: string) => count('SELECT COUNT(*) AS n FROM audit_events WHERE action = ? AND key_id = ? AND outcome = ?', [action, keyId, 'success']);

  const expectError = (res: Response, status: number, code: string) => {
    expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
    expect(res.body.error.requestId).toBe(res.headers['x-request-id']);
    expect(Array.isArray(res.body.error.details)).toBe(true);
  };

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '1000' });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin);
    const t = async (as: TestUser, scopes: string[]) => (await createApiToken(ctx, as, scopes)).auth;
    tokens = {
      adminAll: await t(admin, ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read']),
      adminRead: await t(admin, ['provider-keys:read']),
      adminWrite: await t(admin, ['provider-keys:write']),
      ownerRead: await t(owner, ['provider-keys:read']),
      ownerReveal: await t(owner, ['provider-keys:reveal']),
      auditorAudit: await t(auditor, ['audit:read']),
      auditorRead: await t(auditor, ['provider-keys:read']),
    };
  });
  afterAll(() => ctx.close());

  describe('credentials', () => {
    let bad: Array<[string, Auth]>;

    beforeAll(async () => {
      const expired = new SessionTokens(ctx.config.jwtSecret, -120).issue(admin.id, 0).token;
      const [h, p, s] = admin.token.split('.');
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
      const forgedPayload = Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 86400 }), 'utf8').toString('base64url');
      const flippedSig = s.slice(0, -2) + (s.at(-2) === 'A' ? 'B' : 'A') + s.at(-1);
      const foreign = new SessionTokens(crypto.randomBytes(48), 600).issue(admin.id, 0).token;
      const expiredToken = await createApiToken(ctx, admin, ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read']);
      await setCredentialAsTheVault(ctx, 'api_tokens', expiredToken.id, { expires_at: Date.now() - 1000 });
      bad = [
        ['no credentials', {}],
        ['an expired session', { Authorization: `Bearer ${expired}` }],
        ['a session with a tampered payload', { Authorization: `Bearer ${h}.${forgedPayload}.${s}` }],
        ['a session with a tampered signature', { Authorization: `Bearer ${h}.${p}.${flippedSig}` }],
        ['a session signed with another secret', { Authorization: `Bearer ${foreign}` }],
        ['an expired API token', expiredToken.auth],
        ['an expired API token in X-API-Key', { 'X-API-Key': expiredToken.token }],
        ['a malformed Authorization header', { Authorization: 'Basic YWRtaW46YWRtaW4=' }],
      ];
    });

    it('accepts a session the product signs for an existing user (the control for the refusals below)', async () => {
      const fresh = new SessionTokens(ctx.config.jwtSecret, 600).issue(admin.id, 0).token;
      const res = await call('get', '/provider-keys', { Authorization: `Bearer ${fresh}` });
      expect(res.status).toBe(200);
    });

    it('refuses every provider-key and audit route with 401 and WWW-Authenticate for missing, expired or tampered credentials, changing nothing', async () => {
      const key = await newKey();
      const before = await storedKey(ctx, key.id);
      const auditBefore = await count('SELECT COUNT(*) AS n FROM audit_events WHERE key_id = ?', [key.id]);
      const routes: Array<[Method, string, unknown?]> = [
        ['post', '/provider-keys', { name: 'x', provider: 'openai', ownerId: owner.id, projectId: project.id, secret: uniqueSecret() }],
        ['get', '/provider-keys'],
        ['get', `/provider-keys/${key.id}`],
        ['patch', `/provider-keys/${key.id}`, { name: 'renamed' }],
        ['put', `/provider-keys/${key.id}/secret`, { secret: uniqueSecret() }],
        ['delete', `/provider-keys/${key.id}`],
        ['post', `/provider-keys/${key.id}/reveal`, { reason: 'x' }],
        ['get', `/provider-keys/${key.id}/audit-events`],
        ['get', '/audit-events'],
      ];
      for (const [label, auth] of bad) {
        for (const [method, path, body] of routes) {
          const res = await call(method, path, auth, body);
          expect({ label, method, path, status: res.status, code: res.body?.error?.code }).toEqual({ label, method, path, status: 401, code: 'unauthorized' });
          expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
          expect(res.text).not.toContain(key.secret);
        }
      }
      const after = await storedKey(ctx, key.id);
      expect(after).toEqual(before);
      expect(await count('SELECT COUNT(*) AS n FROM audit_events WHERE key_id = ?', [key.id])).toBe(auditBefore);
      expect(await count('SELECT COUNT(*) AS n FROM provider_keys WHERE name = ?', ['x'])).toBe(0);
    });
  });

  describe('POST /provider-keys', () => {
    it('lets an admin paste a key for an owner and project: 201 metadata only, a sealed row and a create audit row', async () => {
      const secret = `sk-proj-${crypto.randomBytes(30).toString('base64url')}`;
      const res = await paste(admin.auth, { name: 'prod key', provider: 'openai', secret, remark: 'from the console' });
      expect(res.status).toBe(201);
      expect(Object.keys(res.body).sort()).toEqual(METADATA_KEYS);
      expect(res.body).toMatchObject({ name: 'prod key', provider: 'openai', status: 'active', ownerId: owner.id, projectId: project.id, remark: 'from the console', createdBy: admin.id, revealCount: 0, lastRevealedAt: null, expiresAt: null });
      expect(res.body.hint).toBe(`sk-…${secret.slice(-4)}`);
      expect(res.body.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(new Date(res.body.createdAt).toISOString()).toBe(res.body.createdAt);
      expect(res.text).not.toContain(secret);

      const row = await storedKey(ctx, res.body.id);
      expect(row).toMatchObject({ status: 'active', ownerId: owner.id, projectId: project.id, formatVersion: 2, kekVersion: 1, revealCount: 0, hint: res.body.hint });
      expect(row.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      for (const b of Object.values(row.sealed)) expect(b).toBeInstanceOf(Buffer);

      const [audit] = await auditRows(ctx, { action: 'provider_key.create', keyId: res.body.id });
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, actor_role: 'admin', via: 'session', owner_id: owner.id, project_id: project.id, request_id: res.headers['x-request-id'] });
      expect(JSON.stringify(audit)).not.toContain(secret);
    });

    it('lets an admin API token with provider-keys:write paste a key, audited as the token', async () => {
      const res = await paste(tokens.adminAll, { secret: uniqueSecret() });
      expect(res.status).toBe(201);
      const [audit] = await auditRows(ctx, { action: 'provider_key.create', keyId: res.body.id });
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id, via: 'api_token' });
      expect(audit.api_token_id).toEqual(expect.any(String));
    });

    it.each([
      ['the owner member', () => owner.auth],
      ['another member', () => other.auth],
      ['an auditor', () => auditor.auth],
      ['an admin token with only provider-keys:read', () => tokens.adminRead],
      ['a member token', () => tokens.ownerRead],
      ['an auditor token', () => tokens.auditorRead],
    ])('refuses %s with 403, storing nothing', async (_who, auth) => {
      const name = `refused-${crypto.randomBytes(4).toString('hex')}`;
      const res = await paste(auth(), { name, secret: uniqueSecret() });
      expectError(res, 403, 'forbidden');
      expect(await count('SELECT COUNT(*) AS n FROM provider_keys WHERE name = ?', [name])).toBe(0);
      expect(await count("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'provider_key.create' AND detail LIKE ?", [`%${name}%`])).toBe(0);
    });
  });

  describe('GET /provider-keys', () => {
    let mine: { id: string };
    let theirs: { id: string };

    beforeAll(async () => {
      mine = await newKey({ ownerId: owner.id, name: 'listed-mine' });
      theirs = await newKey({ ownerId: other.id, name: 'listed-theirs' });
    });

    const listIds = async (auth: Auth, query = '') => {
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const res = await call('get', `/provider-keys?limit=200${query}${cursor ? `&cursor=${cursor}` : ''}`, auth);
        expect(res.status).toBe(200);
        for (const item of res.body.items) expect(Object.keys(item).sort()).toEqual(METADATA_KEYS);
        ids.push(...res.body.items.map((k: { id: string }) => k.id));
        cursor = res.body.nextCursor;
      } while (cursor);
      return ids;
    };

    it.each([
      ['an admin', () => admin.auth],
      ['an auditor', () => auditor.auth],
      ['an admin token with provider-keys:read', () => tokens.adminRead],
      ['an auditor token with provider-keys:read', () => tokens.auditorRead],
    ])('shows %s every live key', async (_who, auth) => {
      const ids = await listIds(auth());
      expect(ids).toEqual(expect.arrayContaining([mine.id, theirs.id]));
      const live = await count("SELECT COUNT(*) AS n FROM provider_keys WHERE status <> 'deleted'", []);
      expect(ids).toHaveLength(live);
    });

    it('shows a member only their own keys, by session or by token', async () => {
      for (const auth of [owner.auth, tokens.ownerRead]) {
        const ids = await listIds(auth);
        expect(ids).toContain(mine.id);
        expect(ids).not.toContain(theirs.id);
        const own = await count("SELECT COUNT(*) AS n FROM provider_keys WHERE owner_id = ? AND status <> 'deleted'", [owner.id]);
        expect(ids).toHaveLength(own);
      }
      const otherIds = await listIds(other.auth);
      expect(otherIds).toEqual([theirs.id]);
    });

    it('lists every key exactly as GET /provider-keys/:id shows it (remark, expiry, last reveal and count set or not)', async () => {
      const full = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, name: 'listed-full', remark: 'a remark', expiresAt: '2999-12-31T23:59:59.999Z' });
      pasted.push(full.secret);
      expect((await call('post', `/provider-keys/${full.id}/reveal`, owner.auth, {})).status).toBe(200);
      const res = await call('get', '/provider-keys?limit=200', admin.auth);
      expect(res.status).toBe(200);
      const listed = new Map((res.body.items as Array<{ id: string }>).map((k) => [k.id, k]));
      for (const id of [full.id, mine.id, theirs.id]) {
        const one = await call('get', `/provider-keys/${id}`, admin.auth);
        expect(one.status).toBe(200);
        expect(listed.get(id)).toEqual(one.body);
      }
      expect(listed.get(full.id)).toMatchObject({ remark: 'a remark', expiresAt: '2999-12-31T23:59:59.999Z', revealCount: 1, lastRevealedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) });
      expect(listed.get(mine.id)).toMatchObject({ remark: null, expiresAt: null, revealCount: 0, lastRevealedAt: null });
    });

    it('gives a member asking for another owner’s keys an empty list', async () => {
      const res = await call('get', `/provider-keys?ownerId=${other.id}`, owner.auth);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ items: [], nextCursor: null });
    });

    it.each([
      ['an admin token without provider-keys:read', () => tokens.adminWrite],
      ['a member token without provider-keys:read', () => tokens.ownerReveal],
      ['an auditor token without provider-keys:read', () => tokens.auditorAudit],
    ])('refuses %s with 403', async (_who, auth) => {
      expectError(await call('get', '/provider-keys', auth()), 403, 'forbidden');
    });

    it('filters by project, owner, provider, status and name, newest first, in cursor pages', async () => {
      const p2 = await createProject(ctx, admin);
      const made = [];
      for (let i = 0; i < 5; i++) made.push(await newKey({ projectId: p2.id, ownerId: i % 2 ? other.id : owner.id, provider: i < 3 ? 'anthropic' : 'deepseek', name: `filter-${i}${i === 4 ? '_x%' : ''}` }));
      const newestFirst = made.map((k) => k.id).reverse();

      expect(await listIds(admin.auth, `&projectId=${p2.id}`)).toEqual(newestFirst);
      expect(await listIds(admin.auth, `&projectId=${p2.id}&ownerId=${other.id}`)).toEqual([made[3].id, made[1].id]);
      expect(await listIds(admin.auth, `&projectId=${p2.id}&provider=deepseek`)).toEqual([made[4].id, made[3].id]);
      expect(await listIds(admin.auth, `&q=${encodeURIComponent('_x%')}`)).toEqual([made[4].id]);
      expect(await listIds(owner.auth, `&projectId=${p2.id}`)).toEqual([made[4].id, made[2].id, made[0].id]);

      const pages: string[][] = [];
      let cursor: string | null = null;
      do {
        const res = await call('get', `/provider-keys?projectId=${p2.id}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, admin.auth);
        expect(res.status).toBe(200);
        pages.push(res.body.items.map((k: { id: string }) => k.id));
        cursor = res.body.nextCursor;
      } while (cursor);
      expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
      expect(pages.flat()).toEqual(newestFirst);

      await call('delete', `/provider-keys/${made[0].id}`, admin.auth).expect(204);
      expect(await listIds(admin.auth, `&projectId=${p2.id}`)).not.toContain(made[0].id);
      expect(await listIds(admin.auth, `&projectId=${p2.id}&status=deleted`)).toEqual([made[0].id]);
    });

    it('finds a key by the last characters of its hint (q), only among the keys the caller may list', async () => {
      const p3 = await createProject(ctx, admin);
      const tailed = await newKey({ projectId: p3.id, name: 'tail-search', secret: `sk-${crypto.randomBytes(24).toString('base64url')}Zq9x` });
      const decoy = await newKey({ projectId: p3.id, name: 'tail-decoy', ownerId: other.id, secret: `sk-${crypto.randomBytes(24).toString('base64url')}Zq9x` });
      expect(tailed.hint).toBe('sk-…Zq9x');
      const ids = async (auth: Record<string, string>, q: string) => listIds(auth, `&projectId=${p3.id}&q=${encodeURIComponent(q)}`);

      expect(await ids(owner.auth, 'Zq9x')).toEqual([tailed.id]);
      expect(await ids(owner.auth, 'q9x')).toEqual([tailed.id]);
      expect(await ids(owner.auth, 'sk-…Zq9x')).toEqual([tailed.id]);
      expect(await ids(admin.auth, 'Zq9x')).toEqual([decoy.id, tailed.id]);
      expect(await ids(other.auth, 'Zq9x')).toEqual([decoy.id]);
      // The end of the hint, not any part of it, and never the secret (which is not searched at all).
      expect(await ids(owner.auth, 'Zq9')).toEqual([]);
      expect(await ids(owner.auth, tailed.secret.slice(5, 12))).toEqual([]);
      // Wildcards are literal here too.
      expect(await ids(owner.auth, '%x')).toEqual([]);
    });

    it('answers 400 to bad filters and cursors, never 500', async () => {
      for (const q of ['limit=0', 'limit=201', 'limit=abc', 'cursor=not-a-cursor', 'ownerId=nope', 'provider=acme', 'status=gone', 'colour=red']) {
        expectError(await call('get', `/provider-keys?${q}`, admin.auth), 400, 'validation_failed');
      }
    });
  });

  describe('GET /provider-keys/:id', () => {
    let key: { id: string; secret: string };
    beforeAll(async () => {
      key = await newKey();
    });

    it.each([
      ['an admin', () => admin.auth],
      ['the owner', () => owner.auth],
      ['an auditor', () => auditor.auth],
      ['the owner’s token with provider-keys:read', () => tokens.ownerRead],
      ['an auditor token with provider-keys:read', () => tokens.auditorRead],
    ])('shows %s the metadata and nothing secret', async (_who, auth) => {
      const res = await call('get', `/provider-keys/${key.id}`, auth());
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(METADATA_KEYS);
      expect(res.body.id).toBe(key.id);
      expect(res.text).not.toContain(key.secret);
    });

    it('answers another member 404, exactly as for a key that does not exist', async () => {
      const hidden = await call('get', `/provider-keys/${key.id}`, other.auth);
      const missing = await call('get', `/provider-keys/${crypto.randomUUID()}`, other.auth);
      expectError(hidden, 404, 'not_found');
      expectError(missing, 404, 'not_found');
      expect(hidden.body.error.message).toBe(missing.body.error.message);
    });

    it('refuses credentials without provider-keys:read with 403', async () => {
      expectError(await call('get', `/provider-keys/${key.id}`, tokens.adminWrite), 403, 'forbidden');
      expectError(await call('get', `/provider-keys/${key.id}`, tokens.ownerReveal), 403, 'forbidden');
    });

    it('answers a malformed id with 400', async () => {
      expectError(await call('get', '/provider-keys/not-a-uuid', admin.auth), 400, 'validation_failed');
    });
  });

  describe('PATCH /provider-keys/:id', () => {
    it('lets an admin rename, remark, disable and set an expiry, stored and audited with the changed fields', async () => {
      const key = await newKey();
      const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
      const res = await call('patch', `/provider-keys/${key.id}`, admin.auth, { name: 'renamed', remark: 'rotated monthly', status: 'disabled', expiresAt });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id: key.id, name: 'renamed', remark: 'rotated monthly', status: 'disabled', expiresAt });
      const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT name, remark, status, expires_at FROM provider_keys WHERE id = ?', [key.id]));
      expect(rows[0]).toMatchObject({ name: 'renamed', remark: 'rotated monthly', status: 'disabled' });
      expect(Number(rows[0].expires_at)).toBe(Date.parse(expiresAt));
      const [audit] = await auditRows(ctx, { action: 'provider_key.update', keyId: key.id });
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id });
      expect(JSON.parse(String(audit.detail)).changed.sort()).toEqual(['expiresAt', 'name', 'remark', 'status']);
    });

    it('lets an admin token with provider-keys:write change a key', async () => {
      const key = await newKey();
      const res = await call('patch', `/provider-keys/${key.id}`, tokens.adminWrite, { name: 'by token' });
      expect(res.status).toBe(200);
      expect((await storedKey(ctx, key.id)).status).toBe('active');
      expect(await successRows('provider_key.update', key.id)).toBe(1);
    });

    it.each([
      ['the owner member', 403, () => owner.auth],
      ['an auditor', 403, () => auditor.auth],
      ['an admin token without provider-keys:write', 403, () => tokens.adminRead],
      ['the owner’s token', 403, () => tokens.ownerRead],
      ['another member', 404, () => other.auth],
    ])('refuses %s with %i, leaving the row and trail untouched', async (_who, status, auth) => {
      const key = await newKey();
      const before = await storedKey(ctx, key.id);
      const res = await call('patch', `/provider-keys/${key.id}`, auth(), { name: 'hijacked', ownerId: other.id });
      expectError(res, status, status === 404 ? 'not_found' : 'forbidden');
      expect(await storedKey(ctx, key.id)).toEqual(before);
      expect(await successRows('provider_key.update', key.id)).toBe(0);
    });

    it('answers 400 to unknown fields, a deleted status, a past expiry and an owner that cannot own keys', async () => {
      const key = await newKey();
      const before = await storedKey(ctx, key.id);
      for (const body of [{ colour: 'red' }, { status: 'deleted' }, { expiresAt: '2001-01-01T00:00:00Z' }, { ownerId: crypto.randomUUID() }, { ownerId: auditor.id }, { projectId: crypto.randomUUID() }, { name: '' }]) {
        expectError(await call('patch', `/provider-keys/${key.id}`, admin.auth, body), 400, 'validation_failed');
      }
      expect(await storedKey(ctx, key.id)).toEqual(before);
    });
  });

  describe('PUT /provider-keys/:id/secret', () => {
    it('lets an admin replace the secret: new hint, the new secret revealed, a rotate audit row', async () => {
      const key = await newKey();
      const next = `sk-${crypto.randomBytes(30).toString('base64url')}WXYZ`;
      const res = await call('put', `/provider-keys/${key.id}/secret`, admin.auth, { secret: `  ${next}\n` });
      pasted.push(next);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(METADATA_KEYS);
      expect(res.body.hint).toBe('sk-…WXYZ');
      expect(res.text).not.toContain(next);
      expect((await storedKey(ctx, key.id)).hint).toBe('sk-…WXYZ');
      expect(await successRows('provider_key.rotate', key.id)).toBe(1);
      const revealed = await call('post', `/provider-keys/${key.id}/reveal`, owner.auth, {});
      expect(revealed.body.secret).toBe(next);
    });

    it('lets an admin token with provider-keys:write replace a secret', async () => {
      const key = await newKey();
      const next = uniqueSecret();
      expect((await call('put', `/provider-keys/${key.id}/secret`, tokens.adminWrite, { secret: next })).status).toBe(200);
      pasted.push(next);
      expect(await successRows('provider_key.rotate', key.id)).toBe(1);
    });

    it.each([
      ['the owner member', 403, () => owner.auth],
      ['an auditor', 403, () => auditor.auth],
      ['an admin token without provider-keys:write', 403, () => tokens.adminRead],
      ['another member', 404, () => other.auth],
    ])('refuses %s with %i, keeping the old secret', async (_who, status, auth) => {
      const key = await newKey();
      const before = await storedKey(ctx, key.id);
      const res = await call('put', `/provider-keys/${key.id}/secret`, auth(), { secret: uniqueSecret() });
      expectError(res, status, status === 404 ? 'not_found' : 'forbidden');
      expect(await storedKey(ctx, key.id)).toEqual(before);
      expect(await successRows('provider_key.rotate', key.id)).toBe(0);
      expect((await call('post', `/provider-keys/${key.id}/reveal`, owner.auth, {})).body.secret).toBe(key.secret);
    });

    it('answers 409 naming the key that already holds the new secret', async () => {
      const a = await newKey();
      const b = await newKey();
      const res = await call('put', `/provider-keys/${b.id}/secret`, admin.auth, { secret: `\n${a.secret}\n` });
      expectError(res, 409, 'conflict');
      expect(res.body.error.message).toContain(a.id);
      expect(res.body.error.details).toEqual([{ existingKeyId: a.id }]);
      expect(res.text).not.toContain(a.secret);
    });
  });

  describe('DELETE /provider-keys/:id', () => {
    it('lets an admin delete a key: 204, a tombstone without ciphertext, a delete audit row', async () => {
      const key = await newKey();
      const res = await call('delete', `/provider-keys/${key.id}`, admin.auth);
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      const row = await storedKey(ctx, key.id);
      expect(row.status).toBe('deleted');
      expect(row.fingerprint).toBeNull();
      expect(Object.values(row.sealed)).toEqual([null, null, null, null, null, null]);
      expect(await successRows('provider_key.delete', key.id)).toBe(1);
      expectError(await call('delete', `/provider-keys/${key.id}`, admin.auth), 409, 'conflict');
    });

    it('lets an admin token with provider-keys:write delete a key', async () => {
      const key = await newKey();
      expect((await call('delete', `/provider-keys/${key.id}`, tokens.adminWrite)).status).toBe(204);
      expect((await storedKey(ctx, key.id)).status).toBe('deleted');
    });

    it.each([
      ['the owner member', 403, () => owner.auth],
      ['an auditor', 403, () => auditor.auth],
      ['an admin token without provider-keys:write', 403, () => tokens.adminRead],
      ['another member', 404, () => other.auth],
    ])('refuses %s with %i, keeping the key', async (_who, status, auth) => {
      const key = await newKey();
      const before = await storedKey(ctx, key.id);
      expectError(await call('delete', `/provider-keys/${key.id}`, auth()), status, status === 404 ? 'not_found' : 'forbidden');
      expect(await storedKey(ctx, key.id)).toEqual(before);
      expect(await successRows('provider_key.delete', key.id)).toBe(0);
    });
  });

  describe('GET /provider-keys/:id/audit-events', () => {
    let key: { id: string };
    beforeAll(async () => {
      key = await newKey();
      await call('post', `/provider-keys/${key.id}/reveal`, owner.auth, {}).expect(200);
    });

    it.each([
      ['the owner', () => owner.auth],
      ['an admin', () => admin.auth],
      ['an auditor', () => auditor.auth],
      ['the owner’s token with provider-keys:read', () => tokens.ownerRead],
    ])('shows %s the key’s own trail, newest first', async (_who, auth) => {
      const res = await call('get', `/provider-keys/${key.id}/audit-events`, auth());
      expect(res.status).toBe(200);
      expect(res.body.items.map((e: { action: string }) => e.action)).toEqual(['provider_key.reveal', 'provider_key.create']);
      for (const e of res.body.items) {
        expect(Object.keys(e).sort()).toEqual(EVENT_KEYS);
        expect(e.keyId).toBe(key.id);
      }
      const db = await auditRows(ctx, { keyId: key.id });
      expect(res.body.items.map((e: { id: string }) => e.id)).toEqual(db.map((r) => r.id));
    });

    it('answers another member 404', async () => {
      expectError(await call('get', `/provider-keys/${key.id}/audit-events`, other.auth), 404, 'not_found');
    });

    it('shows a member where their own requests came from, but not the addresses or browsers of anyone else in it (a previous owner, an admin)', async () => {
      const previous = await ctx.user('member');
      const next = await ctx.user('member');
      const moved = await newKey({ ownerId: previous.id });
      await call('post', `/provider-keys/${moved.id}/reveal`, previous.auth, {}).set('User-Agent', 'previous-owner-laptop/1.0').expect(200);
      await call('post', `/provider-keys/${moved.id}/reveal`, admin.auth, { reason: 'handover check' }).set('User-Agent', 'admin-desk/2.0').expect(200);
      await call('patch', `/provider-keys/${moved.id}`, admin.auth, { ownerId: next.id, reason: 'ticket OPS-2' }).set('User-Agent', 'admin-desk/2.0').expect(200);
      await call('post', `/provider-keys/${moved.id}/reveal`, next.auth, {}).set('User-Agent', 'new-owner-phone/3.0').expect(200);
      const nextToken = (await createApiToken(ctx, next, ['provider-keys:read'])).auth;

      for (const auth of [next.auth, nextToken]) {
        const res = await call('get', `/provider-keys/${moved.id}/audit-events`, auth);
        expect(res.status).toBe(200);
        const seen = res.body.items.map((e: Record<string, unknown>) => [e.action, e.actorId, e.ip === null ? null : 'ip', e.userAgent]);
        expect(seen).toEqual([
          ['provider_key.reveal', next.id, 'ip', 'new-owner-phone/3.0'],
          ['provider_key.update', admin.id, null, null],
          ['provider_key.reveal', admin.id, null, null],
          ['provider_key.reveal', previous.id, null, null],
          ['provider_key.create', admin.id, null, null],
        ]);
        expect(res.text).not.toContain('previous-owner-laptop');
        expect(res.text).not.toContain('admin-desk');
        // Who did what, and why, stays visible.
        expect(res.body.items[2].reason).toBe('handover check');
      }
      for (const auth of [admin.auth, auditor.auth]) {
        const res = await call('get', `/provider-keys/${moved.id}/audit-events`, auth);
        expect(res.body.items.map((e: Record<string, unknown>) => e.userAgent)).toEqual(['new-owner-phone/3.0', 'admin-desk/2.0', 'admin-desk/2.0', 'previous-owner-laptop/1.0', null]);
        expect(res.body.items.every((e: Record<string, unknown>) => typeof e.ip === 'string')).toBe(true);
      }
    });


    it('refuses a token without provider-keys:read with 403', async () => {
      expectError(await call('get', `/provider-keys/${key.id}/audit-events`, tokens.ownerReveal), 403, 'forbidden');
    });
  });

  describe('GET /audit-events', () => {
    let key: { id: string };
    let p2: { id: string };
    let keyRows: Array<Record<string, unknown>>;

    beforeAll(async () => {
      p2 = await createProject(ctx, admin);
      key = await newKey({ projectId: p2.id });
      const steps: Array<() => Promise<unknown>> = [
        () => call('post', `/provider-keys/${key.id}/reveal`, owner.auth, {}).expect(200),
        () => call('post', `/provider-keys/${key.id}/reveal`, other.auth, {}).expect(404),
        () => call('post', `/provider-keys/${key.id}/reveal`, admin.auth, {}).expect(400),
        () => call('post', `/provider-keys/${key.id}/reveal`, auditor.auth, {}).expect(403),
        () => call('post', `/provider-keys/${key.id}/reveal`, admin.auth, { reason: 'incident 42' }).expect(200),
        () => call('patch', `/provider-keys/${key.id}`, admin.auth, { name: 'audited' }).expect(200),
      ];
      for (const step of steps) {
        await sleep(5);
        await step();
      }
      keyRows = await auditRows(ctx, { keyId: key.id });
      expect(keyRows).toHaveLength(7);
    });

    const ids = (res: Response) => res.body.items.map((e: { id: string }) => e.id);
    const get = (query: string, auth: Auth = auditor.auth) => call('get', `/audit-events?${query}`, auth);

    it.each([
      ['an admin', () => admin.auth],
      ['an auditor', () => auditor.auth],
      ['an auditor token with audit:read', () => tokens.auditorAudit],
      ['an admin token with audit:read', () => tokens.adminAll],
    ])('lets %s read the trail', async (_who, auth) => {
      const res = await get(`keyId=${key.id}`, auth());
      expect(res.status).toBe(200);
      expect(ids(res)).toEqual(keyRows.map((r) => r.id));
      for (const e of res.body.items) expect(Object.keys(e).sort()).toEqual(EVENT_KEYS);
    });

    it.each([
      ['a member', () => owner.auth],
      ['an auditor token without audit:read', () => tokens.auditorRead],
      ['an admin token without audit:read', () => tokens.adminRead],
      ['a member token', () => tokens.ownerRead],
    ])('refuses %s with 403', async (_who, auth) => {
      expectError(await get(`keyId=${key.id}`, auth()), 403, 'forbidden');
    });

    it('filters by action, outcome, actor, key and project', async () => {
      const denied = await get(`keyId=${key.id}&action=provider_key.reveal&outcome=denied`);
      expect(denied.status).toBe(200);
      expect(denied.body.items.map((e: { actorId: string }) => e.actorId)).toEqual([auditor.id, admin.id, other.id]);
      for (const e of denied.body.items) expect(e).toMatchObject({ action: 'provider_key.reveal', outcome: 'denied', keyId: key.id });

      const success = await get(`keyId=${key.id}&action=provider_key.reveal&outcome=success`);
      expect(success.body.items.map((e: { actorId: string; reason: string | null }) => [e.actorId, e.reason])).toEqual([
        [admin.id, 'incident 42'],
        [owner.id, null],
      ]);

      const byOther = await get(`actorId=${other.id}`);
      const otherDb = await ctx.db.read((m) => m.query('SELECT id FROM audit_events WHERE actor_id = ? ORDER BY id DESC', [other.id]));
      expect(ids(byOther)).toEqual(otherDb.map((r: { id: string }) => r.id));
      expect(byOther.body.items.every((e: { actorId: string }) => e.actorId === other.id)).toBe(true);

      const byProject = await get(`projectId=${p2.id}`);
      const projectDb = await ctx.db.read((m) => m.query('SELECT id FROM audit_events WHERE project_id = ? ORDER BY id DESC', [p2.id]));
      expect(ids(byProject)).toEqual(projectDb.map((r: { id: string }) => r.id));
      expect(ids(byProject)).toEqual(expect.arrayContaining(keyRows.map((r) => r.id)));
      expect(byProject.body.items.at(-1)).toMatchObject({ action: 'project.create', projectId: p2.id });

      const updates = await get(`action=provider_key.update&keyId=${key.id}`);
      expect(updates.body.items).toHaveLength(1);
      expect(updates.body.items[0]).toMatchObject({ actorId: admin.id, outcome: 'success' });

      expect((await get(`keyId=${crypto.randomUUID()}`)).body).toEqual({ items: [], nextCursor: null });
    });

    it('filters by time: from is inclusive, to is exclusive', async () => {
      const at = (r: Record<string, unknown>) => Number(r.at);
      const pivot = at(keyRows[3]);
      const iso = new Date(pivot).toISOString();
      const from = await get(`keyId=${key.id}&from=${iso}`);
      const to = await get(`keyId=${key.id}&to=${iso}`);
      expect(ids(from)).toEqual(keyRows.filter((r) => at(r) >= pivot).map((r) => r.id));
      expect(ids(to)).toEqual(keyRows.filter((r) => at(r) < pivot).map((r) => r.id));
      expect(ids(from)).toContain(keyRows[3].id);
      expect(ids(to)).not.toContain(keyRows[3].id);
      expect(ids(from).length + ids(to).length).toBe(keyRows.length);
      const window = await get(`keyId=${key.id}&from=${new Date(at(keyRows[5])).toISOString()}&to=${new Date(at(keyRows[1])).toISOString()}`);
      expect(ids(window)).toEqual(keyRows.filter((r) => at(r) >= at(keyRows[5]) && at(r) < at(keyRows[1])).map((r) => r.id));
      expect(ids(window).length).toBeGreaterThan(0);
    });

    it('pages with a cursor through every match, newest first, without repeats or gaps', async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await get(`keyId=${key.id}&limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        expect(res.status).toBe(200);
        expect(res.body.items.length).toBeLessThanOrEqual(2);
        seen.push(...ids(res));
        cursor = res.body.nextCursor;
        pages++;
      } while (cursor);
      expect(pages).toBe(4);
      expect(seen).toEqual(keyRows.map((r) => r.id));

      const all: string[] = [];
      cursor = null;
      do {
        const res = await get(`limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        all.push(...ids(res));
        cursor = res.body.nextCursor;
      } while (cursor);
      expect(new Set(all).size).toBe(all.length);
      expect(all).toHaveLength(await count('SELECT COUNT(*) AS n FROM audit_events', []));
    });

    it('answers 400 to bad filters, never 500', async () => {
      for (const q of ['action=provider_key.peek', 'outcome=maybe', 'actorId=bob', 'keyId=1', 'projectId=x', 'from=yesterday', 'to=2024-13-45', 'limit=0', 'limit=500', 'cursor=%%%', 'cursor=Zm9v', 'colour=red']) {
        expectError(await get(q), 400, 'validation_failed');
      }
    });
  });

  describe('paste hygiene', () => {
    it('trims surrounding whitespace from a pasted secret, and reveals it trimmed', async () => {
      const core = `sk-ant-api03-${crypto.randomBytes(40).toString('base64url')}`;
      const res = await paste(admin.auth, { provider: 'anthropic', secret: `\r\n\t  ${core}  \n\n` });
      expect(res.status).toBe(201);
      expect(res.body.hint).toBe(`sk-ant-…${core.slice(-4)}`);
      const revealed = await call('post', `/provider-keys/${res.body.id}/reveal`, owner.auth, {});
      expect(revealed.body.secret).toBe(core);
    });

    it.each([
      ['an empty secret', '', 400, 'validation_failed'],
      ['a whitespace-only secret', ' \n\t\r\n ', 400, 'validation_failed'],
      ['a secret with a NUL', `sk-${crypto.randomBytes(12).toString('hex')}\u0000tail`, 400, 'validation_failed'],
      ['a secret over 16 KiB', 'a'.repeat(16 * 1024 + 1), 413, 'payload_too_large'],
      ['a secret of 16 KiB + 1 in multi-byte characters', 'é'.repeat(8 * 1024) + 'x', 413, 'payload_too_large'],
      ['a secret that is not a string', 12345, 400, 'validation_failed'],
    ])('refuses %s, storing nothing', async (_label, secret, status, code) => {
      const name = `hygiene-${crypto.randomBytes(4).toString('hex')}`;
      const res = await paste(admin.auth, { name, secret });
      expectError(res, status, code);
      expect(await count('SELECT COUNT(*) AS n FROM provider_keys WHERE name = ?', [name])).toBe(0);
      if (typeof secret === 'string' && secret.trim()) expect(res.text).not.toContain(secret.trim().slice(0, 20));
    });

    it('accepts exactly 16 KiB, even with surrounding whitespace beyond it', async () => {
      const secret = crypto.randomBytes(12 * 1024).toString('base64');
      expect(Buffer.byteLength(secret)).toBe(16 * 1024);
      const res = await paste(admin.auth, { provider: 'custom', secret: `\n  ${secret}\n` });
      expect(res.status).toBe(201);
      expect((await call('post', `/provider-keys/${res.body.id}/reveal`, owner.auth, {})).body.secret).toBe(secret);
    });

    it.each([
      ['an unknown provider', () => ({ provider: 'acme' }), 'body.provider'],
      ['an owner that does not exist', () => ({ ownerId: crypto.randomUUID() }), 'body.ownerId'],
      ['an auditor as owner', () => ({ ownerId: auditor.id }), 'body.ownerId'],
      ['a project that does not exist', () => ({ projectId: crypto.randomUUID() }), 'body.projectId'],
      ['a malformed owner id', () => ({ ownerId: 'bob' }), 'body.ownerId'],
      ['an expiry in the past', () => ({ expiresAt: '2020-01-01T00:00:00Z' }), 'body.expiresAt'],
      ['an unknown field', () => ({ colour: 'red' }), 'body'],
      ['a missing name', () => ({ name: undefined }), 'body.name'],
    ])('refuses %s with 400 naming the field, storing nothing', async (_label, fields, field) => {
      const secret = uniqueSecret();
      const res = await paste(admin.auth, { secret, ...fields() });
      expectError(res, 400, 'validation_failed');
      expect(JSON.stringify(res.body.error.details)).toContain(field);
      expect(res.text).not.toContain(secret);
      expect(await count("SELECT COUNT(*) AS n FROM provider_keys WHERE status <> 'deleted' AND hint = ?", [`sk-…${secret.slice(-4)}`])).toBe(0);
    });

    it('refuses a disabled owner with 400', async () => {
      const gone = await ctx.user('member');
      await call('patch', `/users/${gone.id}`, admin.auth, { status: 'disabled' }).expect(200);
      const name = `disabled-owner-${crypto.randomBytes(3).toString('hex')}`;
      const res = await paste(admin.auth, { name, ownerId: gone.id, secret: uniqueSecret() });
      expectError(res, 400, 'validation_failed');
      expect(JSON.stringify(res.body.error.details)).toContain('body.ownerId');
      expect(await count('SELECT COUNT(*) AS n FROM provider_keys WHERE name = ?', [name])).toBe(0);
    });

    it('answers 400 to malformed JSON, never 500', async () => {
      const res = await ctx.http().post('/api/v1/provider-keys').set(admin.auth).set('Content-Type', 'application/json').send('{"secret": "sk-abc",');
      expectError(res, 400, 'validation_failed');
      expect(res.text).not.toContain('sk-abc');
    });

    it('refuses pasting a stored secret again with 409 naming the existing key, with or without surrounding whitespace', async () => {
      const first = await newKey();
      for (const again of [first.secret, `\n ${first.secret}\t\n`]) {
        const name = `dup-${crypto.randomBytes(3).toString('hex')}`;
        const res = await paste(admin.auth, { name, secret: again, ownerId: other.id, provider: 'deepseek' });
        expectError(res, 409, 'conflict');
        expect(res.body.error.message).toContain(first.id);
        expect(res.body.error.details).toEqual([{ existingKeyId: first.id }]);
        expect(res.text).not.toContain(first.secret);
        expect(await count('SELECT COUNT(*) AS n FROM provider_keys WHERE name = ?', [name])).toBe(0);
      }
    });

    it('accepts the same secret again once its key is deleted', async () => {
      const first = await newKey();
      await call('delete', `/provider-keys/${first.id}`, admin.auth).expect(204);
      const res = await paste(admin.auth, { secret: first.secret });
      expect(res.status).toBe(201);
      expect(res.body.id).not.toBe(first.id);
      expect((await call('post', `/provider-keys/${res.body.id}/reveal`, owner.auth, {})).body.secret).toBe(first.secret);
    });

    it('lets exactly one of many concurrent identical pastes win; the rest get 409 naming the winner', async () => {
      const secret = uniqueSecret();
      const name = `race-${crypto.randomBytes(3).toString('hex')}`;
      const results = await Promise.all(Array.from({ length: 12 }, (_, i) => paste(admin.auth, { name, secret: i % 2 ? `${secret}\n` : secret })));
      const created = results.filter((r) => r.status === 201);
      const conflicts = results.filter((r) => r.status === 409);
      expect(created).toHaveLength(1);
      expect(conflicts).toHaveLength(11);
      const winner = created[0].body.id;
      for (const c of conflicts) {
        expect(c.body.error.code).toBe('conflict');
        expect(c.body.error.details).toEqual([{ existingKeyId: winner }]);
      }
      expect(await count('SELECT COUNT(*) AS n FROM provider_keys WHERE name = ?', [name])).toBe(1);
      expect(await successRows('provider_key.create', winner)).toBe(1);
      expect(await count("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'provider_key.create' AND detail LIKE ?", [`%${name}%`])).toBe(1);
    });
  });

  describe('secrecy', () => {
    it('never lets a secret, its ciphertext, wrapped data key or fingerprint reach a response or a log line', async () => {
      const secretA = `sk-${crypto.randomBytes(36).toString('base64url')}`;
      const secretB = `sk-${crypto.randomBytes(36).toString('base64url')}`;
      const responses: string[] = [];
      const revealed: string[] = [];
      const snapshots: StoredKeyRow[] = [];
      const seen = (res: Response) => {
        responses.push(JSON.stringify(res.headers) + res.text);
        return res;
      };

      const created = seen(await paste(admin.auth, { name: 'secrecy', secret: `\n${secretA}\n` }));
      const id = created.body.id as string;
      snapshots.push(await storedKey(ctx, id));
      seen(await call('get', `/provider-keys/${id}`, owner.auth));
      seen(await call('get', '/provider-keys?limit=200', admin.auth));
      seen(await paste(admin.auth, { secret: secretA }));
      seen(await paste(admin.auth, { secret: `${secretA}\u0000` }));
      seen(await paste(admin.auth, { secret: secretA.repeat(300) }));
      seen(await call('post', `/provider-keys/${id}/reveal`, other.auth, {}));
      seen(await call('post', `/provider-keys/${id}/reveal`, auditor.auth, {}));
      seen(await call('post', `/provider-keys/${id}/reveal`, admin.auth, {}));
      const r1 = await call('post', `/provider-keys/${id}/reveal`, owner.auth, {});
      expect(r1.body.secret).toBe(secretA);
      revealed.push(JSON.stringify(r1.headers) + JSON.stringify({ ...r1.body, secret: undefined }));
      const newOwner = await ctx.user('member');
      seen(await call('patch', `/provider-keys/${id}`, admin.auth, { ownerId: newOwner.id, reason: 'ticket OPS-2' }));
      snapshots.push(await storedKey(ctx, id));
      seen(await call('put', `/provider-keys/${id}/secret`, admin.auth, { secret: secretB }));
      snapshots.push(await storedKey(ctx, id));
      const r2 = await call('post', `/provider-keys/${id}/reveal`, admin.auth, { reason: 'secrecy check' });
      expect(r2.body.secret).toBe(secretB);
      revealed.push(JSON.stringify(r2.headers) + JSON.stringify({ ...r2.body, secret: undefined }));
      seen(await call('get', `/provider-keys/${id}/audit-events`, admin.auth));
      seen(await call('get', '/audit-events?limit=200', auditor.auth));
      seen(await call('delete', `/provider-keys/${id}`, admin.auth));
      seen(await call('post', `/provider-keys/${id}/reveal`, newOwner.auth, {}));
      pasted.push(secretA, secretB);

      const needles = [secretA, secretB, ...snapshots.flatMap(storedNeedles)];
      expect(needles.length).toBeGreaterThan(40);
      expect(firstLeak(responses.join('\n'), needles)).toBeUndefined();
      expect(firstLeak(revealed.join('\n'), needles)).toBeUndefined();
      expect(firstLeak(ctx.logText(), needles)).toBeUndefined();
      expect(ctx.logText()).toContain(id);
    });

    itSqlite('leaves no copy of a replaced or deleted key’s ciphertext and wrapped data key in the SQLite file or its WAL', async () => {
      const key = await newKey();
      const fileBytes = () => {
        const file = ctx.tdb.url.replace(/^sqlite:/, '');
        return Buffer.concat([fs.readFileSync(file), fs.existsSync(`${file}-wal`) ? fs.readFileSync(`${file}-wal`) : Buffer.alloc(0)]);
      };
      const sealedBytes = (row: StoredKeyRow) => [row.sealed.wrapped_dek, row.sealed.secret_ciphertext].filter((b): b is Buffer => !!b);
      const first = sealedBytes(await storedKey(ctx, key.id));
      expect(first).toHaveLength(2);
      // The control: freshly stored, both are in the file, so the search itself works.
      expect(first.every((b) => fileBytes().includes(b))).toBe(true);

      expect((await call('put', `/provider-keys/${key.id}/secret`, admin.auth, { secret: uniqueSecret() })).status).toBe(200);
      const second = sealedBytes(await storedKey(ctx, key.id));
      expect(first.filter((b) => fileBytes().includes(b))).toEqual([]);
      expect(second.every((b) => fileBytes().includes(b))).toBe(true);

      expect((await call('delete', `/provider-keys/${key.id}`, admin.auth)).status).toBe(204);
      expect([...first, ...second].filter((b) => fileBytes().includes(b))).toEqual([]);
    });

    itSqlite('never writes a plaintext secret into the SQLite database file or its WAL', async () => {
      const key = await newKey({ secret: `sk-${crypto.randomBytes(40).toString('base64url')}` });
      await call('post', `/provider-keys/${key.id}/reveal`, owner.auth, {}).expect(200);
      const file = ctx.tdb.url.replace(/^sqlite:/, '');
      const bytes = Buffer.concat([fs.readFileSync(file), fs.existsSync(`${file}-wal`) ? fs.readFileSync(`${file}-wal`) : Buffer.alloc(0)]);
      expect(bytes.length).toBeGreaterThan(0);
      // The control: the key's id is in the file, so the search itself works.
      expect(bytes.includes(Buffer.from(key.id))).toBe(true);
      expect(pasted.length).toBeGreaterThan(0);
      const found = pasted.filter((s) => bytes.includes(Buffer.from(s, 'utf8')));
      expect(found).toEqual([]);
    });
  });
});
