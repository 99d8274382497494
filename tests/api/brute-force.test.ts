import crypto from 'node:crypto';
import type { Response } from 'supertest';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { countWhere, isEnvelope, LeakBook, randomIp } from '../support/resilience-helpers';

jest.setTimeout(120_000);

const LOGIN_LIMIT = 3; // failed sign-ins per username+IP per 15 min; per IP: ×10 per hour
const REVEAL_LIMIT = 4; // reveals per user per minute; per IP: ×10 per minute

/**
 * Brute force: the login and reveal limits hold per user and per IP, answer 429 with Retry-After and the error
 * envelope, and every refusal is audited as rate_limited. Several client IPs are simulated with PKV_TRUST_PROXY=true
 * and X-Forwarded-For (each test uses fresh random addresses, so the tests do not share counters).
 */
describe('brute force', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let project: { id: string };
  const book = new LeakBook();

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_LOGIN_RATE_LIMIT: String(LOGIN_LIMIT), PKV_REVEAL_RATE_LIMIT: String(REVEAL_LIMIT), PKV_TRUST_PROXY: 'true' });
    admin = await ctx.user('admin');
    book.addUser(admin);
    project = await createProject(ctx, admin);
  });
  afterAll(() => ctx?.close());

  const from = (ip: string) => ({ 'X-Forwarded-For': ip });
  const signIn = async (ip: string, username: string, password: string) => {
    const res = await ctx.http().post('/api/v1/auth/login').set(from(ip)).send({ username, password });
    book.seen(res);
    if (res.body?.accessToken) book.add(res.body.accessToken);
    return res;
  };
  const reveal = async (ip: string, auth: Record<string, string>, keyId: string, body: Record<string, unknown> = {}) => {
    const res = await ctx.http().post(`/api/v1/provider-keys/${keyId}/reveal`).set(from(ip)).set(auth).send(body);
    book.seen(res);
    return res;
  };
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
  /** 429 rate_limited, the envelope, a whole-second Retry-After within the window, and no secret. */
  const expectLimited = (res: Response, windowSeconds: number, secret?: string) => {
    expect({ status: res.status, envelope: isEnvelope(res.body, 'rate_limited') }).toEqual({ status: 429, envelope: true });
    expect(res.headers['retry-after']).toMatch(/^\d+$/);
    const wait = Number(res.headers['retry-after']);
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(windowSeconds);
    if (secret) expect(res.text).not.toContain(secret);
    return wait;
  };
  const rows = (where: string, params: unknown[]) =>
    ctx.db.read((m) => m.query(`SELECT action, outcome, actor_id, actor_username, ip, key_id, via, api_token_id, detail FROM audit_events WHERE ${where} ORDER BY id`, params)) as Promise<Array<Record<string, unknown>>>;

  describe('sign-in', () => {
    it(`blocks one username from one address after ${LOGIN_LIMIT} failures, even with the right password, audited; the same user still signs in from elsewhere`, async () => {
      const victim = await user('member');
      const [attacker, home] = [randomIp(), randomIp()];
      for (let i = 0; i < LOGIN_LIMIT; i++) expect((await signIn(attacker, victim.username, `guess-${i}-password`)).status).toBe(401);
      const blocked = await signIn(attacker, victim.username, victim.password);
      expectLimited(blocked, 15 * 60);
      expect(blocked.body.accessToken).toBeUndefined();
      expectLimited(await signIn(attacker, victim.username.toUpperCase(), victim.password), 15 * 60);
      // The limit is per username+address: an attacker elsewhere cannot lock the owner out.
      expect((await signIn(home, victim.username, victim.password)).status).toBe(200);

      const trail = await rows("action = 'auth.login' AND actor_username = ? AND ip = ?", [victim.username.toLowerCase(), attacker]);
      expect(trail.map((r) => r.outcome)).toEqual(['denied', 'denied', 'denied', 'rate_limited', 'rate_limited']);
      expect(trail.every((r) => r.actor_id === victim.id)).toBe(true);
      expect(JSON.parse(String(trail[3].detail)).retryAfterSeconds).toBeGreaterThan(0);
    });

    it(`blocks an address spraying many usernames after ${LOGIN_LIMIT * 10} failures, for every username, audited; other addresses are unaffected`, async () => {
      const sprayer = randomIp();
      const real = await user('auditor');
      const perIp = LOGIN_LIMIT * 10;
      for (let i = 0; i < perIp; i++) {
        // Each username fails once only: no per-username limit is ever reached.
        const res = await signIn(sprayer, `spray-${i}-${crypto.randomBytes(3).toString('hex')}`, 'Winter2025!');
        expect({ i, status: res.status }).toEqual({ i, status: 401 });
      }
      const blocked = await signIn(sprayer, real.username, real.password);
      expectLimited(blocked, 60 * 60);
      expectLimited(await signIn(sprayer, `spray-next-${crypto.randomBytes(3).toString('hex')}`, 'Winter2025!'), 60 * 60);
      expect((await signIn(randomIp(), real.username, real.password)).status).toBe(200);

      const trail = await rows("action = 'auth.login' AND ip = ?", [sprayer]);
      expect(trail).toHaveLength(perIp + 2);
      expect(trail.slice(0, perIp).every((r) => r.outcome === 'denied')).toBe(true);
      expect(trail.slice(perIp).map((r) => [r.outcome, r.actor_username])).toEqual([
        ['rate_limited', real.username.toLowerCase()],
        ['rate_limited', '(unknown user)'],
      ]);
    });

    it('blocks each address of a distributed guess on one username separately', async () => {
      const victim = await user('member');
      const addresses = [randomIp(), randomIp(), randomIp()];
      for (const ip of addresses) {
        for (let i = 0; i < LOGIN_LIMIT; i++) expect((await signIn(ip, victim.username, `guess-${ip}-${i}`)).status).toBe(401);
        expectLimited(await signIn(ip, victim.username, `guess-${ip}-last`), 15 * 60);
      }
      expect(await countWhere(ctx, 'audit_events', "action = 'auth.login' AND outcome = 'rate_limited' AND actor_id = ?", [victim.id])).toBe(addresses.length);
      expect((await signIn(randomIp(), victim.username, victim.password)).status).toBe(200);
    });

    it('takes the client address from the first hop of an X-Forwarded-For chain', async () => {
      const victim = await user('member');
      const client = randomIp();
      for (let i = 0; i < LOGIN_LIMIT; i++) expect((await signIn(`${client}, ${randomIp()}`, victim.username, `guess-${i}`)).status).toBe(401);
      expectLimited(await signIn(`${client}, ${randomIp()}`, victim.username, victim.password), 15 * 60);
      expectLimited(await signIn(client, victim.username, victim.password), 15 * 60);
    });
  });

  describe('reveal', () => {
    it(`stops a user after ${REVEAL_LIMIT} reveals a minute, across addresses and credentials, with 429 and Retry-After, audited as rate_limited`, async () => {
      const owner = await user('member');
      const key = await keyFor(owner);
      const token = await createApiToken(ctx, owner, ['provider-keys:reveal', 'provider-keys:read']);
      book.add(token.token);
      const [a, b] = [randomIp(), randomIp()];
      expect((await reveal(a, owner.auth, key.id)).status).toBe(200);
      expect((await reveal(b, owner.auth, key.id)).status).toBe(200);
      expect((await reveal(a, token.auth, key.id)).status).toBe(200);
      expect((await reveal(b, token.auth, key.id)).status).toBe(200);
      // Used up, whatever the address or credential.
      expectLimited(await reveal(a, owner.auth, key.id), 60, key.secret);
      expectLimited(await reveal(randomIp(), token.auth, key.id, { reason: 'again' }), 60, key.secret);
      // Someone else is not affected.
      const other = await user('member');
      const otherKey = await keyFor(other);
      expect((await reveal(a, other.auth, otherKey.id)).status).toBe(200);

      const trail = await rows("action = 'provider_key.reveal' AND actor_id = ?", [owner.id]);
      expect(trail.map((r) => [r.outcome, r.via])).toEqual([
        ['success', 'session'],
        ['success', 'session'],
        ['success', 'api_token'],
        ['success', 'api_token'],
        ['rate_limited', 'session'],
        ['rate_limited', 'api_token'],
      ]);
      expect(trail.every((r) => r.key_id === key.id)).toBe(true);
      expect(trail[5].api_token_id).toBe(token.id);
      const [row] = await ctx.db.read((m) => m.query('SELECT reveal_count FROM provider_keys WHERE id = ?', [key.id]));
      expect(Number(row.reveal_count)).toBe(REVEAL_LIMIT);
    });

    it('counts refused attempts too: probing other people’s keys uses up the same allowance', async () => {
      const prober = await user('member');
      const own = await keyFor(prober);
      const victim = await user('member');
      const theirs = await keyFor(victim);
      const ip = randomIp();
      for (let i = 0; i < REVEAL_LIMIT; i++) expect((await reveal(ip, prober.auth, theirs.id)).status).toBe(404);
      expectLimited(await reveal(ip, prober.auth, own.id), 60, own.secret);
      const trail = await rows("action = 'provider_key.reveal' AND actor_id = ?", [prober.id]);
      expect(trail.map((r) => r.outcome)).toEqual([...Array(REVEAL_LIMIT).fill('denied'), 'rate_limited']);
    });

    it('does not let one user over their own allowance use up the allowance of the address they share with others', async () => {
      const ip = randomIp();
      const greedy = await user('member');
      const greedyKey = await keyFor(greedy);
      for (let i = 0; i < REVEAL_LIMIT; i++) expect((await reveal(ip, greedy.auth, greedyKey.id)).status).toBe(200);
      // Far more refused attempts than the address allows in all (the limit × 10).
      for (let i = 0; i < REVEAL_LIMIT * 12; i++) expectLimited(await reveal(ip, greedy.auth, greedyKey.id), 60);
      // Neighbours behind the same address still have all but the greedy user's allowed reveals.
      let ok = 0;
      for (let n = 0; n < 9; n++) {
        const neighbour = await user('member');
        const key = await keyFor(neighbour);
        for (let i = 0; i < REVEAL_LIMIT; i++) {
          const res = await reveal(ip, neighbour.auth, key.id);
          expect(res.status).toBe(200);
          ok++;
        }
      }
      expect(ok).toBe(REVEAL_LIMIT * 9);
      const last = await user('member');
      expectLimited(await reveal(ip, last.auth, (await keyFor(last)).id), 60);
    });

    it(`stops an address after ${REVEAL_LIMIT * 10} reveals a minute across many users, audited; the same user reveals from elsewhere`, async () => {
      const ip = randomIp();
      const users: Array<{ u: TestUser; key: CreatedKey }> = [];
      for (let i = 0; i < 11; i++) {
        const u = await user('member');
        users.push({ u, key: await keyFor(u) });
      }
      let ok = 0;
      for (const { u, key } of users.slice(0, 10)) {
        for (let i = 0; i < REVEAL_LIMIT; i++) {
          const res = await reveal(ip, u.auth, key.id);
          expect(res.status).toBe(200);
          ok++;
        }
      }
      expect(ok).toBe(REVEAL_LIMIT * 10);
      const last = users[10];
      expectLimited(await reveal(ip, last.u.auth, last.key.id), 60, last.key.secret);
      const elsewhere = await reveal(randomIp(), last.u.auth, last.key.id);
      expect(elsewhere.status).toBe(200);
      expect(elsewhere.body.secret).toBe(last.key.secret);

      const trail = await rows("action = 'provider_key.reveal' AND ip = ?", [ip]);
      expect(trail).toHaveLength(REVEAL_LIMIT * 10 + 1);
      expect(trail[trail.length - 1]).toMatchObject({ outcome: 'rate_limited', actor_id: last.u.id, key_id: last.key.id });
      // The per-user count of the last user was spent on the refused attempt too (allowed or not).
      expect(await countWhere(ctx, 'audit_events', "action = 'provider_key.reveal' AND outcome = 'success' AND ip = ?", [ip])).toBe(REVEAL_LIMIT * 10);
    });
  });

  it('leaks no password, token or secret into any log line, error body or audit row', async () => {
    expect(book.size).toBeGreaterThan(30);
    expect(await book.check(ctx)).toEqual({});
  });
});
