import { createTestContext, TestContext } from '../support/test-app';

describe('GET /audit-events/verify', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('seals written rows into a chain that verifies, and names the row changed afterwards', async () => {
    const admin = await ctx.user('admin');
    for (let i = 0; i < 5; i++) await ctx.http().post('/api/v1/projects').set(admin.auth).send({ name: `p${i}` }).expect(201);
    expect(await ctx.container.audit.chain.sealPending()).toBeGreaterThanOrEqual(6);
    const ok = await ctx.http().get('/api/v1/audit-events/verify').set(admin.auth).expect(200);
    expect(ok.body).toMatchObject({ ok: true, unsealed: 0 });
    expect(ok.body.head.seq).toBe(ok.body.checked);
    const [row] = await ctx.db.read((m) => m.query("SELECT id FROM audit_events WHERE action = 'project.create' ORDER BY seq LIMIT 1"));
    await ctx.db.transaction((tx) => tx.query("UPDATE audit_events SET detail = '{\"name\":\"evil\"}' WHERE id = ?", [row.id]));
    const bad = await ctx.http().get('/api/v1/audit-events/verify').set(admin.auth).expect(200);
    expect(bad.body).toMatchObject({ ok: false, firstBadId: row.id });
  });
});
