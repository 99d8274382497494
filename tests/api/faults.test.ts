import crypto from 'node:crypto';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey } from '../support/factories';
import {
  auditRequestIds,
  bearer,
  call,
  countWhere,
  isEnvelope,
  LeakBook,
  openEveryKey,
  Outcome,
  TcpProxy,
  Traffic,
  uniqueSecret,
} from '../support/resilience-helpers';
import { killAll, servePkv, ServingPkv, waitFor } from '../support/processes';

jest.setTimeout(240_000);

/**
 * Faults: the database goes away under traffic (MariaDB: a TCP proxy between this file's server and the shared
 * MariaDB is cut; SQLite: another connection holds the write lock past busy_timeout), and servers are SIGKILLed in
 * the middle of writes. The shared MariaDB server itself is never stopped.
 */
describe('faults', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;
  let member2: TestUser;
  let project: { id: string };
  const book = new LeakBook();
  const proxies: TcpProxy[] = [];
  const locks: BetterSqlite3.Database[] = [];
  const sentSecrets = new Set<string>();

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '100000', PKV_LOG_LEVEL: 'info' });
    admin = await ctx.user('admin');
    member = await ctx.user('member');
    member2 = await ctx.user('member');
    for (const u of [admin, member, member2]) book.addUser(u);
    project = await createProject(ctx, admin);
  });

  afterAll(async () => {
    await killAll();
    for (const p of proxies) await p.close();
    for (const l of locks) if (l.open) l.close();
    await ctx?.close();
  });

  const seedKeys = async (n: number, owner: TestUser): Promise<CreatedKey[]> => {
    const keys: CreatedKey[] = [];
    for (let i = 0; i < n; i++) {
      const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, secret: uniqueSecret() });
      keys.push(key);
      book.add(key.secret);
      sentSecrets.add(key.secret);
    }
    return keys;
  };

  /** Puts the database out of reach of `server` only, and gives it back. */
  interface Fault {
    env: Record<string, string | undefined>;
    begin(): Promise<void>;
    end(): Promise<void>;
  }

  const makeFault = async (): Promise<Fault> => {
    if (ctx.kind === 'mysql') {
      const target = new URL(process.env.PKV_TEST_MYSQL_URL!);
      const proxy = new TcpProxy(target.hostname, Number(target.port || 3306));
      proxies.push(proxy);
      await proxy.start();
      return { env: { ...ctx.env, PKV_DATABASE_URL: proxy.via(ctx.env.PKV_DATABASE_URL!) }, begin: () => proxy.cut(), end: () => proxy.restore() };
    }
    const file = ctx.env.PKV_DATABASE_URL!.replace(/^sqlite:/, '');
    let lock: BetterSqlite3.Database | undefined;
    return {
      env: ctx.env,
      begin: async () => {
        lock = new BetterSqlite3(path.resolve(file));
        locks.push(lock);
        lock.pragma('busy_timeout = 20000');
        lock.exec('BEGIN EXCLUSIVE');
      },
      end: async () => {
        lock!.exec('ROLLBACK');
        lock!.close();
      },
    };
  };

  it('answers 503 unavailable while the database is gone, never sends a secret without its committed audit row, and recovers by itself', async () => {
    const keys = await seedKeys(3, member);
    const fault = await makeFault();
    const server: ServingPkv = await servePkv(fault.env);
    const base = server.url;
    const adminAuth = bearer(admin.token);
    const memberAuth = bearer(member.token);

    const traffic = new Traffic(
      () => base,
      (i) => {
        const key = keys[i % keys.length];
        switch (i % 10) {
          case 0:
          case 3:
          case 6:
            return { op: 'list', method: 'GET', path: '/api/v1/provider-keys?limit=5', headers: memberAuth };
          case 2:
          case 5: {
            const secret = uniqueSecret();
            sentSecrets.add(secret);
            book.add(secret);
            return { op: 'create', method: 'POST', path: '/api/v1/provider-keys', headers: adminAuth, body: { ownerId: member.id, projectId: project.id, name: `f-${i}`, provider: 'openai', secret }, meta: { secret } };
          }
          case 9:
            return { op: 'login', method: 'POST', path: '/api/v1/auth/login', body: { username: member2.username, password: member2.password } };
          default:
            return { op: 'reveal', method: 'POST', path: `/api/v1/provider-keys/${key.id}/reveal`, headers: memberAuth, body: {}, meta: { keyId: key.id, secret: key.secret } };
        }
      },
      // SQLite: under a held write lock every write blocks the server for busy_timeout (5 s) on its own, so keep it small.
      ctx.kind === 'sqlite' ? 2 : 4,
    );
    const ok = (o: Outcome) => o.status >= 200 && o.status < 300;
    let readyDuring: { status: number; body: unknown } | undefined;
    let revealDuring: { status: number; body: unknown; text: string } | undefined;
    // On SQLite each write now waits out busy_timeout (5 s) alone, so one of each is enough there.
    const failuresWanted = ctx.kind === 'mysql' ? 5 : 1;
    let faultAt = 0;
    let restoredAt = 0;
    try {
      await waitFor('healthy traffic', () => (traffic.count((o) => o.op === 'reveal' && o.status === 200) >= 5 && traffic.count((o) => o.op === 'create' && o.status === 201) >= 2 ? true : undefined), { timeoutMs: 60_000 });
      expect((await call(base, 'GET', '/readyz')).status).toBe(200);

      faultAt = traffic.outcomes.length;
      await fault.begin();
      // Probed at once, while requests keep coming; everything fails closed until the database is back.
      const probes = Promise.all([call(base, 'GET', '/readyz'), call(base, 'POST', `/api/v1/provider-keys/${keys[0].id}/reveal`, { headers: memberAuth, body: {} })]);
      probes.catch(() => undefined);
      await waitFor(
        'reveals and creates to fail with 503 while the database is gone',
        () => (['reveal', 'create'].every((op) => traffic.count((o) => o.op === op && o.status === 503, faultAt) >= failuresWanted) ? true : undefined),
        { timeoutMs: 60_000 },
      );
      const [ready, reveal] = await probes;
      readyDuring = { status: ready.status, body: ready.body };
      revealDuring = { status: reveal.status, body: reveal.body, text: reveal.text };
      book.seen(reveal);
    } finally {
      restoredAt = traffic.outcomes.length;
      await fault.end();
    }
    try {
      // Service resumes by itself: same process, no restart.
      await waitFor('/readyz to turn 200 again', async () => ((await call(base, 'GET', '/readyz')).status === 200 ? true : undefined), { timeoutMs: 45_000, intervalMs: 250 });
      await waitFor(
        'reveals, creates and lists to succeed again',
        () => (['reveal', 'create', 'list'].every((op) => traffic.count((o) => o.op === op && ok(o), restoredAt) >= 2) ? true : undefined),
        { timeoutMs: 45_000 },
      );
    } finally {
      await traffic.stop();
    }
    expect(server.child.exitCode).toBeNull();
    expect(server.child.signalCode).toBeNull();

    for (const o of traffic.outcomes) {
      book.seen({ status: o.status, body: o.body });
      if (o.op === 'login' && o.status === 200) book.add((o.body as { accessToken: string }).accessToken);
    }

    // While the database was gone: 503 `unavailable`, no plaintext.
    expect(revealDuring!.status).toBe(503);
    expect(isEnvelope(revealDuring!.body, 'unavailable')).toBe(true);
    expect(revealDuring!.text).not.toContain(keys[0].secret);
    if (ctx.kind === 'mysql') {
      expect(readyDuring).toEqual({ status: 503, body: { status: 'unavailable', database: 'unreachable', keyring: 'unknown' } });
    } else {
      // SQLite in WAL mode: a connection holding the write lock does not block readers, so the database still
      // answers reads and /readyz stays 200 while writes fail with 503 after busy_timeout.
      expect(readyDuring).toEqual({ status: 200, body: { status: 'ready', database: 'ok', keyring: 'ok' } });
    }

    const statuses = new Map<string, number>();
    for (const o of traffic.outcomes) statuses.set(`${o.op} ${o.status}`, (statuses.get(`${o.op} ${o.status}`) ?? 0) + 1);
    const seen = [...statuses.keys()].sort();
    // Only success or 503: never a 500, never a dropped connection, never a hang.
    for (const s of seen) expect(s).toMatch(/^(list 200|create 201|reveal 200|login 200|(list|create|reveal|login) 503)$/);
    expect(seen).toEqual(expect.arrayContaining(['create 503', 'reveal 503', 'reveal 200', 'create 201', 'list 200']));
    for (const o of traffic.outcomes.filter((x) => x.status === 503)) expect(isEnvelope(o.body, 'unavailable')).toBe(true);

    // Every secret that left the server has its committed success audit row (matched by request id).
    const revealRows = await auditRequestIds(ctx, 'provider_key.reveal', 'success');
    const reveals = traffic.outcomes.filter((o) => o.op === 'reveal' && o.status === 200);
    for (const o of reveals) {
      expect((o.body as { secret: string }).secret).toBe(o.meta!.secret);
      expect({ requestId: o.requestId, rows: revealRows.get(o.requestId) ?? 0 }).toEqual({ requestId: o.requestId, rows: 1 });
    }
    for (const o of traffic.outcomes.filter((x) => x.status !== 200 && x.status !== 201)) expect(JSON.stringify(o.body ?? null)).not.toMatch(/"secret"/);
    // Counters and rows agree exactly: a reveal that committed bumped the count in the same transaction.
    for (const key of keys) {
      const [row] = await ctx.db.read((m) => m.query('SELECT reveal_count FROM provider_keys WHERE id = ?', [key.id]));
      expect(Number(row.reveal_count)).toBe(await countWhere(ctx, 'audit_events', "action = 'provider_key.reveal' AND outcome = 'success' AND key_id = ?", [key.id]));
    }
    // Acknowledged creates exist; every stored key has exactly one create row and opens.
    const createRows = await auditRequestIds(ctx, 'provider_key.create', 'success');
    for (const o of traffic.outcomes.filter((x) => x.op === 'create' && x.status === 201)) expect(createRows.get(o.requestId)).toBe(1);
    const report = await openEveryKey(ctx);
    expect(report.problems).toEqual([]);
    for (const plain of report.plaintexts.values()) expect(sentSecrets.has(plain)).toBe(true);
    const perKey: Array<{ key_id: string; n: number | string }> = await ctx.db.read((m) => m.query("SELECT key_id, COUNT(*) AS n FROM audit_events WHERE action = 'provider_key.create' GROUP BY key_id"));
    expect(perKey.length).toBe(report.total);
    expect(perKey.every((r) => Number(r.n) === 1)).toBe(true);

    // The chain the server keeps sealing after the outage verifies.
    await waitFor('the server to seal what it wrote', async () => ((await countWhere(ctx, 'audit_events', 'seq IS NULL')) === 0 ? true : undefined), { timeoutMs: 30_000, intervalMs: 250 });
    const verified = await ctx.container.audit.chain.verify();
    expect(verified).toMatchObject({ ok: true, unsealed: 0 });
    expect(verified.checked).toBe(await countWhere(ctx, 'audit_events'));

    const again = await call(base, 'POST', '/api/v1/auth/login', { body: { username: member.username, password: member.password } });
    expect(again.status).toBe(200);
    book.add(again.body.accessToken);
    await server.stop();
  });

  it('a server SIGKILLed in the middle of creates, updates, rotations and reveals leaves no half-written key and only well-formed audit rows', async () => {
    const keys = await seedKeys(6, member);
    const owners = [member, member2];
    const adminAuth = bearer(admin.token);
    const acknowledged: Outcome[] = [];
    /** Secrets sent to each key (its first plus every rotation): its final plaintext must be one of them. */
    const candidates = new Map<string, Set<string>>(keys.map((k) => [k.id, new Set([k.secret])]));

    for (let round = 0; round < 2; round++) {
      const server = await servePkv(ctx.env);
      const traffic = new Traffic(
        () => server.url,
        (i) => {
          const key = keys[crypto.randomInt(keys.length)];
          switch (i % 4) {
            case 0: {
              const secret = uniqueSecret('sk-ant-');
              sentSecrets.add(secret);
              book.add(secret);
              return { op: 'create', method: 'POST', path: '/api/v1/provider-keys', headers: adminAuth, body: { ownerId: member.id, projectId: project.id, name: `k-${round}-${i}`, provider: 'anthropic', secret }, meta: { secret } };
            }
            case 1: {
              // Moving a key to another owner re-seals it under a fresh data key: the widest write there is.
              const owner = owners[crypto.randomInt(2)];
              return { op: 'update', method: 'PATCH', path: `/api/v1/provider-keys/${key.id}`, headers: adminAuth, body: { ownerId: owner.id, name: `moved-${i}`, reason: 'fault test: reassigning' } };
            }
            case 2: {
              const secret = uniqueSecret();
              sentSecrets.add(secret);
              book.add(secret);
              candidates.get(key.id)!.add(secret);
              return { op: 'rotate', method: 'PUT', path: `/api/v1/provider-keys/${key.id}/secret`, headers: adminAuth, body: { secret }, meta: { keyId: key.id, secret } };
            }
            default:
              return { op: 'reveal', method: 'POST', path: `/api/v1/provider-keys/${key.id}/reveal`, headers: adminAuth, body: { reason: 'crash drill' }, meta: { keyId: key.id } };
          }
        },
        8,
      );
      try {
        await waitFor('a burst of writes with every kind in flight', () => (traffic.outcomes.length >= 120 && new Set(traffic.inFlight.values()).size >= 3 ? true : undefined), { timeoutMs: 90_000, intervalMs: 5 });
        const inFlight = new Set(traffic.inFlight.values());
        server.child.kill('SIGKILL');
        await server.exited;
        expect(inFlight.size).toBeGreaterThanOrEqual(3);
      } finally {
        await traffic.stop();
        await server.kill();
      }
      for (const o of traffic.outcomes) {
        book.seen({ status: o.status, body: o.body });
        if (o.status >= 200 && o.status < 300) acknowledged.push(o);
        if (o.op === 'create' && o.status === 201) candidates.set((o.body as { id: string }).id, new Set([o.meta!.secret as string]));
        if (o.op === 'reveal' && o.status === 200) book.add((o.body as { secret: string }).secret);
      }
      const statuses = new Set(traffic.outcomes.map((o) => `${o.op} ${o.status}`));
      // Before the kill every answer was a success; the kill itself only cuts connections (status 0).
      for (const s of statuses) expect(s).toMatch(/^(create 201|update 200|rotate 200|reveal 200|(create|update|rotate|reveal) 0)$/);
      expect(traffic.count((o) => o.status === 0)).toBeGreaterThan(0);
    }

    // Inspect what the killed processes left, in-process.
    const report = await openEveryKey(ctx);
    expect(report.problems).toEqual([]);
    expect(report.live).toBe(report.total);
    for (const [id, plain] of report.plaintexts) {
      if (candidates.has(id)) expect(candidates.get(id)!.has(plain)).toBe(true);
      else expect(sentSecrets.has(plain)).toBe(true); // a create that committed but whose answer the kill cut off
    }
    // Each key row and its audit rows were committed together.
    const creates: Array<{ key_id: string; n: number | string }> = await ctx.db.read((m) => m.query("SELECT key_id, COUNT(*) AS n FROM audit_events WHERE action = 'provider_key.create' AND outcome = 'success' GROUP BY key_id"));
    expect(creates.length).toBe(report.total);
    expect(creates.every((r) => Number(r.n) === 1)).toBe(true);
    const counts: Array<{ id: string; reveal_count: number | string }> = await ctx.db.read((m) => m.query('SELECT id, reveal_count FROM provider_keys'));
    const reveals: Array<{ key_id: string; n: number | string }> = await ctx.db.read((m) => m.query("SELECT key_id, COUNT(*) AS n FROM audit_events WHERE action = 'provider_key.reveal' AND outcome = 'success' GROUP BY key_id"));
    const revealsByKey = new Map(reveals.map((r) => [r.key_id, Number(r.n)]));
    for (const c of counts) expect({ id: c.id, count: Number(c.reveal_count) }).toEqual({ id: c.id, count: revealsByKey.get(c.id) ?? 0 });
    // Every acknowledged answer has its committed row.
    const byAction: Record<string, string> = { create: 'provider_key.create', update: 'provider_key.update', rotate: 'provider_key.rotate', reveal: 'provider_key.reveal' };
    const rowsFor = new Map<string, Map<string, number>>();
    for (const [op, action] of Object.entries(byAction)) rowsFor.set(op, await auditRequestIds(ctx, action, 'success'));
    expect(acknowledged.length).toBeGreaterThan(100);
    for (const o of acknowledged) expect({ op: o.op, requestId: o.requestId, rows: rowsFor.get(o.op)!.get(o.requestId) ?? 0 }).toEqual({ op: o.op, requestId: o.requestId, rows: 1 });

    // Every audit row is well-formed: sealed ones link, unsealed ones carry a valid MAC.
    const total = await countWhere(ctx, 'audit_events');
    const before = await ctx.container.audit.chain.verify();
    expect(before).toMatchObject({ ok: true });
    expect(before.checked + before.unsealed).toBe(total);
    await ctx.container.audit.chain.sealPending();
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true, checked: total, unsealed: 0 });

    // A new process serves the same data at once.
    const server = await servePkv(ctx.env);
    const key = keys[0];
    const res = await call(server.url, 'POST', `/api/v1/provider-keys/${key.id}/reveal`, { headers: adminAuth, body: { reason: 'after the crash' } });
    expect(res.status).toBe(200);
    expect(res.body.secret).toBe(report.plaintexts.get(key.id));
    await server.stop();
  });

  it('leaks no secret, password or token into any log line, server output, error body or audit row', async () => {
    expect(book.size).toBeGreaterThan(50);
    expect(await book.check(ctx)).toEqual({});
  });
});
