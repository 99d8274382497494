import crypto from 'node:crypto';
import mysql from 'mysql2/promise';
import { isConflict, isRetryable } from '../../src/db/errors';
import { MAX_ATTEMPTS } from '../../src/db/database';
import { UnavailableError } from '../../src/errors';
import { createTestContext, dbKind, TestContext } from '../support/test-app';

/**
 * The transaction layer under every write: concurrent transactions share a COMMIT on SQLite (group commit), each
 * still isolated in its savepoint, and MySQL transactions run at READ COMMITTED on every pooled connection.
 */
const mysqlOnly = dbKind() === 'mysql' ? it : it.skip;

describe('database transactions', () => {
  let ctx: TestContext;

  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(async () => {
    await ctx?.close();
  });

  const marker = () => `db-test-${crypto.randomBytes(6).toString('hex')}`;
  const insertProject = (name: string) =>
    ctx.db.transaction((tx) => tx.query('INSERT INTO projects (id, name, name_key, description, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)', [crypto.randomUUID(), name, name, Date.now(), Date.now()]));
  const insertProjectWithId = (id: string, name: string) =>
    ctx.db.transaction((tx) => tx.query('INSERT INTO projects (id, name, name_key, description, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)', [id, name, name, Date.now(), Date.now()]));
  const countNamed = async (prefix: string) => Number((await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM projects WHERE name LIKE ?', [`${prefix}%`])))[0].n);

  it('commits 32 concurrent transactions, every one durable on its own, in fewer COMMITs on SQLite (one per transaction on MySQL)', async () => {
    const prefix = marker();
    const before = ctx.db.commits;
    await Promise.all(Array.from({ length: 32 }, (_, i) => insertProject(`${prefix}-${i}`)));
    const commits = ctx.db.commits - before;
    expect(await countNamed(prefix)).toBe(32);
    if (ctx.kind === 'sqlite') expect(commits).toBeLessThanOrEqual(2);
    else expect(commits).toBe(32);
  });

  it('rolls back only the failing one of a group: the others commit', async () => {
    const prefix = marker();
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        i === 5
          ? ctx.db.transaction(async (tx) => {
              await tx.query('INSERT INTO projects (id, name, name_key, description, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)', [crypto.randomUUID(), `${prefix}-doomed`, `${prefix}-doomed`, Date.now(), Date.now()]);
              throw new Error('this one fails after writing');
            })
          : insertProject(`${prefix}-${i}`),
      ),
    );
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect(await countNamed(prefix)).toBe(11);
    expect(await countNamed(`${prefix}-doomed`)).toBe(0);
  });

  it('tells every caller the truth when one transaction ends the whole group (as SQLite does itself on SQLITE_FULL or IOERR)', async () => {
    const prefix = marker();
    const results = await Promise.allSettled([
      insertProject(`${prefix}-a`),
      ctx.db.transaction(async (tx) => {
        await tx.query('INSERT INTO projects (id, name, name_key, description, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)', [crypto.randomUUID(), `${prefix}-b`, `${prefix}-b`, Date.now(), Date.now()]);
        await tx.query('ROLLBACK');
        throw new Error('the database ended the transaction');
      }),
      insertProject(`${prefix}-c`),
    ]);
    expect(results[1].status).toBe('rejected');
    // Told "committed" exactly when it is, as another connection sees it.
    for (const [i, name] of ['a', 'b', 'c'].entries()) {
      expect({ name, told: results[i].status === 'fulfilled', stored: (await countNamed(`${prefix}-${name}`)) === 1 }).toEqual({ name, told: results[i].status === 'fulfilled', stored: results[i].status === 'fulfilled' });
    }
    // And the next transactions commit for real: nothing is left half-open on the writer.
    await Promise.all([insertProject(`${prefix}-after-1`), insertProject(`${prefix}-after-2`)]);
    expect(await countNamed(`${prefix}-after-`)).toBe(2);
  });

  (dbKind() === 'mysql' ? it : it.skip)('runs every transaction at READ COMMITTED, on every pooled connection (MySQL)', async () => {
    const levelIn = (tx: Parameters<Parameters<typeof ctx.db.transaction>[0]>[0]) =>
      tx.query('SELECT @@session.tx_isolation AS level').catch(() => tx.query('SELECT @@session.transaction_isolation AS level'));
    // More at once than connections are idle, so new physical connections are opened too.
    const levels = await Promise.all(
      Array.from({ length: 30 }, () =>
        ctx.db.transaction(async (tx) => {
          const [{ level }] = (await levelIn(tx)) as Array<{ level: string }>;
          await new Promise((resolve) => setTimeout(resolve, 20));
          return level;
        }),
      ),
    );
    expect(new Set(levels)).toEqual(new Set(['READ-COMMITTED']));
  });

  mysqlOnly('runs reads on pooled connections with the same session settings, and on plain MariaDB sends nothing for Galera', async () => {
    expect(ctx.db.galera).toBe(false);
    const settings = await Promise.all(
      Array.from({ length: 30 }, () =>
        ctx.db.read(async (m) => {
          const [row] = (await m.query('SELECT @@session.tx_isolation AS level, @@session.wsrep_sync_wait AS syncWait')) as Array<{ level: string; syncWait: number | string }>;
          await new Promise((resolve) => setTimeout(resolve, 20));
          return `${row.level} ${row.syncWait}`;
        }),
      ),
    );
    expect(new Set(settings)).toEqual(new Set(['READ-COMMITTED 0']));
  });

  /**
   * A real InnoDB deadlock: `heavy` holds many locked rows and then waits for the row `victim` holds, so InnoDB rolls
   * back the lighter one. `victim` is what the caller runs (it must lock row 2, then row 1).
   */
  const withDeadlock = async <T>(victim: (table: string) => Promise<T>): Promise<T> => {
    const table = `dl_${crypto.randomBytes(4).toString('hex')}`;
    await ctx.db.transaction((tx) => tx.query(`CREATE TABLE ${table} (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB`));
    await ctx.db.transaction((tx) => tx.query(`INSERT INTO ${table} (id, v) VALUES ${Array.from({ length: 60 }, (_, i) => `(${i + 1}, 0)`).join(', ')}`));
    const heavy = await mysql.createConnection(ctx.env.PKV_DATABASE_URL!);
    try {
      await heavy.query('BEGIN');
      await heavy.query(`UPDATE ${table} SET v = v + 1 WHERE id = 1 OR id > 10`);
      const result = victim(table);
      await new Promise((resolve) => setTimeout(resolve, 300)); // the victim now waits for row 1
      const heavyDone = heavy.query(`UPDATE ${table} SET v = v + 1 WHERE id = 2`).then(() => heavy.query('COMMIT'));
      const out = await result;
      await heavyDone;
      return out;
    } finally {
      await heavy.end();
      await ctx.db.transaction((tx) => tx.query(`DROP TABLE ${table}`));
    }
  };

  mysqlOnly('runs a single statement again when the server aborted it in a deadlock (Database.statement)', async () => {
    const before = ctx.db.retries;
    const result = await withDeadlock((table) => ctx.db.statement(`UPDATE ${table} SET v = v + 100 WHERE id IN (2, 1) ORDER BY id DESC`, []));
    expect((result as { affectedRows: number }).affectedRows).toBe(2);
    expect(ctx.db.retries).toBeGreaterThan(before);
  });

  mysqlOnly('runs a transaction again when the deadlock reached it wrapped in a semantic error (as an audit insert wraps it)', async () => {
    const before = ctx.db.retries;
    const seen: unknown[] = [];
    const rows = await withDeadlock((table) =>
      ctx.db.transaction(async (tx) => {
        await tx.query(`UPDATE ${table} SET v = v + 1000 WHERE id = 2`);
        try {
          await tx.query(`UPDATE ${table} SET v = v + 1000 WHERE id = 1`);
        } catch (err) {
          seen.push(err);
          throw new UnavailableError('The audit trail cannot be written right now', err);
        }
        return (await tx.query(`SELECT v FROM ${table} WHERE id IN (1, 2) ORDER BY id`)) as Array<{ v: number }>;
      }),
    );
    expect(seen.length).toBeGreaterThan(0);
    const wrapped = new UnavailableError(undefined, seen[0]);
    expect({ retryable: isRetryable(wrapped, false), conflict: isConflict(wrapped) }).toEqual({ retryable: true, conflict: true });
    expect(ctx.db.retries).toBeGreaterThan(before);
    // Applied once, after the heavy transaction's +1 on both rows.
    expect(rows.map((r) => Number(r.v))).toEqual([1001, 1001]);
  });

  if (dbKind() === 'mysql') {
    describe('a transaction the server aborts (MySQL)', () => {
      // MariaDB lets a stored procedure raise any error number: 1047 is what a Galera node answers while it is not ready.
      beforeAll(() => ctx.db.read((m) => m.query("CREATE PROCEDURE pkv_test_not_ready() SIGNAL SQLSTATE '08S01' SET MYSQL_ERRNO = 1047, MESSAGE_TEXT = 'WSREP has not yet prepared node for application use'")));
      afterAll(() => ctx.db.read((m) => m.query('DROP PROCEDURE IF EXISTS pkv_test_not_ready')));

      it('is run again from the start, with backoff, and commits once: a node that was not ready (1047)', async () => {
        const prefix = marker();
        const retriesBefore = ctx.db.retries;
        let attempts = 0;
        await ctx.db.transaction(async (tx) => {
          attempts++;
          await tx.query('INSERT INTO projects (id, name, name_key, description, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)', [crypto.randomUUID(), `${prefix}-${attempts}`, `${prefix}-${attempts}`, Date.now(), Date.now()]);
          if (attempts < 3) await tx.query('CALL pkv_test_not_ready()');
        });
        expect(attempts).toBe(3);
        expect(ctx.db.retries - retriesBefore).toBe(2);
        // The aborted attempts left nothing behind: only the third attempt's row is there.
        expect(await countNamed(`${prefix}-1`)).toBe(0);
        expect(await countNamed(`${prefix}-2`)).toBe(0);
        expect(await countNamed(`${prefix}-3`)).toBe(1);
      });

      it('is given up after a bounded number of attempts and answered as unavailable (503), never 500', async () => {
        let attempts = 0;
        const err = await ctx.db
          .transaction(async (tx) => {
            attempts++;
            await tx.query('CALL pkv_test_not_ready()');
          })
          .catch((e: unknown) => e);
        expect(attempts).toBe(MAX_ATTEMPTS);
        expect(err).toMatchObject({ code: 'unavailable' });
      });

      it('retries both sides of a deadlock until both commit', async () => {
        const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
        for (const id of [a, b]) await insertProjectWithId(id, `${marker()}-lock`);
        const retriesBefore = ctx.db.retries;
        let arrived = 0;
        const bothHoldOne = () =>
          new Promise<void>((resolve) => {
            arrived++;
            const check = () => (arrived >= 2 ? resolve() : setTimeout(check, 5));
            check();
          });
        const lockInOrder = (first: string, second: string) =>
          ctx.db.transaction(async (tx) => {
            await tx.query('UPDATE projects SET description = ? WHERE id = ?', ['x', first]);
            await bothHoldOne();
            await tx.query('UPDATE projects SET description = ? WHERE id = ?', ['y', second]);
          });
        await Promise.all([lockInOrder(a, b), lockInOrder(b, a)]);
        expect(ctx.db.retries - retriesBefore).toBeGreaterThanOrEqual(1);
      });
    });
  }
});
