import { createTestContext, dbKind, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, uniqueSecret } from '../support/factories';
import { bearer, call, isEnvelope, LeakBook, loginAt, Reply } from '../support/resilience-helpers';
import { allServerOutput, killAll, servePkv, ServingPkv, waitFor } from '../support/processes';
import { StandInProvider } from '../support/stand-in-provider';
import { RUN } from '../../src/modules/gateway/scrub';

jest.setTimeout(120_000);

/**
 * Two `pkv serve` processes on one MariaDB database: a virtual key made on one works on both, and whatever ends it
 * (revocation, its user disabled, its key moved) ends it on the other at its very next request. MariaDB only: the
 * embedded SQLite vault is one process.
 */
const describeMysql = dbKind() === 'mysql' ? describe : describe.skip;

describeMysql('the gateway on two instances sharing one MariaDB database', () => {
  let ctx: TestContext;
  let provider: StandInProvider;
  let admin: TestUser;
  let project: { id: string };
  let a: ServingPkv;
  let b: ServingPkv;
  const book = new LeakBook();
  const planted: string[] = [];
  const replies: string[] = [];

  const api = async (s: ServingPkv, method: string, path: string, auth: Record<string, string>, body?: unknown) => {
    const res = await call(s.url, method, `/api/v1${path}`, { headers: auth, body });
    book.seen(res);
    return res;
  };
  const chat = async (s: ServingPkv, virtualKey: string): Promise<Reply> => {
    const res = await call(s.url, 'POST', '/gateway/chat/completions', { headers: bearer(virtualKey), body: { model: 'gpt-test', messages: [] } });
    replies.push(JSON.stringify(res.headers), res.text);
    book.seen(res);
    return res;
  };
  const statusOnBoth = async (virtualKey: string) => [(await chat(a, virtualKey)).status, (await chat(b, virtualKey)).status];

  /** A key owned by `owner`, pointed at the stand-in, and a virtual key made for it on instance A. */
  const setUp = async (owner: TestUser, body: Record<string, unknown> = {}) => {
    const secret = uniqueSecret();
    planted.push(secret);
    book.add(secret);
    provider.validKeys.add(secret);
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, secret, baseUrl: `${provider.url}/v1` });
    const session = await loginAt(a.url, owner.username, owner.password);
    book.add(session);
    const made = await api(a, 'POST', `/provider-keys/${key.id}/virtual-keys`, bearer(session), { name: 'two instances', ...body });
    expect(made.status).toBe(201);
    book.add(made.body.virtualKey);
    return { key, vk: made.body as { id: string; virtualKey: string }, session };
  };

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    ctx = await createTestContext({ PKV_LOG_LEVEL: 'info' });
    admin = await ctx.user('admin');
    book.addUser(admin);
    project = await createProject(ctx, admin);
    [a, b] = await Promise.all([servePkv(ctx.env), servePkv(ctx.env)]);
  });

  afterAll(async () => {
    await killAll();
    await provider?.close();
    await ctx?.close();
  });

  it('honours a virtual key made on A on both, and ends it on B at the next request once A revokes it', async () => {
    const owner = await ctx.user('member');
    book.addUser(owner);
    const { vk, session } = await setUp(owner);
    expect(await statusOnBoth(vk.virtualKey)).toEqual([200, 200]);
    expect((await api(a, 'DELETE', `/virtual-keys/${vk.id}`, bearer(session))).status).toBe(204);
    const refused = await chat(b, vk.virtualKey);
    expect(refused.status).toBe(401);
    expect(isEnvelope(refused.body, 'unauthorized')).toBe(true);
    expect(await statusOnBoth(vk.virtualKey)).toEqual([401, 401]);
  });

  it('ends it on A at the next request when B disables its user, for good: enabling them again on B revives it on neither', async () => {
    const owner = await ctx.user('member');
    book.addUser(owner);
    const { vk } = await setUp(owner);
    expect(await statusOnBoth(vk.virtualKey)).toEqual([200, 200]);
    expect((await api(b, 'PATCH', `/users/${owner.id}`, bearer(admin.token), { status: 'disabled' })).status).toBe(200);
    expect(await statusOnBoth(vk.virtualKey)).toEqual([401, 401]);
    expect((await api(b, 'PATCH', `/users/${owner.id}`, bearer(admin.token), { status: 'active' })).status).toBe(200);
    expect(await statusOnBoth(vk.virtualKey)).toEqual([401, 401]);
  });

  it('ends it on both at once when B moves the key to another owner, and 409 on both while B has the key disabled', async () => {
    const owner = await ctx.user('member');
    const heir = await ctx.user('member');
    book.addUser(owner);
    book.addUser(heir);
    const first = await setUp(owner);
    const second = await setUp(owner);
    expect((await api(b, 'PATCH', `/provider-keys/${second.key.id}`, bearer(admin.token), { status: 'disabled' })).status).toBe(200);
    expect(await statusOnBoth(second.vk.virtualKey)).toEqual([409, 409]);
    expect((await api(b, 'PATCH', `/provider-keys/${first.key.id}`, bearer(admin.token), { ownerId: heir.id, reason: 'ticket OPS-2' })).status).toBe(200);
    expect(await statusOnBoth(first.vk.virtualKey)).toEqual([401, 401]);
  });

  it('holds a daily request budget across both once their calls are flushed (each counts the database plus its own)', async () => {
    const owner = await ctx.user('member');
    book.addUser(owner);
    const { vk } = await setUp(owner, { dailyRequestLimit: 4 });
    expect(await statusOnBoth(vk.virtualKey)).toEqual([200, 200]);
    expect(await statusOnBoth(vk.virtualKey)).toEqual([200, 200]);
    // Each instance alone has forwarded 2 of 4: it refuses the next call once the other's calls are in the database.
    // Both flush about every second; wait until they have (a fixed sleep was too short on a loaded CI machine).
    const stored = async () => Number((await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM gateway_usage WHERE virtual_key_id = ?', [vk.id])))[0].n);
    await waitFor('both instances to flush their calls', async () => (await stored()) === 4);
    const refused = await chat(a, vk.virtualKey);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect((await chat(b, vk.virtualKey)).status).toBe(429);
    expect(await stored()).toBe(4);
  });

  it('leaks no key, virtual key, token or password into either server’s output, an error body or an audit row; no run of a key reached a client', async () => {
    await Promise.all([a.stop(), b.stop()]);
    expect(await book.check(ctx)).toEqual({});
    const seen = replies.join('\n') + allServerOutput();
    for (const secret of planted) {
      const runs: string[] = [];
      for (let i = 0; i + RUN <= secret.length; i++) if (seen.includes(secret.slice(i, i + RUN))) runs.push(secret.slice(i, i + RUN));
      expect(runs).toEqual([]);
    }
  });
});
