import Redis from 'ioredis';
import { createTestContext, dbKind, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey } from '../support/factories';
import { bearer, call, countWhere, isEnvelope, LeakBook, loginAt, randomIp, Reply } from '../support/resilience-helpers';
import { killAll, servePkv, ServingPkv, waitFor } from '../support/processes';

jest.setTimeout(180_000);

const REDIS_URL = 'redis://127.0.0.1:6379';
const REVEAL_LIMIT = 6;

/**
 * Three `pkv serve` processes on one MariaDB database serve the same users: sessions, API tokens, logout,
 * revocation and the per-user reveal limit are shared (through the database, then through Redis), and the audit
 * chain written by all of them verifies. MariaDB only: the embedded SQLite vault is one process.
 */
const describeMysql = dbKind() === 'mysql' ? describe : describe.skip;

describeMysql('several instances on one MariaDB database', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let auditor: TestUser;
  let project: { id: string };
  let servers: ServingPkv[] = [];
  const book = new LeakBook();
  const track = (res: Reply) => {
    book.seen(res);
    for (const k of ['token', 'accessToken']) if (typeof res.body?.[k] === 'string') book.add(res.body[k]);
    return res;
  };
  const at = async (s: ServingPkv, method: string, path: string, headers: Record<string, string>, body?: unknown) => track(await call(s.url, method, `/api/v1${path}`, { headers, body }));
  const statusOnAll = async (path: string, headers: Record<string, string>) => Promise.all(servers.map(async (s) => (await at(s, 'GET', path, headers)).status));
  const user = async (role: TestUser['role']) => {
    const u = await ctx.user(role);
    book.addUser(u);
    return u;
  };
  const keyFor = async (owner: TestUser): Promise<CreatedKey> => {
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
    book.add(key.secret);
    return key;
  };
  const startThree = async (extra: Record<string, string> = {}) => {
    servers = await Promise.all([0, 1, 2].map(() => servePkv({ ...ctx.env, ...extra })));
  };

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: String(REVEAL_LIMIT), PKV_LOG_LEVEL: 'info' });
    admin = await user('admin');
    auditor = await user('auditor');
    project = await createProject(ctx, admin);
    await startThree();
  });

  afterAll(async () => {
    await killAll();
    await ctx?.close();
  });

  it('accepts a session obtained on one instance on the others, and a logout on one ends it on all at once', async () => {
    const [a, b, c] = servers;
    const member = await user('member');
    const first = await loginAt(a.url, member.username, member.password);
    const second = await loginAt(b.url, member.username, member.password);
    book.add(first, second);
    expect(await statusOnAll('/auth/me', bearer(first))).toEqual([200, 200, 200]);
    expect(await statusOnAll('/auth/me', bearer(second))).toEqual([200, 200, 200]);

    expect((await at(c, 'POST', '/auth/logout', bearer(second))).status).toBe(204);
    expect(await statusOnAll('/auth/me', bearer(second))).toEqual([401, 401, 401]);
    expect(await statusOnAll('/auth/me', bearer(first))).toEqual([200, 200, 200]);

    // A password change on one instance ends every earlier session everywhere; the new password works everywhere.
    const newPassword = `pw-multi-${member.id.slice(-12)}`;
    book.add(newPassword);
    expect((await at(a, 'POST', '/auth/password', bearer(first), { currentPassword: member.password, newPassword })).status).toBe(204);
    expect(await statusOnAll('/auth/me', bearer(first))).toEqual([401, 401, 401]);
    const third = await loginAt(c.url, member.username, newPassword);
    book.add(third);
    expect(await statusOnAll('/auth/me', bearer(third))).toEqual([200, 200, 200]);

    // Disabling the user on one instance stops them everywhere at the next request.
    expect((await at(b, 'PATCH', `/users/${member.id}`, bearer(admin.token), { status: 'disabled' })).status).toBe(200);
    expect(await statusOnAll('/auth/me', bearer(third))).toEqual([401, 401, 401]);
  });

  it('accepts an API token minted on one instance on the others; regeneration and revocation on one take effect on all at once', async () => {
    const [a, b, c] = servers;
    const owner = await user('admin');
    const session = await loginAt(a.url, owner.username, owner.password);
    book.add(session);
    const created = await at(b, 'POST', '/api-tokens', bearer(session), { name: 'multi', scopes: ['users:read'] });
    expect(created.status).toBe(201);
    const old = created.body.token as string;
    expect(await statusOnAll('/users?limit=1', bearer(old))).toEqual([200, 200, 200]);
    expect(await statusOnAll('/users?limit=1', { 'X-API-Key': old })).toEqual([200, 200, 200]);

    const regen = await at(c, 'POST', `/api-tokens/${created.body.id}/regenerate`, bearer(session));
    expect(regen.status).toBe(200);
    const fresh = regen.body.token as string;
    expect(await statusOnAll('/users?limit=1', bearer(old))).toEqual([401, 401, 401]);
    expect(await statusOnAll('/users?limit=1', bearer(fresh))).toEqual([200, 200, 200]);

    expect((await at(a, 'DELETE', `/api-tokens/${created.body.id}`, bearer(session))).status).toBe(204);
    expect(await statusOnAll('/users?limit=1', bearer(fresh))).toEqual([401, 401, 401]);
    expect(await statusOnAll('/users?limit=1', { 'X-API-Key': fresh })).toEqual([401, 401, 401]);
  });

  /** Fires 2× the limit of reveals at once, spread evenly over the three instances. */
  const burst = async (auth: Record<string, string>, keyId: string, headers: Record<string, string> = {}) => {
    const results = await Promise.all(Array.from({ length: 2 * REVEAL_LIMIT }, (_, i) => at(servers[i % 3], 'POST', `/provider-keys/${keyId}/reveal`, { ...auth, ...headers }, {})));
    for (const r of results) if (r.status === 429) expect(isEnvelope(r.body, 'rate_limited') && /^\d+$/.test(String(r.headers['retry-after']))).toBe(true);
    return results.map((r) => r.status).sort();
  };
  const expectLimitHeld = async (member: TestUser, key: CreatedKey, statuses: number[]) => {
    expect(statuses).toEqual([...Array(REVEAL_LIMIT).fill(200), ...Array(REVEAL_LIMIT).fill(429)]);
    const outcomes: Array<{ outcome: string; n: number | string }> = await ctx.db.read((m) =>
      m.query("SELECT outcome, COUNT(*) AS n FROM audit_events WHERE action = 'provider_key.reveal' AND actor_id = ? GROUP BY outcome ORDER BY outcome", [member.id]),
    );
    expect(outcomes.map((o) => [o.outcome, Number(o.n)])).toEqual([
      ['rate_limited', REVEAL_LIMIT],
      ['success', REVEAL_LIMIT],
    ]);
    const [row] = await ctx.db.read((m) => m.query('SELECT reveal_count FROM provider_keys WHERE id = ?', [key.id]));
    expect(Number(row.reveal_count)).toBe(REVEAL_LIMIT);
  };

  it(`holds the per-user reveal limit (${REVEAL_LIMIT}/min) across the three together, through pkv_rate_limits`, async () => {
    const member = await user('member');
    const key = await keyFor(member);
    // Each instance alone would allow REVEAL_LIMIT: 3× that would pass if the counters were per process.
    await expectLimitHeld(member, key, await burst(member.auth, key.id));
    expect(await countWhere(ctx, 'pkv_rate_limits', '`key` = ?', [`reveal:${member.id}`])).toBe(1);
  });

  it(`holds it again with PKV_REDIS_URL: three fresh instances share the counters through Redis`, async () => {
    await Promise.all(servers.map((s) => s.stop()));
    // A private client address for this run: the per-address counter lives in the shared Redis too.
    const ip = randomIp();
    await startThree({ PKV_REDIS_URL: REDIS_URL, PKV_TRUST_PROXY: 'true' });
    const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      const member = await user('member');
      const key = await keyFor(member);
      await expectLimitHeld(member, key, await burst(member.auth, key.id, { 'X-Forwarded-For': ip }));
      expect(await redis.exists(`reveal:${member.id}`)).toBe(1);
      expect(await countWhere(ctx, 'pkv_rate_limits', '`key` = ?', [`reveal:${member.id}`])).toBe(0);
      // Sessions and logout still span the instances.
      const session = await loginAt(servers[0].url, member.username, member.password, { 'X-Forwarded-For': ip });
      book.add(session);
      expect(await statusOnAll('/auth/me', bearer(session))).toEqual([200, 200, 200]);
      expect((await at(servers[2], 'POST', '/auth/logout', bearer(session))).status).toBe(204);
      expect(await statusOnAll('/auth/me', bearer(session))).toEqual([401, 401, 401]);
      await redis.del(`reveal:${member.id}`, `reveal_ip:${ip}`);
    } finally {
      redis.disconnect();
    }
  });

  it('keeps one audit chain that verifies on every instance, with nothing left unsealed after a short wait', async () => {
    const auth = bearer(auditor.token);
    const verified = await waitFor(
      'the instances to seal every row',
      async () => {
        const res = await at(servers[0], 'GET', '/audit-events/verify', auth);
        return res.status === 200 && res.body.ok === true && res.body.unsealed === 0 ? res.body : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    for (const s of servers.slice(1)) {
      const res = await at(s, 'GET', '/audit-events/verify', auth);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ ok: true, head: verified.head });
    }
    expect(verified.checked).toBe(await countWhere(ctx, 'audit_events'));
    const [stats] = await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n, COUNT(DISTINCT seq) AS d, MIN(seq) AS lo, MAX(seq) AS hi FROM audit_events'));
    expect([Number(stats.n), Number(stats.d), Number(stats.lo), Number(stats.hi)]).toEqual([verified.checked, verified.checked, 1, verified.checked]);
  });

  it('leaks no password, token or secret into any server output, log line, error body or audit row', async () => {
    await Promise.all(servers.map((s) => s.stop()));
    expect(book.size).toBeGreaterThan(15);
    expect(await book.check(ctx)).toEqual({});
  });
});
