import { createTestContext, TestContext } from '../support/test-app';
import { auditRows, createKey, createProject } from '../support/factories';

describe('a vault on a fresh database', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('lets an admin paste a key that only its owner and admins can reveal, auditing each reveal', async () => {
    const admin = await ctx.user('admin');
    const owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
    const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
    expect(res.status).toBe(200);
    expect(res.body.secret).toBe(key.secret);
    expect(res.headers['cache-control']).toBe('no-store');
    const rows = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
    expect(rows).toHaveLength(1);
    expect(rows[0].outcome).toBe('success');
    expect(ctx.logText()).not.toContain(key.secret);
  });
});
