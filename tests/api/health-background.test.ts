import crypto from 'node:crypto';
import { createTestContext, TestContext } from '../support/test-app';
import { createKey, createProject, uniqueSecret } from '../support/factories';
import { assertBuilt, killAll, servePkv, ServingPkv, waitFor } from '../support/processes';
import { StandInProvider } from '../support/stand-in-provider';
import { WebhookReceiver } from '../support/webhook-receiver';
import { RUN } from '../../src/modules/gateway/scrub';

jest.setTimeout(120_000);

/**
 * `pkv serve` with the scheduler and the dispatcher switched on (they are off under NODE_ENV=test): on its own, the
 * server checks a key when it starts, sends the signed health change to a webhook, and stops cleanly.
 */
describe('pkv serve with PKV_HEALTH_SCHEDULER=on and PKV_WEBHOOK_DISPATCHER=on', () => {
  let ctx: TestContext;
  let provider: StandInProvider;
  let receiver: WebhookReceiver;
  let server: ServingPkv | undefined;

  beforeAll(async () => {
    assertBuilt();
    provider = await new StandInProvider().start();
    receiver = await new WebhookReceiver().start();
    ctx = await createTestContext({ PKV_LOG_LEVEL: 'info' });
  });
  afterAll(async () => {
    await killAll();
    await receiver?.close();
    await provider?.close();
    await ctx?.close();
  });

  it('checks a key at start, delivers the health change signed, and exits cleanly, with the key in no output', async () => {
    const admin = await ctx.user('admin');
    const project = await createProject(ctx, admin);
    const secret = uniqueSecret();
    const key = await createKey(ctx, admin, { ownerId: admin.id, projectId: project.id, secret, baseUrl: `${provider.url}/v1` });
    receiver.secret = `whsec_${crypto.randomBytes(16).toString('hex')}`;
    ctx.secrets.add('webhook secret', receiver.secret);
    expect((await ctx.http().post('/api/v1/webhooks').set(admin.auth).send({ url: receiver.url, events: ['provider_key.health_changed'], secret: receiver.secret })).status).toBe(201);

    server = await servePkv({ ...ctx.env, PKV_HEALTH_SCHEDULER: 'on', PKV_WEBHOOK_DISPATCHER: 'on', PKV_HEALTH_CHECK_INTERVAL: '60s' });
    await waitFor('the health change at the receiver', () => receiver.received.length > 0);
    const [got] = receiver.received;
    expect(got.verified).toBe(true);
    expect(got.json.data).toMatchObject({ keyId: key.id, from: 'unknown', to: 'invalid', source: 'scheduled' });
    const health = (await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set(admin.auth)).body.health;
    expect(health.status).toBe('invalid');

    const exit = await server.stop('SIGTERM');
    expect(exit.code).toBe(0);
    const output = `${server.stdout()}\n${server.stderr()}`;
    for (let i = 0; i + RUN <= secret.length; i++) expect(output).not.toContain(secret.slice(i, i + RUN));
    expect(output).not.toContain(receiver.secret);
  });
});
