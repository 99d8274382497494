import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { buildContainer } from '../../src/container';
import { createApp } from '../../src/app';
import { CaptureTransport, createLogger } from '../../src/logger';
import { AUDIENCE, ISSUER } from '../../src/modules/auth/sessions';
import { countWhere, isEnvelope, LeakBook } from '../support/resilience-helpers';

jest.setTimeout(120_000);

/**
 * Attacks on session JWTs and API tokens that tests/api/auth.test.ts does not already cover (it has alg:none,
 * HS512, expired, tampered, edited, wrong issuer/audience/secret, unknown user, logged out, disabled, stale epoch,
 * revoked/expired/unknown API tokens): RS/HS confusion, asymmetric and embedded-key tokens, not-yet-valid tokens,
 * malformed claims, deleted users, replay after logout on every channel and across a restart, API token forgeries.
 * Every forged credential names a real, active admin, so the forgery is the only reason for the 401.
 */
describe('token attacks', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let victim: TestUser;
  let key: CreatedKey;
  const book = new LeakBook();
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
  const now = () => Math.floor(Date.now() / 1000);
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsaPublicPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();

  /** Claims exactly like the server's, for `sub`; overrides replace or (undefined) remove claims. */
  const claims = (sub: string, over: Record<string, unknown> = {}) => {
    const c: Record<string, unknown> = { ep: 0, sub, jti: crypto.randomBytes(18).toString('base64url'), iss: ISSUER, aud: AUDIENCE, iat: now() - 5, exp: now() + 600, ...over };
    for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
    return c;
  };
  /** Signs with jsonwebtoken (the right secret unless told otherwise). */
  const sign = (payload: Record<string, unknown>, secret: jwt.Secret = ctx.config.jwtSecret, algorithm: jwt.Algorithm = 'HS256', header: Record<string, unknown> = {}) =>
    jwt.sign(payload, secret, { algorithm, header: { alg: algorithm, typ: 'JWT', ...header } as jwt.JwtHeader });
  /** Hand-assembled: any header, any payload, any signature bytes. */
  const assemble = (header: Record<string, unknown>, payload: Record<string, unknown>, signature: (input: string) => string) => {
    const input = `${b64(header)}.${b64(payload)}`;
    return `${input}.${signature(input)}`;
  };
  const hmac = (secret: crypto.BinaryLike, alg = 'sha256') => (input: string) => crypto.createHmac(alg, secret).update(input).digest('base64url');

  const epochOf = async (id: string) => Number((await ctx.db.read((m) => m.query('SELECT session_epoch FROM users WHERE id = ?', [id])))[0].session_epoch);
  const writes = async () => {
    const out: Record<string, number> = {};
    for (const t of ['users', 'projects', 'provider_keys', 'api_tokens', 'revoked_sessions', 'audit_events']) out[t] = await countWhere(ctx, t);
    return out;
  };

  /** The routes each forgery is tried on: a read, an admin read, and the reveal. */
  const probes = () => [
    { name: 'GET /auth/me', run: (h: Record<string, string>) => ctx.http().get('/api/v1/auth/me').set(h) },
    { name: 'GET /users', run: (h: Record<string, string>) => ctx.http().get('/api/v1/users').set(h) },
    { name: 'POST reveal', run: (h: Record<string, string>) => ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(h).send({ reason: 'forged' }) },
  ];

  const expectRefused = async (headers: Record<string, string>, story: string) => {
    const before = await writes();
    for (const p of probes()) {
      const res = await p.run(headers);
      book.seen({ status: res.status, text: res.text });
      expect({ story, route: p.name, status: res.status, envelope: isEnvelope(res.body, 'unauthorized'), challenge: /^Bearer\b/.test(String(res.headers['www-authenticate'])) }).toEqual({
        story,
        route: p.name,
        status: 401,
        envelope: true,
        challenge: true,
      });
      expect(res.text).not.toContain(key.secret);
    }
    expect(await writes()).toEqual(before);
  };
  const expectAccepted = async (token: string) => {
    const res = await ctx.http().get('/api/v1/auth/me').set({ Authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    return res;
  };

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '1000' });
    admin = await ctx.user('admin');
    victim = await ctx.user('admin');
    book.addUser(admin);
    book.addUser(victim);
    const project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: victim.id, projectId: project.id });
    book.add(key.secret);
  });
  afterAll(() => ctx?.close());

  it('accepts the control: a token built here exactly as the server builds it (so each refusal below has one cause)', async () => {
    const token = sign(claims(victim.id, { ep: await epochOf(victim.id) }));
    book.add(token);
    await expectAccepted(token);
  });

  describe('algorithm confusion and foreign keys', () => {
    const cases: Array<[string, () => string]> = [
      ['an RS256 token signed with an attacker’s RSA key', () => sign(claims(victim.id), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256')],
      ['an HS256 token keyed with that RSA public key PEM (RS/HS confusion)', () => assemble({ alg: 'HS256', typ: 'JWT' }, claims(victim.id), hmac(rsaPublicPem))],
      ['an RS256 header over an HMAC made with the public key PEM', () => assemble({ alg: 'RS256', typ: 'JWT' }, claims(victim.id), hmac(rsaPublicPem))],
      ['an RS256 header over an HMAC made with the real secret', () => assemble({ alg: 'RS256', typ: 'JWT' }, claims(victim.id), hmac(ctx.config.jwtSecret))],
      ['a PS256 token signed with an attacker’s RSA key', () => sign(claims(victim.id), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'PS256')],
      ['an ES256 token signed with an attacker’s EC key', () => sign(claims(victim.id), ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'ES256')],
      ['an RS256 token carrying its own key in a jwk header', () => sign(claims(victim.id), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256', { jwk: rsa.publicKey.export({ format: 'jwk' }) })],
      ['an RS256 token pointing jku/x5u at an attacker’s URL', () => sign(claims(victim.id), rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'RS256', { jku: 'http://127.0.0.1:9/jwks.json', x5u: 'http://127.0.0.1:9/cert.pem', kid: '../../dev/null' })],
      ['alg "None" with an empty signature', () => assemble({ alg: 'None', typ: 'JWT' }, claims(victim.id), () => '')],
      ['alg "NONE" with an empty signature', () => assemble({ alg: 'NONE', typ: 'JWT' }, claims(victim.id), () => '')],
      ['alg "none" carrying a valid HS256 signature', () => assemble({ alg: 'none', typ: 'JWT' }, claims(victim.id), hmac(ctx.config.jwtSecret))],
      ['no alg at all, with a valid HS256 signature', () => assemble({ typ: 'JWT' }, claims(victim.id), hmac(ctx.config.jwtSecret))],
      ['an HS384 token with the right secret', () => sign(claims(victim.id), ctx.config.jwtSecret, 'HS384')],
      ['an HS256 token with the secret’s first 31 bytes', () => sign(claims(victim.id), ctx.config.jwtSecret.subarray(0, 31))],
      ['an HS256 token with the secret written as base64 text', () => sign(claims(victim.id), ctx.config.jwtSecret.toString('base64'))],
      ['an HS256 token with the secret written as hex text', () => sign(claims(victim.id), ctx.config.jwtSecret.toString('hex'))],
      ['only two segments', () => sign(claims(victim.id)).split('.').slice(0, 2).join('.')],
      ['four segments', () => `${sign(claims(victim.id))}.AAAA`],
      ['a JWE-looking five-segment token', () => `${b64({ alg: 'dir', enc: 'A256GCM' })}..${'A'.repeat(16)}.${'B'.repeat(20)}.${'C'.repeat(22)}`],
      ['a header that is not JSON', () => `${Buffer.from('not json').toString('base64url')}.${b64(claims(victim.id))}.${hmac(ctx.config.jwtSecret)('x')}`],
      ['a payload that is a JSON array', () => assemble({ alg: 'HS256', typ: 'JWT' }, [claims(victim.id)] as unknown as Record<string, unknown>, hmac(ctx.config.jwtSecret))],
    ];
    it.each(cases)('refuses %s with 401, writing nothing', async (story, make) => {
      const token = make();
      book.add(token);
      await expectRefused({ Authorization: `Bearer ${token}` }, story);
    });
  });

  describe('validity window and claims (signed with the right secret)', () => {
    const cases: Array<[string, (ep: number) => Record<string, unknown>]> = [
      ['nbf an hour in the future', (ep) => claims(victim.id, { ep, nbf: now() + 3600 })],
      ['nbf a minute in the future', (ep) => claims(victim.id, { ep, nbf: now() + 60 })],
      ['iat an hour in the future', (ep) => claims(victim.id, { ep, iat: now() + 3600, exp: now() + 7200 })],
      ['iat a minute in the future', (ep) => claims(victim.id, { ep, iat: now() + 60, exp: now() + 660 })],
      ['no iat', (ep) => claims(victim.id, { ep, iat: undefined })],
      ['iat as a string', (ep) => claims(victim.id, { ep, iat: String(now()) })],
      ['exp ten seconds ago (past the 2 s tolerance)', (ep) => claims(victim.id, { ep, iat: now() - 600, exp: now() - 10 })],
      ['no exp', (ep) => claims(victim.id, { ep, exp: undefined })],
      ['exp as a string', (ep) => claims(victim.id, { ep, exp: String(now() + 600) })],
      ['no jti', (ep) => claims(victim.id, { ep, jti: undefined })],
      ['a numeric jti', (ep) => claims(victim.id, { ep, jti: 12345 })],
      ['no sub', (ep) => claims(victim.id, { ep, sub: undefined })],
      ['a sub that is an array of ids', (ep) => claims(victim.id, { ep, sub: [victim.id] })],
      ['a sub with SQL in it', (ep) => claims(`${victim.id}' OR '1'='1`, { ep })],
      ['no ep', () => claims(victim.id, { ep: undefined })],
      ['an ep from the future', (ep) => claims(victim.id, { ep: ep + 1 })],
      ['the issuer in another case', (ep) => claims(victim.id, { ep, iss: ISSUER.toUpperCase() })],
      ['no issuer', (ep) => claims(victim.id, { ep, iss: undefined })],
      ['no audience', (ep) => claims(victim.id, { ep, aud: undefined })],
      ['an audience list without ours', (ep) => claims(victim.id, { ep, aud: ['pkv-console', 'other'] })],
    ];
    it.each(cases)('refuses a token with %s with 401, writing nothing', async (story, make) => {
      // Assembled by hand (jsonwebtoken's sign refuses some of these claims), HMAC-SHA256 under the real secret.
      const token = assemble({ alg: 'HS256', typ: 'JWT' }, make(await epochOf(victim.id)), hmac(ctx.config.jwtSecret));
      book.add(token);
      await expectRefused({ Authorization: `Bearer ${token}` }, story);
    });

    it('tolerates the documented 2 s of clock skew, and no more', async () => {
      const ep = await epochOf(victim.id);
      const ok = sign(claims(victim.id, { ep, iat: now() + 1, nbf: now() + 1 }));
      book.add(ok);
      await expectAccepted(ok);
    });
  });

  describe('tokens of users that are gone or disabled', () => {
    it('refuses the session of a user deleted from the database with 401', async () => {
      const gone = await ctx.user('member');
      book.addUser(gone);
      await expectAccepted(gone.token);
      await ctx.db.transaction((tx) => tx.query('DELETE FROM users WHERE id = ?', [gone.id]));
      await expectRefused({ Authorization: `Bearer ${gone.token}` }, 'deleted user');
      await expectRefused({ Authorization: `Bearer ${sign(claims(gone.id))}` }, 'fresh token for a deleted user');
    });

    it('refuses the session and API token of a disabled admin at the next request, on every route', async () => {
      const u = await ctx.user('admin');
      const token = await createApiToken(ctx, u, ['users:read', 'provider-keys:reveal', 'provider-keys:read']);
      book.addUser(u);
      book.add(token.token);
      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
      await expectRefused(u.auth, 'disabled user session');
      await expectRefused(token.auth, 'disabled user API token');
      await expectRefused({ 'X-API-Key': token.token }, 'disabled user API token in X-API-Key');
    });
  });

  describe('replay after logout', () => {
    it('refuses a logged-out session on every route and channel: Bearer, X-API-Key and the console cookie', async () => {
      const u = await ctx.user('admin');
      book.addUser(u);
      expect((await ctx.http().post('/api/v1/auth/logout').set(u.auth)).status).toBe(204);
      await expectRefused(u.auth, 'logged-out session (Bearer)');
      await expectRefused({ Authorization: `bearer   ${u.token}  ` }, 'logged-out session (odd spacing)');
      await expectRefused({ 'X-API-Key': u.token }, 'logged-out session (X-API-Key)');
      await expectRefused({ Cookie: `pkv_session=${u.token}` }, 'logged-out session (cookie)');
    });

    it('refuses a logged-out console cookie session replayed as a Bearer token', async () => {
      const u = await ctx.user('member');
      book.addUser(u);
      const login = await ctx.http().post('/api/v1/auth/login').send({ username: u.username, password: u.password, cookie: true });
      expect(login.status).toBe(200);
      const cookie = String(login.headers['set-cookie']).match(/pkv_session=([^;]+)/)![1];
      book.add(cookie, login.body.csrfToken);
      expect((await ctx.http().get('/api/v1/auth/me').set('Cookie', `pkv_session=${cookie}`)).status).toBe(200);
      expect((await ctx.http().post('/api/v1/auth/logout').set('Cookie', `pkv_session=${cookie}`).set('X-CSRF-Token', login.body.csrfToken)).status).toBe(204);
      await expectRefused({ Authorization: `Bearer ${cookie}` }, 'logged-out cookie session as Bearer');
      await expectRefused({ Cookie: `pkv_session=${cookie}` }, 'logged-out cookie session');
    });

    it('keeps a logged-out session dead after a restart (the logout list lives in the database)', async () => {
      const u = await ctx.user('admin');
      book.addUser(u);
      expect((await ctx.http().post('/api/v1/auth/logout').set(u.auth)).status).toBe(204);
      const capture = new CaptureTransport();
      const restarted = createApp(await buildContainer(ctx.config, createLogger('debug', [capture]), ctx.db));
      const { default: request } = await import('supertest');
      const res = await request(restarted).get('/api/v1/auth/me').set(u.auth);
      expect(res.status).toBe(401);
      const fresh = await ctx.login(u.username, u.password);
      book.add(fresh);
      expect((await request(restarted).get('/api/v1/auth/me').set({ Authorization: `Bearer ${fresh}` })).status).toBe(200);
      expect(book.foundInText(capture.lines.join('\n'))).toEqual([]);
    });

    it('refuses a session ended by a password change, and one issued before an admin reset, on every route', async () => {
      const u = await ctx.user('admin');
      book.addUser(u);
      const newPassword = `pw-${crypto.randomBytes(12).toString('base64url')}`;
      book.add(newPassword);
      expect((await ctx.http().post('/api/v1/auth/password').set(u.auth).send({ currentPassword: u.password, newPassword })).status).toBe(204);
      await expectRefused(u.auth, 'session before a password change');
      const again = await ctx.login(u.username, newPassword);
      book.add(again);
      expect((await ctx.http().patch(`/api/v1/users/${u.id}`).set(admin.auth).send({ password: `${newPassword}-reset` })).status).toBe(200);
      book.add(`${newPassword}-reset`);
      await expectRefused({ Authorization: `Bearer ${again}` }, 'session before an admin reset');
    });
  });

  describe('API token forgeries', () => {
    it('refuses near misses of a live token, its hash, its prefix, and a token passed in the query string', async () => {
      const live = await createApiToken(ctx, victim, ['users:read', 'provider-keys:read', 'provider-keys:reveal']);
      book.add(live.token);
      expect((await ctx.http().get('/api/v1/users').set(live.auth)).status).toBe(200);
      const body = live.token.slice(4);
      const flip = (s: string, i: number) => `${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
      const [row] = await ctx.db.read((m) => m.query('SELECT * FROM api_tokens WHERE id = ?', [live.id]));
      const stored = Object.values(row as Record<string, unknown>).filter((v): v is string => typeof v === 'string' && /^[0-9a-f]{64}$|^[A-Za-z0-9_-]{43}$/.test(v));
      const forgeries: Array<[string, string]> = [
        ['the first character flipped', `pkv_${flip(body, 0)}`],
        ['the last character flipped', `pkv_${flip(body, body.length - 1)}`],
        ['one character dropped', live.token.slice(0, -1)],
        ['one character added', `${live.token}A`],
        ['upper-cased', live.token.toUpperCase()],
        ['a different prefix', `PKV_${body}`],
        ['the display prefix alone', live.token.slice(0, 12)],
        ['the SHA-256 of the token (hex)', crypto.createHash('sha256').update(live.token).digest('hex')],
        ['the SHA-256 of the token (base64url)', `pkv_${crypto.createHash('sha256').update(live.token).digest('base64url')}`],
        ...stored.map((v, i): [string, string] => [`stored column value #${i + 1}`, v.length === 43 ? `pkv_${v}` : v]),
        ['a token with a NUL-free SQL wildcard', `pkv_${body.slice(0, 20)}%`],
      ];
      for (const [story, forged] of forgeries) {
        book.add(forged);
        await expectRefused({ Authorization: `Bearer ${forged}` }, `API token: ${story}`);
        await expectRefused({ 'X-API-Key': forged }, `API token in X-API-Key: ${story}`);
      }
      await expectRefused({}, 'no credential');
      const inQuery = await ctx.http().get(`/api/v1/users?access_token=${encodeURIComponent(live.token)}`);
      expect(inQuery.status).toBe(401);
      expect((await ctx.http().get('/api/v1/users').set(live.auth)).status).toBe(200);
    });

    it('refuses the old secret the moment a token is regenerated, and a revoked token forever', async () => {
      const t = await createApiToken(ctx, victim, ['users:read']);
      book.add(t.token);
      const regen = await ctx.http().post(`/api/v1/api-tokens/${t.id}/regenerate`).set(victim.auth);
      expect(regen.status).toBe(200);
      book.add(regen.body.token);
      await expectRefused(t.auth, 'regenerated-away secret');
      expect((await ctx.http().get('/api/v1/users').set({ Authorization: `Bearer ${regen.body.token}` })).status).toBe(200);
      expect((await ctx.http().delete(`/api/v1/api-tokens/${t.id}`).set(victim.auth)).status).toBe(204);
      await expectRefused({ Authorization: `Bearer ${regen.body.token}` }, 'revoked token');
      // No route brings it back.
      expect((await ctx.http().post(`/api/v1/api-tokens/${t.id}/renew`).set(victim.auth).send({})).status).toBeGreaterThanOrEqual(400);
      await expectRefused({ Authorization: `Bearer ${regen.body.token}` }, 'revoked token after a renew attempt');
    });
  });

  it('leaks no token, secret or password into any log line, error body or audit row', async () => {
    expect(book.size).toBeGreaterThan(40);
    expect(await book.check(ctx)).toEqual({});
  });
});
