import crypto from 'node:crypto';
import { createTestContext, openInstance, randomMasterKey, TestContext, TestUser } from '../support/test-app';
import { cliActor } from '../../src/modules/auth/actor';
import { auditRows, createApiToken, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { countRows, expectError, expectRefused, Headers, refusedCredentials, REFUSED_CREDENTIALS, RouteCase, walk } from '../support/auth-helpers';
import { StandInProvider } from '../support/stand-in-provider';
import { WebhookReceiver } from '../support/webhook-receiver';
import { FakeClock } from '../support/fake-clock';
import { waitFor } from '../support/processes';
import { RUN } from '../../src/modules/gateway/scrub';

jest.setTimeout(60_000);

type Row = Record<string, unknown>;
const WEBHOOK_KEYS = ['id', 'url', 'events', 'status', 'disabledReason', 'disabledAt', 'failingSince', 'createdBy', 'createdAt', 'updatedAt'].sort();
const DELIVERY_KEYS = ['id', 'webhookId', 'event', 'status', 'attempts', 'nextAttemptAt', 'lastStatusCode', 'lastError', 'createdAt', 'completedAt', 'body', 'attemptLog'].sort();
const HOUR = 3_600_000;

function runsOf(secret: string, text: string): string[] {
  const hits = new Set<string>();
  for (let i = 0; i + RUN <= secret.length; i++) if (text.includes(secret.slice(i, i + RUN))) hits.add(secret.slice(i, i + RUN));
  return [...hits];
}

describe('webhooks: POST/GET/DELETE /webhooks, GET /webhooks/:id/deliveries, signed deliveries', () => {
  const clock = new FakeClock();
  let ctx: TestContext;
  let provider: StandInProvider;
  let receiver: WebhookReceiver;
  let admin: TestUser;
  let owner: TestUser;
  let auditor: TestUser;
  let project: { id: string };
  const planted: string[] = [];

  const create = (body: Record<string, unknown>, auth: Headers = admin.auth) => ctx.http().post('/api/v1/webhooks').set(auth).send(body);
  /** A webhook to the receiver for these events, with a secret the receiver knows. */
  const subscribe = async (events: string[], to: WebhookReceiver = receiver): Promise<{ id: string }> => {
    to.secret = `whsec_test_${crypto.randomBytes(16).toString('hex')}`;
    ctx.secrets.add('webhook secret', to.secret);
    const res = await create({ url: to.url, events, secret: to.secret });
    expect(res.status).toBe(201);
    return res.body;
  };
  const remove = (id: string) => ctx.http().delete(`/api/v1/webhooks/${id}`).set(admin.auth);
  const dispatch = () => ctx.container.dispatcher.runOnce();
  const deliveries = async (id: string) => (await walk(ctx, `/api/v1/webhooks/${id}/deliveries`, admin.auth, 200)).items as Array<Record<string, any>>;
  const webhookRow = async (id: string): Promise<Row> => (await ctx.db.read((m) => m.query('SELECT * FROM webhooks WHERE id = ?', [id])))[0];
  const plant = async (valid = true): Promise<CreatedKey> => {
    const secret = uniqueSecret();
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, secret, baseUrl: `${provider.url}/v1` });
    if (valid) provider.validKeys.add(secret);
    planted.push(secret);
    return key;
  };
  /** Changes a key's health through a real check: valid keys become valid, others invalid. */
  const check = (id: string) => ctx.http().post(`/api/v1/provider-keys/${id}/check`).set(admin.auth);

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    receiver = await new WebhookReceiver().start();
    ctx = await createTestContext({ PKV_WEBHOOK_TIMEOUT: '500ms' }, { clock });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin);
  });
  afterAll(async () => {
    await receiver?.close();
    await provider?.close();
    await ctx?.close();
  });

  describe('POST /webhooks', () => {
    it('generates a secret when none is given and shows it once (no-store), sealed at rest, audited with the URL’s origin only', async () => {
      const res = await create({ url: 'https://hooks.example.com/services/T000/B000/XXXXSECRETPATH', events: ['provider_key.health_changed', 'provider_key.health_changed', 'audit.verify_failed'] });
      expect(res.status).toBe(201);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(Object.keys(res.body).sort()).toEqual([...WEBHOOK_KEYS, 'secret'].sort());
      expect(res.body).toMatchObject({ url: 'https://hooks.example.com/services/T000/B000/XXXXSECRETPATH', events: ['provider_key.health_changed', 'audit.verify_failed'], status: 'active', disabledReason: null, createdBy: admin.id });
      expect(res.body.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
      const row = await webhookRow(res.body.id);
      expect(JSON.stringify(row)).not.toContain(res.body.secret);
      expect(Buffer.from(row.secret_ciphertext as Buffer).length).toBe(Buffer.byteLength(res.body.secret));
      const sealed = await ctx.container.keyring.rowsByVersion();
      expect(sealed[0].systemKeys).toBe(3); // fingerprint, audit chain and, from the first webhook on, webhook secrets

      const [audit] = await auditRows(ctx, { action: 'webhook.create' });
      expect(audit).toMatchObject({ outcome: 'success', actor_id: admin.id });
      expect(JSON.parse(String(audit.detail))).toEqual({ webhookId: res.body.id, origin: 'https://hooks.example.com', events: ['provider_key.health_changed', 'audit.verify_failed'], secretGenerated: true });
      expect(JSON.stringify(audit)).not.toContain('SECRETPATH');
      expect(ctx.logText()).not.toContain('SECRETPATH');
      await remove(res.body.id);
    });

    it('never sends back a secret the admin gave', async () => {
      const secret = `given-${crypto.randomBytes(12).toString('hex')}`;
      ctx.secrets.add('webhook secret', secret);
      const res = await create({ url: receiver.url, events: ['provider_key.expiring'], secret });
      expect(res.status).toBe(201);
      expect(res.body.secret).toBeUndefined();
      expect(res.text).not.toContain(secret);
      const listed = await ctx.http().get('/api/v1/webhooks').set(admin.auth);
      expect(listed.text).not.toContain(secret);
      const got = await ctx.http().get(`/api/v1/webhooks/${res.body.id}`).set(admin.auth);
      expect(Object.keys(got.body).sort()).toEqual(WEBHOOK_KEYS);
      expect(JSON.parse(String((await auditRows(ctx, { action: 'webhook.create' }))[0].detail)).secretGenerated).toBe(false);
      await remove(res.body.id);
    });

    it('refuses URLs outside https (or http to a loopback address), unknown events and weak secrets with 400, storing nothing', async () => {
      const before = await countRows(ctx, 'webhooks');
      const bad: Array<Record<string, unknown>> = [
        {},
        { url: receiver.url },
        { url: receiver.url, events: [] },
        { url: receiver.url, events: ['provider_key.deleted'] },
        { url: receiver.url, events: 'provider_key.expiring' },
        { url: 'http://hooks.example.com/x', events: ['provider_key.expiring'] },
        { url: 'http://localhost:8080/x', events: ['provider_key.expiring'] },
        { url: 'http://10.0.0.5/x', events: ['provider_key.expiring'] },
        { url: 'ftp://example.com/x', events: ['provider_key.expiring'] },
        { url: 'https://user:pass@example.com/x', events: ['provider_key.expiring'] },
        { url: 'https://example.com/x?token=1', events: ['provider_key.expiring'] },
        { url: 'https://example.com/x#f', events: ['provider_key.expiring'] },
        { url: 'not a url', events: ['provider_key.expiring'] },
        { url: `https://example.com/${'x'.repeat(2100)}`, events: ['provider_key.expiring'] },
        { url: receiver.url, events: ['provider_key.expiring'], secret: 'short' },
        { url: receiver.url, events: ['provider_key.expiring'], secret: 'has spaces in it, sixteen+' },
        { url: receiver.url, events: ['provider_key.expiring'], extra: true },
      ];
      for (const body of bad) {
        const res = await create(body);
        expect({ body, status: res.status, code: res.body?.error?.code }).toEqual({ body, status: 400, code: 'validation_failed' });
        expect(res.body.error.details.length).toBeGreaterThan(0);
      }
      expect(await countRows(ctx, 'webhooks')).toBe(before);
    });
  });

  describe('who may manage webhooks', () => {
    it('lets admin sessions only: members and auditors 403, API tokens 403 even an admin’s with every scope', async () => {
      const adminToken = await createApiToken(ctx, admin, ['provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read', 'users:read', 'users:write', 'projects:read', 'projects:write']);
      const made = await subscribe(['provider_key.expiring']);
      const paths = [
        ['post', '/api/v1/webhooks', { url: receiver.url, events: ['provider_key.expiring'] }],
        ['get', '/api/v1/webhooks', undefined],
        ['get', `/api/v1/webhooks/${made.id}`, undefined],
        ['get', `/api/v1/webhooks/${made.id}/deliveries`, undefined],
        ['delete', `/api/v1/webhooks/${made.id}`, undefined],
      ] as const;
      const before = await countRows(ctx, 'webhooks');
      for (const [who, auth] of [['member', owner.auth], ['auditor', auditor.auth], ['admin token', adminToken.auth]] as const) {
        for (const [method, path, body] of paths) {
          const req = ctx.http()[method](path).set(auth);
          const res = await (body ? req.send(body) : req);
          expect({ who, method, path, status: res.status }).toEqual({ who, method, path, status: 403 });
        }
      }
      expect(await countRows(ctx, 'webhooks')).toBe(before);
      expectError(await ctx.http().get('/api/v1/webhooks/01890000-0000-7000-8000-000000000000').set(admin.auth), 404, 'not_found');
      expectError(await ctx.http().get('/api/v1/webhooks/01890000-0000-7000-8000-000000000000/deliveries').set(admin.auth), 404, 'not_found');
      expectError(await remove('01890000-0000-7000-8000-000000000000'), 404, 'not_found');
      expectError(await ctx.http().get('/api/v1/webhooks/nope').set(admin.auth), 400, 'validation_failed');
      expectError(await ctx.http().get('/api/v1/webhooks?limit=500').set(admin.auth), 400, 'validation_failed');
      expect((await remove(made.id)).status).toBe(204);
    });

    it('refuses every dead or forged credential with 401, writing nothing', async () => {
      const refused = await refusedCredentials(ctx, admin);
      for (const s of refused.secrets) ctx.secrets.add('credential', s);
      const made = await subscribe(['provider_key.expiring']);
      const routes: RouteCase[] = [
        { route: 'POST /webhooks', method: 'post', path: () => '/api/v1/webhooks', body: () => ({ url: receiver.url, events: ['provider_key.expiring'] }) },
        { route: 'GET /webhooks', method: 'get', path: () => '/api/v1/webhooks' },
        { route: 'GET /webhooks/:id', method: 'get', path: () => `/api/v1/webhooks/${made.id}` },
        { route: 'GET /webhooks/:id/deliveries', method: 'get', path: () => `/api/v1/webhooks/${made.id}/deliveries` },
        { route: 'DELETE /webhooks/:id', method: 'delete', path: () => `/api/v1/webhooks/${made.id}` },
      ];
      expect((await ctx.http().get('/api/v1/webhooks').set(refused.control)).status).toBe(200);
      for (const r of routes) {
        for (const kind of REFUSED_CREDENTIALS) {
          try {
            await expectRefused(ctx, r, refused.headers[kind]());
          } catch (err) {
            throw new Error(`${r.route} with ${kind}: ${(err as Error).message}`);
          }
        }
      }
      await remove(made.id);
    });
  });

  describe('deliveries', () => {
    beforeEach(() => {
      receiver.received.length = 0;
      receiver.statuses.length = 0;
      receiver.always = undefined;
    });

    it('sends a health change, signed, exactly once to each subscribed webhook and to no other, with nothing secret in it', async () => {
      const hook = await subscribe(['provider_key.health_changed']);
      const other = await new WebhookReceiver().start();
      try {
        const unrelated = await subscribe(['provider_key.expiring'], other);
        const key = await plant(false);
        const checked = await check(key.id);
        expect(checked.body.status).toBe('invalid');
        expect(await dispatch()).toBe(1);
        expect(await dispatch()).toBe(0);

        expect(receiver.received).toHaveLength(1);
        expect(other.received).toHaveLength(0);
        const [got] = receiver.received;
        expect(got.verified).toBe(true);
        expect(got.t).toBe(Math.floor(clock.now() / 1000));
        expect(got.headers).toMatchObject({ 'content-type': 'application/json', 'x-pkv-event': 'provider_key.health_changed', 'x-pkv-delivery': got.json.id, 'user-agent': 'pkv-webhooks/1' });
        expect(Object.keys(got.json).sort()).toEqual(['at', 'data', 'event', 'id']);
        expect(got.json).toMatchObject({ event: 'provider_key.health_changed', at: checked.body.checkedAt });
        expect(got.json.data).toEqual({
          keyId: key.id,
          name: 'key',
          provider: 'openai',
          projectId: project.id,
          ownerId: owner.id,
          from: 'unknown',
          to: 'invalid',
          detail: checked.body.detail,
          source: 'manual',
          checkedAt: checked.body.checkedAt,
        });
        expect(runsOf(key.secret, got.body)).toEqual([]);
        expect(got.body).not.toContain(key.hint.slice(-4));

        const [d] = await deliveries(hook.id);
        expect(Object.keys(d).sort()).toEqual(DELIVERY_KEYS);
        expect(d).toMatchObject({ id: got.json.id, event: 'provider_key.health_changed', status: 'delivered', attempts: 1, nextAttemptAt: null, lastStatusCode: 200, lastError: null, body: got.json });
        expect(d.attemptLog).toEqual([{ at: new Date(clock.now()).toISOString(), statusCode: 200, error: null, durationMs: expect.any(Number) }]);
        expect(await deliveries(unrelated.id)).toEqual([]);

        // The same status again is no change: nothing is sent.
        await check(key.id);
        expect(await dispatch()).toBe(0);
        await remove(unrelated.id);
      } finally {
        await other.close();
        await remove(hook.id);
      }
    });

    it('retries a failing receiver with exponential backoff and stops at the first success', async () => {
      const hook = await subscribe(['provider_key.health_changed']);
      receiver.statuses.push(500, 503);
      const key = await plant();
      await check(key.id);
      const start = clock.now();
      expect(await dispatch()).toBe(1);
      let [d] = await deliveries(hook.id);
      expect(d).toMatchObject({ status: 'pending', attempts: 1, lastStatusCode: 500, lastError: 'HTTP 500', nextAttemptAt: new Date(start + 30_000).toISOString() });
      expect((await webhookRow(hook.id)).failing_since).not.toBeNull();
      expect(await dispatch()).toBe(0); // not due yet
      clock.advance(30_000);
      expect(await dispatch()).toBe(1);
      [d] = await deliveries(hook.id);
      expect(d).toMatchObject({ status: 'pending', attempts: 2, lastStatusCode: 503, nextAttemptAt: new Date(start + 90_000).toISOString() });
      clock.advance(59_000);
      expect(await dispatch()).toBe(0);
      clock.advance(1_000);
      expect(await dispatch()).toBe(1);
      [d] = await deliveries(hook.id);
      expect(d).toMatchObject({ status: 'delivered', attempts: 3, lastStatusCode: 200, lastError: null, nextAttemptAt: null });
      expect(d.attemptLog.map((a: { statusCode: number }) => a.statusCode)).toEqual([500, 503, 200]);
      expect(receiver.received.map((r) => r.json.id)).toEqual([d.id, d.id, d.id]);
      expect(receiver.received.every((r) => r.verified && r.body === receiver.received[0].body)).toBe(true);
      expect(receiver.received.map((r) => r.t)).toEqual([start, start + 30_000, start + 90_000].map((t) => Math.floor(t / 1000)));
      expect((await webhookRow(hook.id)).failing_since).toBeNull();
      await remove(hook.id);
    });

    it('records a receiver that does not answer in time, or redirects (never followed), as failed attempts', async () => {
      const hook = await subscribe(['provider_key.health_changed']);
      receiver.statuses.push('hang' as unknown as number, 302);
      await check((await plant(false)).id);
      await dispatch();
      clock.advance(30_000);
      await dispatch();
      clock.advance(60_000);
      await dispatch();
      const [d] = await deliveries(hook.id);
      expect(d.attemptLog.map((a: { statusCode: number | null; error: string | null }) => [a.statusCode, a.error])).toEqual([
        [null, 'timeout'],
        [302, 'HTTP 302'],
        [200, null],
      ]);
      expect(receiver.received).toHaveLength(3);
      await remove(hook.id);
    });

    it('retries for a day, then gives up and disables the webhook with its reason; nothing is sent to it after that', async () => {
      const hook = await subscribe(['provider_key.health_changed']);
      receiver.always = 500;
      const key = await plant(false);
      await check(key.id);
      const start = clock.now();
      for (let i = 0; i < 40; i++) {
        await dispatch();
        const [d] = await deliveries(hook.id);
        if (d.status !== 'pending') break;
        clock.t = Date.parse(d.nextAttemptAt);
      }
      const [d] = await deliveries(hook.id);
      // 0, 30 s, 1.5 min, 3.5 min, … doubling up to 4 h apart, and a last try at the end of the 24 h.
      expect(d).toMatchObject({ status: 'failed', attempts: 15, lastError: 'HTTP 500' });
      expect(receiver.received).toHaveLength(15);
      expect(Date.parse(d.attemptLog[14].at) - start).toBe(24 * HOUR);
      const w = (await ctx.http().get(`/api/v1/webhooks/${hook.id}`).set(admin.auth)).body;
      expect(w.status).toBe('disabled');
      expect(w.disabledReason).toBe(`no successful delivery since ${new Date(start).toISOString()} (24 h); last attempt: HTTP 500`);
      expect(w.disabledAt).toBe(new Date(clock.now()).toISOString());
      expect(ctx.logText()).toContain('"event":"webhook.disabled"');

      receiver.always = undefined;
      provider.validKeys.add(key.secret);
      await check(key.id); // invalid → valid: a change, but the webhook is disabled
      clock.advance(HOUR);
      expect(await dispatch()).toBe(0);
      expect(receiver.received).toHaveLength(15);
      expect(await deliveries(hook.id)).toHaveLength(1);
      await remove(hook.id);
    });

    it('cancels what is pending when a webhook is disabled, and deleting one takes its log with it (audited)', async () => {
      const hook = await subscribe(['provider_key.health_changed']);
      receiver.always = 500;
      await check((await plant(false)).id);
      await dispatch();
      await check((await plant(false)).id);
      // A day later both fail again: the first failure recorded disables the webhook, which cancels the other delivery.
      clock.advance(24 * HOUR);
      await dispatch();
      const ds = await deliveries(hook.id);
      expect(ds.map((d) => d.status).sort()).toEqual(['cancelled', 'failed']);
      expect(ds.find((d) => d.status === 'cancelled')).toMatchObject({ lastError: 'webhook disabled', nextAttemptAt: null });
      expect((await remove(hook.id)).status).toBe(204);
      expect(await countRows(ctx, 'webhook_deliveries', 'webhook_id = ?', [hook.id])).toBe(0);
      expect(await countRows(ctx, 'webhook_attempts', 'webhook_id = ?', [hook.id])).toBe(0);
      const [audit] = await auditRows(ctx, { action: 'webhook.delete' });
      expect(JSON.parse(String(audit.detail))).toEqual({ webhookId: hook.id, origin: new URL(receiver.url).origin, events: ['provider_key.health_changed'], status: 'disabled' });
    });

    it('leaves nothing behind when a webhook is deleted while a delivery to it is being sent', async () => {
      const hook = await subscribe(['provider_key.health_changed']);
      receiver.statuses.push('hang' as unknown as number);
      await check((await plant(false)).id);
      const sending = dispatch();
      // The delivery is on its way once the receiver has it (100 ms was not always enough on a loaded machine).
      await waitFor('the delivery to reach the receiver', () => receiver.received.length > 0, { timeoutMs: 10_000, intervalMs: 20 });
      expect(receiver.received).toHaveLength(1);
      expect((await remove(hook.id)).status).toBe(204);
      expect(await sending).toBe(1);
      expect(await countRows(ctx, 'webhook_deliveries', 'webhook_id = ?', [hook.id])).toBe(0);
      expect(await countRows(ctx, 'webhook_attempts', 'webhook_id = ?', [hook.id])).toBe(0);
    });

    it('sends provider_key.revealed for each successful reveal (who, which key, why; never the secret)', async () => {
      const hook = await subscribe(['provider_key.revealed']);
      const key = await plant();
      const mine = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
      expect(mine.status).toBe(200);
      const theirs = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(admin.auth).send({ reason: 'INC-7 rotation' });
      expect(theirs.status).toBe(200);
      expect((await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(auditor.auth).send({})).status).toBe(403);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the notices are queued in the turn after the reveal
      expect(await dispatch()).toBe(2);
      const data = receiver.of('provider_key.revealed').map((r) => r.json.data);
      expect(data).toEqual([
        { keyId: key.id, name: 'key', provider: 'openai', projectId: project.id, ownerId: owner.id, actorId: owner.id, actorUsername: owner.username, via: 'session', why: 'owner', reason: null },
        { keyId: key.id, name: 'key', provider: 'openai', projectId: project.id, ownerId: owner.id, actorId: admin.id, actorUsername: admin.username, via: 'session', why: 'admin_with_reason', reason: 'INC-7 rotation' },
      ]);
      expect(runsOf(key.secret, receiver.received.map((r) => r.body).join('\n'))).toEqual([]);
      await remove(hook.id);
    });

    it('sends virtual_key.budget_exhausted once per virtual key and day, however many calls are refused', async () => {
      const hook = await subscribe(['virtual_key.budget_exhausted']);
      const key = await plant();
      const made = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).send({ name: 'budget', dailyRequestLimit: 1 });
      expect(made.status).toBe(201);
      const call = () => ctx.http().post('/gateway/chat/completions').set('authorization', `Bearer ${made.body.virtualKey}`).send({ model: 'gpt-test', messages: [] });
      expect((await call()).status).toBe(200);
      for (let i = 0; i < 4; i++) expect((await call()).status).toBe(429);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await dispatch()).toBe(1);
      const [got] = receiver.of('virtual_key.budget_exhausted');
      const midnight = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1)).toISOString();
      expect(got.json.data).toEqual({ virtualKeyId: made.body.id, keyId: key.id, userId: owner.id, projectId: project.id, budget: 'requests', limit: 1, resetsAt: midnight });
      expect(got.body).not.toContain(made.body.virtualKey.slice(7));
      expect(await dispatch()).toBe(0);
      await remove(hook.id);
    });

    it('sends audit.verify_failed when verification finds tampering', async () => {
      const hook = await subscribe(['audit.verify_failed']);
      await ctx.container.audit.chain.sealPending();
      expect((await ctx.http().get('/api/v1/audit-events/verify').set(auditor.auth)).body.ok).toBe(true);
      expect(await dispatch()).toBe(0);
      const [victim] = await auditRows(ctx, { action: 'webhook.create' });
      await ctx.db.transaction((m) => m.query('UPDATE audit_events SET reason = ? WHERE id = ?', ['edited', victim.id]));
      try {
        const res = await ctx.http().get('/api/v1/audit-events/verify').set(auditor.auth);
        expect(res.body).toMatchObject({ ok: false, firstBadId: victim.id });
        expect(await dispatch()).toBe(1);
        const [got] = receiver.of('audit.verify_failed');
        expect(got.json.data).toEqual({ checked: res.body.checked, firstBadId: victim.id, reason: res.body.reason, headSeq: res.body.head.seq });
      } finally {
        await ctx.db.transaction((m) => m.query('UPDATE audit_events SET reason = ? WHERE id = ?', [victim.reason ?? null, victim.id]));
      }
      expect((await ctx.http().get('/api/v1/audit-events/verify').set(auditor.auth)).body.ok).toBe(true);
      await remove(hook.id);
    });

    // Last in the file: the database ends up under a master key this file's own vault does not hold.
    it('still signs after a master key rotation: the webhook key is a system key, rewrapped with the others', async () => {
      const hook = await subscribe(['provider_key.revealed']);
      const next = randomMasterKey();
      const both = await openInstance({ ...ctx.env, PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `2:${next},1:${ctx.env.PKV_MASTER_KEY}` }, { clock });
      try {
        const result = await both.container.rotation.run(cliActor(null));
        expect(result).toMatchObject({ toVersion: 2, systemKeys: 3, remaining: 0 });
      } finally {
        await both.close();
      }
      const rotated = await openInstance({ ...ctx.env, PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `2:${next}` }, { clock });
      try {
        rotated.container.webhooks.publish('provider_key.revealed', { keyId: 'after-rotation' });
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(await rotated.container.dispatcher.runOnce()).toBe(1);
      } finally {
        await rotated.close();
      }
      const [got] = receiver.of('provider_key.revealed');
      expect(got.verified).toBe(true);
      expect(got.json.data).toEqual({ keyId: 'after-rotation' });
      expect((await ctx.db.read((m) => m.query("SELECT kek_version FROM system_keys WHERE name = 'webhook_secrets'")))[0].kek_version).toBe(2);
      await remove(hook.id);
    });
  });
});
