import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { countRows, expectError, expectRefused, Headers, refusedCredentials, REFUSED_CREDENTIALS, RouteCase, walk } from '../support/auth-helpers';
import { ERRORS, ProgrammedAnswer, StandInProvider } from '../support/stand-in-provider';
import { FakeClock } from '../support/fake-clock';
import { RUN } from '../../src/modules/gateway/scrub';

jest.setTimeout(60_000);

type Row = Record<string, unknown>;
const HEALTH_KEYS = ['status', 'checkedAt', 'detail'];
const EVENT_KEYS = ['id', 'at', 'status', 'previousStatus', 'detail', 'source', 'httpStatus', 'actorId'].sort();

/** Every run of RUN characters of `secret` found in `text`. */
function runsOf(secret: string, text: string): string[] {
  const hits = new Set<string>();
  for (let i = 0; i + RUN <= secret.length; i++) if (text.includes(secret.slice(i, i + RUN))) hits.add(secret.slice(i, i + RUN));
  return [...hits];
}

describe('key health: POST /provider-keys/:id/check, GET /provider-keys/:id/health, health in metadata', () => {
  const clock = new FakeClock();
  let ctx: TestContext;
  let provider: StandInProvider;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let auditor: TestUser;
  let project: { id: string };
  const planted: string[] = [];

  /** A key owned by `owner` pointed at the stand-in (a valid key there unless `valid: false`). */
  const plant = async (fields: { provider?: string; baseUrl?: string; valid?: boolean; ownerId?: string } = {}): Promise<CreatedKey> => {
    const p = fields.provider ?? 'openai';
    const secret = uniqueSecret(p === 'anthropic' ? 'sk-ant-' : p === 'google' ? 'AIza' : 'sk-');
    const baseUrl = fields.baseUrl ?? (p === 'openai' ? `${provider.url}/v1` : provider.url);
    const key = await createKey(ctx, admin, { ownerId: fields.ownerId ?? owner.id, projectId: project.id, provider: p, secret, baseUrl });
    if (fields.valid !== false) provider.validKeys.add(secret);
    planted.push(secret);
    return key;
  };
  const check = (id: string, auth: Headers = owner.auth) => ctx.http().post(`/api/v1/provider-keys/${id}/check`).set(auth);
  const keyRow = async (id: string): Promise<Row> => (await ctx.db.read((m) => m.query('SELECT * FROM provider_keys WHERE id = ?', [id])))[0];
  const history = async (id: string): Promise<Row[]> => ctx.db.read((m) => m.query('SELECT * FROM key_health_events WHERE key_id = ? ORDER BY id', [id]));
  const answer = (key: CreatedKey, a: ProgrammedAnswer | undefined) => (a === undefined ? provider.answers.delete(key.secret) : provider.answers.set(key.secret, a));
  const requestsWith = (key: CreatedKey) => provider.seen.filter((r) => JSON.stringify(r.headers).includes(key.secret));

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    // Manual checks are limited to 4 × PKV_REVEAL_RATE_LIMIT a minute per user: this file runs more than 120 as one owner.
    ctx = await createTestContext({ PKV_HEALTH_CHECK_TIMEOUT: '500ms', PKV_REVEAL_RATE_LIMIT: '1000' }, { clock });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin);
  });
  afterAll(async () => {
    await provider?.close();
    await ctx?.close();
  });

  describe('the check of one key', () => {
    it('finds a working OpenAI key valid: GET /v1/models with the key, then without it (refused), recorded with a history row', async () => {
      const key = await plant();
      const before = await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(owner.auth);
      expect(before.body.health).toEqual({ status: 'unknown', checkedAt: null, detail: null });
      const seenBefore = provider.seen.length;

      const res = await check(key.id);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual([...HEALTH_KEYS].sort());
      expect(res.body).toEqual({ status: 'valid', checkedAt: new Date(clock.now()).toISOString(), detail: 'GET /v1/models answered 200; without the key: 401' });

      const calls = provider.seen.slice(seenBefore);
      expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual(['GET /v1/models', 'GET /v1/models']);
      expect(calls[0].headers.authorization).toBe(`Bearer ${key.secret}`);
      expect(calls[1].headers.authorization).toBeUndefined();
      expect(calls[1].headers['x-api-key']).toBeUndefined();

      const meta = await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(owner.auth);
      expect(meta.body.health).toEqual(res.body);
      expect(meta.body.healthProbe).toBeNull();
      const [row] = await history(key.id);
      expect(row).toMatchObject({ status: 'valid', previous_status: 'unknown', source: 'manual', actor_id: owner.id, http_status: 200 });
      // A manual check counts as the scheduled one: the next is about 6 h away (±10%).
      const next = Number((await keyRow(key.id)).health_next_check_at) - clock.now();
      expect(next).toBeGreaterThanOrEqual(0.9 * 6 * 3_600_000);
      expect(next).toBeLessThanOrEqual(1.1 * 6 * 3_600_000);
    });

    it('walks every state and back to valid, each result in the history with the one before it', async () => {
      const key = await plant();
      const steps: Array<[ProgrammedAnswer | undefined, string, RegExp]> = [
        [undefined, 'valid', /answered 200/],
        [{ status: 401, body: { error: { message: 'Incorrect API key provided' } } }, 'invalid', /^HTTP 401: Incorrect API key provided$/],
        [{ status: 402, body: { error: { message: 'Insufficient Balance' } } }, 'no_credit', /^HTTP 402/],
        [{ status: 429, body: ERRORS.insufficientQuota }, 'no_credit', /^HTTP 429: You exceeded your current quota/],
        [{ status: 429, body: ERRORS.rateLimited }, 'rate_limited', /^HTTP 429: Rate limit reached/],
        [{ status: 500, body: ERRORS.serverError }, 'upstream_error', /^HTTP 500/],
        [{ status: 503, body: 'down' }, 'upstream_error', /^HTTP 503/],
        ['hang', 'upstream_error', /^no answer within 0.5 s$/],
        [{ status: 404, body: { error: { message: 'nothing here' } } }, 'unknown', /^unexpected answer: HTTP 404/],
        [{ status: 403, body: { error: { message: 'forbidden' } } }, 'invalid', /^HTTP 403/],
        [undefined, 'valid', /answered 200/],
      ];
      for (const [programmed, status, detail] of steps) {
        answer(key, programmed);
        const res = await check(key.id);
        expect({ programmed, status: res.status, health: res.body.status }).toEqual({ programmed, status: 200, health: status });
        expect(res.body.detail).toMatch(detail);
      }
      const rows = await history(key.id);
      expect(rows.map((r) => r.status)).toEqual(steps.map(([, s]) => s));
      expect(rows.map((r) => r.previous_status)).toEqual(['unknown', ...steps.slice(0, -1).map(([, s]) => s)]);
      answer(key, undefined);
    });

    it('says upstream_error for a provider that cannot be reached, and never follows a redirect', async () => {
      const key = await plant({ baseUrl: 'http://127.0.0.1:1/v1' });
      const res = await check(key.id);
      expect(res.body).toMatchObject({ status: 'upstream_error', detail: 'the provider could not be reached (ECONNREFUSED)' });
      const moved = await plant();
      answer(moved, { status: 302, body: { moved: true }, headers: { location: `${provider.url}/elsewhere/models` } });
      const redirected = await check(moved.id);
      expect(redirected.body).toMatchObject({ status: 'unknown', detail: 'unexpected answer: HTTP 302: {"moved":true}' });
      expect(requestsWith(moved).map((r) => r.url)).toEqual(['/v1/models']);
      answer(moved, undefined);
    });

    it('never counts a success as valid when the endpoint answers without the key too (unknown, saying why)', async () => {
      const key = await plant();
      provider.openModels = true;
      try {
        const res = await check(key.id);
        expect(res.body).toMatchObject({ status: 'unknown', detail: 'GET /v1/models answered 200 with the key and 200 without it: this endpoint does not show whether the key works' });
      } finally {
        provider.openModels = false;
      }
      expect((await check(key.id)).body.status).toBe('valid');
    });

    it('scrubs the key out of what a provider echoes: the detail, the history and the log hold no run of 8 of its characters', async () => {
      const key = await plant({ valid: false });
      const res = await check(key.id);
      expect(res.body.status).toBe('invalid');
      expect(res.body.detail).toMatch(/^HTTP 401: Incorrect API key provided: \*{20,}\. Part: \*+$/);
      const stored = JSON.stringify([await keyRow(key.id), await history(key.id), res.body]);
      expect(runsOf(key.secret, stored)).toEqual([]);
      expect(runsOf(key.secret, ctx.logText())).toEqual([]);
    });

    it('checks each provider its own way', async () => {
      const anthropic = await plant({ provider: 'anthropic' });
      const google = await plant({ provider: 'google' });
      const azure = await plant({ provider: 'azure-openai' });
      const deepseek = await plant({ provider: 'deepseek' });
      for (const k of [anthropic, google, azure, deepseek]) expect({ id: k.id, status: (await check(k.id)).body.status }).toEqual({ id: k.id, status: 'valid' });
      const [a] = requestsWith(anthropic);
      expect(a).toMatchObject({ method: 'GET', url: '/v1/models?limit=1' });
      expect(a.headers).toMatchObject({ 'x-api-key': anthropic.secret, 'anthropic-version': '2023-06-01' });
      expect(a.headers.authorization).toBeUndefined();
      const [g] = requestsWith(google);
      expect(g).toMatchObject({ method: 'GET', url: '/v1beta/models?pageSize=1' });
      expect(g.headers['x-goog-api-key']).toBe(google.secret);
      const [z] = requestsWith(azure);
      expect(z).toMatchObject({ method: 'GET', url: '/openai/models?api-version=2024-10-21' });
      expect(z.headers['api-key']).toBe(azure.secret);
      expect(requestsWith(deepseek)[0]).toMatchObject({ method: 'GET', url: '/models' });

      answer(google, { status: 400, body: ERRORS.googleBadKey });
      expect((await check(google.id)).body).toMatchObject({ status: 'invalid', detail: 'HTTP 400: API key not valid. Please pass a valid API key.' });
      answer(anthropic, { status: 400, body: ERRORS.anthropicCredit });
      expect((await check(anthropic.id)).body.status).toBe('no_credit');
    });

    it('checks Volcengine Ark and custom keys only with a probe an admin set (one token of its model); without one, 409', async () => {
      const ark = await plant({ provider: 'volcengine-ark' });
      const none = await check(ark.id);
      expectError(none, 409, 'conflict');
      expect(none.body.error.message).toMatch(/no free check/);
      expect(requestsWith(ark)).toEqual([]);

      const set = await ctx.http().patch(`/api/v1/provider-keys/${ark.id}`).set(admin.auth).send({ healthProbe: { model: 'doubao-lite-4k' } });
      expect(set.status).toBe(200);
      expect(set.body.healthProbe).toEqual({ model: 'doubao-lite-4k' });
      const [audit] = await auditRows(ctx, { action: 'provider_key.update', keyId: ark.id });
      expect(JSON.parse(String(audit.detail))).toMatchObject({ changed: ['healthProbe'], healthProbe: 'doubao-lite-4k' });

      const res = await check(ark.id);
      expect(res.body).toMatchObject({ status: 'valid', detail: 'POST /chat/completions answered 200; without the key: 401' });
      const [probe] = requestsWith(ark);
      expect(probe).toMatchObject({ method: 'POST', url: '/chat/completions' });
      expect(JSON.parse(probe.body)).toEqual({ model: 'doubao-lite-4k', max_tokens: 1, messages: [{ role: 'user', content: 'ping' }] });
      answer(ark, { status: 403, body: ERRORS.arkOverdue });
      expect((await check(ark.id)).body.status).toBe('no_credit');

      const custom = await ctx.http().post('/api/v1/provider-keys').set(admin.auth).send({ name: 'local', provider: 'custom', ownerId: owner.id, projectId: project.id, secret: uniqueSecret('local-'), healthProbe: { model: 'llama' } });
      expect(custom.status).toBe(201);
      expect(custom.body.healthProbe).toEqual({ model: 'llama' });
      expectError(await check(custom.body.id), 409, 'conflict'); // no baseUrl: nowhere to check it
    });

    it('refuses a probe on a provider with a free check, and bad probes, with 400', async () => {
      const key = await plant();
      for (const healthProbe of [{ model: 'gpt-4o' }, { model: '' }, { model: 'a b' }, { model: 'x'.repeat(129) }, { model: 'm', extra: 1 }, 'gpt-4o']) {
        const res = await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ healthProbe });
        expect({ healthProbe, status: res.status }).toEqual({ healthProbe, status: 400 });
      }
      const ark = await plant({ provider: 'volcengine-ark' });
      expect((await ctx.http().patch(`/api/v1/provider-keys/${ark.id}`).set(owner.auth).send({ healthProbe: { model: 'm' } })).status).toBe(403);
    });

    it('starts again from unknown when the secret, baseUrl or probe changes, and the scheduler checks it at its next run', async () => {
      const key = await plant();
      expect((await check(key.id)).body.status).toBe('valid');
      const next = uniqueSecret();
      provider.validKeys.add(next);
      planted.push(next);
      const replaced = await ctx.http().put(`/api/v1/provider-keys/${key.id}/secret`).set(admin.auth).send({ secret: next });
      expect(replaced.body.health).toEqual({ status: 'unknown', checkedAt: null, detail: null });
      expect((await keyRow(key.id)).health_next_check_at).toBeNull();
      expect((await check(key.id)).body.status).toBe('valid');
      const moved = await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ baseUrl: `${provider.url}/v2`, reason: 'ticket OPS-1' });
      expect(moved.body.health.status).toBe('unknown');
      expect((await check(key.id)).body.status).toBe('valid');
      const renamed = await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ name: 'renamed' });
      expect(renamed.body.health.status).toBe('valid');
    });

    it('refuses a disabled key (409 key_disabled), an expired one (409 key_expired), a deleted one (404) and a bad id (400)', async () => {
      const off = await plant();
      await ctx.http().patch(`/api/v1/provider-keys/${off.id}`).set(admin.auth).send({ status: 'disabled' });
      expectError(await check(off.id), 409, 'key_disabled');
      const old = await plant();
      await ctx.db.transaction((m) => m.query('UPDATE provider_keys SET expires_at = ? WHERE id = ?', [clock.now() - 1000, old.id]));
      expectError(await check(old.id), 409, 'key_expired');
      const gone = await plant();
      await ctx.http().delete(`/api/v1/provider-keys/${gone.id}`).set(admin.auth);
      expectError(await check(gone.id), 404, 'not_found');
      expectError(await check('01890000-0000-7000-8000-000000000000'), 404, 'not_found');
      expectError(await check('nope'), 400, 'validation_failed');
      for (const k of [off, old, gone]) expect(requestsWith(k)).toEqual([]);
      // Each refusal is on the record, with why; a malformed id names no key and writes nothing.
      for (const [k, why] of [[off, 'key_disabled'], [old, 'key_expired'], [gone, 'key_deleted']] as const) {
        const rows = await auditRows(ctx, { action: 'provider_key.check', keyId: k.id });
        expect(rows.map((r) => [r.outcome, r.actor_id, JSON.parse(String(r.detail)).why])).toEqual([['denied', owner.id, why]]);
      }
      expect(await auditRows(ctx, { action: 'provider_key.check', keyId: '01890000-0000-7000-8000-000000000000' })).toHaveLength(1);
    });

    it('is rate limited per user, their API tokens included (429 with Retry-After), the refusal audited and nothing sent', async () => {
      const limited = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '1' }, { clock });
      try {
        const boss = await limited.user('admin');
        const p = await createProject(limited, boss);
        const key = await createKey(limited, boss, { ownerId: boss.id, projectId: p.id, provider: 'openai', secret: uniqueSecret('sk-'), baseUrl: `${provider.url}/v1` });
        const tokens = [(await createApiToken(limited, boss, ['provider-keys:reveal'])).auth, (await createApiToken(limited, boss, ['provider-keys:reveal'])).auth];
        const go = (auth: Headers = boss.auth) => limited.http().post(`/api/v1/provider-keys/${key.id}/check`).set(auth);
        for (const auth of [boss.auth, tokens[0], boss.auth, tokens[1]]) expect((await go(auth)).status).toBe(200);
        const seen = provider.seen.length;
        // A fresh token does not bring a fresh allowance.
        const res = await go(tokens[1]);
        expectError(res, 429, 'rate_limited');
        expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
        expect(provider.seen.length).toBe(seen);
        const [row] = await auditRows(limited, { action: 'provider_key.check', keyId: key.id });
        expect(row).toMatchObject({ outcome: 'rate_limited', actor_id: boss.id });
      } finally {
        await limited.close();
      }
    });

    it('sends nothing when its audit row cannot be committed: 503, no call upstream, no history row', async () => {
      const key = await plant();
      const trigger = `block_check_${ctx.kind}`;
      await ctx.db.read((m) =>
        m.query(
          ctx.kind === 'sqlite'
            ? `CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'x'); END`
            : `CREATE TRIGGER ${trigger} BEFORE INSERT ON audit_events FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'x'`,
        ),
      );
      try {
        for (const auth of [owner.auth, admin.auth]) expectError(await check(key.id, auth), 503, 'unavailable');
      } finally {
        await ctx.db.read((m) => m.query(`DROP TRIGGER IF EXISTS ${trigger}`));
      }
      expect(requestsWith(key)).toEqual([]);
      expect(await history(key.id)).toEqual([]);
      expect(await auditRows(ctx, { action: 'provider_key.check', keyId: key.id })).toEqual([]);
      expect((await check(key.id)).status).toBe(200);
      expect(requestsWith(key)).not.toEqual([]);
    });

    it('claims the key for its run: a scheduler finding it due meanwhile (here, or on another instance) does not check it again', async () => {
      const key = await plant();
      await ctx.db.transaction((m) => m.query('UPDATE provider_keys SET health_next_check_at = 0 WHERE id = ?', [key.id]));
      answer(key, { status: 200, body: { data: [] }, delayMs: 300 });
      const manual = check(key.id).then((r) => r); // supertest sends once then() is called
      await new Promise((r) => setTimeout(r, 100));
      await ctx.container.scheduler.tick();
      expect((await manual).body.status).toBe('valid');
      expect((await history(key.id)).map((r) => r.source)).toEqual(['manual']);
      expect(requestsWith(key)).toHaveLength(1);
      answer(key, undefined);
    });

    it('runs concurrent checks of one key once', async () => {
      const key = await plant();
      answer(key, { status: 200, body: { data: [] }, delayMs: 100 });
      const results = await Promise.all([check(key.id), check(key.id), check(key.id, admin.auth)]);
      expect(results.map((r) => r.body.status)).toEqual(['valid', 'valid', 'valid']);
      expect(requestsWith(key)).toHaveLength(1);
      expect(await history(key.id)).toHaveLength(1);
      answer(key, undefined);
    });
  });

  describe('who may check and read health', () => {
    let key: CreatedKey;
    let tokens: Record<'ownerReveal' | 'ownerRead' | 'adminReveal' | 'adminWrite' | 'auditorRead' | 'auditorAudit', Headers>;
    beforeAll(async () => {
      key = await plant();
      const t = async (as: TestUser, scopes: string[]) => (await createApiToken(ctx, as, scopes)).auth;
      tokens = {
        ownerReveal: await t(owner, ['provider-keys:reveal']),
        ownerRead: await t(owner, ['provider-keys:read']),
        adminReveal: await t(admin, ['provider-keys:reveal']),
        adminWrite: await t(admin, ['provider-keys:write', 'provider-keys:read']),
        auditorRead: await t(auditor, ['provider-keys:read']),
        auditorAudit: await t(auditor, ['audit:read']),
      };
    });

    it('lets the owner and admins check (no reason needed: nothing is shown), and API tokens with provider-keys:reveal; every attempt is audited', async () => {
      const cases: Array<[string, Headers, number]> = [
        ['admin', admin.auth, 200],
        ['owner', owner.auth, 200],
        ['another member', other.auth, 404],
        ['auditor', auditor.auth, 403],
        ['owner token with reveal', tokens.ownerReveal, 200],
        ['owner token with read only', tokens.ownerRead, 403],
        ['admin token with reveal', tokens.adminReveal, 200],
        ['admin token with write and read', tokens.adminWrite, 403],
        ['auditor token', tokens.auditorRead, 403],
      ];
      for (const [who, auth, status] of cases) {
        const before = (await history(key.id)).length;
        const audited = (await auditRows(ctx, { action: 'provider_key.check', keyId: key.id })).length;
        const res = await check(key.id, auth);
        expect({ who, status: res.status }).toEqual({ who, status });
        expect((await history(key.id)).length).toBe(before + (status === 200 ? 1 : 0));
        const rows = await auditRows(ctx, { action: 'provider_key.check', keyId: key.id });
        expect({ who, rows: rows.length, outcome: rows[0].outcome }).toEqual({ who, rows: audited + 1, outcome: status === 200 ? 'success' : 'denied' });
      }
      const rows = await history(key.id);
      expect(new Set(rows.map((r) => r.actor_id))).toEqual(new Set([admin.id, owner.id]));
    });

    it('shows the history, newest first in pages, to the owner, admins and auditors (tokens: provider-keys:read)', async () => {
      const path = `/api/v1/provider-keys/${key.id}/health`;
      const all = (await history(key.id)).map((r) => r.id).reverse();
      for (const auth of [owner.auth, admin.auth, auditor.auth, tokens.ownerRead, tokens.auditorRead]) {
        const { items } = await walk(ctx, path, auth, 2);
        expect(items.map((e) => e.id)).toEqual(all);
        for (const e of items) expect(Object.keys(e).sort()).toEqual(EVENT_KEYS);
        expect(items[0]).toMatchObject({ status: 'valid', source: 'manual', httpStatus: 200 });
      }
      expectError(await ctx.http().get(path).set(other.auth), 404, 'not_found');
      expectError(await ctx.http().get(path).set(tokens.ownerReveal), 403, 'forbidden');
      expectError(await ctx.http().get(path).set(tokens.auditorAudit), 403, 'forbidden');
      expectError(await ctx.http().get(`${path}?limit=0`).set(owner.auth), 400, 'validation_failed');
      expectError(await ctx.http().get(`${path}?extra=1`).set(owner.auth), 400, 'validation_failed');
    });

    it('refuses every dead or forged credential with 401, writing nothing', async () => {
      const refused = await refusedCredentials(ctx, admin);
      for (const s of refused.secrets) ctx.secrets.add('credential', s);
      const routes: RouteCase[] = [
        { route: 'POST /provider-keys/:id/check', method: 'post', path: () => `/api/v1/provider-keys/${key.id}/check` },
        { route: 'GET /provider-keys/:id/health', method: 'get', path: () => `/api/v1/provider-keys/${key.id}/health` },
      ];
      expect((await ctx.http().get(`/api/v1/provider-keys/${key.id}/health`).set(refused.control)).status).toBe(200);
      const calls = provider.seen.length;
      for (const r of routes) {
        for (const kind of REFUSED_CREDENTIALS) {
          try {
            await expectRefused(ctx, r, refused.headers[kind]());
          } catch (err) {
            throw new Error(`${r.route} with ${kind}: ${(err as Error).message}`);
          }
        }
      }
      expect(provider.seen.length).toBe(calls);
    });
  });

  describe('health in key lists', () => {
    it('filters by health=, and refuses an unknown value with 400', async () => {
      const good = await plant();
      const bad = await plant({ valid: false });
      await check(good.id);
      await check(bad.id);
      const invalid = await walk(ctx, '/api/v1/provider-keys?health=invalid', admin.auth, 50);
      expect(invalid.items.map((k) => k.id)).toContain(bad.id);
      expect(invalid.items.map((k) => k.id)).not.toContain(good.id);
      for (const k of invalid.items) expect((k.health as { status: string }).status).toBe('invalid');
      const mine = await walk(ctx, '/api/v1/provider-keys?health=valid', owner.auth, 50);
      expect(mine.items.map((k) => k.id)).toContain(good.id);
      expectError(await ctx.http().get('/api/v1/provider-keys?health=broken').set(admin.auth), 400, 'validation_failed');
    });
  });

  describe('passive signals from the gateway', () => {
    const gatewayCall = (virtualKey: string) => ctx.http().post('/gateway/chat/completions').set('authorization', `Bearer ${virtualKey}`).send({ model: 'gpt-test', messages: [] });
    const virtualKeyOf = async (key: CreatedKey) => {
      const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).send({ name: 'passive' });
      expect(res.status).toBe(201);
      return res.body.virtualKey as string;
    };
    const flush = () => ctx.container.passiveHealth.flush();
    const healthOf = async (id: string) => (await ctx.http().get(`/api/v1/provider-keys/${id}`).set(owner.auth)).body.health;

    it('makes a key invalid on the gateway’s first 401, valid again on a success, writing only when the status changes', async () => {
      const key = await plant();
      const vk = await virtualKeyOf(key);
      // The stand-in is not the provider's own API: until it is seen to need the key, a success proves nothing.
      expect((await gatewayCall(vk)).status).toBe(200);
      await flush();
      expect((await healthOf(key.id)).status).toBe('unknown');
      expect((await check(key.id)).body.status).toBe('valid');
      const afterFirst = (await history(key.id)).length;
      for (let i = 0; i < 5; i++) expect((await gatewayCall(vk)).status).toBe(200);
      await flush();
      expect((await history(key.id)).length).toBe(afterFirst);

      answer(key, { status: 401, body: { error: { message: `Incorrect API key provided: ${key.secret}` } } });
      const refused = await gatewayCall(vk);
      expect(refused.status).toBe(401);
      await flush();
      const health = await healthOf(key.id);
      expect(health.status).toBe('invalid');
      expect(health.detail).toMatch(/^gateway: HTTP 401: Incorrect API key provided: \*+$/);
      expect(runsOf(key.secret, JSON.stringify(await history(key.id)))).toEqual([]);
      for (let i = 0; i < 5; i++) await gatewayCall(vk);
      await flush();
      const rows = await history(key.id);
      expect(rows.map((r) => [r.status, r.source, r.http_status])).toEqual([
        ['valid', 'manual', 200],
        ['invalid', 'gateway', 401],
      ]);

      answer(key, undefined);
      await gatewayCall(vk);
      await flush();
      expect(await healthOf(key.id)).toMatchObject({ status: 'valid', detail: 'gateway: the provider answered 200' });
    });

    it('counts a success from an upstream that may not need the key only once that upstream refused a call for want of it', async () => {
      provider.openModels = true;
      const open = await plant();
      try {
        expect((await check(open.id)).body.status).toBe('unknown'); // the models list answers without a key
      } finally {
        provider.openModels = false;
      }
      const vk = await virtualKeyOf(open);
      await gatewayCall(vk);
      await flush();
      expect((await healthOf(open.id)).status).toBe('unknown');
      answer(open, { status: 401, body: { error: { message: 'revoked' } } });
      await gatewayCall(vk);
      await flush();
      expect((await healthOf(open.id)).status).toBe('invalid');
      answer(open, undefined);
      await gatewayCall(vk);
      await flush();
      expect((await healthOf(open.id)).status).toBe('valid');
      // A new baseUrl is another upstream: not known to need the key until it shows it.
      await ctx.http().patch(`/api/v1/provider-keys/${open.id}`).set(admin.auth).send({ baseUrl: `${provider.url}/v3`, reason: 'ticket OPS-1' });
      expect((await keyRow(open.id)).health_key_required).toBe(0);
    });

    it('reads quota and rate-limit answers, damps passing states to one write a minute, and ignores answers that say nothing', async () => {
      const key = await plant();
      const vk = await virtualKeyOf(key);
      const step = async (programmed: ProgrammedAnswer | undefined) => {
        answer(key, programmed);
        await gatewayCall(vk);
        await flush();
        return (await healthOf(key.id)).status;
      };
      expect(await step({ status: 429, body: ERRORS.insufficientQuota })).toBe('no_credit');
      expect(await step({ status: 429, body: ERRORS.rateLimited })).toBe('rate_limited');
      expect(await step(undefined)).toBe('valid');
      // Within a minute of the last passing state written, another is not written; after it, it is.
      expect(await step({ status: 429, body: ERRORS.rateLimited })).toBe('valid');
      clock.advance(61_000);
      expect(await step({ status: 429, body: ERRORS.rateLimited })).toBe('rate_limited');
      expect(await step({ status: 404, body: { error: { message: 'no such model' } } })).toBe('rate_limited');
      expect(await step({ status: 400, body: { error: { message: 'bad request' } } })).toBe('rate_limited');
      expect(await step({ status: 500, body: ERRORS.serverError })).toBe('rate_limited');
      clock.advance(61_000);
      expect(await step({ status: 500, body: ERRORS.serverError })).toBe('upstream_error');
      answer(key, undefined);
    });

    it('counts the gateway’s own 502 as upstream_error, and a custom upstream’s success only after it refused the key once', async () => {
      const down = await plant({ baseUrl: 'http://127.0.0.1:1/v1' });
      const vk = await virtualKeyOf(down);
      expect((await gatewayCall(vk)).status).toBe(502);
      await flush();
      expect(await healthOf(down.id)).toMatchObject({ status: 'upstream_error', detail: 'gateway: the provider could not be reached' });

      const local = await plant({ provider: 'custom', baseUrl: `${provider.url}/v1` });
      const lvk = await virtualKeyOf(local);
      expect((await gatewayCall(lvk)).status).toBe(200);
      await flush();
      expect((await healthOf(local.id)).status).toBe('unknown');
      answer(local, { status: 401, body: { error: { message: 'no' } } });
      await gatewayCall(lvk);
      await flush();
      expect((await healthOf(local.id)).status).toBe('invalid');
      answer(local, undefined);
      await gatewayCall(lvk);
      await flush();
      expect((await healthOf(local.id)).status).toBe('valid');
    });

    it('writes nothing for a key deleted before the flush', async () => {
      const key = await plant();
      const vk = await virtualKeyOf(key);
      await gatewayCall(vk);
      expect((await ctx.http().delete(`/api/v1/provider-keys/${key.id}`).set(admin.auth)).status).toBe(204);
      await flush();
      expect(await history(key.id)).toEqual([]);
    });
  });

  describe('history kept bounded', () => {
    it('keeps the newest 100 results of a key', async () => {
      const key = await plant();
      for (let i = 0; i < 104; i++) expect((await check(key.id)).status).toBe(200);
      const rows = await history(key.id);
      expect(rows).toHaveLength(100);
      expect(await countRows(ctx, 'key_health_events', 'key_id = ?', [key.id])).toBe(100);
    });
  });
});
