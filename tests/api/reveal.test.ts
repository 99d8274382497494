import crypto from 'node:crypto';
import type { Response } from 'supertest';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { setKeyColumns, storedKey } from '../support/crypto-helpers';

type Auth = Record<string, string>;
const UA = 'pkv-tests/1.0 (reveal story)';

describe('POST /provider-keys/:id/reveal', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let auditor: TestUser;
  let project: { id: string };

  const reveal = (id: string, auth: Auth, body: Record<string, unknown> = {}) =>
    ctx.http().post(`/api/v1/provider-keys/${id}/reveal`).set(auth).set('User-Agent', UA).send(body);

  const newKey = (fields: Partial<{ ownerId: string; secret: string; provider: string }> = {}) => createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, ...fields });

  const revealRows = (keyId: string) => auditRows(ctx, { action: 'provider_key.reveal', keyId });

  /** The one audit row a reveal request wrote, found by its request id. */
  const rowFor = async (res: Response) => {
    const requestId = res.headers['x-request-id'];
    expect(requestId).toEqual(expect.any(String));
    const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query("SELECT * FROM audit_events WHERE action = 'provider_key.reveal' AND request_id = ?", [requestId]));
    expect(rows).toHaveLength(1);
    return rows[0];
  };

  /** Who, how, where and which request: every reveal row carries them. */
  const expectAttributed = (row: Record<string, unknown>, res: Response, who: TestUser, via: 'session' | 'api_token' = 'session') => {
    expect(row).toMatchObject({ actor_id: who.id, actor_username: who.username, actor_role: who.role, via, user_agent: UA, request_id: res.headers['x-request-id'] });
    expect(String(row.ip)).toMatch(/127\.0\.0\.1|::1/);
  };

  const expectRefused = (res: Response, status: number, code: string, secret: string) => {
    expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
    expect(res.body.error.requestId).toBe(res.headers['x-request-id']);
    expect(res.body.secret).toBeUndefined();
    expect(res.text).not.toContain(secret);
  };

  const why = (row: Record<string, unknown>) => (row.detail ? JSON.parse(String(row.detail)).why : undefined);

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '1000' });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin);
  });
  afterAll(() => ctx.close());

  describe('allowed', () => {
    it('gives the owner exactly {id, secret, hint, revealedAt} with no-store, counting the reveal and auditing who, how, where and which request', async () => {
      const key = await newKey();
      const res = await reveal(key.id, owner.auth, { reason: 'deploying the billing job' });
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(['hint', 'id', 'revealedAt', 'secret']);
      expect(res.body).toEqual({ id: key.id, secret: key.secret, hint: key.hint, revealedAt: expect.any(String) });
      expect(new Date(res.body.revealedAt).toISOString()).toBe(res.body.revealedAt);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers.etag).toBeUndefined();

      const row = await rowFor(res);
      expectAttributed(row, res, owner);
      expect(row).toMatchObject({ outcome: 'success', key_id: key.id, owner_id: owner.id, project_id: project.id, reason: 'deploying the billing job', api_token_id: null });
      expect(why(row)).toBe('owner');
      expect(JSON.stringify(row)).not.toContain(key.secret);

      const stored = await storedKey(ctx, key.id);
      expect(stored.revealCount).toBe(1);
      expect(stored.lastRevealedAt).toBe(Date.parse(res.body.revealedAt));
      const meta = await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(owner.auth);
      expect(meta.body).toMatchObject({ revealCount: 1, lastRevealedAt: res.body.revealedAt });

      const trail = await ctx.http().get(`/api/v1/provider-keys/${key.id}/audit-events`).set(owner.auth);
      expect(trail.body.items[0]).toMatchObject({ action: 'provider_key.reveal', outcome: 'success', actorId: owner.id, requestId: res.headers['x-request-id'], reason: 'deploying the billing job', userAgent: UA });
    });

    it('keeps a well-formed incoming X-Request-Id and records it on the audit row', async () => {
      const key = await newKey();
      const requestId = `trace-${crypto.randomBytes(8).toString('hex')}`;
      const res = await reveal(key.id, { ...owner.auth, 'X-Request-Id': requestId });
      expect(res.status).toBe(200);
      expect(res.headers['x-request-id']).toBe(requestId);
      expect((await rowFor(res)).request_id).toBe(requestId);
    });

    it('lets an admin reveal another user’s key when giving a reason, recorded on the row', async () => {
      const key = await newKey();
      const res = await reveal(key.id, admin.auth, { reason: 'INC-1234: owner on leave' });
      expect(res.status).toBe(200);
      expect(res.body.secret).toBe(key.secret);
      const row = await rowFor(res);
      expectAttributed(row, res, admin);
      expect(row).toMatchObject({ outcome: 'success', reason: 'INC-1234: owner on leave', owner_id: owner.id });
      expect(why(row)).toBe('admin_with_reason');
    });

    it('lets an admin who owns the key reveal it without a reason', async () => {
      const key = await newKey({ ownerId: admin.id });
      const res = await reveal(key.id, admin.auth);
      expect(res.status).toBe(200);
      expect((await rowFor(res)).outcome).toBe('success');
    });

    it('lets the owner’s API token with provider-keys:reveal reveal, audited as that token', async () => {
      const key = await newKey();
      const token = await createApiToken(ctx, owner, ['provider-keys:reveal']);
      const res = await reveal(key.id, token.auth);
      expect(res.status).toBe(200);
      expect(res.body.secret).toBe(key.secret);
      const row = await rowFor(res);
      expectAttributed(row, res, owner, 'api_token');
      expect(row).toMatchObject({ outcome: 'success', api_token_id: token.id });
    });

    it('lets an admin API token with provider-keys:reveal reveal another user’s key with a reason', async () => {
      const key = await newKey();
      const token = await createApiToken(ctx, admin, ['provider-keys:reveal']);
      const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set('X-API-Key', token.token).set('User-Agent', UA).send({ reason: 'automation' });
      expect(res.status).toBe(200);
      expect(await rowFor(res)).toMatchObject({ outcome: 'success', via: 'api_token', api_token_id: token.id, reason: 'automation' });
    });
  });

  describe('refused, and audited as denied', () => {
    it('answers another member 404, as for a missing key, with a denied row', async () => {
      const key = await newKey();
      const res = await reveal(key.id, other.auth, { reason: 'curious' });
      expectRefused(res, 404, 'not_found', key.secret);
      const missing = await reveal(crypto.randomUUID(), other.auth);
      expect(missing.status).toBe(404);
      expect(missing.body.error.message).toBe(res.body.error.message);
      const row = await rowFor(res);
      expectAttributed(row, res, other);
      expect(row).toMatchObject({ outcome: 'denied', key_id: key.id, reason: 'curious' });
      expect((await storedKey(ctx, key.id)).revealCount).toBe(0);
    });

    it('answers an auditor 403 with a denied row', async () => {
      const key = await newKey();
      const res = await reveal(key.id, auditor.auth, { reason: 'audit sample' });
      expectRefused(res, 403, 'forbidden', key.secret);
      const row = await rowFor(res);
      expectAttributed(row, res, auditor);
      expect(row).toMatchObject({ outcome: 'denied', key_id: key.id, reason: 'audit sample' });
      expect(why(row)).toBe('auditor');
      expect((await storedKey(ctx, key.id)).revealCount).toBe(0);
    });

    it.each([
      ['no reason', {}],
      ['an empty reason', { reason: '' }],
      ['a whitespace reason', { reason: '   ' }],
    ])('answers an admin with %s 400 validation_failed, with a denied row', async (_label, body) => {
      const key = await newKey();
      const res = await reveal(key.id, admin.auth, body);
      expectRefused(res, 400, 'validation_failed', key.secret);
      expect(JSON.stringify(res.body.error.details)).toContain('body.reason');
      const row = await rowFor(res);
      expectAttributed(row, res, admin);
      expect(row).toMatchObject({ outcome: 'denied', key_id: key.id, reason: null });
      expect(why(row)).toBe('reason_required');
      expect((await storedKey(ctx, key.id)).revealCount).toBe(0);
    });

    it('answers a disabled key 409 key_disabled, for the owner and for an admin with a reason, with denied rows', async () => {
      const key = await newKey();
      await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ status: 'disabled' }).expect(200);
      for (const [who, body] of [[owner, {}], [admin, { reason: 'need it' }]] as const) {
        const res = await reveal(key.id, who.auth, body);
        expectRefused(res, 409, 'key_disabled', key.secret);
        const row = await rowFor(res);
        expectAttributed(row, res, who);
        expect(row).toMatchObject({ outcome: 'denied', key_id: key.id });
        expect(why(row)).toBe('key_disabled');
      }
      expect((await storedKey(ctx, key.id)).revealCount).toBe(0);
      await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ status: 'active' }).expect(200);
      expect((await reveal(key.id, owner.auth)).body.secret).toBe(key.secret);
    });

    it('answers an expired key 409 key_expired with a denied row', async () => {
      const key = await newKey();
      await setKeyColumns(ctx, key.id, { expires_at: Date.now() - 60_000 });
      const res = await reveal(key.id, owner.auth);
      expectRefused(res, 409, 'key_expired', key.secret);
      const row = await rowFor(res);
      expectAttributed(row, res, owner);
      expect(row).toMatchObject({ outcome: 'denied', key_id: key.id });
      expect(why(row)).toBe('key_expired');
      expect((await storedKey(ctx, key.id)).revealCount).toBe(0);
    });

    it('answers a deleted key 404 with a denied row', async () => {
      const key = await newKey();
      await ctx.http().delete(`/api/v1/provider-keys/${key.id}`).set(admin.auth).expect(204);
      const res = await reveal(key.id, owner.auth);
      expectRefused(res, 404, 'not_found', key.secret);
      const row = await rowFor(res);
      expectAttributed(row, res, owner);
      expect(row).toMatchObject({ outcome: 'denied', key_id: key.id });
    });

    it('answers a key that never existed 404 with a denied row naming the asked-for id', async () => {
      const id = crypto.randomUUID();
      const res = await reveal(id, owner.auth);
      expect(res.status).toBe(404);
      expect(await rowFor(res)).toMatchObject({ outcome: 'denied', key_id: id, actor_id: owner.id });
    });

    it('answers an API token without provider-keys:reveal 403 with a denied row', async () => {
      const key = await newKey();
      const token = await createApiToken(ctx, owner, ['provider-keys:read']);
      const res = await reveal(key.id, token.auth);
      expectRefused(res, 403, 'forbidden', key.secret);
      const row = await rowFor(res);
      expectAttributed(row, res, owner, 'api_token');
      expect(row).toMatchObject({ outcome: 'denied', api_token_id: token.id });
      expect(why(row)).toBe('missing_scope');
    });

    it('answers an auditor token 403 with a denied row', async () => {
      const key = await newKey();
      const token = await createApiToken(ctx, auditor, ['provider-keys:read', 'audit:read']);
      const res = await reveal(key.id, token.auth, { reason: 'x' });
      expectRefused(res, 403, 'forbidden', key.secret);
      expect(await rowFor(res)).toMatchObject({ outcome: 'denied', via: 'api_token', actor_role: 'auditor' });
    });

    it('answers a member token on another member’s key 404 with a denied row', async () => {
      const key = await newKey();
      const token = await createApiToken(ctx, other, ['provider-keys:reveal']);
      const res = await reveal(key.id, token.auth);
      expectRefused(res, 404, 'not_found', key.secret);
      expect(await rowFor(res)).toMatchObject({ outcome: 'denied', via: 'api_token', actor_id: other.id });
    });

    it('answers malformed requests 400 and without credentials 401, revealing nothing', async () => {
      const key = await newKey();
      expect((await reveal('not-a-uuid', owner.auth)).status).toBe(400);
      expect((await reveal(key.id, owner.auth, { reason: 'x', extra: true })).status).toBe(400);
      expect((await reveal(key.id, owner.auth, { reason: 'x'.repeat(1025) })).status).toBe(400);
      expect((await reveal(key.id, owner.auth, { reason: 42 })).status).toBe(400);
      const anon = await reveal(key.id, {});
      expectRefused(anon, 401, 'unauthorized', key.secret);
      expect((await storedKey(ctx, key.id)).revealCount).toBe(0);
      expect((await revealRows(key.id)).filter((r) => r.outcome === 'success')).toHaveLength(0);
    });
  });

  describe('under load', () => {
    it('counts 100 concurrent reveals by the owner exactly: 100 secrets, 100 success rows, revealCount 100', async () => {
      const key = await newKey();
      const results = await Promise.all(Array.from({ length: 100 }, () => reveal(key.id, owner.auth)));
      expect(results.map((r) => r.status)).toEqual(Array(100).fill(200));
      expect(new Set(results.map((r) => r.body.secret))).toEqual(new Set([key.secret]));
      const rows = await revealRows(key.id);
      expect(rows).toHaveLength(100);
      expect(rows.every((r) => r.outcome === 'success' && r.actor_id === owner.id)).toBe(true);
      expect(new Set(rows.map((r) => r.request_id))).toEqual(new Set(results.map((r) => r.headers['x-request-id'])));
      expect((await storedKey(ctx, key.id)).revealCount).toBe(100);
      const meta = await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(owner.auth);
      expect(meta.body.revealCount).toBe(100);
    });
  });

  describe('when the audit trail cannot be written', () => {
    const trigger = 'pkv_test_block_audit';

    const blockAudit = () =>
      ctx.db.read((m) =>
        m.query(
          ctx.kind === 'sqlite'
            ? `CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'x'); END`
            : `CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_events FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'x'`,
        ),
      );
    const unblockAudit = () => ctx.db.read((m) => m.query(`DROP TRIGGER IF EXISTS ${trigger}`));

    afterEach(unblockAudit);

    it('answers 503 unavailable with no secret in the body, counting nothing, and reveals again once the trail is back', async () => {
      const key = await newKey();
      const auditBefore = (await auditRows(ctx)).length;
      await blockAudit();

      for (const [who, body] of [[owner, {}], [admin, { reason: 'break glass' }]] as const) {
        const res = await reveal(key.id, who.auth, body);
        expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 503, code: 'unavailable' });
        expect(res.body.secret).toBeUndefined();
        expect(res.text).not.toContain(key.secret);
        expect(res.text).not.toMatch(/SIGNAL|RAISE|TRIGGER|SQLSTATE|INSERT/i);
      }
      const stored = await storedKey(ctx, key.id);
      expect(stored.revealCount).toBe(0);
      expect(stored.lastRevealedAt).toBeNull();
      expect((await auditRows(ctx)).length).toBe(auditBefore);
      expect(ctx.logText()).not.toContain(key.secret);

      await unblockAudit();
      const res = await reveal(key.id, owner.auth);
      expect(res.status).toBe(200);
      expect(res.body.secret).toBe(key.secret);
      expect(await revealRows(key.id)).toHaveLength(1);
    });
  });

  describe('a token without the reveal scope and its user’s allowance (the default 30 a minute)', () => {
    let own: TestContext;
    let key: CreatedKey;
    let holder: TestUser;

    beforeAll(async () => {
      own = await createTestContext();
      const a = await own.user('admin');
      holder = await own.user('member');
      const p = await createProject(own, a);
      key = await createKey(own, a, { ownerId: holder.id, projectId: p.id, secret: uniqueSecret() });
    });
    afterAll(() => own.close());

    const ownReveal = (auth: Auth) => own.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(auth).set('User-Agent', UA).send({});

    it('counts 30 refused reveals through a scope-less token apart: the token is then limited, the user’s own session still reveals', async () => {
      expect(own.config.revealRateLimit).toBe(30);
      const readOnly = await createApiToken(own, holder, ['provider-keys:read']);
      for (let i = 0; i < 30; i++) {
        const res = await ownReveal(readOnly.auth);
        expect({ i, status: res.status, code: res.body?.error?.code }).toEqual({ i, status: 403, code: 'forbidden' });
      }
      const limitedToken = await ownReveal(readOnly.auth);
      expect({ status: limitedToken.status, code: limitedToken.body?.error?.code }).toEqual({ status: 429, code: 'rate_limited' });

      const res = await ownReveal(holder.auth);
      expect(res.status).toBe(200);
      expect(res.body.secret).toBe(key.secret);

      const rows = await auditRows(own, { action: 'provider_key.reveal', keyId: key.id });
      expect(rows.map((r) => [r.outcome, r.via])).toEqual([['success', 'session'], ['rate_limited', 'api_token'], ...Array.from({ length: 30 }, () => ['denied', 'api_token'])]);
      expect(rows.slice(2).every((r) => why(r) === 'missing_scope' && r.api_token_id === readOnly.id)).toBe(true);
    });
  });

  describe('rate limit', () => {
    let limited: TestContext;
    let lAdmin: TestUser;
    let lOwner: TestUser;
    let lOther: TestUser;
    let key: CreatedKey;

    beforeAll(async () => {
      limited = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '3' });
      lAdmin = await limited.user('admin');
      lOwner = await limited.user('member');
      lOther = await limited.user('member');
      const p = await createProject(limited, lAdmin);
      key = await createKey(limited, lAdmin, { ownerId: lOwner.id, projectId: p.id, secret: uniqueSecret() });
    });
    afterAll(() => limited.close());

    const lReveal = (auth: Auth, body: Record<string, unknown> = {}) => limited.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(auth).set('User-Agent', UA).send(body);

    it('answers the reveal past the limit 429 with Retry-After and a rate_limited row', async () => {
      for (let i = 0; i < 3; i++) expect((await lReveal(lOwner.auth)).status).toBe(200);
      const res = await lReveal(lOwner.auth, { reason: 'one more' });
      expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 429, code: 'rate_limited' });
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(res.text).not.toContain(key.secret);

      const rows = await auditRows(limited, { action: 'provider_key.reveal', keyId: key.id });
      expect(rows.map((r) => r.outcome)).toEqual(['rate_limited', 'success', 'success', 'success']);
      const row = rows[0];
      expect(row).toMatchObject({ actor_id: lOwner.id, actor_username: lOwner.username, actor_role: 'member', via: 'session', user_agent: UA, request_id: res.headers['x-request-id'], reason: 'one more' });
      expect(String(row.ip)).toMatch(/127\.0\.0\.1|::1/);
      expect((await storedKey(limited, key.id)).revealCount).toBe(3);
    });

    it('limits per user: another user is not slowed by the owner’s limit, and their refusals count against their own', async () => {
      expect((await lReveal(lAdmin.auth, { reason: 'ops' })).status).toBe(200);
      for (let i = 0; i < 3; i++) expect((await lReveal(lOther.auth)).status).toBe(404);
      const res = await lReveal(lOther.auth);
      expect(res.status).toBe(429);
      const rows = await auditRows(limited, { action: 'provider_key.reveal', keyId: key.id });
      expect(rows[0]).toMatchObject({ outcome: 'rate_limited', actor_id: lOther.id, request_id: res.headers['x-request-id'] });
      expect(rows.filter((r) => r.actor_id === lOther.id).map((r) => r.outcome)).toEqual(['rate_limited', 'denied', 'denied', 'denied']);
    });
  });
});
