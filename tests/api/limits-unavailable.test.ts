import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Response } from 'supertest';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey } from '../support/factories';
import { waitFor } from '../support/processes';

/**
 * The rate limits' store (Redis, reached through a TCP relay this test can cut) goes away while the vault runs. A
 * reveal or a key check then fails closed (503, nothing revealed, nothing sent), and like every other refusal it
 * writes its audit row first: outcome `error`, why `rate_limit_unavailable`, who asked and why.
 */
const REDIS = { host: '127.0.0.1', port: 6379 };

describe('reveals and key checks while the rate limits’ store cannot be reached', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let key: CreatedKey;
  let relay: net.Server;
  const sockets = new Set<net.Socket>();

  const rowFor = async (action: string, res: Response): Promise<Record<string, unknown>> => {
    const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT * FROM audit_events WHERE action = ? AND request_id = ?', [action, res.headers['x-request-id']]));
    expect(rows).toHaveLength(1);
    return rows[0];
  };
  const revealCount = async () => Number((await ctx.db.read((m) => m.query('SELECT reveal_count AS n FROM provider_keys WHERE id = ?', [key.id])))[0].n);
  const expectUnavailable = (res: Response) => {
    expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 503, code: 'unavailable' });
    expect(res.body.secret).toBeUndefined();
    expect(res.text).not.toContain(key.secret);
  };

  beforeAll(async () => {
    relay = net.createServer((client) => {
      const upstream = net.connect(REDIS.port, REDIS.host);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => sockets.delete(s));
      }
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    ctx = await createTestContext({ PKV_REDIS_URL: `redis://127.0.0.1:${(relay.address() as AddressInfo).port}` });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: (await createProject(ctx, admin)).id });
    expect(ctx.container.limits.store).toBe('redis');
    // While Redis answers, the owner's reveal goes through.
    const ok = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
    expect(ok.status).toBe(200);

    // Cut: no new connection, and the open one closed. Sign-ins are limited through the same store, so the first
    // failed sign-in answered 503 says the vault has noticed.
    await new Promise<void>((resolve) => {
      relay.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
    await waitFor('the vault to notice that Redis is gone', async () => (await ctx.http().post('/api/v1/auth/login').send({ username: 'nobody', password: 'wrong-password' })).status === 503);
  });

  afterAll(async () => {
    await ctx?.container.limits.close();
    await ctx?.close();
  });

  it('refuses the owner’s reveal with 503 after committing its audit row (error, rate_limit_unavailable), and counts no reveal', async () => {
    const before = await revealCount();
    const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
    expectUnavailable(res);
    const row = await rowFor('provider_key.reveal', res);
    expect(row).toMatchObject({ outcome: 'error', actor_id: owner.id, key_id: key.id });
    expect(JSON.parse(String(row.detail))).toEqual({ why: 'rate_limit_unavailable' });
    expect(await revealCount()).toBe(before);
  });

  it('keeps an admin’s reason in the row of a reveal it refused for the same cause', async () => {
    const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(admin.auth).send({ reason: 'INC-9: limits down' });
    expectUnavailable(res);
    const row = await rowFor('provider_key.reveal', res);
    expect(row).toMatchObject({ outcome: 'error', actor_id: admin.id, key_id: key.id, reason: 'INC-9: limits down' });
    expect(JSON.parse(String(row.detail))).toEqual({ why: 'rate_limit_unavailable' });
  });

  it('refuses a key check with 503 after committing its audit row, and sends nothing', async () => {
    const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/check`).set(owner.auth).send();
    expectUnavailable(res);
    const row = await rowFor('provider_key.check', res);
    expect(row).toMatchObject({ outcome: 'error', actor_id: owner.id, key_id: key.id });
    expect(JSON.parse(String(row.detail))).toEqual({ why: 'rate_limit_unavailable' });
    const checks = await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM key_health_events WHERE key_id = ?', [key.id]));
    expect(Number(checks[0].n)).toBe(0);
  });
});
