import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { cliActor } from '../../src/modules/auth/actor';

/**
 * Point 8 of issue 25: 150 exports whose readers never read took the server from 221 to 747 MB. Exports and verifies
 * are now capped per user and overall (here 2 and 3); beyond that, 429 rate_limited with Retry-After. Driven over a
 * real socket on 127.0.0.1 with readers that do not read, against a trail far larger than the socket buffers.
 */
jest.setTimeout(120_000);

const ROWS = 24_000;
const PADDING = 'x'.repeat(900);

interface Open {
  status: number;
  headers: http.IncomingHttpHeaders;
  res: http.IncomingMessage;
  /** Reads the rest of the body. */
  text(): Promise<string>;
  /** Hangs up without reading (the slow reader goes away). */
  hangUp(): void;
}

describe('concurrent audit exports and verifies', () => {
  let ctx: TestContext;
  let server: http.Server;
  let port: number;
  let auditors: TestUser[];
  let admin: TestUser;
  const open: Open[] = [];

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_AUDIT_CONCURRENCY_PER_USER: '2', PKV_AUDIT_CONCURRENCY: '3', PKV_LOG_LEVEL: 'info' });
    admin = await ctx.user('admin');
    auditors = [await ctx.user('auditor'), await ctx.user('auditor'), await ctx.user('auditor')];
    for (let i = 0; i < ROWS; i += 1000) {
      await ctx.db.transaction(async (tx) => {
        const rows = Array.from({ length: 1000 }, (_, j) => ctx.container.audit.build(cliActor(null), 'project.update', 'success', {}, { detail: { i: i + j, padding: PADDING } }));
        await ctx.container.audit.recordBuilt(tx, rows);
      });
    }
    await ctx.container.audit.chain.sealPending();
    server = http.createServer(ctx.handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    for (const o of open) o.hangUp();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await ctx.close();
  });

  /** A GET whose body is not read until asked: resolves at the response headers. */
  const get = (route: string, as: TestUser): Promise<Open> =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: `/api/v1${route}`, headers: as.auth, agent: false }, (res) => {
        const o: Open = {
          status: res.statusCode ?? 0,
          headers: res.headers,
          res,
          text: () =>
            new Promise((done, fail) => {
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
              res.on('error', fail);
            }),
          hangUp: () => req.destroy(),
        };
        open.push(o);
        resolve(o);
      });
      req.on('error', reject);
      req.setTimeout(30_000, () => req.destroy(new Error(`no answer to ${route}`)));
    });

  const exportOf = (as: TestUser) => get('/audit-events/export?format=ndjson', as);
  const verifyOf = (as: TestUser) => get('/audit-events/verify', as);
  const refused = async (o: Open) => {
    expect(o.status).toBe(429);
    expect(o.headers['retry-after']).toBe('10');
    const body = JSON.parse(await o.text());
    expect(body.error).toMatchObject({ code: 'rate_limited', message: expect.stringMatching(/audit exports or verifications/) });
  };

  it('holds a slot per export until its slow reader finishes or leaves; a third for one user and a fourth overall get 429 with Retry-After', async () => {
    const [a, b, c] = auditors;
    const a1 = await exportOf(a);
    const a2 = await exportOf(a);
    expect([a1.status, a2.status]).toEqual([200, 200]);
    // Neither reader reads: both exports sit in backpressure, far from their end.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(a1.res.complete || a2.res.complete).toBe(false);

    await refused(await exportOf(a));
    await refused(await verifyOf(a));
    const b1 = await exportOf(b);
    expect(b1.status).toBe(200);
    await refused(await verifyOf(c));
    await refused(await exportOf(admin));

    // Other reads of the trail are not held up.
    expect((await (await get('/audit-events?limit=1', c)).text()).length).toBeGreaterThan(0);

    // A reader that hangs up gives its slot back.
    a1.hangUp();
    let freed: Open | undefined;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
      const attempt = await verifyOf(c);
      if (attempt.status === 200) {
        freed = attempt;
        break;
      }
      await attempt.text();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(freed?.status).toBe(200);
    expect(JSON.parse(await freed!.text())).toMatchObject({ ok: true });

    // An export read to its end gives its slot back too, and held every row.
    b1.hangUp();
    a2.hangUp();
    let whole: Open | undefined;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && whole?.status !== 200; ) {
      whole = await exportOf(b);
      if (whole.status !== 200) await whole.text();
    }
    const lines = (await whole!.text()).split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThanOrEqual(ROWS);
    expect((await exportOf(b)).status).toBe(200);
  });

  it('lets exactly the cap through when a flood of slow exports arrives at once, and logs no error for the refusals', async () => {
    for (const o of open.splice(0)) o.hangUp();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const users = [...auditors, admin];
    const flood = await Promise.all(Array.from({ length: 24 }, (_, i) => exportOf(users[i % users.length])));
    const statuses = flood.map((o) => o.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(21);
    for (const o of flood.filter((x) => x.status === 429)) await refused(o);
    expect(ctx.capture.lines.filter((l) => /"level":"error"/.test(l))).toEqual([]);
  });
});
