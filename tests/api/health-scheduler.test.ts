import crypto from 'node:crypto';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { StandInProvider } from '../support/stand-in-provider';
import { WebhookReceiver } from '../support/webhook-receiver';
import { FakeClock } from '../support/fake-clock';

jest.setTimeout(60_000);

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The scheduler driven by tick() on a fake clock: which keys it checks, when again, how many at once; expiry notices. */
describe('the health scheduler', () => {
  const clock = new FakeClock();
  let ctx: TestContext;
  let provider: StandInProvider;
  let receiver: WebhookReceiver;
  let admin: TestUser;
  let owner: TestUser;
  let project: { id: string };

  const plant = async (fields: { provider?: string; valid?: boolean; expiresAt?: string } = {}): Promise<CreatedKey> => {
    const secret = uniqueSecret();
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, secret, provider: fields.provider ?? 'openai', baseUrl: `${provider.url}/v1`, ...(fields.expiresAt ? { expiresAt: fields.expiresAt } : {}) });
    if (fields.valid !== false) provider.validKeys.add(secret);
    return key;
  };
  const keyRow = async (id: string): Promise<Record<string, unknown>> => (await ctx.db.read((m) => m.query('SELECT * FROM provider_keys WHERE id = ?', [id])))[0];
  const checksOf = (key: CreatedKey) => provider.seen.filter((r) => r.headers.authorization === `Bearer ${key.secret}`).length;
  const tick = () => ctx.container.scheduler.tick();
  /** Leaves only these keys live (the other tests' keys deleted), so a tick's counts are about them alone. */
  const only = async (keep: CreatedKey[]) => {
    const ids = keep.map((k) => k.id);
    const live: Array<{ id: string }> = await ctx.db.read((m) => m.query("SELECT id FROM provider_keys WHERE status <> 'deleted'"));
    for (const { id } of live) if (!ids.includes(id)) expect((await ctx.http().delete(`/api/v1/provider-keys/${id}`).set(admin.auth)).status).toBe(204);
  };

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    receiver = await new WebhookReceiver().start();
    ctx = await createTestContext({ PKV_HEALTH_CHECK_CONCURRENCY: '2', PKV_HEALTH_CHECK_TIMEOUT: '500ms' }, { clock });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    project = await createProject(ctx, admin);
    receiver.secret = `whsec_${crypto.randomBytes(16).toString('hex')}`;
    ctx.secrets.add('webhook secret', receiver.secret);
    const hook = await ctx.http().post('/api/v1/webhooks').set(admin.auth).send({ url: receiver.url, events: ['provider_key.expiring', 'provider_key.health_changed'], secret: receiver.secret });
    expect(hook.status).toBe(201);
  });
  afterAll(async () => {
    await receiver?.close();
    await provider?.close();
    await ctx?.close();
  });

  it('is off under NODE_ENV=test: nothing runs until the test ticks it', async () => {
    expect(ctx.config.health.scheduler).toBe(false);
    const key = await plant();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(checksOf(key)).toBe(0);
    await only([]);
  });

  it('checks every active, unexpired key with a check once per interval (jittered), and skips the rest', async () => {
    const good = await plant();
    const bad = await plant({ valid: false });
    const ark = await plant({ provider: 'volcengine-ark' });
    const off = await plant();
    await ctx.http().patch(`/api/v1/provider-keys/${off.id}`).set(admin.auth).send({ status: 'disabled' });
    const expired = await plant();
    await ctx.db.transaction((m) => m.query('UPDATE provider_keys SET expires_at = ? WHERE id = ?', [clock.now() - 1000, expired.id]));
    await only([good, bad, ark, off, expired]);

    expect(await tick()).toEqual({ checked: 2, expiryNotices: 0 });
    expect((await keyRow(good.id)).health_status).toBe('valid');
    expect((await keyRow(bad.id)).health_status).toBe('invalid');
    for (const k of [good, bad]) expect(checksOf(k)).toBe(1);
    for (const k of [ark, off, expired]) expect(provider.seen.some((r) => JSON.stringify(r.headers).includes(k.secret))).toBe(false);
    expect((await keyRow(ark.id)).health_status).toBe('unknown');
    const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT source, actor_id FROM key_health_events WHERE key_id IN (?, ?)', [good.id, bad.id]));
    expect(rows).toEqual([
      { source: 'scheduled', actor_id: null },
      { source: 'scheduled', actor_id: null },
    ]);

    expect(await tick()).toEqual({ checked: 0, expiryNotices: 0 });
    const nexts = [Number((await keyRow(good.id)).health_next_check_at), Number((await keyRow(bad.id)).health_next_check_at)];
    clock.t = Math.min(...nexts) - 1;
    expect((await tick()).checked).toBe(0);
    clock.t = Math.max(...nexts);
    expect((await tick()).checked).toBe(2);
    expect(checksOf(good)).toBe(2);
    await only([]);
  });

  it('spreads the next checks over ±10% of the interval and runs at most PKV_HEALTH_CHECK_CONCURRENCY at once', async () => {
    const keys = await Promise.all(Array.from({ length: 8 }, () => plant()));
    for (const k of keys) provider.answers.set(k.secret, { status: 200, body: { data: [] }, delayMs: 80 });
    await only(keys);
    provider.maxInFlight = 0;
    const started = clock.now();
    expect((await tick()).checked).toBe(8);
    expect(provider.maxInFlight).toBe(2);
    const nexts = await Promise.all(keys.map(async (k) => Number((await keyRow(k.id)).health_next_check_at) - started));
    for (const n of nexts) {
      expect(n).toBeGreaterThanOrEqual(0.9 * 6 * HOUR);
      expect(n).toBeLessThanOrEqual(1.1 * 6 * HOUR);
    }
    expect(new Set(nexts).size).toBeGreaterThan(1);
    for (const k of keys) provider.answers.delete(k.secret);
    await only([]);
  });

  it('stops promptly mid-run: the checks under way finish, keys claimed but not started are due again at once', async () => {
    const keys = await Promise.all(Array.from({ length: 8 }, () => plant()));
    for (const k of keys) provider.answers.set(k.secret, { status: 200, body: { data: [] }, delayMs: 150 });
    await only(keys);
    const run = tick();
    for (let i = 0; i < 100 && keys.every((k) => checksOf(k) === 0); i++) await new Promise((r) => setTimeout(r, 10));
    await ctx.container.scheduler.stop();
    const { checked } = await run;
    expect(checked).toBe(2); // PKV_HEALTH_CHECK_CONCURRENCY checks were under way; none was started after stop()
    const checkedKeys = keys.filter((k) => checksOf(k) > 0);
    expect(checkedKeys).toHaveLength(2);
    for (const k of keys) {
      const next = Number((await keyRow(k.id)).health_next_check_at);
      if (checkedKeys.includes(k)) expect(next).toBeGreaterThan(clock.now());
      else expect(next).toBeLessThanOrEqual(clock.now());
    }
    // The next run (here, after a start) checks the rest.
    expect((await tick()).checked).toBe(6);
    for (const k of keys) provider.answers.delete(k.secret);
    await only([]);
  });

  it('sends each expiry notice once: 7 days before, then 1 day before; a key found inside both gets only the nearer one', async () => {
    const at = (ms: number) => new Date(clock.now() + ms).toISOString();
    const week = await plant({ expiresAt: at(6.5 * DAY) });
    const day = await plant({ expiresAt: at(12 * HOUR) });
    const later = await plant({ expiresAt: at(8 * DAY) });
    await only([week, day, later]);
    const notices = () => receiver.of('provider_key.expiring').map((r) => [r.json.data.keyId, r.json.data.daysLeft]);
    const flush = async () => {
      await ctx.container.dispatcher.runOnce();
      return notices();
    };
    receiver.received.length = 0;

    expect((await tick()).expiryNotices).toBe(2);
    expect((await flush()).sort()).toEqual([[week.id, 7], [day.id, 1]].sort());
    const [one] = receiver.of('provider_key.expiring').filter((r) => r.json.data.keyId === day.id);
    expect(one.verified).toBe(true);
    expect(one.json.data).toEqual({ keyId: day.id, name: 'key', provider: 'openai', projectId: project.id, ownerId: owner.id, expiresAt: new Date(Date.parse(at(0)) + 12 * HOUR).toISOString(), daysLeft: 1 });
    expect((await tick()).expiryNotices).toBe(0);

    clock.advance(6 * DAY);
    expect((await tick()).expiryNotices).toBe(2); // week: 1 day left now; later: 2 days left
    expect((await flush()).slice(2).sort()).toEqual([[week.id, 1], [later.id, 7]].sort());
    expect((await tick()).expiryNotices).toBe(0);

    // A new expiry gets its own notices.
    const renewed = await ctx.http().patch(`/api/v1/provider-keys/${later.id}`).set(admin.auth).send({ expiresAt: at(30 * DAY) });
    expect(renewed.status).toBe(200);
    expect((await keyRow(later.id)).expiry_notice_days).toBeNull();
    clock.advance(24 * DAY);
    expect((await tick()).expiryNotices).toBe(1);
    expect((await flush()).slice(4)).toEqual([[later.id, 7]]);
    expect(receiver.of('provider_key.expiring')).toHaveLength(5);
    await only([]);
  });

  it('sends health_changed for scheduled checks when the status moves, and nothing when it stays', async () => {
    const key = await plant({ valid: false });
    await only([key]);
    receiver.received.length = 0;
    await tick();
    await ctx.container.dispatcher.runOnce();
    expect(receiver.of('provider_key.health_changed').map((r) => [r.json.data.from, r.json.data.to, r.json.data.source])).toEqual([['unknown', 'invalid', 'scheduled']]);
    clock.advance(7 * HOUR);
    await tick();
    await ctx.container.dispatcher.runOnce();
    expect(receiver.of('provider_key.health_changed')).toHaveLength(1);
    await only([]);
  });
});
