import crypto from 'node:crypto';
import { createTestContext, openInstance, TestContext, TestUser, type Instance } from '../support/test-app';
import { createKey, createProject, createApiToken, CreatedKey, uniqueSecret } from '../support/factories';
import { listen, rawCall, Reply } from '../support/resilience-helpers';
import { StandInProvider } from '../support/stand-in-provider';
import { sql } from '../support/audit-helpers';
import type { CaptureTransport } from '../../src/logger';
import { newApiToken, newVirtualKey } from '../../src/crypto/tokens';
import { AuditEventEntity } from '../../src/modules/audit/audit-event.entity';

jest.setTimeout(90_000);

/**
 * A database writer (SQL access, no master key) against the credential rows: planted rows and rows changed in place
 * are refused by the gateway and by token authentication; rows from before row MACs are sealed once at start-up when
 * the audit trail backs them, and that is recorded once however many processes start together.
 */
const events = (capture: CaptureTransport, event: string) => capture.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === event);
const hex = () => crypto.randomBytes(32).toString('hex');
const uuid = () => crypto.randomUUID();

describe('credential rows against a database writer', () => {
  let ctx: TestContext;
  let vault: { url: string; close(): Promise<void> };
  let provider: StandInProvider;
  let admin: TestUser;
  let owner: TestUser;
  let project: { id: string };

  const plantKey = async (): Promise<CreatedKey> => {
    const secret = uniqueSecret('sk-');
    provider.validKeys.add(secret);
    ctx.secrets.add('provider secret', secret);
    return createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, provider: 'openai', secret, baseUrl: `${provider.url}/v1` });
  };
  const virtualKey = async (keyId: string, body: Record<string, unknown> = {}): Promise<{ id: string; virtualKey: string }> => {
    const res = await ctx.http().post(`/api/v1/provider-keys/${keyId}/virtual-keys`).set(owner.auth).send({ name: 'vk', ...body });
    if (res.status !== 201) throw new Error(`virtual key: ${res.status} ${JSON.stringify(res.body)}`);
    ctx.secrets.add('virtual key', res.body.virtualKey);
    return res.body;
  };
  const chat = (vk: string, model = 'gpt-test'): Promise<Reply> =>
    rawCall(vault.url, 'POST', '/gateway/v1/chat/completions', {
      headers: { Authorization: `Bearer ${vk}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });
  const me = (token: string) => ctx.http().get('/api/v1/auth/me').set({ Authorization: `Bearer ${token}` });
  const vkRow = async (id: string) => (await sql(ctx, 'SELECT * FROM virtual_keys WHERE id = ?', [id]))[0] as Record<string, unknown>;
  const tokenRow = async (id: string) => (await sql(ctx, 'SELECT * FROM api_tokens WHERE id = ?', [id]))[0] as Record<string, unknown>;

  /** A refusal the provider never saw, logged under `event` naming the row and never its secret. */
  const expectForged = async (call: () => Promise<{ status: number }>, event: string, field: string, id: string, secret: string) => {
    const seen = provider.seen.length;
    const before = events(ctx.capture, event).length;
    expect((await call()).status).toBe(401);
    expect(provider.seen.length).toBe(seen);
    const logged = events(ctx.capture, event).slice(before);
    expect(logged.length).toBeGreaterThanOrEqual(1);
    expect(logged[0]).toMatchObject({ level: 'warn', [field]: id });
    expect(ctx.logText()).not.toContain(secret);
  };

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    ctx = await createTestContext();
    vault = await listen(ctx.handler);
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    project = await createProject(ctx, admin);
  });

  afterAll(async () => {
    await vault?.close();
    await provider?.close();
    await ctx?.close();
  });

  describe('virtual keys at the gateway', () => {
    it('refuses a planted row (the hash of a secret the writer chose, every field copied from a genuine row), whatever MAC it carries', async () => {
      const key = await plantKey();
      const genuine = await virtualKey(key.id);
      expect((await chat(genuine.virtualKey)).status).toBe(200);
      const model = await vkRow(genuine.id);
      for (const rowMac of [null, model.row_mac, hex()]) {
        const chosen = newVirtualKey();
        ctx.secrets.add('virtual key', chosen.token);
        const id = uuid();
        await sql(
          ctx,
          'INSERT INTO virtual_keys (id, key_id, user_id, name, prefix, token_hash, models, daily_request_limit, daily_token_limit, bound_owner_id, bound_project_id, bound_upstream, created_at, expires_at, revoked_at, request_count, row_mac) ' +
            'VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, ?, ?, NULL, 0, ?)',
          [id, key.id, owner.id, 'planted', chosen.prefix, chosen.hash, model.bound_owner_id, model.bound_project_id, model.bound_upstream, Date.now(), Date.now() + 86_400_000, rowMac],
        );
        await expectForged(() => chat(chosen.token), 'gateway.virtual_key_forged', 'virtualKeyId', id, chosen.token);
        expect(Number((await sql(ctx, 'SELECT COUNT(*) AS n FROM gateway_usage WHERE virtual_key_id = ?', [id]))[0].n)).toBe(0);
      }
      expect((await chat(genuine.virtualKey)).status).toBe(200);
    });

    it.each<[string, (vk: { id: string }, other: CreatedKey) => [string, unknown[]]]>([
      ['provider key id (another key of the same owner, project and upstream)', (vk, other) => ['UPDATE virtual_keys SET key_id = ? WHERE id = ?', [other.id, vk.id]]],
      ['daily request budget', (vk) => ['UPDATE virtual_keys SET daily_request_limit = 1000000 WHERE id = ?', [vk.id]]],
      ['daily token budget (cleared)', (vk) => ['UPDATE virtual_keys SET daily_token_limit = NULL WHERE id = ?', [vk.id]]],
      ['models allowlist (cleared: any model)', (vk) => ['UPDATE virtual_keys SET models = NULL WHERE id = ?', [vk.id]]],
      ['expiry (a year later)', (vk) => ['UPDATE virtual_keys SET expires_at = expires_at + 31536000000 WHERE id = ?', [vk.id]]],
      ['user', (vk) => ['UPDATE virtual_keys SET user_id = ? WHERE id = ?', [admin.id, vk.id]]],
    ])('refuses an existing virtual key whose %s was changed by SQL', async (_what, change) => {
      const key = await plantKey();
      const otherKey = await plantKey();
      const vk = await virtualKey(key.id, { models: ['gpt-test'], dailyRequestLimit: 50, dailyTokenLimit: 5000, expiresInDays: 1 });
      expect((await chat(vk.virtualKey)).status).toBe(200);
      const [statement, params] = change(vk, otherKey);
      await sql(ctx, statement, params);
      await expectForged(() => chat(vk.virtualKey), 'gateway.virtual_key_forged', 'virtualKeyId', vk.id, vk.virtualKey);
    });

    it('refuses an existing virtual key whose secret hash was replaced by SQL with that of a secret the writer chose', async () => {
      const key = await plantKey();
      const vk = await virtualKey(key.id);
      const chosen = newVirtualKey();
      ctx.secrets.add('virtual key', chosen.token);
      await sql(ctx, 'UPDATE virtual_keys SET token_hash = ?, prefix = ? WHERE id = ?', [chosen.hash, chosen.prefix, vk.id]);
      await expectForged(() => chat(chosen.token), 'gateway.virtual_key_forged', 'virtualKeyId', vk.id, chosen.token);
      expect((await chat(vk.virtualKey)).status).toBe(401);
    });

    it('refuses a revoked virtual key whose revocation was cleared by SQL, and revoking seals the revocation', async () => {
      const key = await plantKey();
      const vk = await virtualKey(key.id);
      const sealedBefore = (await vkRow(vk.id)).row_mac;
      expect((await ctx.http().delete(`/api/v1/virtual-keys/${vk.id}`).set(owner.auth)).status).toBe(204);
      const revoked = await vkRow(vk.id);
      expect(revoked.revoked_at).not.toBeNull();
      expect(revoked.row_mac).toMatch(/^[0-9a-f]{64}$/);
      expect(revoked.row_mac).not.toBe(sealedBefore);
      await sql(ctx, 'UPDATE virtual_keys SET revoked_at = NULL WHERE id = ?', [vk.id]);
      await expectForged(() => chat(vk.virtualKey), 'gateway.virtual_key_forged', 'virtualKeyId', vk.id, vk.virtualKey);
    });

    it('ends the virtual keys of a provider key that moves (revoked, resealed, still refused when uncleared)', async () => {
      const key = await plantKey();
      const vk = await virtualKey(key.id);
      const other = await createProject(ctx, admin);
      expect((await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ projectId: other.id })).status).toBe(200);
      const row = await vkRow(vk.id);
      expect(row.revoked_at).not.toBeNull();
      expect((await chat(vk.virtualKey)).status).toBe(401);
      await sql(ctx, 'UPDATE virtual_keys SET revoked_at = NULL, bound_project_id = ? WHERE id = ?', [other.id, vk.id]);
      await expectForged(() => chat(vk.virtualKey), 'gateway.virtual_key_forged', 'virtualKeyId', vk.id, vk.virtualKey);
    });
  });

  describe('API tokens', () => {
    it('refuses a planted token row (the hash of a token the writer chose), whatever MAC it carries', async () => {
      const genuine = await createApiToken(ctx, admin, ['users:read']);
      const model = await tokenRow(genuine.id);
      for (const rowMac of [null, model.row_mac, hex()]) {
        const chosen = newApiToken();
        ctx.secrets.add('api token', chosen.token);
        const id = uuid();
        await sql(
          ctx,
          'INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, scopes, created_by, created_at, expires_at, usage_count, revoked_at, row_mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?)',
          [id, admin.id, 'planted', chosen.prefix, chosen.hash, 'users:read users:write audit:read provider-keys:reveal', admin.id, Date.now(), Date.now() + 86_400_000, rowMac],
        );
        await expectForged(() => me(chosen.token), 'api_token.forged', 'tokenId', id, chosen.token);
      }
      expect((await me(genuine.token)).status).toBe(200);
    });

    it.each<[string, (id: string) => [string, unknown[]]]>([
      ['scopes (widened)', (id) => ["UPDATE api_tokens SET scopes = 'users:read users:write' WHERE id = ?", [id]]],
      ['expiry (a year later)', (id) => ['UPDATE api_tokens SET expires_at = expires_at + 31536000000 WHERE id = ?', [id]]],
      ['user', (id) => ['UPDATE api_tokens SET user_id = ? WHERE id = ?', [owner.id, id]]],
    ])('refuses an existing token whose %s was changed by SQL; renewing it is refused, revoking it still works', async (_what, change) => {
      const t = await createApiToken(ctx, admin, ['users:read']);
      expect((await me(t.token)).status).toBe(200);
      await sql(ctx, ...change(t.id));
      await ctx.container.apiTokens.usage.flush();
      await expectForged(() => me(t.token), 'api_token.forged', 'tokenId', t.id, t.token);
      const renew = await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth).send({ expiresInDays: 30 });
      expect(renew.status).toBe(409);
      expect(renew.body.error.message).toMatch(/integrity/);
      expect((await ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(admin.auth)).status).toBe(204);
      expect((await tokenRow(t.id)).revoked_at).not.toBeNull();
      expect((await me(t.token)).status).toBe(401);
    });

    it('refuses a revoked token whose revocation was cleared by SQL (revoked by hand, or by disabling its user)', async () => {
      const u = await ctx.user('member');
      const byHand = await createApiToken(ctx, admin, ['users:read']);
      const byDisable = await createApiToken(ctx, u, ['provider-keys:read']);
      expect((await ctx.http().delete(`/api/v1/api-tokens/${byHand.id}`).set(admin.auth)).status).toBe(204);
      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ status: 'active' })).status).toBe(200);
      for (const t of [byHand, byDisable]) {
        await sql(ctx, 'UPDATE api_tokens SET revoked_at = NULL WHERE id = ?', [t.id]);
        await expectForged(() => me(t.token), 'api_token.forged', 'tokenId', t.id, t.token);
      }
    });

    it('keeps a token working through the changes the vault makes (rename, renew, regenerate): each is sealed again', async () => {
      const t = await createApiToken(ctx, admin, ['users:read']);
      expect((await ctx.http().patch(`/api/v1/api-tokens/${t.id}`).set(admin.auth).send({ name: 'renamed' })).status).toBe(200);
      expect((await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(admin.auth).send({ expiresInDays: 10 })).status).toBe(200);
      expect((await me(t.token)).status).toBe(200);
      const again = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(admin.auth).send();
      expect(again.status).toBe(200);
      ctx.secrets.add('api token', again.body.token);
      expect((await me(again.body.token)).status).toBe(200);
      expect((await me(t.token)).status).toBe(401);
    });
  });
});

describe('credential rows from before row MACs (the one-time seal at start-up)', () => {
  let ctx: TestContext;
  let vault: { url: string; close(): Promise<void> };
  let provider: StandInProvider;
  let admin: TestUser;
  let owner: TestUser;
  const instances: Instance[] = [];

  const sealedEvents = async () => (await ctx.db.read((m) => m.getRepository(AuditEventEntity).findBy({ action: 'vault.credentials_sealed' }))).filter((e) => ctx.container.audit.chain.holds(e));
  const me = (token: string) => ctx.http().get('/api/v1/auth/me').set({ Authorization: `Bearer ${token}` });
  const chat = (vk: string) =>
    rawCall(vault.url, 'POST', '/gateway/v1/chat/completions', {
      headers: { Authorization: `Bearer ${vk}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }),
    });

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    ctx = await createTestContext();
    vault = await listen(ctx.handler);
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
  });

  afterAll(async () => {
    for (const i of instances) await i.close();
    await vault?.close();
    await provider?.close();
    await ctx?.close();
  });

  it('is recorded once on a fresh database, with nothing to seal', async () => {
    const [only, ...more] = await sealedEvents();
    expect(more).toHaveLength(0);
    expect(JSON.parse(only.detail!)).toEqual({ virtualKeys: { sealed: 0, refused: 0, refusedIds: [] }, apiTokens: { sealed: 0, refused: 0, refusedIds: [] } });
  });

  it('seals the rows the trail backs, refuses planted or widened ones, once across two processes; a row without a MAC after that is refused for good', async () => {
    const project = await createProject(ctx, admin);
    const secret = uniqueSecret('sk-');
    provider.validKeys.add(secret);
    ctx.secrets.add('provider secret', secret);
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, provider: 'openai', secret, baseUrl: `${provider.url}/v1` });
    const vkRes = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).send({ name: 'legacy', dailyRequestLimit: 100 });
    expect(vkRes.status).toBe(201);
    const legacyVk: { id: string; virtualKey: string } = vkRes.body;
    ctx.secrets.add('virtual key', legacyVk.virtualKey);
    const legacy = await createApiToken(ctx, admin, ['users:read']);
    const renewed = await createApiToken(ctx, admin, ['users:read']);
    expect((await ctx.http().post(`/api/v1/api-tokens/${renewed.id}/renew`).set(admin.auth).send({ expiresInDays: 200 })).status).toBe(200);
    const widened = await createApiToken(ctx, admin, ['users:read']);
    const budgetRaised = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).send({ name: 'raised', dailyRequestLimit: 1 });
    ctx.secrets.add('virtual key', budgetRaised.body.virtualKey);

    // The database as an earlier version left it: rows without MACs and no vault.credentials_sealed row (that row,
    // unsealed so far, is removed here to stand for "never written"; once sealed into the chain, removing it fails verify).
    const [flag] = await sealedEvents();
    expect(flag.seq).toBeNull();
    await sql(ctx, 'DELETE FROM audit_events WHERE id = ?', [flag.id]);
    await sql(ctx, 'UPDATE api_tokens SET row_mac = NULL');
    await sql(ctx, 'UPDATE virtual_keys SET row_mac = NULL');
    // What a writer did before the upgrade: a planted token and virtual key, a widened token, a raised budget.
    const plantedToken = newApiToken();
    const plantedTokenId = uuid();
    ctx.secrets.add('api token', plantedToken.token);
    await sql(ctx, 'INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, scopes, created_by, created_at, expires_at, usage_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)', [
      plantedTokenId, admin.id, 'planted', plantedToken.prefix, plantedToken.hash, 'users:read users:write', admin.id, Date.now(), Date.now() + 86_400_000,
    ]);
    const plantedVk = newVirtualKey();
    const plantedVkId = uuid();
    ctx.secrets.add('virtual key', plantedVk.token);
    const model = (await sql(ctx, 'SELECT * FROM virtual_keys WHERE id = ?', [legacyVk.id]))[0];
    await sql(
      ctx,
      'INSERT INTO virtual_keys (id, key_id, user_id, name, prefix, token_hash, bound_owner_id, bound_project_id, bound_upstream, created_at, expires_at, request_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)',
      [plantedVkId, key.id, owner.id, 'planted', plantedVk.prefix, plantedVk.hash, model.bound_owner_id, model.bound_project_id, model.bound_upstream, Date.now(), Date.now() + 86_400_000],
    );
    await sql(ctx, "UPDATE api_tokens SET scopes = 'users:read users:write' WHERE id = ?", [widened.id]);
    await sql(ctx, 'UPDATE virtual_keys SET daily_request_limit = 100000 WHERE id = ?', [budgetRaised.body.id]);

    // The upgrade: two processes start on the database at once.
    instances.push(...(await Promise.all([openInstance(ctx.env), openInstance(ctx.env)])));
    const [event, ...again] = await sealedEvents();
    expect(again).toHaveLength(0);
    const detail = JSON.parse(event.detail!);
    const totalTokens = Number((await sql(ctx, 'SELECT COUNT(*) AS n FROM api_tokens'))[0].n);
    expect(detail.apiTokens).toMatchObject({ sealed: totalTokens - 2, refused: 2 });
    expect(detail.virtualKeys).toMatchObject({ sealed: 1, refused: 2 });
    expect(detail.apiTokens.refusedIds.map((r: { id: string }) => r.id).sort()).toEqual([plantedTokenId, widened.id].sort());
    expect(detail.virtualKeys.refusedIds.map((r: { id: string }) => r.id).sort()).toEqual([plantedVkId, budgetRaised.body.id].sort());
    const warned = instances.flatMap((i) => events(i.capture, 'vault.credentials_refused'));
    expect(warned).toHaveLength(1);

    // The rows the trail backs work as before; the others are refused.
    for (const t of [legacy, renewed]) expect((await me(t.token)).status).toBe(200);
    expect((await chat(legacyVk.virtualKey)).status).toBe(200);
    for (const t of [plantedToken.token, widened.token]) expect((await me(t)).status).toBe(401);
    for (const v of [plantedVk.token, budgetRaised.body.virtualKey]) expect((await chat(v)).status).toBe(401);

    // After the seal: a row without a MAC is refused, and a later start does not seal it.
    await sql(ctx, 'UPDATE api_tokens SET row_mac = NULL WHERE id = ?', [legacy.id]);
    await sql(ctx, 'UPDATE virtual_keys SET row_mac = NULL WHERE id = ?', [legacyVk.id]);
    instances.push(await openInstance(ctx.env));
    expect(await sealedEvents()).toHaveLength(1);
    expect((await me(legacy.token)).status).toBe(401);
    expect((await chat(legacyVk.virtualKey)).status).toBe(401);
    expect((await sql(ctx, 'SELECT row_mac FROM api_tokens WHERE id = ?', [legacy.id]))[0].row_mac).toBeNull();
  });
});
