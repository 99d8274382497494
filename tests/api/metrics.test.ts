import crypto from 'node:crypto';
import net from 'node:net';
import { loadConfig } from '../../src/config';
import { CaptureTransport, createLogger } from '../../src/logger';
import { start, StartupError } from '../../src/main';
import { bearer, expectError, expectRefused, expectStatus, REFUSED_CREDENTIALS, refusedCredentials, RouteCase, writeCounts } from '../support/auth-helpers';
import { auditRows, createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { assertBuilt, killAll, lines, runPkv } from '../support/processes';
import { listen, rawCall } from '../support/resilience-helpers';
import { ERRORS, OPENAI_USAGE, StandInProvider } from '../support/stand-in-provider';
import { createTestContext, createTestDatabase, dbKind, openInstance, TestContext, testEnv, TestUser } from '../support/test-app';

jest.setTimeout(60_000);

type Labels = Record<string, string>;

/** The value of one sample of a Prometheus text scrape (0 when the series has not appeared yet). */
function sample(text: string, name: string, labels: Labels = {}): number {
  const wanted = Object.entries(labels);
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (wanted.every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

/** Every label name used by the vault's own series (pkv_…). */
function pkvLabelNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('pkv_')) continue;
    for (const l of line.matchAll(/([a-zA-Z_]+)="/g)) names.add(l[1]);
  }
  return names;
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;
const METRICS_ROUTE: RouteCase = { route: 'GET /metrics', method: 'get', path: () => '/api/v1/metrics' };

describe('metrics (GET /api/v1/metrics and the PKV_METRICS_PORT listener)', () => {
  let ctx: TestContext;
  let provider: StandInProvider;
  let vault: { url: string; close(): Promise<void> };
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let auditor: TestUser;
  let project: { id: string };
  let key: CreatedKey;
  let scraper: { id: string; token: string; auth: { Authorization: string } };
  /** Everything that must never appear in a scrape: ids, tokens, passwords, secrets. */
  const needles: string[] = [];

  const scrape = async (headers: Record<string, string> = scraper.auth): Promise<string> => {
    const res = await ctx.http().get('/api/v1/metrics').set(headers);
    expectStatus(res, 200);
    return res.text;
  };

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '5' });
    vault = await listen(ctx.handler);
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, baseUrl: `${provider.url}/v1` });
    provider.validKeys.add(key.secret);
    scraper = await createApiToken(ctx, admin, ['metrics:read']);
    needles.push(key.id, key.secret, project.id, scraper.id, scraper.token);
    for (const u of [admin, owner, other, auditor]) needles.push(u.id, u.password, u.token);
  });

  afterAll(async () => {
    await vault?.close();
    await provider?.close();
    await ctx?.close();
  });

  describe('who may read GET /api/v1/metrics', () => {
    it('answers an API token holding metrics:read (Bearer or X-API-Key) with the Prometheus text format, never cached', async () => {
      for (const headers of [scraper.auth, { 'X-API-Key': scraper.token }]) {
        const res = await ctx.http().get('/api/v1/metrics').set(headers);
        expect(res.status).toBe(200);
        expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4; charset=utf-8$/);
        expect(res.headers['cache-control']).toBe('no-store');
        expect(res.text).toContain('# TYPE pkv_reveals_total counter');
        expect(res.text).toContain('# TYPE pkv_gateway_request_duration_seconds histogram');
        expect(res.text).toContain('# TYPE pkv_audit_rows_pending_sealing gauge');
        // collectDefaultMetrics: the process's own figures.
        expect(res.text).toMatch(/^process_cpu_user_seconds_total \d/m);
        expect(res.text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
      }
    });

    it('answers an admin session too: the admin role holds metrics:read, and a token never does more than its user', async () => {
      expect(await scrape(admin.auth)).toContain('pkv_login_failures_total');
    });

    it('refuses with 403 a token without metrics:read (even one with every other scope), auditors and members', async () => {
      const everythingElse = await createApiToken(ctx, admin, ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read', 'users:read', 'users:write', 'projects:read', 'projects:write']);
      const auditorToken = await createApiToken(ctx, auditor, ['audit:read']);
      needles.push(everythingElse.token, everythingElse.id, auditorToken.token, auditorToken.id);
      for (const headers of [everythingElse.auth, auditor.auth, owner.auth, auditorToken.auth]) {
        const before = await writeCounts(ctx);
        const res = await ctx.http().get('/api/v1/metrics').set(headers);
        expectError(res, 403, 'forbidden');
        expect(res.body.error.message).toBe('Reading metrics needs the metrics:read right');
        expect(res.text).not.toContain('pkv_reveals_total');
        expect(await writeCounts(ctx)).toEqual(before);
      }
    });

    it('refuses metrics:read beyond the role when a token is made: 400 for an auditor and a member, and nothing is issued', async () => {
      for (const who of [auditor, owner]) {
        const res = await ctx.http().post('/api/v1/api-tokens').set(who.auth).send({ name: 'scraper', scopes: ['metrics:read'] });
        expectError(res, 400, 'validation_failed');
        expect(res.body.error.message).toBe(`Scopes beyond the ${who.role} role: metrics:read`);
        expect(res.body.token).toBeUndefined();
      }
      const unknown = await ctx.http().post('/api/v1/api-tokens').set(admin.auth).send({ name: 'scraper', scopes: ['metrics:write'] });
      expectError(unknown, 400, 'validation_failed');
      expect(unknown.body.error.details[0].message).toContain('metrics:read');
    });

    it('audits the making of a metrics:read token like any other scope, and /auth/me shows it', async () => {
      const [row] = (await auditRows(ctx, { action: 'api_token.create' })).filter((r) => JSON.parse(String(r.detail)).tokenId === scraper.id);
      expect(row).toMatchObject({ outcome: 'success', actor_id: admin.id });
      expect(JSON.parse(String(row.detail)).scopes).toEqual(['metrics:read']);
      const me = await ctx.http().get('/api/v1/auth/me').set(scraper.auth);
      expect(me.status).toBe(200);
      expect(me.body).toMatchObject({ via: 'api_token', scopes: ['metrics:read'], effectiveScopes: ['metrics:read'] });
    });

    it('refuses every dead or forged credential with 401 and writes nothing', async () => {
      const refused = await refusedCredentials(ctx, admin);
      needles.push(...refused.secrets);
      for (const name of REFUSED_CREDENTIALS) await expectRefused(ctx, METRICS_ROUTE, refused.headers[name]());
      // The crafted ones fail for their one flaw: the control session, crafted the same way, is accepted.
      expect((await ctx.http().get('/api/v1/metrics').set(refused.control)).status).toBe(200);
    });

    it('refuses a query parameter with 400 (the route takes none) and is not audited when read', async () => {
      expectError(await ctx.http().get('/api/v1/metrics?format=json').set(scraper.auth), 400, 'validation_failed');
      const before = await writeCounts(ctx);
      await scrape();
      expect(await writeCounts(ctx)).toEqual(before);
    });
  });

  describe('the figures move with what happens', () => {
    it('counts reveals by outcome and via, and refusals by the reason the audit trail gives', async () => {
      const before = await scrape();
      const reveal = (headers: Record<string, string>, body: object = {}) => ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(headers).send(body);
      expect((await reveal(owner.auth)).status).toBe(200);
      expect((await reveal(auditor.auth)).status).toBe(403);
      expect((await reveal(other.auth)).status).toBe(404);
      expect((await reveal(admin.auth)).status).toBe(400);
      const readOnly = await createApiToken(ctx, owner, ['provider-keys:read']);
      needles.push(readOnly.id, readOnly.token);
      expect((await reveal(readOnly.auth)).status).toBe(403);
      const after = await scrape();
      const delta = (name: string, labels: Labels) => sample(after, name, labels) - sample(before, name, labels);
      expect(delta('pkv_reveals_total', { outcome: 'success', via: 'session' })).toBe(1);
      expect(delta('pkv_reveals_total', { outcome: 'denied', via: 'session' })).toBe(3);
      expect(delta('pkv_reveals_total', { outcome: 'denied', via: 'api_token' })).toBe(1);
      for (const reason of ['auditor', 'not_owner', 'reason_required', 'missing_scope']) expect(delta('pkv_reveal_refusals_total', { reason })).toBe(1);
      // The same figures as the trail: five reveal rows were committed.
      expect((await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id })).length).toBe(5);
    });

    it('counts reveals refused by the rate limit as rate_limited', async () => {
      const eager = await ctx.user('member');
      needles.push(eager.id, eager.password, eager.token);
      const own = await createKey(ctx, admin, { ownerId: eager.id, projectId: project.id });
      needles.push(own.id, own.secret);
      const before = await scrape();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await ctx.http().post(`/api/v1/provider-keys/${own.id}/reveal`).set(eager.auth).send({})).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
      const after = await scrape();
      expect(sample(after, 'pkv_reveals_total', { outcome: 'rate_limited', via: 'session' }) - sample(before, 'pkv_reveals_total', { outcome: 'rate_limited', via: 'session' })).toBe(1);
      expect(sample(after, 'pkv_reveal_refusals_total', { reason: 'rate_limited' }) - sample(before, 'pkv_reveal_refusals_total', { reason: 'rate_limited' })).toBe(1);
      expect(sample(after, 'pkv_reveals_total', { outcome: 'success', via: 'session' }) - sample(before, 'pkv_reveals_total', { outcome: 'success', via: 'session' })).toBe(5);
    });

    it('counts failed sign-ins (wrong password, unknown user) but not successful ones', async () => {
      const before = await scrape();
      expect((await ctx.http().post('/api/v1/auth/login').send({ username: owner.username, password: 'not-the-password' })).status).toBe(401);
      expect((await ctx.http().post('/api/v1/auth/login').send({ username: `nobody-${crypto.randomBytes(4).toString('hex')}`, password: 'whatever-it-is' })).status).toBe(401);
      await ctx.login(owner.username, owner.password);
      const after = await scrape();
      expect(sample(after, 'pkv_login_failures_total', { outcome: 'denied' }) - sample(before, 'pkv_login_failures_total', { outcome: 'denied' })).toBe(2);
    });

    it('counts API token authentications, accepted and refused', async () => {
      const before = await scrape(admin.auth);
      for (let i = 0; i < 3; i++) expect((await ctx.http().get('/api/v1/auth/me').set(scraper.auth)).status).toBe(200);
      const neverIssued = `pkv_${crypto.randomBytes(32).toString('base64url')}`;
      needles.push(neverIssued);
      expect((await ctx.http().get('/api/v1/auth/me').set(bearer(neverIssued))).status).toBe(401);
      const after = await scrape(admin.auth);
      expect(sample(after, 'pkv_api_token_authentications_total', { result: 'success' }) - sample(before, 'pkv_api_token_authentications_total', { result: 'success' })).toBe(3);
      expect(sample(after, 'pkv_api_token_authentications_total', { result: 'failure' }) - sample(before, 'pkv_api_token_authentications_total', { result: 'failure' })).toBe(1);
    });

    it('counts gateway calls by provider and status, with latency and upstream time, tokens, and virtual key authentications', async () => {
      const vk = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).send({ name: 'metrics' });
      expectStatus(vk, 201);
      needles.push(vk.body.id, vk.body.virtualKey);
      const failing = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, baseUrl: `${provider.url}/v1` });
      provider.validKeys.add(failing.secret);
      provider.answers.set(failing.secret, { status: 500, body: ERRORS.serverError });
      const failingVk = await ctx.http().post(`/api/v1/provider-keys/${failing.id}/virtual-keys`).set(owner.auth).send({ name: 'metrics-500' });
      expectStatus(failingVk, 201);
      needles.push(failing.id, failing.secret, failingVk.body.id, failingVk.body.virtualKey);

      const before = await scrape();
      const chat = (virtualKey: string) =>
        rawCall(vault.url, 'POST', '/gateway/v1/chat/completions', { headers: { Authorization: `Bearer ${virtualKey}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] }) });
      expect((await chat(vk.body.virtualKey)).status).toBe(200);
      expect((await chat(vk.body.virtualKey)).status).toBe(200);
      expect((await chat(failingVk.body.virtualKey)).status).toBe(500);
      expect((await chat(`pkv_vk_${crypto.randomBytes(32).toString('base64url')}`)).status).toBe(401);
      const pending = await scrape();
      expect(sample(pending, 'pkv_gateway_usage_pending')).toBe(3);
      expect(sample(pending, 'pkv_gateway_usage_flush_lag_seconds')).toBeGreaterThan(0);
      await ctx.container.gateway.usage.flush();
      const after = await scrape();
      const delta = (name: string, labels: Labels = {}) => sample(after, name, labels) - sample(before, name, labels);
      expect(delta('pkv_gateway_requests_total', { provider: 'openai', status: '200' })).toBe(2);
      expect(delta('pkv_gateway_requests_total', { provider: 'openai', status: '500' })).toBe(1);
      expect(delta('pkv_gateway_requests_total', { provider: 'none', status: '401' })).toBe(1);
      expect(delta('pkv_gateway_request_duration_seconds_count', { provider: 'openai' })).toBe(3);
      expect(delta('pkv_gateway_upstream_duration_seconds_count', { provider: 'openai' })).toBe(3);
      expect(delta('pkv_gateway_upstream_duration_seconds_sum', { provider: 'openai' })).toBeGreaterThan(0);
      // Upstream time is part of the whole call's time, never more.
      expect(delta('pkv_gateway_upstream_duration_seconds_sum', { provider: 'openai' })).toBeLessThanOrEqual(delta('pkv_gateway_request_duration_seconds_sum', { provider: 'openai' }));
      expect(delta('pkv_gateway_tokens_total', { provider: 'openai', kind: 'prompt' })).toBe(2 * OPENAI_USAGE.prompt_tokens);
      expect(delta('pkv_gateway_tokens_total', { provider: 'openai', kind: 'completion' })).toBe(2 * OPENAI_USAGE.completion_tokens);
      expect(delta('pkv_virtual_key_authentications_total', { result: 'success' })).toBe(3);
      expect(delta('pkv_virtual_key_authentications_total', { result: 'failure' })).toBe(1);
      expect(sample(after, 'pkv_gateway_usage_pending')).toBe(0);
      expect(sample(after, 'pkv_gateway_usage_flush_lag_seconds')).toBe(0);
    });

    it('reports audit rows pending sealing and the sealing lag from the database, and both fall to 0 once sealed', async () => {
      // The test context runs no sealer: every row written so far waits.
      const unsealed = Number((await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM audit_events WHERE seq IS NULL')))[0].n);
      expect(unsealed).toBeGreaterThan(0);
      const before = await scrape();
      expect(sample(before, 'pkv_audit_rows_pending_sealing')).toBe(unsealed);
      expect(sample(before, 'pkv_audit_sealing_lag_seconds')).toBeGreaterThan(0);
      const sealed = await ctx.container.audit.chain.sealPending();
      expect(sealed).toBe(unsealed);
      const after = await scrape();
      expect(sample(after, 'pkv_audit_rows_pending_sealing')).toBe(0);
      expect(sample(after, 'pkv_audit_sealing_lag_seconds')).toBe(0);
      expect(sample(after, 'pkv_audit_rows_sealed_total') - sample(before, 'pkv_audit_rows_sealed_total')).toBe(unsealed);
      expect(Math.abs(sample(after, 'pkv_audit_last_seal_timestamp_seconds') - Date.now() / 1000)).toBeLessThan(30);
    });

    it('times write transactions, counts the connection one holds and the ones waiting (SQLite: group commits and their sizes)', async () => {
      const before = await scrape();
      let inside = '';
      let queued: Promise<unknown> | undefined;
      await ctx.db.transaction(async () => {
        if (ctx.kind === 'sqlite') queued = ctx.db.transaction(async () => undefined); // waits for the next group
        await new Promise((resolve) => setImmediate(resolve));
        inside = await scrape();
      });
      await queued;
      expect(sample(inside, 'pkv_db_connections_in_use')).toBeGreaterThanOrEqual(1);
      if (ctx.kind === 'sqlite') expect(sample(inside, 'pkv_db_connections_waiting')).toBe(1);
      const after = await scrape();
      expect(sample(after, 'pkv_db_connections_waiting')).toBe(0);
      expect(sample(after, 'pkv_db_transaction_duration_seconds_count') - sample(before, 'pkv_db_transaction_duration_seconds_count')).toBeGreaterThanOrEqual(ctx.kind === 'sqlite' ? 2 : 1);
      if (ctx.kind === 'sqlite') expect(sample(after, 'pkv_db_group_commit_batch_size_count') - sample(before, 'pkv_db_group_commit_batch_size_count')).toBeGreaterThanOrEqual(1);
      else expect(sample(after, 'pkv_db_group_commit_batch_size_count')).toBe(0);
    });
  });

  it('never shows an id, a token, a password or a secret in a scrape: labels are small fixed sets', async () => {
    const text = await scrape();
    expect(needles.length).toBeGreaterThan(20);
    expect(needles.filter((n) => text.includes(n))).toEqual([]);
    expect(text).not.toMatch(UUID);
    expect([...pkvLabelNames(text)].sort().filter((l) => !['kind', 'le', 'outcome', 'provider', 'reason', 'result', 'status', 'via'].includes(l))).toEqual([]);
  });
});

describe('a scrape while the database does not answer', () => {
  it('still answers, with the audit figures as NaN and everything else in place', async () => {
    const tdb = await createTestDatabase(dbKind());
    try {
      const instance = await openInstance(testEnv(tdb), { migrate: true });
      await instance.db.close();
      const text = await instance.container.metrics.scrape();
      // prom-client writes NaN as `Nan`; Prometheus reads it either way (case-insensitively).
      expect(text).toMatch(/^pkv_audit_rows_pending_sealing nan$/im);
      expect(text).toMatch(/^pkv_audit_sealing_lag_seconds nan$/im);
      expect(text).toMatch(/^pkv_gateway_usage_pending 0$/m);
      expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
      await instance.close();
    } finally {
      await tdb.drop();
    }
  });
});

describe('the separate metrics listener (PKV_METRICS_HOST/PKV_METRICS_PORT)', () => {
  const kind = dbKind();

  it('serves GET /metrics without credentials on 127.0.0.1 by default, and nothing else; it stops with the server', async () => {
    const tdb = await createTestDatabase(kind);
    try {
      const env = testEnv(tdb, { PKV_PORT: '0', PKV_METRICS_PORT: '0' });
      const seal = await openInstance(env, { migrate: true });
      await seal.close();
      const capture = new CaptureTransport();
      const running = await start(loadConfig(env, { generateDevSecrets: false }), createLogger('debug', [capture]));
      try {
        expect(running.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
        expect(running.metricsUrl).not.toContain(new URL(running.url).port);
        const wrong = await fetch(`${running.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'nobody-here', password: 'wrong-password' }) });
        expect(wrong.status).toBe(401);
        const res = await fetch(running.metricsUrl!);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
        expect(res.headers.get('cache-control')).toBe('no-store');
        const text = await res.text();
        expect(sample(text, 'pkv_login_failures_total', { outcome: 'denied' })).toBe(1);
        expect(text).toMatch(/^process_resident_memory_bytes \d/m);
        const base = running.metricsUrl!.replace(/\/metrics$/, '');
        expect((await fetch(`${base}/`)).status).toBe(404);
        expect((await fetch(`${base}/api/v1/metrics`)).status).toBe(404);
        const post = await fetch(running.metricsUrl!, { method: 'POST' });
        expect(post.status).toBe(405);
        expect(post.headers.get('allow')).toBe('GET, HEAD');
        // The main listener keeps asking for credentials.
        expect((await fetch(`${running.url}/api/v1/metrics`)).status).toBe(401);
        expect(capture.lines.join('\n')).toContain('"event":"metrics.listening"');
      } finally {
        await running.close();
      }
      await expect(fetch(running.metricsUrl!)).rejects.toThrow();
    } finally {
      await tdb.drop();
    }
  });

  it('stops start-up with a StartupError naming the variables when its port is taken', async () => {
    const tdb = await createTestDatabase(kind);
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const env = testEnv(tdb, { PKV_PORT: '0', PKV_METRICS_PORT: String(port) });
      const seal = await openInstance(env, { migrate: true });
      await seal.close();
      const failed = start(loadConfig(env, { generateDevSecrets: false }), createLogger('error', [new CaptureTransport()]));
      await expect(failed).rejects.toThrow(StartupError);
      await expect(failed).rejects.toThrow(`PKV_METRICS_HOST/PKV_METRICS_PORT: cannot listen on 127.0.0.1:${port} (EADDRINUSE)`);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
      await tdb.drop();
    }
  });

  describe('`pkv serve` with a bad metrics setting', () => {
    beforeAll(() => assertBuilt());
    afterEach(() => killAll());

    it.each([
      ['a port that is not a number', { PKV_METRICS_PORT: 'ninety' }, 'pkv: configuration: PKV_METRICS_PORT: must be a whole number from 0 to 65535'],
      ['a host without a port', { PKV_METRICS_HOST: '127.0.0.1' }, 'pkv: configuration: PKV_METRICS_HOST: set PKV_METRICS_PORT too (the metrics listener is off without a port)'],
    ])('exits 2 before listening, with one stderr line naming the variable: %s', async (_story, overrides, line) => {
      const tdb = await createTestDatabase('sqlite');
      try {
        const res = await runPkv(['serve'], { ...testEnv(tdb, { PKV_PORT: '0' }), ...overrides });
        expect(res.code).toBe(2);
        expect(res.stdout).not.toContain('listening on');
        expect(lines(res.stderr)).toEqual([line]);
      } finally {
        await tdb.drop();
      }
    });
  });
});
