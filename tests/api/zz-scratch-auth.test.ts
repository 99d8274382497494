import { createTestContext, TestContext } from '../support/test-app';
import { createProject } from '../support/factories';

describe('scratch', () => {
  let ctx: TestContext;
  beforeAll(async () => { ctx = await createTestContext(); });
  afterAll(() => ctx.close());
  it('probes', async () => {
    const admin = await ctx.user('admin');
    const p = await createProject(ctx, admin);
    const out: unknown[] = [];
    const show = (r: any) => out.push([r.req?.method, r.req?.path, r.status, r.headers['cache-control'], r.headers['etag'], r.headers['x-request-id'], JSON.stringify(r.body).slice(0, 200)]);
    show(await ctx.http().get(`/api/v1/projects/${p.id}?x=1`).set(admin.auth));
    show(await ctx.http().get(`/api/v1/projects/not-a-uuid`).set(admin.auth));
    show(await ctx.http().get(`/api/v1/projects?limit=1&secretq=abc`).set(admin.auth));
    show(await ctx.http().get(`/api/v1/projects/0190d4a0-0000-7000-8000-000000000000`).set(admin.auth));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json').send('{bad'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).send({ name: 'x'.repeat(70000) }));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'text/plain').send('hello'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('garbage'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json').set('Content-Encoding', 'br').send('garbage'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json; charset=latin1').send('{}'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json; charset=utf-16').send('{}'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json').send('"str"'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json').send('null'));
    show(await ctx.http().post(`/api/v1/projects`).set(admin.auth).set('Content-Type', 'application/json').send('{"__proto__":{"x":1},"name":"pp"}'));
    show(await ctx.http().get(`/api/v1/projects/%E0%A4%A`).set(admin.auth));
    show(await ctx.http().get(`/api/v1/nope?token=abc`).set(admin.auth));
    show(await ctx.http().get(`/nope`));
    show(await ctx.http().get(`/healthz`));
    show(await ctx.http().get(`/readyz`));
    show(await ctx.http().get(`/api/v1/healthz`));
    show(await ctx.http().get(`/api/v1/users`));
    show(await ctx.http().get(`/api/v1/users`).set('Authorization', 'Basic abc'));
    show(await ctx.http().post(`/api/v1/auth/logout`).set(admin.auth));
    console.log(JSON.stringify(out, null, 1));
    console.log(ctx.capture.lines.filter((l) => l.includes('http.access') || l.includes('error')).join('\n'));
  });
});
