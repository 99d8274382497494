import { createTestContext, TestContext } from '../support/test-app';
import { createKey, createProject } from '../support/factories';
import { boundedLoop, countRows, httpJson } from '../support/audit-helpers';
import { killAll, servePkv, ServingPkv, waitFor } from '../support/processes';

const OPS_PER_SERVER = 1100;
const CONCURRENCY = 8;
const LOAD_DEADLINE_MS = 240_000;

describe('two pkv servers sharing one database and one audit trail', () => {
  let ctx: TestContext;
  const servers: ServingPkv[] = [];

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '100000' });
  });
  afterAll(async () => {
    await killAll();
    await ctx.close();
  });

  it('seals thousands of rows written concurrently by both processes into one contiguous chain that verifies, during the load and after', async () => {
    const admin = await ctx.user('admin');
    const member = await ctx.user('member');
    const auditor = await ctx.user('auditor');
    const project = await createProject(ctx, admin);
    const key = await createKey(ctx, admin, { ownerId: member.id, projectId: project.id });

    servers.push(...(await Promise.all([servePkv(ctx.env), servePkv(ctx.env)])));
    const signIn = async (server: ServingPkv, u: { username: string; password: string }, agent: string) => {
      const res = await httpJson(server.url, 'POST', '/auth/login', { body: { username: u.username, password: u.password }, headers: { 'User-Agent': agent } });
      return res.status === 200 ? { Authorization: `Bearer ${res.body.accessToken as string}`, 'User-Agent': agent } : undefined;
    };
    const auditorAuth = await signIn(servers[0], auditor, 'verifier');
    const before = await countRows(ctx);

    const statuses = new Map<string, number>();
    const tally = (what: string) => statuses.set(what, (statuses.get(what) ?? 0) + 1);
    const deadline = Date.now() + LOAD_DEADLINE_MS;
    let loading = true;
    const load = Promise.all(
      servers.map(async (server, n) => {
        const agent = `loader-${n}`;
        const adminAuth = (await signIn(server, admin, agent))!;
        const memberAuth = (await signIn(server, member, agent))!;
        return boundedLoop(OPS_PER_SERVER, CONCURRENCY, deadline, async (i) => {
          const kind = i % 20;
          if (kind === 0) {
            tally(`login ${(await signIn(server, member, agent)) ? 200 : 'failed'}`);
          } else if (kind < 8) {
            tally(`project ${(await httpJson(server.url, 'POST', '/projects', { body: { name: `s${n}-p${i}` }, headers: adminAuth })).status}`);
          } else {
            tally(`reveal ${(await httpJson(server.url, 'POST', `/provider-keys/${key.id}/reveal`, { body: {}, headers: memberAuth })).status}`);
          }
        });
      }),
    ).finally(() => (loading = false));

    // Verification while both servers write and both sealers run must never mistake a growing chain for tampering.
    const liveChecks: Array<{ status: number; body: { ok: boolean; checked: number } }> = [];
    while (loading) {
      liveChecks.push(await httpJson(servers[liveChecks.length % 2].url, 'GET', '/audit-events/verify', { headers: auditorAuth! }));
      await new Promise((r) => setTimeout(r, 500));
    }
    const done = await load;

    expect(done).toEqual([OPS_PER_SERVER, OPS_PER_SERVER]);
    expect(Object.fromEntries(statuses)).toEqual({ 'login 200': expect.any(Number), 'project 201': expect.any(Number), 'reveal 200': expect.any(Number) });
    const total = await countRows(ctx);
    expect(total - before).toBe(2 * (OPS_PER_SERVER + 2));
    expect(total).toBeGreaterThan(2000);
    expect(liveChecks.length).toBeGreaterThan(2);
    expect(liveChecks.filter((v) => v.status !== 200 || !v.body.ok)).toEqual([]);
    expect(liveChecks.some((v) => v.body.checked > before)).toBe(true);

    // Both servers' sealers run every 500 ms; wait until they have linked every committed row.
    await waitFor('every audit row to be sealed', async () => ((await countRows(ctx, 'seq IS NULL')) === 0 ? true : undefined), { timeoutMs: 60_000, intervalMs: 250 });

    const [stats] = await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n, COUNT(DISTINCT seq) AS d, MIN(seq) AS lo, MAX(seq) AS hi FROM audit_events'));
    expect({ n: Number(stats.n), distinct: Number(stats.d), lo: Number(stats.lo), hi: Number(stats.hi) }).toEqual({ n: total, distinct: total, lo: 1, hi: total });
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true, checked: total, unsealed: 0, head: { seq: total } });
    const final = await httpJson(servers[1].url, 'GET', '/audit-events/verify', { headers: auditorAuth! });
    expect(final.body).toMatchObject({ ok: true, checked: total, unsealed: 0 });

    // The two processes' rows really interleave in the one chain.
    const agents: Array<{ user_agent: string }> = await ctx.db.read((m) => m.query("SELECT user_agent FROM audit_events WHERE user_agent LIKE 'loader-%' ORDER BY seq"));
    const switches = agents.filter((r, i) => i > 0 && r.user_agent !== agents[i - 1].user_agent).length;
    expect(switches).toBeGreaterThan(50);

    // Each server logged exactly the rows it committed, once each.
    const idsOf = (lines: string[]) => lines.filter((l) => l.includes('"event":"audit"')).map((l) => (JSON.parse(l) as { audit: { id: string } }).audit.id);
    const logged = servers.flatMap((s) => idsOf(s.stdout().split('\n')));
    const inProcess = idsOf(ctx.capture.lines);
    const written: Array<{ id: string }> = await ctx.db.read((m) => m.query('SELECT id FROM audit_events'));
    expect(logged.length + inProcess.length).toBe(total);
    expect(new Set([...logged, ...inProcess])).toEqual(new Set(written.map((r) => r.id)));

    const stopped = await Promise.all(servers.map((s) => s.stop()));
    expect(stopped).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true, checked: total, unsealed: 0 });
  }, 420_000);
});
