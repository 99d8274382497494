import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import mysql from 'mysql2/promise';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createKey, createProject, CreatedKey } from '../support/factories';
import { expectError } from '../support/auth-helpers';

/**
 * Point 11 of issue 25 (the database part): a stalled database held requests for the stall's whole length (45 s).
 * With PKV_DB_WAIT_TIMEOUT=2 a lock held elsewhere (MariaDB: LOCK TABLES … WRITE, a row lock; SQLite: another
 * connection's write lock) turns into 503 `unavailable` within a few seconds, with no secret and no success audit row,
 * and service resumes once the lock is gone.
 */
jest.setTimeout(60_000);

const WAIT_S = 2;
const WITHIN_MS = WAIT_S * 1000 + 2000;

describe('a stalled database', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let key: CreatedKey;

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_DB_WAIT_TIMEOUT: String(WAIT_S) });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
  });
  afterAll(() => ctx.close());

  const reveal = () => ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
  const timed = async <T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> => {
    const t0 = Date.now();
    const value = await fn();
    return { value, ms: Date.now() - t0 };
  };
  const successRows = async () => (await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id })).filter((r) => r.outcome === 'success').length;

  /** A reveal during the stall: 503 within the bound, no secret, no success row, no reveal counted. */
  async function revealRefusedWithin(): Promise<void> {
    const before = await successRows();
    const { value: res, ms } = await timed(() => reveal());
    expectError(res, 503, 'unavailable');
    expect(res.text).not.toContain(key.secret);
    expect(ms).toBeLessThan(WITHIN_MS);
    expect(await successRows()).toBe(before);
  }

  describe('on MariaDB/MySQL', () => {
    let other: mysql.Connection;
    beforeAll(async () => {
      if (ctx.kind !== 'mysql') return;
      other = await mysql.createConnection(ctx.env.PKV_DATABASE_URL!);
    });
    afterAll(async () => {
      await other?.query('UNLOCK TABLES').catch(() => undefined);
      await other?.end();
    });
    const mysqlOnly = () => ctx.kind === 'mysql';

    it('answers a reveal under LOCK TABLES provider_keys WRITE with 503 within seconds, then serves again once unlocked', async () => {
      if (!mysqlOnly()) return;
      await other.query('LOCK TABLES provider_keys WRITE');
      try {
        await revealRefusedWithin();
      } finally {
        await other.query('UNLOCK TABLES');
      }
      expect((await reveal().expect(200)).body.secret).toBe(key.secret);
    });

    it('answers a reveal of a key whose row another transaction holds locked with 503 within seconds', async () => {
      if (!mysqlOnly()) return;
      await other.query('BEGIN');
      await other.query('SELECT id FROM provider_keys WHERE id = ? FOR UPDATE', [key.id]);
      try {
        await revealRefusedWithin();
      } finally {
        await other.query('ROLLBACK');
      }
      await reveal().expect(200);
    });

    it('answers a crowd of reads (more than the pool holds) under a table lock with 503 within seconds: lock waits and the wait for a connection are both bounded', async () => {
      if (!mysqlOnly()) return;
      await other.query('LOCK TABLES provider_keys WRITE');
      let results: Array<{ value: { status: number; text: string }; ms: number }>;
      try {
        const list = async () => {
          const r = await ctx.http().get('/api/v1/provider-keys?limit=5').set(admin.auth);
          return { status: r.status, text: r.text };
        };
        results = await Promise.all(Array.from({ length: 40 }, () => timed(list)));
      } finally {
        await other.query('UNLOCK TABLES');
      }
      expect(new Set(results.map((r) => r.value.status))).toEqual(new Set([503]));
      // A request queued for a connection waits at most the bound for one, then at most the bound for the lock.
      expect(Math.max(...results.map((r) => r.ms))).toBeLessThan(2 * WAIT_S * 1000 + 2000);
      for (const r of results) expect(JSON.parse(r.value.text).error.code).toBe('unavailable');
      await ctx.http().get('/api/v1/provider-keys?limit=5').set(admin.auth).expect(200);
    });
  });

  describe('on SQLite', () => {
    it('answers a reveal while another connection holds the write lock with 503 within seconds, then serves again', async () => {
      if (ctx.kind !== 'sqlite') return;
      const lock = new BetterSqlite3(path.resolve(ctx.env.PKV_DATABASE_URL!.replace(/^sqlite:/, '')));
      try {
        lock.exec('BEGIN EXCLUSIVE');
        try {
          await revealRefusedWithin();
          // WAL readers are not blocked: lists still answer.
          await ctx.http().get('/api/v1/provider-keys?limit=5').set(admin.auth).expect(200);
        } finally {
          lock.exec('ROLLBACK');
        }
      } finally {
        lock.close();
      }
      expect((await reveal().expect(200)).body.secret).toBe(key.secret);
    });
  });
});
