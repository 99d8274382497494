import crypto from 'node:crypto';
import request from 'supertest';
import { createTestContext, dbKind, Instance, openInstance, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { countRows } from '../support/auth-helpers';
import { StandInProvider } from '../support/stand-in-provider';
import { WebhookReceiver } from '../support/webhook-receiver';
import { FakeClock } from '../support/fake-clock';
import { createHandler } from '../../src/app';

jest.setTimeout(120_000);

const DAY = 86_400_000;

/**
 * Three vaults on one MariaDB database (the test's own and two more containers, each with its own pool), running the
 * scheduler and the dispatcher at the same moment: every delivery is sent once, every key checked once, every notice
 * sent once. MariaDB only: the embedded SQLite vault is one process.
 */
const describeMysql = dbKind() === 'mysql' ? describe : describe.skip;

describeMysql('health and webhooks on several instances sharing one MariaDB database', () => {
  const clock = new FakeClock();
  let ctx: TestContext;
  let a: Instance;
  let b: Instance;
  let provider: StandInProvider;
  let receiver: WebhookReceiver;
  let admin: TestUser;
  let owner: TestUser;
  let project: { id: string };
  let hookId: string;

  const all = () => [ctx.container, a.container, b.container];
  const plant = async (fields: { expiresAt?: string } = {}): Promise<CreatedKey> => {
    const secret = uniqueSecret();
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, secret, baseUrl: `${provider.url}/v1`, ...fields });
    provider.validKeys.add(secret);
    return key;
  };
  const keyedCalls = (key: CreatedKey) => provider.seen.filter((r) => r.headers.authorization === `Bearer ${key.secret}`).length;
  const only = async (keep: CreatedKey[]) => {
    const ids = keep.map((k) => k.id);
    const live: Array<{ id: string }> = await ctx.db.read((m) => m.query("SELECT id FROM provider_keys WHERE status <> 'deleted'"));
    for (const { id } of live) if (!ids.includes(id)) await ctx.http().delete(`/api/v1/provider-keys/${id}`).set(admin.auth);
  };
  const pending = () => countRows(ctx, 'webhook_deliveries', "status = 'pending'");
  const waitFor = async (what: () => Promise<boolean>) => {
    for (let i = 0; i < 200 && !(await what()); i++) await new Promise((resolve) => setTimeout(resolve, 25));
  };

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    receiver = await new WebhookReceiver().start();
    ctx = await createTestContext({ PKV_LOG_LEVEL: 'info', PKV_HEALTH_CHECK_CONCURRENCY: '3' }, { clock });
    a = await openInstance(ctx.env, { clock });
    b = await openInstance(ctx.env, { clock });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    project = await createProject(ctx, admin);
    receiver.secret = `whsec_${crypto.randomBytes(16).toString('hex')}`;
    ctx.secrets.add('webhook secret', receiver.secret);
    const events = ['provider_key.health_changed', 'provider_key.expiring', 'virtual_key.budget_exhausted', 'provider_key.revealed'];
    const hook = await ctx.http().post('/api/v1/webhooks').set(admin.auth).send({ url: receiver.url, events, secret: receiver.secret });
    expect(hook.status).toBe(201);
    hookId = hook.body.id;
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await receiver?.close();
    await provider?.close();
    await ctx?.close();
  });

  it('sends each delivery exactly once when three dispatchers run at the same moment, also across retries', async () => {
    receiver.received.length = 0;
    receiver.always = 500;
    for (let i = 0; i < 40; i++) ctx.container.webhooks.publish('provider_key.revealed', { n: i });
    await waitFor(async () => (await pending()) === 40);
    expect(await pending()).toBe(40);

    const first = await Promise.all(all().map((c) => c.dispatcher.runOnce()));
    expect(first.reduce((x, y) => x + y, 0)).toBe(40);
    expect(receiver.received).toHaveLength(40);
    expect(new Set(receiver.received.map((r) => r.json.id)).size).toBe(40);

    receiver.always = undefined;
    clock.advance(30_000);
    const second = await Promise.all(all().map((c) => c.dispatcher.runOnce()));
    expect(second.reduce((x, y) => x + y, 0)).toBe(40);
    expect(receiver.received).toHaveLength(80);
    const perDelivery = new Map<string, number>();
    for (const r of receiver.received) perDelivery.set(r.json.id, (perDelivery.get(r.json.id) ?? 0) + 1);
    expect([...perDelivery.values()].every((n) => n === 2)).toBe(true);
    expect(receiver.received.every((r) => r.verified)).toBe(true);
    expect(await countRows(ctx, 'webhook_deliveries', "status = 'delivered' AND attempts = 2")).toBe(40);
    expect(await countRows(ctx, 'webhook_attempts', 'webhook_id = ?', [hookId])).toBe(80);
  });

  it('checks each due key once when three schedulers tick at the same moment', async () => {
    const keys = await Promise.all(Array.from({ length: 20 }, () => plant()));
    for (const k of keys) provider.answers.set(k.secret, { status: 200, body: { data: [] }, delayMs: 40 });
    await only(keys);
    const results = await Promise.all(all().map((c) => c.scheduler.tick()));
    expect(results.reduce((x, r) => x + r.checked, 0)).toBe(20);
    expect(keys.map(keyedCalls)).toEqual(keys.map(() => 1));
    expect(await countRows(ctx, 'key_health_events', "source = 'scheduled'")).toBe(20);
    const again = await Promise.all(all().map((c) => c.scheduler.tick()));
    expect(again.reduce((x, r) => x + r.checked, 0)).toBe(0);
    for (const k of keys) provider.answers.delete(k.secret);
  });

  it('does not check a key on one instance while a manual check of it runs on another (the check claims it first)', async () => {
    const key = await plant();
    await only([key]);
    await ctx.db.transaction((m) => m.query('UPDATE provider_keys SET health_next_check_at = 0 WHERE id = ?', [key.id]));
    provider.answers.set(key.secret, { status: 200, body: { data: [] }, delayMs: 300 });
    const manual = ctx.http().post(`/api/v1/provider-keys/${key.id}/check`).set(owner.auth).then((r) => r); // sent on then()
    for (let i = 0; i < 100 && keyedCalls(key) === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const ticks = await Promise.all([a.container.scheduler.tick(), b.container.scheduler.tick()]);
    expect((await manual).status).toBe(200);
    expect(ticks.reduce((x, r) => x + r.checked, 0)).toBe(0);
    expect(keyedCalls(key)).toBe(1);
    provider.answers.delete(key.secret);
  });

  it('sends each expiry notice once when three schedulers tick at the same moment', async () => {
    const keys = await Promise.all(Array.from({ length: 10 }, () => plant({ expiresAt: new Date(clock.now() + 3 * DAY).toISOString() })));
    await only(keys);
    const before = await countRows(ctx, 'webhook_deliveries', "event = 'provider_key.expiring'");
    const results = await Promise.all(all().map((c) => c.scheduler.tick()));
    expect(results.reduce((x, r) => x + r.expiryNotices, 0)).toBe(10);
    expect((await countRows(ctx, 'webhook_deliveries', "event = 'provider_key.expiring'")) - before).toBe(10);
  });

  it('sends one budget_exhausted notice however many instances refuse the virtual key', async () => {
    const key = await plant();
    const made = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).send({ name: 'budget', dailyRequestLimit: 1 });
    expect(made.status).toBe(201);
    const handlers = all().map((c) => createHandler(c));
    const call = (h: (typeof handlers)[number]) => request(h).post('/gateway/chat/completions').set('authorization', `Bearer ${made.body.virtualKey}`).send({ model: 'gpt-test', messages: [] });
    expect((await call(handlers[0])).status).toBe(200);
    await ctx.container.gateway.usage.flush();
    const refused = await Promise.all(handlers.flatMap((h) => [call(h), call(h), call(h)]));
    expect(refused.map((r) => r.status)).toEqual(refused.map(() => 429));
    await waitFor(async () => (await countRows(ctx, 'virtual_keys', 'id = ? AND budget_notified_day IS NOT NULL', [made.body.id])) === 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await countRows(ctx, 'webhook_deliveries', "event = 'virtual_key.budget_exhausted'")).toBe(1);
  });
});
