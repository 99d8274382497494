import crypto from 'node:crypto';
import { createRateLimits, RateLimits } from '../../src/rate-limits';
import { RateLimitedError } from '../../src/errors';
import { createTestContext, dbKind, TestContext } from '../support/test-app';

/**
 * The limiter store itself, on the database each project runs (memory on the embedded SQLite, the shared
 * `pkv_rate_limits` table on MariaDB): exact counts under concurrency, Retry-After within the window, a new window
 * once the old one ends, rewards and forgiveness.
 */
describe('rate-limit store', () => {
  let ctx: TestContext;
  let limits: RateLimits;
  const LIMIT = 5;
  const key = () => `user-${crypto.randomBytes(6).toString('hex')}`;
  const outcome = (p: Promise<void>) =>
    p.then(
      () => 'allowed' as const,
      (err: unknown) => {
        if (err instanceof RateLimitedError) return 'limited' as const;
        throw err;
      },
    );
  const row = async (prefix: string, k: string) =>
    (await ctx.db.read((m) => m.query('SELECT points, expire FROM pkv_rate_limits WHERE `key` = ?', [`${prefix}:${k}`])))[0] as { points: number; expire: number | string } | undefined;

  beforeAll(async () => {
    ctx = await createTestContext();
    limits = createRateLimits({ loginRateLimit: LIMIT, revealRateLimit: LIMIT }, ctx.db);
  });
  afterAll(async () => {
    await limits?.close();
    await ctx?.close();
  });

  it('uses the shared table on MySQL and memory on the embedded SQLite', () => {
    expect(limits.store).toBe(ctx.kind === 'mysql' ? 'mysql' : 'memory');
  });

  it('allows exactly the limit out of many concurrent points for one key, and refuses the rest with Retry-After within the window', async () => {
    const k = key();
    const results = await Promise.all(Array.from({ length: 40 }, () => outcome(limits.revealByUser.consume(k))));
    expect(results.filter((r) => r === 'allowed')).toHaveLength(LIMIT);
    const refusal = await limits.revealByUser.consume(k).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(RateLimitedError);
    const retryAfter = (refusal as RateLimitedError).retryAfterSeconds;
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    if (ctx.kind === 'mysql') {
      const stored = await row('reveal', k);
      expect(Number(stored!.points)).toBe(41);
      const ends = Number(stored!.expire) - Date.now();
      expect(ends).toBeGreaterThan(50_000);
      expect(ends).toBeLessThanOrEqual(60_000);
    }
  });

  it('keeps keys apart: one key at its limit leaves another untouched', async () => {
    const a = key();
    const b = key();
    for (let i = 0; i < LIMIT; i++) await limits.revealByUser.consume(a);
    await expect(limits.revealByUser.consume(a)).rejects.toBeInstanceOf(RateLimitedError);
    await expect(limits.revealByUser.consume(b)).resolves.toBeUndefined();
  });

  it('gives back a point on reward and clears the key on forgive', async () => {
    const k = key();
    for (let i = 0; i < LIMIT; i++) await limits.loginByUserIp.consume(k);
    await limits.loginByUserIp.reward(k);
    await expect(limits.loginByUserIp.consume(k)).resolves.toBeUndefined();
    await expect(limits.loginByUserIp.consume(k)).rejects.toBeInstanceOf(RateLimitedError);
    await limits.loginByUserIp.forgive(k);
    for (let i = 0; i < LIMIT; i++) await limits.loginByUserIp.consume(k);
    await expect(limits.loginByUserIp.consume(k)).rejects.toBeInstanceOf(RateLimitedError);
  });

  it('rewards below zero never hand out more than the limit in the next window', async () => {
    const k = key();
    await limits.loginByIp.consume(k);
    for (let i = 0; i < 3; i++) await limits.loginByIp.reward(k);
    const results = await Promise.all(Array.from({ length: LIMIT * 10 + 10 }, () => outcome(limits.loginByIp.consume(k))));
    // Two rewards beyond the one point spent: the counter went to -2, so the window allows the limit plus two.
    expect(results.filter((r) => r === 'allowed')).toHaveLength(LIMIT * 10 + 2);
  });

  if (dbKind() === 'mysql') {
    it('starts a new window once the stored one has ended (MySQL: the row is rewritten, not added to)', async () => {
      const k = key();
      for (let i = 0; i < LIMIT; i++) await limits.revealByUser.consume(k);
      await expect(limits.revealByUser.consume(k)).rejects.toBeInstanceOf(RateLimitedError);
      await ctx.db.transaction((tx) => tx.query('UPDATE pkv_rate_limits SET expire = ? WHERE `key` = ?', [Date.now() - 1, `reveal:${k}`]));
      await expect(limits.revealByUser.consume(k)).resolves.toBeUndefined();
      const stored = await row('reveal', k);
      expect(Number(stored!.points)).toBe(1);
      expect(Number(stored!.expire)).toBeGreaterThan(Date.now() + 50_000);
    });

    it('spends a burst on one key (one turn) as one upsert of its sum: callers are counted in the order they asked, as if one after another', async () => {
      const k = key();
      const results = await Promise.all(Array.from({ length: 12 }, () => outcome(limits.revealByUser.consume(k))));
      expect(results).toEqual([...Array<string>(LIMIT).fill('allowed'), ...Array<string>(12 - LIMIT).fill('limited')]);
      expect(Number((await row('reveal', k))!.points)).toBe(12);

      // A burst that opens a new window counts from zero: the old count is not added to.
      await ctx.db.transaction((tx) => tx.query('UPDATE pkv_rate_limits SET expire = ? WHERE `key` = ?', [Date.now() - 1, `reveal:${k}`]));
      const fresh = await Promise.all(Array.from({ length: 3 }, () => outcome(limits.revealByUser.consume(k))));
      expect(fresh).toEqual(['allowed', 'allowed', 'allowed']);
      expect(Number((await row('reveal', k))!.points)).toBe(3);
    });

    it('shares counts between two limiter sets on one database, as two instances do', async () => {
      const other = createRateLimits({ loginRateLimit: LIMIT, revealRateLimit: LIMIT }, ctx.db);
      try {
        const k = key();
        const results = await Promise.all(Array.from({ length: 20 }, (_, i) => outcome((i % 2 ? other : limits).revealByUser.consume(k))));
        expect(results.filter((r) => r === 'allowed')).toHaveLength(LIMIT);
      } finally {
        await other.close();
      }
    });
  }
});

