import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey } from '../support/factories';
import { auditRequestIds, call, countWhere, LeakBook, uniqueSecret } from '../support/resilience-helpers';
import { killAll, rssOf, servePkv, ServingPkv } from '../support/processes';

const autocannon = require('autocannon') as (opts: Record<string, unknown>) => Promise<AutocannonResult>;

interface AutocannonResult {
  errors: number;
  timeouts: number;
  non2xx: number;
  '1xx': number;
  '2xx': number;
  '3xx': number;
  '4xx': number;
  '5xx': number;
  requests: { total: number; average: number };
  statusCodeStats: Record<string, { count: number }>;
}

jest.setTimeout(150_000);

const DURATION_S = 30;
const CONNECTIONS = 32;
/** Growth of the server's RSS across the second half of the run (median of the last quarter − median of the second) must stay under this. */
const RSS_GROWTH_BOUND = 50 * 1024 * 1024;

/**
 * One bounded load run against a spawned server: autocannon on 127.0.0.1, 30 s, 32 connections, a mix of reveals,
 * lists and creates. Nothing here asserts timing: only that every request succeeded, that every successful reveal
 * and create has exactly its committed audit row, and that the server's memory stayed flat.
 */
describe('load', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;
  let server: ServingPkv;
  const book = new LeakBook();

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '100000', PKV_LOG_LEVEL: 'info' });
    admin = await ctx.user('admin');
    member = await ctx.user('member');
    book.addUser(admin);
    book.addUser(member);
  });

  afterAll(async () => {
    await killAll();
    await ctx?.close();
  });

  it(`serves ${CONNECTIONS} connections of mixed reveal/list/create for ${DURATION_S} s with zero 5xx, zero lost audit rows and flat memory`, async () => {
    const project = await createProject(ctx, admin);
    const keys: CreatedKey[] = [];
    for (let i = 0; i < 8; i++) {
      const key = await createKey(ctx, admin, { ownerId: member.id, projectId: project.id });
      keys.push(key);
      book.add(key.secret);
    }
    // A capped heap makes V8 collect before it grows: RSS then shows leaks, not lazy collection (and a leak ends in OOM).
    server = await servePkv(ctx.env, { nodeArgs: ['--max-old-space-size=128'] });

    /** Request ids: every request this run built, and those answered (by status). */
    const sent = { reveal: new Set<string>(), create: new Set<string>() };
    const answered = { reveal: new Map<string, number>(), create: new Map<string, number>() };
    let lists200 = 0;
    const other = new Map<string, number>();
    const note = (what: string) => other.set(what, (other.get(what) ?? 0) + 1);
    let n = 0;
    const json = { 'content-type': 'application/json' };
    const idOf = (headers: Record<string, string>) => headers['x-request-id'] ?? headers['X-Request-Id'];
    const tagged = (op: 'reveal' | 'create', req: Record<string, unknown>, extra: Record<string, unknown>) => {
      const id = `load-${op}-${n++}`;
      sent[op].add(id);
      return { ...req, ...extra, headers: { ...(req.headers as Record<string, string>), 'x-request-id': id } };
    };
    const record = (op: 'reveal' | 'create', ok: number) => (status: number, _body: string, _ctx: unknown, headers: Record<string, string>) => {
      answered[op].set(idOf(headers), status);
      if (status !== ok) note(`${op} ${status}`);
    };
    const revealRequest = (body: string) => ({
      method: 'POST',
      headers: { ...json, authorization: `Bearer ${member.token}` },
      body,
      setupRequest: (req: Record<string, unknown>) => tagged('reveal', req, { path: `/api/v1/provider-keys/${keys[n % keys.length].id}/reveal` }),
      onResponse: record('reveal', 200),
    });

    const samples: number[] = [];
    const sampler = setInterval(() => {
      try {
        samples.push(rssOf(server.pid));
      } catch {
        /* the server ended: the assertions below will say so */
      }
    }, 500);

    let result: AutocannonResult;
    try {
      result = await autocannon({
        url: server.url,
        connections: CONNECTIONS,
        duration: DURATION_S,
        timeout: 30,
        requests: [
          revealRequest('{}'),
          {
            method: 'GET',
            path: '/api/v1/provider-keys?limit=20',
            headers: { authorization: `Bearer ${member.token}` },
            onResponse: (status: number) => (status === 200 ? lists200++ : note(`list ${status}`)),
          },
          revealRequest('{"reason":"load"}'),
          {
            method: 'POST',
            path: '/api/v1/provider-keys',
            headers: { ...json, authorization: `Bearer ${admin.token}` },
            setupRequest: (req: Record<string, unknown>) => {
              const secret = uniqueSecret();
              if (n % 50 === 0) book.add(secret); // a sample: the leak check searches megabytes of output
              return tagged('create', req, { body: JSON.stringify({ ownerId: member.id, projectId: project.id, name: `load-${n}`, provider: 'openai', secret }) });
            },
            onResponse: record('create', 201),
          },
        ],
      });
    } finally {
      clearInterval(sampler);
    }

    // Every request answered, every answer a success.
    expect({ errors: result.errors, timeouts: result.timeouts, '5xx': result['5xx'], '4xx': result['4xx'], non2xx: result.non2xx, other: Object.fromEntries(other) }).toEqual({ errors: 0, timeouts: 0, '5xx': 0, '4xx': 0, non2xx: 0, other: {} });
    const ok = (op: 'reveal' | 'create', status: number) => [...answered[op]].filter(([, st]) => st === status).map(([id]) => id);
    const reveals200 = ok('reveal', 200);
    const creates201 = ok('create', 201);
    expect(reveals200.length).toBeGreaterThan(100);
    expect(creates201.length).toBeGreaterThan(20);
    expect(lists200).toBeGreaterThan(20);
    expect(result['2xx']).toBe(reveals200.length + creates201.length + lists200);

    // Zero lost audit rows: every successful reveal and create has exactly one committed success row (matched by
    // request id). autocannon drops the requests still in flight when the 30 s are up: the server may have
    // committed those without anyone reading the answer, so they are the only rows allowed beyond the 2xx answers.
    for (const [op, action] of [['reveal', 'provider_key.reveal'], ['create', 'provider_key.create']] as const) {
      const rows = await auditRequestIds(ctx, action, 'success');
      const mine = [...rows.keys()].filter((id) => id.startsWith('load-'));
      const good = op === 'reveal' ? reveals200 : creates201;
      const missing = good.filter((id) => rows.get(id) !== 1);
      const unexplained = mine.filter((id) => !sent[op].has(id) || (answered[op].has(id) && answered[op].get(id) !== (op === 'reveal' ? 200 : 201)));
      const cutOff = mine.filter((id) => !answered[op].has(id));
      expect({ op, missing, unexplained }).toEqual({ op, missing: [], unexplained: [] });
      expect(cutOff.length).toBeLessThanOrEqual(CONNECTIONS);
      expect(mine.length).toBe(good.length + cutOff.length);
    }
    expect(await countWhere(ctx, 'audit_events', "action = 'provider_key.reveal' AND outcome <> 'success'")).toBe(0);
    // The counter bumped in the same transaction agrees with the rows. Both are read in ONE statement (one snapshot):
    // requests cut off at the 30 s mark may still be committing, and two separate reads would straddle them.
    const [agree] = await ctx.db.read((m) =>
      m.query(
        "SELECT (SELECT COALESCE(SUM(reveal_count), 0) FROM provider_keys) AS counted, (SELECT COUNT(*) FROM audit_events WHERE action = 'provider_key.reveal' AND outcome = 'success') AS audited",
      ),
    );
    expect(Number(agree.counted)).toBe(Number(agree.audited));

    // Steady memory: once warmed up the RSS levels off. V8 collects lazily (a sawtooth of tens of MB), so the level of
    // a stretch is its median: the level of the last quarter of the run may exceed that of the second quarter by less
    // than 50 MB.
    expect(samples.length).toBeGreaterThan(DURATION_S);
    const q = Math.floor(samples.length / 4);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const growth = median(samples.slice(samples.length - q)) - median(samples.slice(q, 2 * q));
    const mb = (b: number) => Math.round(b / 1024 / 1024);
    console.log(`load (${ctx.kind}): ${result.requests.total} requests (reveals ${reveals200.length}, creates ${creates201.length}, lists ${lists200}); server RSS MB every 0.5 s: ${samples.map(mb).join(' ')}`);
    expect(growth).toBeLessThan(RSS_GROWTH_BOUND);

    // Still healthy, and it stops gracefully with every row sealed.
    expect((await call(server.url, 'GET', '/readyz')).status).toBe(200);
    expect(await server.stop()).toEqual({ code: 0, signal: null });
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true, unsealed: 0 });
  });

  it('leaks no secret or token into any log line, server output, error body or audit row', async () => {
    expect(await book.check(ctx)).toEqual({});
  });
});
