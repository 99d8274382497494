import crypto from 'node:crypto';
import { createTestContext, dbKind, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { flipBit, setKeyColumns, storedKey } from '../support/crypto-helpers';
import { Actor, effectiveRights } from '../../src/modules/auth/actor';
import { RateLimitedError } from '../../src/errors';

/**
 * Group commit for reveals: the reveals that arrive in one turn of the event loop share one transaction, and
 * identical credential lookups of one turn share one query. Called through the services in one turn (so they are
 * sure to share), each must still get exactly its own answer and leave exactly its own audit row, and one that makes
 * the transaction fail must not take the others with it.
 */
describe('reveals that arrive together', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let project: { id: string };

  const actorOf = (u: TestUser, requestId: string): Actor => ({
    userId: u.id,
    username: u.username,
    role: u.role,
    via: 'session',
    rights: effectiveRights(u.role),
    ip: '127.0.0.1',
    userAgent: 'pkv-tests (batch)',
    requestId,
  });

  interface Call {
    who: TestUser;
    key: string;
    reason?: string;
  }

  /** Starts every call in the same turn; answers by request id, with the audit row each one wrote. */
  const together = async (calls: Call[], c = ctx) => {
    const tag = crypto.randomBytes(4).toString('hex');
    const commitsBefore = c.db.commits;
    const settled = await Promise.allSettled(calls.map((call, i) => c.container.providerKeys.reveal(actorOf(call.who, `${tag}-${i}`), call.key, call.reason)));
    const commits = c.db.commits - commitsBefore;
    const rows: Array<Record<string, unknown>> = await c.db.read((m) => m.query("SELECT * FROM audit_events WHERE action = 'provider_key.reveal' AND request_id LIKE ?", [`${tag}-%`]));
    const rowOf = (i: number) => rows.filter((r) => r.request_id === `${tag}-${i}`);
    return { settled, rows, rowOf, commits };
  };

  const why = (row: Record<string, unknown>) => (row.detail ? JSON.parse(String(row.detail)).why : undefined);

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '1000' });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    project = await createProject(ctx, admin);
  });
  afterAll(() => ctx.close());

  const newKey = (ownerId = owner.id) => createKey(ctx, admin, { ownerId, projectId: project.id });

  it('decides, opens and audits each reveal of a mixed burst on its own, in one transaction', async () => {
    const mine = await newKey();
    const theirs = await newKey(other.id);
    const disabled = await newKey();
    await ctx.http().patch(`/api/v1/provider-keys/${disabled.id}`).set(admin.auth).send({ status: 'disabled' }).expect(200);
    const deleted = await newKey();
    await ctx.http().delete(`/api/v1/provider-keys/${deleted.id}`).set(admin.auth).expect(204);
    const damaged = await newKey();
    await setKeyColumns(ctx, damaged.id, { secret_tag: flipBit((await storedKey(ctx, damaged.id)).sealed.secret_tag!, 3) });
    const unknown = crypto.randomUUID();

    const calls: Array<Call & { expect: { outcome: string; why?: string; error?: string; secret?: string } }> = [
      { who: owner, key: mine.id, expect: { outcome: 'success', why: 'owner', secret: mine.secret } },
      { who: owner, key: mine.id, expect: { outcome: 'success', why: 'owner', secret: mine.secret } },
      { who: owner, key: theirs.id, expect: { outcome: 'denied', why: 'not_owner', error: 'NotFoundError' } },
      { who: other, key: theirs.id, expect: { outcome: 'success', why: 'owner', secret: theirs.secret } },
      { who: admin, key: mine.id, expect: { outcome: 'denied', why: 'reason_required', error: 'ValidationError' } },
      { who: admin, key: mine.id, reason: 'incident 7', expect: { outcome: 'success', why: 'admin_with_reason', secret: mine.secret } },
      { who: owner, key: disabled.id, expect: { outcome: 'denied', why: 'key_disabled', error: 'KeyDisabledError' } },
      { who: owner, key: deleted.id, expect: { outcome: 'denied', why: 'key_deleted', error: 'NotFoundError' } },
      { who: owner, key: unknown, expect: { outcome: 'denied', why: 'not_found', error: 'NotFoundError' } },
      { who: owner, key: damaged.id, expect: { outcome: 'error', why: 'integrity_check_failed', error: 'IntegrityError' } },
      { who: owner, key: mine.id, expect: { outcome: 'success', why: 'owner', secret: mine.secret } },
    ];
    const { settled, rows, rowOf, commits } = await together(calls);

    calls.forEach((call, i) => {
      const s = settled[i];
      if (call.expect.secret) {
        expect(s.status).toBe('fulfilled');
        if (s.status === 'fulfilled') expect(s.value).toMatchObject({ id: call.key, secret: call.expect.secret });
      } else {
        expect(s.status).toBe('rejected');
        if (s.status === 'rejected') expect((s.reason as Error).name).toBe(call.expect.error);
      }
      const own = rowOf(i);
      expect(own).toHaveLength(1);
      expect({ outcome: own[0].outcome, why: why(own[0]), actor: own[0].actor_id, key: own[0].key_id, reason: own[0].reason ?? undefined }).toEqual({
        outcome: call.expect.outcome,
        why: call.expect.why,
        actor: call.who.id,
        key: call.key,
        reason: call.reason,
      });
    });
    expect(rows).toHaveLength(calls.length);
    // One transaction for the burst (a background seal may add one more commit, never eleven).
    expect(commits).toBeGreaterThanOrEqual(1);
    expect(commits).toBeLessThanOrEqual(2);

    // Counters: the three owner reveals and the admin's of `mine`, one of `theirs`; none of the refused or damaged.
    expect((await storedKey(ctx, mine.id)).revealCount).toBe(4);
    expect((await storedKey(ctx, theirs.id)).revealCount).toBe(1);
    for (const k of [disabled, damaged] as CreatedKey[]) expect((await storedKey(ctx, k.id)).revealCount).toBe(0);
    // The same instant for every reveal of the burst, and last_revealed_at is it.
    const revealedAt = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.revealedAt] : []));
    expect(new Set(revealedAt).size).toBe(1);
    expect((await storedKey(ctx, mine.id)).lastRevealedAt).toBe(new Date(revealedAt[0]).getTime());
  });

  describe('one reveal whose audit row cannot be written', () => {
    const trigger = 'pkv_test_poison_reason';
    beforeAll(() =>
      ctx.db.read((m) =>
        m.query(
          ctx.kind === 'sqlite'
            ? `CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_events WHEN NEW.reason = 'poison' BEGIN SELECT RAISE(ABORT, 'x'); END`
            : `CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_events FOR EACH ROW BEGIN IF NEW.reason = 'poison' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'x'; END IF; END`,
        ),
      ),
    );
    afterAll(() => ctx.db.read((m) => m.query(`DROP TRIGGER IF EXISTS ${trigger}`)));

    it('fails alone: its caller gets 503 and nothing is counted for it, the others of its burst are revealed and audited', async () => {
      const mine = await newKey();
      const target = await newKey();
      const calls: Call[] = [
        { who: owner, key: mine.id },
        { who: admin, key: target.id, reason: 'poison' },
        { who: owner, key: mine.id },
        { who: owner, key: target.id },
      ];
      const { settled, rowOf } = await together(calls);
      expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      const refused = settled[1] as PromiseRejectedResult;
      expect(refused.reason).toMatchObject({ code: 'unavailable' });
      expect(String(refused.reason.message)).not.toContain(target.secret);
      expect(rowOf(1)).toHaveLength(0);
      for (const i of [0, 2, 3]) expect(rowOf(i).map((r) => r.outcome)).toEqual(['success']);
      expect((await storedKey(ctx, mine.id)).revealCount).toBe(2);
      expect((await storedKey(ctx, target.id)).revealCount).toBe(1);
      expect(ctx.logText()).not.toContain(target.secret);
    });
  });

  describe('one reveal whose counter cannot be written', () => {
    const trigger = 'pkv_test_poison_counter';
    let poisoned: CreatedKey;
    beforeAll(async () => {
      poisoned = await newKey();
      await ctx.db.read((m) =>
        m.query(
          ctx.kind === 'sqlite'
            ? `CREATE TRIGGER ${trigger} BEFORE UPDATE OF reveal_count ON provider_keys WHEN NEW.id = '${poisoned.id}' BEGIN SELECT RAISE(ABORT, 'x'); END`
            : `CREATE TRIGGER ${trigger} BEFORE UPDATE ON provider_keys FOR EACH ROW BEGIN IF NEW.id = '${poisoned.id}' AND NEW.reveal_count <> OLD.reveal_count THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'x'; END IF; END`,
        ),
      );
    });
    afterAll(() => ctx.db.read((m) => m.query(`DROP TRIGGER IF EXISTS ${trigger}`)));

    it('rolls its whole transaction back, audit rows included, and leaves nothing open for the reveals that follow on the same connections', async () => {
      const fine = await newKey();
      // The audit INSERT runs before the counter UPDATE: if the failed transaction were not rolled back, its rows
      // would commit with the next transaction on that connection.
      for (let round = 0; round < 3; round++) {
        const { settled, rowOf } = await together([
          { who: owner, key: poisoned.id },
          { who: owner, key: fine.id },
        ]);
        expect(settled.map((s) => s.status)).toEqual(['rejected', 'fulfilled']);
        expect((settled[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'unavailable' });
        expect(rowOf(0)).toHaveLength(0);
        expect(rowOf(1)).toHaveLength(1);
      }
      // Many more transactions on the pool's connections: still no row of the failed reveals appears.
      const { settled } = await together(Array.from({ length: 24 }, () => ({ who: owner, key: fine.id })));
      expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
      expect(await auditRows(ctx, { action: 'provider_key.reveal', keyId: poisoned.id })).toHaveLength(0);
      expect((await storedKey(ctx, poisoned.id)).revealCount).toBe(0);
      expect((await storedKey(ctx, fine.id)).revealCount).toBe(27);
    });
  });

  if (dbKind() === 'mysql') {
    it('refuses multi-statement queries on every connection: each statement of a transaction goes on its own, so a failed COMMIT is always seen', async () => {
      await expect(ctx.db.read((m) => m.query('SELECT 1; SELECT 2'))).rejects.toThrow(/syntax/i);
      await expect(ctx.db.transaction((tx) => tx.query('SELECT 1; SELECT 2'))).rejects.toThrow(/syntax/i);
    });
  }

  describe('credential lookups that arrive together', () => {
    const client = { ip: '127.0.0.1', userAgent: 'pkv-tests (batch)', requestId: null };
    const burst = <T>(n: number, fn: () => Promise<T>) => Promise.allSettled(Array.from({ length: n }, fn));
    const statuses = (r: Array<PromiseSettledResult<unknown>>) => r.map((x) => (x.status === 'fulfilled' ? 'ok' : (x.reason as Error).name));

    it('answers every request of a burst on one session (one lookup shared), and every request of a burst after its logout with 401', async () => {
      const u = await ctx.user('member');
      const ok = await burst(12, () => ctx.container.auth.authenticateSession(u.token, client));
      expect(statuses(ok)).toEqual(Array(12).fill('ok'));
      const actors = ok.map((r) => (r as PromiseFulfilledResult<Actor>).value);
      expect(new Set(actors.map((a) => a.userId))).toEqual(new Set([u.id]));
      expect(new Set(actors).size).toBe(12); // one lookup, but every request its own actor
      await ctx.http().post('/api/v1/auth/logout').set(u.auth).expect(204);
      expect(statuses(await burst(12, () => ctx.container.auth.authenticateSession(u.token, client)))).toEqual(Array(12).fill('UnauthorizedError'));
    });

    it('answers every request of a burst on one API token, and every request of a burst after its revocation with 401', async () => {
      const u = await ctx.user('member');
      const token = await createApiToken(ctx, u, ['provider-keys:read']);
      expect(statuses(await burst(12, () => ctx.container.apiTokens.authenticate(token.token, client)))).toEqual(Array(12).fill('ok'));
      await ctx.http().delete(`/api/v1/api-tokens/${token.id}`).set(u.auth).expect(204);
      expect(statuses(await burst(12, () => ctx.container.apiTokens.authenticate(token.token, client)))).toEqual(Array(12).fill('UnauthorizedError'));
    });

    it('keeps different sessions of one burst apart: a revoked one fails, the live one passes', async () => {
      const u = await ctx.user('member');
      const live = await ctx.login(u.username, u.password);
      await ctx.http().post('/api/v1/auth/logout').set(u.auth).expect(204);
      const mixed = await Promise.allSettled([u.token, live, u.token, live].map((t) => ctx.container.auth.authenticateSession(t, client)));
      expect(statuses(mixed)).toEqual(['UnauthorizedError', 'ok', 'UnauthorizedError', 'ok']);
    });
  });

  describe('against the rate limit', () => {
    let limited: TestContext;
    let lAdmin: TestUser;
    let lOwner: TestUser;
    let key: CreatedKey;

    beforeAll(async () => {
      limited = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '3' });
      lAdmin = await limited.user('admin');
      lOwner = await limited.user('member');
      const p = await createProject(limited, lAdmin);
      key = await createKey(limited, lAdmin, { ownerId: lOwner.id, projectId: p.id });
    });
    afterAll(() => limited.close());

    it('lets exactly the allowance through a burst of seven, refuses the rest with Retry-After, and audits all seven', async () => {
      const { settled, rows } = await together(Array.from({ length: 7 }, () => ({ who: lOwner, key: key.id })), limited);
      const ok = settled.filter((s) => s.status === 'fulfilled');
      const refused = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as RateLimitedError] : []));
      expect(ok).toHaveLength(3);
      expect(refused).toHaveLength(4);
      for (const r of refused) {
        expect(r).toBeInstanceOf(RateLimitedError);
        expect(r.retryAfterSeconds).toBeGreaterThanOrEqual(1);
        expect(r.retryAfterSeconds).toBeLessThanOrEqual(60);
      }
      expect(rows.map((r) => r.outcome).sort()).toEqual(['rate_limited', 'rate_limited', 'rate_limited', 'rate_limited', 'success', 'success', 'success']);
      expect((await storedKey(limited, key.id)).revealCount).toBe(3);
    });
  });
});
