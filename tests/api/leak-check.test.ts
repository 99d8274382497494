import { createTestContext, TestContext } from '../support/test-app';
import { createKey, createProject } from '../support/factories';
import { cliActor } from '../../src/modules/auth/actor';
import { listen } from '../support/resilience-helpers';
import { StandInProvider } from '../support/stand-in-provider';

/**
 * The suite-wide leak check (tests/support/leak-check.ts) runs when every test file's context closes. These tests
 * prove it can fail: each plants one kind of secret where none may be, and expects close() to name it.
 */
describe('the suite-wide leak check', () => {
  const planted = async (plant: (ctx: TestContext) => Promise<void>): Promise<string> => {
    const ctx = await createTestContext();
    await plant(ctx);
    return ctx.close().then(
      () => 'no leak reported',
      (err: Error) => err.message,
    );
  };

  it('passes a context where nothing leaked', async () => {
    expect(
      await planted(async (ctx) => {
        const admin = await ctx.user('admin');
        const owner = await ctx.user('member');
        const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: (await createProject(ctx, admin)).id });
        expect((await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({})).body.secret).toBe(key.secret);
      }),
    ).toBe('no leak reported');
  });

  it('finds a stored provider secret (never revealed, learned by opening the stored key) in a log line', async () => {
    const message = await planted(async (ctx) => {
      const admin = await ctx.user('admin');
      const key = await createKey(ctx, admin, { ownerId: (await ctx.user('member')).id, projectId: (await createProject(ctx, admin)).id });
      ctx.container.logger.info('careless', { note: `value=${key.secret}` });
    });
    expect(message).toMatch(/^secrets leaked in this test file: .*"log lines":\["provider secret: /);
  });

  it('finds a session token’s signature and a password in an audit row', async () => {
    const message = await planted(async (ctx) => {
      const admin = await ctx.user('admin');
      await ctx.db.transaction((tx) => ctx.container.audit.record(tx, cliActor(null), 'project.create', 'success', {}, { detail: { t: admin.token, p: admin.password } }));
    });
    expect(message).toMatch(/"audit rows":\[.*session token: /);
    expect(message).toMatch(/"audit rows":\[.*password: /);
  });

  it('finds an API token in an error body', async () => {
    const message = await planted(async (ctx) => {
      const admin = await ctx.user('admin');
      const issued = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 't', scopes: ['audit:read'] });
      expect(issued.status).toBe(201);
      // A conflict names the project it collides with: a project named after the token puts it in an error body.
      await createProject(ctx, admin, issued.body.token);
      expect((await ctx.http().post('/api/v1/projects').set(admin.auth).send({ name: issued.body.token })).status).toBe(409);
    });
    expect(message).toMatch(/"error bodies":\["api token: /);
  });

  it('finds a virtual key in a successful gateway answer (every gateway answer is searched, not only errors)', async () => {
    const provider = await new StandInProvider().start();
    try {
      const message = await planted(async (ctx) => {
        const admin = await ctx.user('admin');
        const key = await createKey(ctx, admin, { ownerId: admin.id, projectId: (await createProject(ctx, admin)).id, baseUrl: `${provider.url}/v1` });
        provider.validKeys.add(key.secret);
        const made = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(admin.auth).send({ name: 'vk' });
        const vault = await listen(ctx.handler);
        try {
          // The stand-in echoes request headers: a client that copies its virtual key into another header gets it back.
          const res = await fetch(`${vault.url}/gateway/echo`, { headers: { Authorization: `Bearer ${made.body.virtualKey}`, 'x-note': made.body.virtualKey } });
          expect(res.status).toBe(200);
          await res.text();
        } finally {
          await vault.close();
        }
      });
      expect(message).toMatch(/"gateway answers":\["virtual key: /);
    } finally {
      await provider.close();
    }
  });
});
