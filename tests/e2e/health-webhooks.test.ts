/**
 * Key health, the hygiene report and webhooks in the console (issue 21), in headless Chromium against the real server,
 * a stand-in provider and two webhook receivers: the key list's health column and filter, "Check now" with its result
 * and refusals, the health history, an Ark key's probe set and removed by an admin; the hygiene report with its
 * findings, N days and the CSV (UTF-8 BOM); webhooks made with a generated signing secret shown once (which then
 * verifies a real delivery), a failing one disabled with its reason, the delivery log, deletion. Each role sees what
 * the server lets it; axe finds nothing serious on the new pages in both languages and colour schemes; at 390 px
 * nothing scrolls sideways.
 */
import crypto from 'node:crypto';
import { parse as parseCsv } from 'csv-parse/sync';
import type { Page } from 'playwright-core';
import { StandInProvider } from '../support/stand-in-provider';
import { WebhookReceiver } from '../support/webhook-receiver';
import { axeProblems, describeE2E, downloadText, E2E, eventually, noticeText, scrollsSideways, type SeededUser } from './helpers';

jest.setTimeout(600_000);

type Lang = 'en' | 'zh';
type Scheme = 'light' | 'dark';
const COMBOS: Array<[Lang, Scheme]> = [
  ['en', 'light'],
  ['en', 'dark'],
  ['zh', 'light'],
  ['zh', 'dark'],
];

describeE2E('web console: key health, hygiene report and webhooks', () => {
  let e: E2E;
  let stand: StandInProvider;
  let okHook: WebhookReceiver;
  let badHook: WebhookReceiver;
  let admin: SeededUser;
  let alice: SeededUser;
  let bob: SeededUser;
  let audrey: SeededUser;
  let good: { id: string; secret: string };
  let bad: { id: string; secret: string };
  let ark: { id: string; secret: string };
  let adminToken: string;
  /** The signing secret the console showed once. */
  let generatedSecret = '';

  beforeAll(async () => {
    stand = await new StandInProvider().start();
    okHook = await new WebhookReceiver().start();
    badHook = await new WebhookReceiver().start();
    badHook.always = 500;
    // Retries end (and a failing webhook is disabled) after 1 s instead of 24 h.
    e = await E2E.start({ PKV_WEBHOOK_RETRY_BASE: '100ms', PKV_WEBHOOK_RETRY_FOR: '1s', PKV_WEBHOOK_TIMEOUT: '2s' });
    admin = await e.user('admin', 'root-admin');
    alice = await e.user('member', 'alice', '艾丽丝');
    bob = await e.user('member', 'bob');
    audrey = await e.user('auditor', 'audrey');
    const project = await e.project('chatbot-prod');
    await e.project('空项目-empty');
    good = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-good', provider: 'openai', baseUrl: `${stand.url}/v1` });
    bad = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-bad', provider: 'openai', baseUrl: `${stand.url}/v1` });
    ark = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-ark', provider: 'volcengine-ark', secret: crypto.randomUUID() });
    stand.validKeys.add(good.secret);
    adminToken = await e.apiLogin(admin);
  });

  afterAll(async () => {
    await e?.close();
    await stand?.close();
    await okHook?.close();
    await badHook?.close();
  });

  const settle = async (page: Page) => {
    await page.locator('h1').first().waitFor();
    await eventually(async () => expect(await page.locator('[aria-busy=true]').count()).toBe(0));
  };
  const call = async (method: string, path: string, body?: unknown, token = adminToken) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
    const res = await fetch(`${e.url}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: res.status === 204 ? null : ((await res.json()) as Record<string, unknown>) };
  };
  const healthOf = (row: ReturnType<Page['locator']>) => row.getByTestId('health-badge').getAttribute('data-health');
  const navLinks = async (page: Page) => (await page.locator('.mainnav a').allTextContents()).map((s) => s.trim());

  test('the key list shows each key’s health in words and filters by it; the filter stays in the URL', async () => {
    const { page } = e;
    await e.signIn(admin);
    await settle(page);
    const row = (name: string) => page.locator('[data-testid=key-row]', { hasText: name });
    expect(await page.locator('[data-testid=keys-table] th').allTextContents()).toContain('Health');
    for (const name of ['alice-good', 'alice-bad', 'alice-ark']) {
      expect(await healthOf(row(name))).toBe('unknown');
      expect((await row(name).getByTestId('health-badge').textContent())?.trim()).toBe('Unknown');
    }
    // Checked through the API by the owner: one valid, one refused by the provider.
    expect((await call('POST', `/provider-keys/${bad.id}/check`, undefined, await e.apiLogin(alice))).body).toMatchObject({ status: 'invalid' });
    await page.reload();
    await settle(page);
    expect(await healthOf(row('alice-bad'))).toBe('invalid');
    expect((await row('alice-bad').getByTestId('health-badge').textContent())?.trim()).toBe('Invalid');
    await page.selectOption('[data-testid=filter-health]', 'invalid');
    await eventually(async () => expect(await page.locator('[data-testid=key-row] .key-name').allTextContents()).toEqual(['alice-bad']));
    expect(new URL(page.url()).searchParams.get('health')).toBe('invalid');
    await page.reload();
    await settle(page);
    expect(await page.inputValue('[data-testid=filter-health]')).toBe('invalid');
    expect(await page.locator('[data-testid=key-row] .key-name').allTextContents()).toEqual(['alice-bad']);
    await page.selectOption('[data-testid=filter-health]', 'no_credit');
    await eventually(async () => expect(await page.locator('[data-testid=keys-table] .empty').textContent()).toBe('Nothing matches these filters.'));
  });

  test('an admin checks a key now: the result is shown, the badge and the history follow', async () => {
    const { page } = e;
    await page.goto(`${e.url}/keys/${good.id}`);
    await settle(page);
    expect((await page.getByTestId('health-checked-at').textContent())?.trim()).toBe('Not checked yet');
    expect(await page.locator('[data-testid=health-table] .empty').textContent()).toBe('No checks yet.');
    await page.getByTestId('check-now').click();
    await page.getByTestId('check-result').waitFor();
    expect(await page.getByTestId('check-result').textContent()).toContain('Checked: Valid.');
    await eventually(async () => expect(await healthOf(page.getByTestId('health-current'))).toBe('valid'));
    expect(await page.getByTestId('health-checked-at').textContent()).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    await eventually(async () => expect(await page.locator('[data-testid=health-row]').count()).toBe(1));
    const hist = page.locator('[data-testid=health-row]').first();
    expect(await hist.getAttribute('data-health')).toBe('valid');
    expect(await hist.textContent()).toContain('Check now');
    expect(await hist.textContent()).toContain('root-admin');
    // The badge beside the name too.
    expect(await page.locator('.key-title [data-testid=health-badge]').getAttribute('data-health')).toBe('valid');
  });

  test('an Ark key without a probe cannot be checked, and says why; an admin sets and removes its probe (one token per check)', async () => {
    const { page } = e;
    await page.goto(`${e.url}/keys/${ark.id}`);
    await settle(page);
    expect(await page.getByTestId('health-probe').textContent()).toContain('None: the provider has no free check');
    await page.getByTestId('check-now').click();
    await page.getByTestId('check-error').waitFor();
    expect(await page.getByTestId('check-error').textContent()).toContain('This key has no check: Volcengine Ark and custom keys need a probe set by an admin');

    await page.getByTestId('probe-set').click();
    await page.getByTestId('probe-dialog').waitFor();
    expect(await page.getByTestId('probe-dialog').textContent()).toContain('one completion token (max_tokens 1)');
    await page.getByTestId('probe-save').click();
    expect(await page.locator('[data-testid=probe-dialog] [role=alert]').textContent()).toContain('Fill in Model.');
    await page.fill('#probe-model', 'ep-20250101-abcde');
    expect(await page.getByTestId('probe-preview').textContent()).toContain('"model":"ep-20250101-abcde","max_tokens":1');
    await page.getByTestId('probe-save').click();
    await page.getByTestId('probe-dialog').waitFor({ state: 'detached' });
    await eventually(async () => expect(await page.getByTestId('health-probe').textContent()).toContain('ep-20250101-abcde'));
    expect(await page.getByTestId('health-probe').textContent()).toContain('one completion token (max_tokens 1)');
    expect((await call('GET', `/provider-keys/${ark.id}`)).body).toMatchObject({ healthProbe: { model: 'ep-20250101-abcde' } });

    await page.getByTestId('probe-clear').click();
    await page.getByTestId('confirm-dialog').locator('button.danger').click();
    await page.getByTestId('confirm-dialog').waitFor({ state: 'detached' });
    await eventually(async () => expect(await page.getByTestId('health-probe').textContent()).toContain('None'));
    expect((await call('GET', `/provider-keys/${ark.id}`)).body).toMatchObject({ healthProbe: null });
  });

  test('the owner checks her key; she cannot change a probe; another member cannot open the key; an auditor reads health without Check now', async () => {
    const { page } = e;
    await e.signIn(alice, `/keys/${good.id}`);
    await settle(page);
    await page.getByTestId('check-now').click();
    await page.getByTestId('check-result').waitFor();
    await eventually(async () => expect(await page.locator('[data-testid=health-row]').count()).toBe(2));
    expect(await navLinks(page)).toEqual(['Keys', 'API tokens']);
    await page.goto(`${e.url}/keys/${ark.id}`);
    await settle(page);
    expect(await page.getByTestId('check-now').count()).toBe(1);
    expect(await page.getByTestId('probe-set').count()).toBe(0);
    // The hygiene report and the webhooks are not for members.
    for (const path of ['/hygiene', '/webhooks']) {
      await page.goto(`${e.url}${path}`);
      await page.locator('.empty', { hasText: 'Your role cannot open this page.' }).waitFor();
    }

    await e.signIn(bob, `/keys/${good.id}`);
    await page.locator('[role=alert]', { hasText: 'This key does not exist or is not yours.' }).waitFor();

    await e.signIn(audrey, `/keys/${good.id}`);
    await settle(page);
    expect(await healthOf(page.getByTestId('health-current'))).toBe('valid');
    expect(await page.locator('[data-testid=health-row]').count()).toBe(2);
    expect(await page.getByTestId('check-now').count()).toBe(0);
    expect(await navLinks(page)).toEqual(['Keys', 'Audit', 'Users', 'Projects', 'Hygiene', 'API tokens']);
    await page.goto(`${e.url}/webhooks`);
    await page.locator('.empty', { hasText: 'Your role cannot open this page.' }).waitFor();
  });

  test('the hygiene report (auditor): findings with counts and rows linking to keys, N days in the URL, CSV with a BOM', async () => {
    const { page } = e;
    await page.goto(`${e.url}/hygiene`);
    await settle(page);
    const count = async (f: string) => Number(await page.getByTestId(`finding-${f}`).getAttribute('data-count'));
    expect(await count('unhealthy')).toBe(1);
    expect(await page.getByTestId('summary-unhealthy').textContent()).toBe('Failing 1');
    expect(await page.getByTestId('finding-unhealthy').locator('[data-testid=hygiene-row]').getAttribute('data-key-id')).toBe(bad.id);
    expect(await healthOf(page.getByTestId('finding-unhealthy').locator('[data-testid=hygiene-row]'))).toBe('invalid');
    expect(await page.getByTestId('finding-project_empty').textContent()).toContain('空项目-empty');
    expect(await count('expired')).toBe(0);
    expect(await page.getByTestId('finding-expired').locator('.empty').textContent()).toBe('None.');
    expect(await page.getByTestId('hygiene-generated').textContent()).toContain('looking 90 days back and ahead');

    await page.fill('#hygiene-days', '0');
    await page.getByTestId('hygiene-apply').click();
    await page.locator('.field-error', { hasText: 'Choose a whole number of days from 1 to 3650.' }).waitFor();
    await page.fill('#hygiene-days', '1');
    await page.getByTestId('hygiene-apply').click();
    await eventually(async () => expect(await page.getByTestId('hygiene-generated').textContent()).toContain('looking 1 day back and ahead'));
    expect(new URL(page.url()).search).toBe('?days=1');
    expect(await page.getByTestId('hygiene-csv').getAttribute('href')).toBe('/api/v1/reports/hygiene?days=1&format=csv');

    const json = (await call('GET', '/reports/hygiene?days=1')).body as { items: Array<{ finding: string; keyId: string | null }> };
    const csv = await downloadText(page, () => page.getByTestId('hygiene-csv').click());
    expect(csv.name).toMatch(/^pkv-hygiene-.*\.csv$/);
    expect(csv.text.startsWith('\ufefffinding,keyId,')).toBe(true);
    const rows: string[][] = parseCsv(csv.text, { bom: true });
    expect(rows.length - 1).toBe(json.items.length);
    expect(rows.some((r) => r[0] === 'unhealthy' && r[1] === bad.id)).toBe(true);

    // A row opens its key.
    await page.getByTestId('finding-unhealthy').getByRole('link', { name: 'alice-bad' }).click();
    await page.getByTestId('detail-name').waitFor();
    expect(new URL(page.url()).pathname).toBe(`/keys/${bad.id}`);
  });

  test('an admin adds a webhook with a generated secret, shown once and masked; copied, it verifies a real delivery', async () => {
    const { page } = e;
    await e.signIn(admin, '/webhooks');
    await settle(page);
    expect(await navLinks(page)).toEqual(['Keys', 'Audit', 'Users', 'Projects', 'Hygiene', 'Webhooks', 'API tokens']);
    expect(await page.locator('[data-testid=webhooks-table] .empty').textContent()).toContain('No webhooks yet.');
    await page.getByTestId('create-webhook').click();
    await page.getByTestId('create-webhook-dialog').waitFor();
    // Client-side rules first, then the server's own (an http URL off loopback).
    await page.getByTestId('event-provider_key.health_changed').uncheck();
    await page.getByTestId('event-provider_key.expiring').uncheck();
    await page.fill('#webhook-url', 'http://hooks.example.com/pkv');
    await page.getByTestId('webhook-submit').click();
    expect(await page.locator('[data-testid=create-webhook-dialog] [role=alert]').textContent()).toBe('Choose at least one event.');
    await page.getByTestId('event-provider_key.revealed').check();
    await page.fill('#webhook-secret', 'short');
    await page.getByTestId('webhook-submit').click();
    expect(await page.locator('[data-testid=create-webhook-dialog] [role=alert]').textContent()).toContain('16–256 printable characters');
    await page.fill('#webhook-secret', '');
    await page.getByTestId('webhook-submit').click();
    await eventually(async () => expect(await page.locator('[data-testid=create-webhook-dialog] [role=alert]').textContent()).toContain('Please check the form: url'));
    await page.fill('#webhook-url', okHook.url);
    await page.getByTestId('webhook-submit').click();

    await page.getByTestId('webhook-secret-dialog').waitFor();
    expect(await page.getByTestId('secret-mask').count()).toBe(1);
    expect(await page.getByTestId('webhook-secret-dialog').textContent()).toContain('it is shown only this once');
    await page.getByTestId('secret-copy').click();
    generatedSecret = String(await page.evaluate('navigator.clipboard.readText()'));
    expect(generatedSecret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    await page.getByTestId('reveal-hide').click();
    await page.getByTestId('webhook-secret-dialog').waitFor({ state: 'detached' });
    expect(await noticeText(page)).toBe(`The webhook to ${okHook.url} was added. Its signing secret was hidden and cannot be shown again.`);
    expect(await e.pageTraces()).not.toContain(generatedSecret);
    const row = page.locator('[data-testid=webhook-row]');
    expect(await row.count()).toBe(1);
    expect(await row.textContent()).toContain('Key revealed');

    // The copied secret is the one the vault signs with.
    okHook.secret = generatedSecret;
    expect((await call('POST', `/provider-keys/${good.id}/reveal`, { reason: 'INC-21 webhook check' })).status).toBe(200);
    await eventually(async () => {
      await e.container.dispatcher.runOnce();
      expect(okHook.of('provider_key.revealed').length).toBe(1);
    });
    expect(okHook.of('provider_key.revealed')[0].verified).toBe(true);
    expect(e.logText()).not.toContain(generatedSecret);
  });

  test('a webhook that keeps failing is disabled with its reason; the delivery log shows each attempt; delete asks first', async () => {
    const { page } = e;
    await page.getByTestId('create-webhook').click();
    await page.fill('#webhook-url', badHook.url);
    await page.getByTestId('event-provider_key.revealed').check();
    await page.fill('#webhook-secret', 'a-receiver-chosen-secret-0123456789');
    await page.getByTestId('webhook-submit').click();
    await page.getByTestId('create-webhook-dialog').waitFor({ state: 'detached' });
    expect(await noticeText(page)).toBe(`The webhook to ${badHook.url} was added.`);
    expect((await call('POST', `/provider-keys/${good.id}/reveal`, { reason: 'INC-22 failing receiver' })).status).toBe(200);
    // Retried until the 1 s of retries is over: then the webhook is disabled.
    await eventually(async () => {
      await e.container.dispatcher.runOnce();
      const list = (await call('GET', '/webhooks')).body as { items: Array<{ url: string; status: string }> };
      expect(list.items.find((w) => w.url === badHook.url)?.status).toBe('disabled');
    }, 20_000);
    expect(badHook.received.length).toBeGreaterThan(0);

    await page.reload();
    await settle(page);
    const badRow = page.locator('[data-testid=webhook-row][data-status=disabled]');
    expect(await badRow.getByTestId('webhook-disabled-reason').textContent()).toMatch(/Disabled \d{4}-.* UTC: .*last attempt: HTTP 500/);
    expect(await page.locator('main').textContent()).toContain('To resume, delete it and add it again');

    await badRow.getByTestId('webhook-log').click();
    await page.getByTestId('delivery-log-dialog').waitFor();
    await settle(page);
    const delivery = page.locator('[data-testid=delivery-row]').first();
    expect(await delivery.getAttribute('data-status')).toBe('failed');
    expect(await delivery.textContent()).toContain('HTTP 500');
    expect(await delivery.textContent()).toContain('Key revealed');
    expect(await page.getByTestId('delivery-log-dialog').textContent()).toContain('last attempt: HTTP 500');
    await page.keyboard.press('Escape');
    await page.getByTestId('delivery-log-dialog').waitFor({ state: 'detached' });

    const okRow = page.locator('[data-testid=webhook-row][data-status=active]');
    await okRow.getByTestId('webhook-log').click();
    await settle(page);
    expect(await page.locator('[data-testid=delivery-row]').count()).toBe(2);
    expect(await page.locator('[data-testid=delivery-row][data-status=delivered]').count()).toBe(2);
    await page.keyboard.press('Escape');

    // Delete: named for a screen reader, confirmed first (focus on Cancel).
    await page.getByRole('button', { name: `Delete the webhook to ${badHook.url}` }).click();
    await page.getByTestId('confirm-dialog').waitFor();
    expect(await page.evaluate('document.activeElement?.textContent?.trim()')).toBe('Cancel');
    expect(await page.getByTestId('confirm-dialog').textContent()).toContain('pending deliveries are never sent');
    await page.getByTestId('confirm-dialog').locator('button.danger').click();
    await page.getByTestId('confirm-dialog').waitFor({ state: 'detached' });
    expect(await noticeText(page)).toBe(`The webhook to ${badHook.url} was deleted.`);
    await eventually(async () => expect(await page.locator('[data-testid=webhook-row]').count()).toBe(1));
    expect(((await call('GET', '/webhooks')).body as { items: unknown[] }).items.length).toBe(1);
  });

  const setLang = async (page: Page, lang: Lang) => {
    await page.selectOption('[data-testid=lang-switch]', lang);
    await eventually(async () => expect(await page.locator('html').getAttribute('lang')).toBe(lang === 'zh' ? 'zh-CN' : 'en'));
  };

  test('axe: no serious or critical finding on the new pages and dialogs, for each role, in both languages and colour schemes', async () => {
    const { page } = e;
    const problems: string[] = [];
    const sweep = async (who: SeededUser, paths: string[], extra?: (where: string) => Promise<void>) => {
      await e.signIn(who);
      for (const [lang, scheme] of COMBOS) {
        await page.emulateMedia({ colorScheme: scheme });
        await setLang(page, lang);
        for (const path of paths) {
          await page.goto(`${e.url}${path}`);
          await settle(page);
          const where = `${who.username} ${lang} ${scheme} ${path}`;
          problems.push(...(await axeProblems(page, where)));
          const text = String(await page.evaluate('document.body.innerText'));
          if (/\b(health|hygiene|webhooks|common|keys|nav)\.[a-zA-Z]/.test(text)) problems.push(`${where}: an untranslated message key`);
          if (lang === 'zh' && text.includes('你')) problems.push(`${where}: informal 你`);
        }
        if (extra) await extra(`${who.username} ${lang} ${scheme}`);
      }
      await setLang(page, 'en');
      await page.emulateMedia({ colorScheme: 'light' });
    };
    await sweep(admin, ['/keys', `/keys/${good.id}`, `/keys/${ark.id}`, '/hygiene', '/webhooks'], async (where) => {
      await page.goto(`${e.url}/keys/${ark.id}`);
      await settle(page);
      await page.getByTestId('check-now').click();
      await page.getByTestId('check-error').waitFor();
      await page.getByTestId('probe-set').click();
      await page.getByTestId('probe-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} probe dialog and check refusal`)));
      await page.keyboard.press('Escape');
      await page.goto(`${e.url}/webhooks`);
      await settle(page);
      await page.getByTestId('create-webhook').click();
      await page.getByTestId('create-webhook-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} add webhook`)));
      await page.keyboard.press('Escape');
      await page.getByTestId('webhook-log').first().click();
      await page.getByTestId('delivery-log-dialog').waitFor();
      await settle(page);
      problems.push(...(await axeProblems(page, `${where} delivery log`)));
      await page.keyboard.press('Escape');
    });
    await sweep(audrey, [`/keys/${bad.id}`, '/hygiene']);
    await sweep(alice, ['/keys', `/keys/${good.id}`], async (where) => {
      await page.goto(`${e.url}/keys/${good.id}`);
      await settle(page);
      await page.getByTestId('check-now').click();
      await page.getByTestId('check-result').waitFor();
      problems.push(...(await axeProblems(page, `${where} check result`)));
    });
    expect(problems).toEqual([]);
  });

  test('on a phone (390 px): the key cards show health, and no new page or dialog scrolls sideways', async () => {
    const { page } = e;
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const check = async (where: string) => {
        await settle(page);
        expect({ where, sideways: await scrollsSideways(page) }).toEqual({ where, sideways: false });
        expect({ where, tables: await page.locator('main table').count() }).toEqual({ where, tables: 0 });
        expect({ where, overflowing: await page.locator('.card-item').evaluateAll((els) => els.filter((el) => el.scrollWidth > el.clientWidth + 1).length) }).toEqual({ where, overflowing: 0 });
      };
      await e.signIn(admin);
      for (const lang of ['en', 'zh'] as const) {
        await setLang(page, lang);
        await page.goto(`${e.url}/keys`);
        await check(`${lang} keys`);
        const card = page.locator('[data-testid=key-row]', { hasText: 'alice-bad' });
        expect(await card.locator('.card-field', { hasText: lang === 'en' ? 'Health' : '健康状态' }).getByTestId('health-badge').getAttribute('data-health')).toBe('invalid');
        for (const path of [`/keys/${good.id}`, `/keys/${ark.id}`, '/hygiene', '/webhooks']) {
          await page.goto(`${e.url}${path}`);
          await check(`${lang} ${path}`);
        }
        await page.getByTestId('webhook-log').first().click();
        await page.getByTestId('delivery-log-dialog').waitFor();
        await check(`${lang} delivery log`);
        await page.keyboard.press('Escape');
        await page.getByTestId('create-webhook').click();
        await page.getByTestId('create-webhook-dialog').waitFor();
        await check(`${lang} add webhook`);
        await page.keyboard.press('Escape');
      }
      await setLang(page, 'en');
    } finally {
      await page.setViewportSize({ width: 1360, height: 860 });
    }
  });

  test('no CSP violation or page error happened, and no secret reached the server log', () => {
    expect(e.problems).toEqual([]);
    for (const s of [good.secret, bad.secret, ark.secret, generatedSecret]) expect(e.logText()).not.toContain(s);
  });
});
