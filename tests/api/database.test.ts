import crypto from 'node:crypto';
import { createTestContext, dbKind, TestContext } from '../support/test-app';

/**
 * The transaction layer under every write: concurrent transactions share a COMMIT on SQLite (group commit), each
 * still isolated in its savepoint, and MySQL transactions run at READ COMMITTED on every pooled connection.
 */
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
    ctx.db.transaction((tx) => tx.query('INSERT INTO projects (id, name, description, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)', [crypto.randomUUID(), name, Date.now(), Date.now()]));
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
              await tx.query('INSERT INTO projects (id, name, description, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)', [crypto.randomUUID(), `${prefix}-doomed`, Date.now(), Date.now()]);
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
        await tx.query('INSERT INTO projects (id, name, description, created_at, updated_at) VALUES (?, ?, NULL, ?, ?)', [crypto.randomUUID(), `${prefix}-b`, Date.now(), Date.now()]);
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
});
