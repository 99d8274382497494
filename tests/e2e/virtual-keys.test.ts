/**
 * A key's gateway in the console, end to end in headless Chromium against the real server and a stand-in provider: an
 * admin points the key at the stand-in (the server's refusal of a bad base URL shown under the field); its owner makes
 * a virtual key, copies it once and watches it go; the snippet's own address and the copied key drive real calls,
 * which the usage chart's table then counts; a revocation confirms first and ends the key; an admin acting on someone
 * else's key gives a reason; an auditor sees usage only; another member sees nothing; a phone shows it all.
 */
import crypto from 'node:crypto';
import OpenAI from 'openai';
import { AUDIT_ACTIONS } from '../../src/modules/audit/audit-event.entity';
import { cliActor } from '../../src/modules/auth/actor';
import { StandInProvider, OPENAI_USAGE } from '../support/stand-in-provider';
import { describeE2E, E2E, eventually, noticeText, scrollsSideways, type SeededUser } from './helpers';

jest.setTimeout(240_000);

describeE2E('web console: virtual keys, the gateway snippet and usage', () => {
  let e: E2E;
  let stand: StandInProvider;
  let admin: SeededUser;
  let alice: SeededUser;
  let bob: SeededUser;
  let audrey: SeededUser;
  let key: { id: string; secret: string };
  /** Every virtual key the page showed, to search the page, the URL, storage and the log for. */
  const virtualKeys: string[] = [];
  const today = () => new Date().toISOString().slice(0, 10);

  beforeAll(async () => {
    stand = await new StandInProvider().start();
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin');
    alice = await e.user('member', 'alice', 'Alice Zhang');
    bob = await e.user('member', 'bob');
    audrey = await e.user('auditor', 'audrey');
    const project = await e.project('chatbot-prod');
    key = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-openai', provider: 'openai' });
    stand.validKeys.add(key.secret);
  });

  afterAll(async () => {
    await e?.close();
    await stand?.close();
  });

  const openDetail = async () => {
    await e.page.goto(`${e.url}/keys/${key.id}`);
    await e.page.locator('[data-testid=key-meta]').waitFor();
  };

  /** The page holds no virtual key anywhere: DOM, inputs, URL, title, history state, storage, cookies. */
  const noVirtualKeyInPage = async () => {
    const traces = await e.pageTraces();
    for (const vk of virtualKeys) expect(traces).not.toContain(vk);
    expect(traces).not.toContain(key.secret);
  };

  test('an admin points the key at the provider: a refused base URL shows the server’s words under the field', async () => {
    const { page } = e;
    await e.signIn(admin);
    await openDetail();
    expect(await page.getByTestId('detail-base-url').textContent()).toBe('https://api.openai.com/v1 (the provider’s default)');
    await page.click('[data-testid=key-menu] > .menu-button');
    await page.getByRole('menuitem', { name: 'Edit' }).click();
    const dialog = page.getByTestId('edit-key-dialog');
    await page.fill('#edit-base-url', 'http://example.com/v1');
    await dialog.locator('button[type=submit]').click();
    // Leaving the provider's host revokes virtual keys: the confirmation says so.
    await dialog.getByTestId('revokes-virtual-keys').waitFor();
    expect(await dialog.getByTestId('change-list').textContent()).toContain('Gateway base URL: the provider’s default (https://api.openai.com/v1) → http://example.com/v1');
    // Someone else's key: where it is sent takes a reason, asked for before anything is saved.
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await eventually(async () => expect(await dialog.locator('.alert-error').textContent()).toContain('Give a reason'));
    await page.fill('#edit-reason', 'the owner asked for the proxy');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    const fieldError = dialog.locator('#edit-base-url ~ .field-error');
    await eventually(async () => expect(await fieldError.textContent()).toBe('The vault refused this base URL: http:// is allowed only to a loopback address (127.0.0.0/8 or [::1]); use https://'));
    expect(await page.getAttribute('#edit-base-url', 'aria-invalid')).toBe('true');

    await page.fill('#edit-base-url', `${stand.url}/v1/`);
    await dialog.locator('button[type=submit]').click();
    expect(await page.inputValue('#edit-reason')).toBe('the owner asked for the proxy');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await dialog.waitFor({ state: 'detached' });
    // Stored normalized (no trailing slash), and shown.
    await eventually(async () => expect(await page.getByTestId('detail-base-url').textContent()).toBe(`${stand.url}/v1`));
    expect((await e.container.providerKeys.get(cliActor({ id: admin.id, username: admin.username, role: admin.role }), key.id)).baseUrl).toBe(`${stand.url}/v1`);
  });

  test('Add key takes a base URL too, and shows why one is refused', async () => {
    const { page } = e;
    await page.goto(`${e.url}/keys`);
    await page.getByTestId('add-key').click();
    const dialog = page.getByTestId('add-key-dialog');
    await page.fill('#key-owner', 'alice');
    await page.locator('[role=option]', { hasText: 'alice' }).click();
    await page.selectOption('#key-provider', 'custom');
    await page.fill('#key-name', 'local-model');
    await page.fill('#key-secret', `local-${crypto.randomBytes(12).toString('hex')}`);
    // A custom key has no default: the help says the gateway needs one.
    expect(await dialog.locator('#key-base-url ~ .help').textContent()).toContain('without it the key cannot be used through the gateway');
    await page.fill('#key-base-url', 'https://models.example.com/v1?tenant=1');
    await page.getByTestId('add-submit').click();
    await eventually(async () => expect(await dialog.locator('#key-base-url ~ .field-error').textContent()).toBe('The vault refused this base URL: must not have a query or fragment'));
    await page.fill('#key-base-url', 'http://127.0.0.1:11434/v1');
    await page.getByTestId('add-submit').click();
    await dialog.waitFor({ state: 'detached' });
    await eventually(async () => expect(await noticeText(page)).toContain('local-model'));
  });

  test('the owner makes a virtual key, copies it once, and it goes: not in the page, the URL, storage or the clipboard', async () => {
    const { page } = e;
    // The product's 60 s stay as they are; the test only drives the page's clock.
    await page.clock.install();
    await e.signIn(alice);
    await openDetail();
    await eventually(async () => expect(await page.getByTestId('vk-table').textContent()).toContain('No virtual keys yet'));
    const historyBefore = Number(await page.evaluate('history.length'));

    await page.getByTestId('create-virtual-key').click();
    const form = page.getByTestId('create-vk-dialog');
    await form.waitFor();
    // The owner is asked no reason; the name takes the focus.
    expect(await form.locator('#vk-reason').count()).toBe(0);
    expect(await page.evaluate('document.activeElement?.id')).toBe('vk-name');
    await page.getByTestId('vk-submit').click();
    await eventually(async () => expect(await form.locator('[role=alert]').textContent()).toBe('Fill in Name.'));
    await page.fill('#vk-name', 'billing job');
    await page.fill('#vk-days', '30');
    await page.fill('#vk-models', 'gpt-test, gpt-4o-mini\ngpt-test\n');
    await page.fill('#vk-requests', '0');
    await page.getByTestId('vk-submit').click();
    await eventually(async () => expect(await form.locator('[role=alert]').textContent()).toBe('Requests per day must be a whole number from 1 to 1,000,000,000.'));
    await page.fill('#vk-requests', '100');
    await page.fill('#vk-tokens', '100000');
    await page.getByTestId('vk-submit').click();

    const shown = page.getByTestId('issued-vk-dialog');
    await shown.waitFor();
    // Masked first: not even in the DOM until "Show"; Copy is the main action and has the focus.
    await shown.getByTestId('secret-mask').waitFor();
    expect(await page.evaluate('document.activeElement?.dataset?.testid')).toBe('secret-copy');
    expect(await shown.getByTestId('reveal-countdown').textContent()).toContain('Hides in 60 s');
    await shown.getByTestId('secret-copy').click();
    await eventually(async () => expect(await shown.getByTestId('secret-copy').textContent()).toContain('Copied'));
    const vk = String(await page.evaluate('navigator.clipboard.readText()'));
    expect(vk).toMatch(/^pkv_vk_[A-Za-z0-9_-]{43}$/);
    virtualKeys.push(vk);
    const traces = JSON.parse(await e.pageTraces()) as Record<string, unknown>;
    for (const where of ['html', 'url', 'title', 'historyState', 'local', 'session', 'cookie'] as const) expect({ where, has: JSON.stringify(traces[where]).includes(vk) }).toEqual({ where, has: false });
    expect(traces.historyLength).toBe(historyBefore);
    await shown.getByTestId('secret-toggle').click();
    expect(await shown.getByTestId('secret-text').textContent()).toBe(vk);
    expect(await shown.textContent()).toContain(`Prefix ${vk.slice(0, 15)}…`);

    await page.clock.runFor(60_500);
    await shown.waitFor({ state: 'detached' });
    await eventually(async () => expect(await page.getByTestId('vk-notice').textContent()).toContain(`The virtual key “billing job” was hidden and cannot be shown again. Its prefix: ${vk.slice(0, 15)}…`));
    await noVirtualKeyInPage();
    // The clipboard still held it when it hid: emptied too.
    await eventually(async () => expect(await page.evaluate('navigator.clipboard.readText()')).toBe(''));

    const row = page.locator('[data-testid=vk-row]');
    await eventually(async () => expect(await row.count()).toBe(1));
    expect(await row.getByTestId('vk-prefix').textContent()).toBe(`${vk.slice(0, 15)}…`);
    const text = await row.textContent();
    for (const part of ['billing job', 'gpt-test', 'gpt-4o-mini', 'Requests a day: 100', 'Tokens a day: 100,000', 'alice', 'Active']) expect(text).toContain(part);
    expect((text?.match(/gpt-test/g) ?? []).length).toBe(1);
    // 30 days from now, as asked.
    const stored = (await e.container.virtualKeys.list(cliActor({ id: alice.id, username: alice.username, role: alice.role }), key.id, { limit: 10 })).items[0];
    expect(Math.round((new Date(stored.expiresAt).getTime() - Date.now()) / 86_400_000)).toBe(30);
    await page.clock.resume();
  });

  test('the snippet names this vault and a placeholder; calls made as it says are counted in the usage chart’s table', async () => {
    const { page } = e;
    const [vk] = virtualKeys;
    const sdk = (await page.getByTestId('snippet-sdk').textContent()) ?? '';
    expect(sdk).toContain(`baseURL: '${e.url}/gateway'`);
    expect(sdk).toContain(`apiKey: 'pkv_vk_…'`);
    const curl = (await page.getByTestId('snippet-curl').textContent()) ?? '';
    expect(curl).toContain(`curl '${e.url}/gateway/chat/completions'`);
    expect(curl).toContain(`-H 'Authorization: Bearer pkv_vk_…'`);
    expect(await page.getByTestId('snippet-route').textContent()).toBe(`The vault forwards ${e.url}/gateway/chat/completions → ${stand.url}/v1/chat/completions`);
    await page.getByTestId('copy-sdk-snippet').click();
    await eventually(async () => expect(await page.evaluate('navigator.clipboard.readText()')).toBe(sdk));

    // The SDK exactly as the snippet sets it up, with the copied virtual key.
    const baseURL = /baseURL: '([^']+)'/.exec(sdk)![1];
    const openai = new OpenAI({ baseURL, apiKey: vk, maxRetries: 0 });
    for (let i = 0; i < 3; i++) {
      const reply = await openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: `hi ${i}` }] });
      expect(reply.choices[0].message.content).toBe('Hello from the stand-in');
    }
    // Outside the allowlist: refused by the vault, never forwarded, not counted.
    await expect(openai.chat.completions.create({ model: 'gpt-5', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({ status: 403 });
    // Forwarded, and refused by the provider: counted, as an error.
    // (The stand-in stops knowing the key for one call: its 401 echoes the key, which the vault masks.)
    stand.validKeys.delete(key.secret);
    const refused = await fetch(`${e.url}/gateway/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${vk}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt-test', messages: [] }) });
    stand.validKeys.add(key.secret);
    expect(refused.status).toBe(401);
    expect(await refused.text()).not.toContain(key.secret);

    await page.getByTestId('usage-refresh').click();
    await eventually(async () => expect(await page.getByTestId('total-requests').textContent()).toBe('4'));
    expect(await page.getByTestId('total-errors').textContent()).toBe('1');
    expect(await page.getByTestId('total-prompt').textContent()).toBe(String(3 * OPENAI_USAGE.prompt_tokens));
    expect(await page.getByTestId('total-completion').textContent()).toBe(String(3 * OPENAI_USAGE.completion_tokens));

    // The table, for screen readers and anyone: 30 UTC days, newest first, today's numbers.
    await page.getByTestId('usage-table-toggle').locator('summary').click();
    const rows = page.locator('[data-testid=usage-row]');
    expect(await rows.count()).toBe(30);
    expect(await rows.first().getAttribute('data-day')).toBe(today());
    const cell = (col: string) => rows.first().locator(`[data-col=${col}]`).textContent();
    expect([await cell('requests'), await cell('errors'), await cell('prompt'), await cell('completion')]).toEqual(['4', '1', '33', '21']);
    expect(await page.locator('[data-testid=usage-row] [data-col=requests]').allTextContents()).toEqual(['4', ...Array(29).fill('0')]);

    // The charts are images named by what they show, with one bar for today: 3 calls that went well, 1 error.
    const requests = page.getByTestId('requests-chart').locator('svg[role=img]');
    expect(await requests.getAttribute('aria-label')).toBe(`Requests per day. 4 requests in 30 days, 1 of them errors; the busiest day was ${today()}, with 4.`);
    expect(await requests.locator('rect.series-ok').count()).toBe(1);
    expect(await requests.locator('rect.series-errors').count()).toBe(1);
    expect(await requests.locator('.chart-day title').last().textContent()).toBe(`${today()}: Succeeded 3, Errors 1`);
    const tokens = page.getByTestId('tokens-chart').locator('svg[role=img]');
    expect(await tokens.getAttribute('aria-label')).toContain('33 prompt and 21 completion tokens in 30 days');
    expect(await tokens.locator('rect.series-prompt, rect.series-completion').count()).toBe(2);

    // The list counts the forwarded calls (not the refused one).
    await openDetail();
    await eventually(async () => expect(await page.locator('[data-testid=vk-row] td.num').textContent()).toBe('4'));
    await noVirtualKeyInPage();
  });

  test('Chinese: the chart, its table and the snippet read in Chinese', async () => {
    const { page } = e;
    await page.selectOption('[data-testid=lang-switch]', 'zh');
    try {
      await eventually(async () => expect(await page.locator('#usage-heading').textContent()).toBe('近 30 天用量'));
      expect(await page.getByTestId('requests-chart').locator('svg').getAttribute('aria-label')).toBe(`每日请求数。30 天内共 4 次请求，其中 1 次出错；最多的一天是 ${today()}，共 4。`);
      expect(await page.getByTestId('requests-chart').locator('.chart-unit').textContent()).toBe('请求');
      expect(await page.getByTestId('usage-table-toggle').locator('summary').textContent()).toBe('每日数据（表格）');
      expect(await page.locator('#vk-heading').textContent()).toBe('虚拟密钥');
      expect(await page.getByTestId('copy-sdk-snippet').textContent()).toBe('复制代码');
    } finally {
      await page.selectOption('[data-testid=lang-switch]', 'en');
    }
  });

  test('revoking asks first; the revoked virtual key stops working at once', async () => {
    const { page } = e;
    const [vk] = virtualKeys;
    const row = page.locator('[data-testid=vk-row]', { hasText: 'billing job' });
    await page.getByRole('button', { name: 'Revoke billing job' }).click();
    const confirm = page.getByTestId('confirm-dialog');
    await confirm.waitFor();
    expect(await confirm.textContent()).toContain('Revoke “billing job” for good?');
    // A destructive question starts on Cancel.
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Cancel');
    await page.keyboard.press('Enter');
    await confirm.waitFor({ state: 'detached' });
    expect(await row.getAttribute('data-state')).toBe('active');
    const openai = new OpenAI({ baseURL: `${e.url}/gateway`, apiKey: vk, maxRetries: 0 });
    await openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'still works' }] });

    await page.getByRole('button', { name: 'Revoke billing job' }).click();
    await confirm.getByRole('button', { name: 'Revoke' }).click();
    await confirm.waitFor({ state: 'detached' });
    await eventually(async () => expect(await page.getByTestId('vk-notice').locator('.alert-text').textContent()).toBe('Virtual key “billing job” was revoked.'));
    await eventually(async () => expect(await page.locator('[data-testid=vk-row]').count()).toBe(0));
    expect(await page.getByTestId('vk-table').textContent()).toContain('No active virtual keys');
    await page.getByTestId('vk-show-ended').check();
    await eventually(async () => expect(await row.getAttribute('data-state')).toBe('revoked'));
    expect(await row.getByRole('button', { name: 'Revoke billing job' }).count()).toBe(0);
    await expect(openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({ status: 401 });
  });

  test('an admin making one for someone else’s key gives a reason, which lands in the key’s trail and the audit filters', async () => {
    const { page } = e;
    await e.signIn(admin);
    await openDetail();
    await page.getByTestId('create-virtual-key').click();
    const form = page.getByTestId('create-vk-dialog');
    await form.waitFor();
    expect(await form.textContent()).toContain('This key belongs to alice. Admins must give a reason to make a virtual key for someone else’s key');
    expect(await page.evaluate('document.activeElement?.id')).toBe('vk-reason');
    await page.fill('#vk-name', 'incident probe');
    await page.getByTestId('vk-submit').click();
    await eventually(async () => expect(await form.locator('[role=alert]').textContent()).toBe('Please give a reason.'));
    await page.fill('#vk-reason', 'INC-77: checking the provider answers');
    await page.getByTestId('vk-submit').click();
    const shown = page.getByTestId('issued-vk-dialog');
    await shown.waitFor();
    await shown.getByTestId('secret-copy').click();
    await eventually(async () => expect(String(await page.evaluate('navigator.clipboard.readText()'))).toMatch(/^pkv_vk_/));
    virtualKeys.push(String(await page.evaluate('navigator.clipboard.readText()')));
    await shown.getByTestId('reveal-hide').click();
    await shown.waitFor({ state: 'detached' });
    await noVirtualKeyInPage();
    const row = page.locator('[data-testid=vk-row]', { hasText: 'incident probe' });
    await row.waitFor();
    expect(await row.textContent()).toContain('root-admin');
    expect(await row.textContent()).toContain('Any model');

    // The key's trail shows it at once.
    const created = page.locator('[data-testid=audit-row][data-action="virtual_key.create"]', { hasText: 'INC-77' });
    await created.waitFor();
    expect(await created.textContent()).toMatch(/Virtual key created.*root-admin.*INC-77: checking the provider answers/);
    expect(await page.locator('[data-testid=audit-row][data-action="virtual_key.revoke"]').textContent()).toContain('Virtual key revoked');

    await page.goto(`${e.url}/audit`);
    const action = page.getByLabel('Action');
    // The console filters by every action the server records.
    // The page renders its filter before the option list is filled in: read the options once they are there.
    await eventually(async () =>
      expect((await action.locator('option').evaluateAll((os) => os.map((o) => o.getAttribute('value') ?? ''))).filter(Boolean).sort()).toEqual([...AUDIT_ACTIONS].sort()),
    );
    expect(await action.locator('option[value="virtual_key.create"]').textContent()).toBe('Virtual key created');
    expect(await action.locator('option[value="virtual_key.revoke"]').textContent()).toBe('Virtual key revoked');
    await action.selectOption('virtual_key.create');
    await eventually(async () => expect(await page.locator('[data-testid=audit-row]').count()).toBe(2));
    expect(await page.locator('[data-testid=audit-row][data-action="virtual_key.create"]').count()).toBe(2);
  });

  test('an auditor sees the usage, and no virtual keys, no create, no revoke, no snippet', async () => {
    const { page } = e;
    await e.signIn(audrey);
    await openDetail();
    await eventually(async () => expect(await page.getByTestId('total-requests').textContent()).toBe('5'));
    // The chart is drawn after the totals (once its width is measured): wait for it rather than count at once.
    await eventually(async () => expect(await page.getByTestId('requests-chart').locator('svg[role=img]').count()).toBe(1));
    for (const id of ['virtual-keys', 'create-virtual-key', 'vk-revoke', 'gateway-snippet']) expect({ id, n: await page.getByTestId(id).count() }).toEqual({ id, n: 0 });
    expect(await page.content()).not.toContain('incident probe');
  });

  test('another member can see neither the key nor its virtual keys nor its usage', async () => {
    const { page } = e;
    await e.signIn(bob);
    await page.goto(`${e.url}/keys/${key.id}`);
    await eventually(async () => expect(await page.locator('[role=alert]').textContent()).toContain('does not exist or is not yours'));
    expect(await page.getByTestId('usage').count()).toBe(0);
    const html = await page.content();
    for (const s of ['billing job', 'incident probe', 'alice-openai']) expect(html).not.toContain(s);
  });

  test('on a phone (390 px) the key page does not scroll sideways: virtual keys as cards, the snippet wraps, the chart fits', async () => {
    const { page } = e;
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const who of [alice, audrey, admin]) {
        await e.signIn(who);
        await openDetail();
        await eventually(async () => expect(await page.locator('[aria-busy=true]').count()).toBe(0));
        await page.getByTestId('usage-table-toggle').locator('summary').click();
        expect({ who: who.username, sideways: await scrollsSideways(page) }).toEqual({ who: who.username, sideways: false });
        expect(await page.locator('main table').count()).toBe(0);
        const chart = await page.getByTestId('requests-chart').locator('svg').boundingBox();
        expect(chart!.x >= 0 && chart!.x + chart!.width <= 390).toBe(true);
      }
      // The admin's create form (with its reason) fits the screen.
      await page.getByTestId('create-virtual-key').click();
      await page.getByTestId('create-vk-dialog').waitFor();
      const box = await page.getByTestId('create-vk-dialog').boundingBox();
      expect(box!.x >= 0 && box!.x + box!.width <= 390).toBe(true);
      expect(await scrollsSideways(page)).toBe(false);
      await page.keyboard.press('Escape');
    } finally {
      await page.setViewportSize({ width: 1360, height: 860 });
    }
  });

  test('no CSP violation or page error; neither the key nor a virtual key reached the server log', () => {
    expect(e.problems).toEqual([]);
    expect(virtualKeys.length).toBe(2);
    const log = e.logText();
    for (const s of [key.secret, ...virtualKeys]) expect(log).not.toContain(s);
  });
});
