/**
 * WCAG 2.2 AA in headless Chromium against the real server: axe finds no serious or critical violation on any page,
 * for every role, in both languages and both colour schemes (dialogs, menus and the reveal included); and the flows
 * work from the keyboard: dialogs open on the field meant to take the input and give focus back to what opened
 * them, row buttons say which key they act on, row menus are menu buttons moved with the arrow keys.
 */
import crypto from 'node:crypto';
import type { Page } from 'playwright-core';
import { axeProblems, describeE2E, E2E, eventually, type SeededUser } from './helpers';

jest.setTimeout(600_000);

type Scheme = 'light' | 'dark';
type Lang = 'en' | 'zh';
const COMBOS: Array<[Lang, Scheme]> = [
  ['en', 'light'],
  ['en', 'dark'],
  ['zh', 'light'],
  ['zh', 'dark'],
];

describeE2E('web console: accessibility (axe, keyboard, names)', () => {
  let e: E2E;
  let admin: SeededUser;
  let alice: SeededUser;
  let audrey: SeededUser;
  let aliceKey: { id: string; secret: string };
  let adminKey: { id: string; secret: string };
  const problems: string[] = [];

  beforeAll(async () => {
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin', 'Platform Admin');
    alice = await e.user('member', 'alice', '艾丽丝');
    audrey = await e.user('auditor', 'audrey', '审计王');
    await e.user('member', 'bob');
    const project = await e.project('对话机器人-prod', '生产环境');
    aliceKey = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-ark', provider: 'volcengine-ark', secret: crypto.randomUUID(), remark: '豆包 Pro 推理接入点' });
    adminKey = await e.key(admin, { ownerId: admin.id, projectId: project.id, name: 'admin-openai', provider: 'openai' });
    await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-disabled', provider: 'anthropic', secret: `sk-ant-${crypto.randomBytes(30).toString('base64url')}` });
    const adminToken = await e.apiLogin(admin);
    const aliceToken = await e.apiLogin(alice);
    const post = (token: string, path: string, body: unknown) =>
      fetch(`${e.url}/api/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await post(aliceToken, `/provider-keys/${aliceKey.id}/reveal`, {});
    await post(adminToken, `/provider-keys/${aliceKey.id}/reveal`, { reason: 'INC-9 检查' });
    await post(adminToken, `/provider-keys/${aliceKey.id}/reveal`, {});
    await post(adminToken, '/api-tokens', { name: 'deploy-bot', scopes: ['provider-keys:read'], expiresInDays: 30 });
    // A virtual key with limits and a model list, and a few days of its calls, for the key page's gateway and usage parts.
    const vk = (await (await post(aliceToken, `/provider-keys/${aliceKey.id}/virtual-keys`, { name: '账单任务', models: ['doubao-seed-1-6-250615'], dailyRequestLimit: 1000, dailyTokenLimit: 2_000_000 })).json()) as { id: string };
    for (let day = 0; day < 6; day++) {
      for (let i = 0; i < 3 + day; i++) {
        const at = new Date(Date.now() - day * 86_400_000);
        e.container.gateway.usage.record({ at, virtualKeyId: vk.id, keyId: aliceKey.id, userId: alice.id, model: 'doubao-seed-1-6-250615', status: i === 0 && day === 2 ? 500 : 200, latencyMs: 300, promptTokens: 1200 + 100 * i, completionTokens: 400, requestBytes: 800, responseBytes: 2400 });
      }
    }
    await e.container.gateway.usage.flush();
    await e.container.audit.chain.sealPending();
  });

  afterAll(async () => {
    await e?.close();
  });

  /** The page has its heading and nothing is loading any more. */
  const settle = async (page: Page) => {
    await page.locator('h1').first().waitFor();
    await eventually(async () => expect(await page.locator('[aria-busy=true]').count()).toBe(0));
  };

  const setLang = async (page: Page, lang: Lang) => {
    await page.selectOption('[data-testid=lang-switch]', lang);
    await eventually(async () => expect(await page.locator('html').getAttribute('lang')).toBe(lang === 'zh' ? 'zh-CN' : 'en'));
  };

  const setScheme = async (page: Page, scheme: Scheme) => {
    await e.page.emulateMedia({ colorScheme: scheme });
    // The dark palette is really in force (or not): axe then checks the contrast of what is shown.
    const bg = String(await page.evaluate('getComputedStyle(document.body).backgroundColor'));
    expect(bg).toBe(scheme === 'dark' ? 'rgb(15, 20, 27)' : 'rgb(244, 246, 249)');
  };

  /** Every page `who` can open, in every language and colour scheme, then `extra` (dialogs) in each too. */
  const sweep = async (who: SeededUser | null, paths: string[], extra?: (where: string) => Promise<void>) => {
    const { page } = e;
    if (who) await e.signIn(who);
    else {
      await page.goto(`${e.url}/keys`);
      await page.locator('#login-username').waitFor();
    }
    for (const [lang, scheme] of COMBOS) {
      await setScheme(page, scheme);
      await setLang(page, lang);
      for (const path of paths) {
        await page.goto(`${e.url}${path}`);
        await settle(page);
        const where = `${who?.username ?? 'signed out'} ${lang} ${scheme} ${path}`;
        problems.push(...(await axeProblems(page, where)));
        // No message key shows untranslated, and the Chinese keeps its formal 您.
        const text = String(await page.evaluate('document.body.innerText'));
        if (/\b(common|keys|keyForm|audit|users|projects|tokens|setup|shape|reveal|detail|status|role|action|error|vk|usage|gateway)\.[a-zA-Z]/.test(text)) problems.push(`${where}: an untranslated message key`);
        if (lang === 'zh' && text.includes('你')) problems.push(`${where}: informal 你`);
      }
      if (extra) await extra(`${who?.username ?? 'signed out'} ${lang} ${scheme}`);
    }
    await setLang(page, 'en');
    await setScheme(page, 'light');
  };

  test('the checker is live: a nameless button and unreadable text on the page are reported', async () => {
    const { page } = e;
    await page.goto(`${e.url}/keys`);
    await page.locator('#login-username').waitFor();
    await page.evaluate(`(() => {
      const b = document.createElement('button');
      b.id = 'axe-control';
      document.body.appendChild(b);
      const p = document.createElement('p');
      p.id = 'axe-control-text';
      p.textContent = 'faint';
      p.style.color = '#eeeeee';
      document.querySelector('.login-card').appendChild(p);
    })()`);
    const found = (await axeProblems(page, 'control')).join('\n');
    expect(found).toContain('button-name (critical) at #axe-control');
    expect(found).toContain('color-contrast (serious) at #axe-control-text');
  });

  test('the sign-in page', async () => {
    await sweep(null, ['/keys']);
    expect(problems).toEqual([]);
  });

  test('every admin page, and the admin’s dialogs and menus', async () => {
    const { page } = e;
    await sweep(admin, ['/keys', `/keys/${aliceKey.id}`, '/audit', '/users', '/projects', '/tokens'], async (where) => {
      await page.goto(`${e.url}/keys`);
      await settle(page);
      // A row menu, open.
      await page.locator('[data-testid=key-row]', { hasText: 'alice-ark' }).locator('.menu-button').click();
      await page.locator('[role=menu]:visible').waitFor();
      problems.push(...(await axeProblems(page, `${where} row menu`)));
      await page.keyboard.press('Escape');
      // Add key: the owner list open and a shape warning shown.
      await page.getByTestId('add-key').click();
      await page.fill('#key-owner', 'a');
      await page.fill('#key-secret', 'AKLTNjQ3ZWZmYjA1MDc0NGY4YzkyMTk0NTFiZjE2MjlmNDg');
      await page.getByTestId('shape-warning').waitFor();
      await page.locator('#key-owner').click();
      problems.push(...(await axeProblems(page, `${where} add key`)));
      await page.keyboard.press('Escape');
      await page.keyboard.press('Escape');
      await page.getByTestId('add-key-dialog').waitFor({ state: 'detached' });
      // The reason asked of an admin, then the reveal itself (shown).
      await page.locator('[data-testid=key-row]', { hasText: 'alice-ark' }).getByTestId('reveal-button').click();
      await page.getByTestId('reason-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} reason`)));
      await page.keyboard.press('Escape');
      await page.locator('[data-testid=key-row]', { hasText: 'admin-openai' }).getByTestId('reveal-button').click();
      await page.getByTestId('secret-toggle').click();
      problems.push(...(await axeProblems(page, `${where} reveal`)));
      await page.getByTestId('reveal-hide').click();
      // A destructive confirmation.
      await page.locator('[data-testid=key-row]', { hasText: 'alice-disabled' }).locator('.menu-button').click();
      await page.getByRole('menuitem', { name: /Delete|删除/ }).click();
      await page.getByTestId('confirm-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} confirm`)));
      await page.keyboard.press('Escape');
      // A virtual key for someone else's key: the form asks for a reason.
      await page.goto(`${e.url}/keys/${aliceKey.id}`);
      await settle(page);
      await page.getByTestId('create-virtual-key').click();
      await page.locator('#vk-reason').waitFor();
      problems.push(...(await axeProblems(page, `${where} create virtual key with a reason`)));
      await page.keyboard.press('Escape');
      await page.getByTestId('create-vk-dialog').waitFor({ state: 'detached' });
      // Creating an API token.
      await page.goto(`${e.url}/tokens`);
      await settle(page);
      await page.getByTestId('create-token').click();
      await page.getByTestId('create-token-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} create token`)));
      await page.keyboard.press('Escape');
    });
    expect(problems).toEqual([]);
  });

  test('every member page, the reveal, and a key’s virtual keys and usage', async () => {
    const { page } = e;
    await sweep(alice, ['/keys', `/keys/${aliceKey.id}`, '/tokens'], async (where) => {
      await page.goto(`${e.url}/keys`);
      await settle(page);
      await page.locator('[data-testid=key-row]', { hasText: 'alice-ark' }).getByTestId('reveal-button').click();
      await page.getByTestId('reveal-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} reveal (masked)`)));
      await page.getByTestId('reveal-hide').click();
      // The key page: the usage numbers as a table, the create form, a new virtual key shown, a revocation asked.
      await page.goto(`${e.url}/keys/${aliceKey.id}`);
      await settle(page);
      await page.getByTestId('usage-table-toggle').locator('summary').click();
      await page.locator('[data-testid=usage-row]').first().waitFor();
      problems.push(...(await axeProblems(page, `${where} usage table`)));
      await page.getByTestId('create-virtual-key').click();
      await page.fill('#vk-name', `a11y ${where}`);
      await page.fill('#vk-requests', '0');
      await page.getByTestId('vk-submit').click();
      await page.locator('[data-testid=create-vk-dialog] [role=alert]').waitFor();
      problems.push(...(await axeProblems(page, `${where} create virtual key`)));
      await page.fill('#vk-requests', '');
      await page.getByTestId('vk-submit').click();
      await page.getByTestId('issued-vk-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} new virtual key (masked)`)));
      await page.getByTestId('secret-toggle').click();
      problems.push(...(await axeProblems(page, `${where} new virtual key (shown)`)));
      await page.getByTestId('reveal-hide').click();
      await page.getByTestId('vk-notice').waitFor();
      await page.locator('[data-testid=vk-row]', { hasText: `a11y ${where}` }).getByTestId('vk-revoke').click();
      await page.getByTestId('confirm-dialog').waitFor();
      problems.push(...(await axeProblems(page, `${where} revoke virtual key`)));
      await page.getByTestId('confirm-dialog').locator('button.danger').click();
      await page.getByTestId('confirm-dialog').waitFor({ state: 'detached' });
      await page.getByTestId('vk-show-ended').check();
      await eventually(async () => expect(await page.locator('[data-testid=vk-row][data-state=revoked]').count()).toBeGreaterThan(0));
      problems.push(...(await axeProblems(page, `${where} revoked virtual keys shown`)));
    });
    expect(problems).toEqual([]);
  });

  test('every auditor page, with an event’s details open, the verify result and a key’s usage table', async () => {
    const { page } = e;
    await sweep(audrey, ['/keys', `/keys/${aliceKey.id}`, '/audit', '/users', '/projects', '/tokens'], async (where) => {
      await page.goto(`${e.url}/keys/${aliceKey.id}`);
      await settle(page);
      await page.getByTestId('usage-table-toggle').locator('summary').click();
      problems.push(...(await axeProblems(page, `${where} usage table`)));
      await page.goto(`${e.url}/audit`);
      await settle(page);
      await page.locator('[data-testid=audit-row]').first().locator('button.link').click();
      await page.getByTestId('verify-button').click();
      await page.getByTestId('verify-result').waitFor();
      problems.push(...(await axeProblems(page, `${where} audit details and verify`)));
    });
    expect(problems).toEqual([]);
  });

  test('from the keyboard: Add key opens on the owner field, the owner is picked by typing, Esc gives focus back to Add key', async () => {
    const { page } = e;
    await e.signIn(admin);
    await settle(page);
    const focused = () => page.evaluate('document.activeElement?.id || document.activeElement?.dataset?.testid || document.activeElement?.tagName');
    await page.getByTestId('add-key').focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('add-key-dialog').waitFor();
    expect(await focused()).toBe('key-owner');
    await page.keyboard.type('艾丽');
    await page.locator('[role=option]', { hasText: 'alice' }).waitFor();
    expect(await page.locator('#key-owner').getAttribute('aria-expanded')).toBe('true');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    expect(await page.inputValue('#key-owner')).toBe('alice');
    expect(await page.locator('#key-owner').getAttribute('aria-expanded')).toBe('false');
    // Enter chose the owner; it did not submit the form.
    expect(await page.getByTestId('add-key-dialog').count()).toBe(1);
    await page.keyboard.press('Escape');
    await page.getByTestId('add-key-dialog').waitFor({ state: 'detached' });
    expect(await focused()).toBe('add-key');
  });

  test('from the keyboard: a row menu is a named menu button moved with the arrow keys; its dialogs give focus back to it', async () => {
    const { page } = e;
    const focusedText = async () => String(await page.evaluate('document.activeElement?.textContent?.trim()'));
    const menuButton = page.getByRole('button', { name: 'More actions for alice-ark' });
    expect(await menuButton.getAttribute('aria-haspopup')).toBe('menu');
    expect(await menuButton.getAttribute('aria-expanded')).toBe('false');
    // No <details> "group" is left in the lists.
    expect(await page.locator('[data-testid=keys-table] details, [data-testid=keys-table] summary').count()).toBe(0);

    await menuButton.focus();
    await page.keyboard.press('ArrowDown');
    const menu = page.getByRole('menu', { name: 'More actions for alice-ark' });
    await menu.waitFor();
    expect(await menuButton.getAttribute('aria-expanded')).toBe('true');
    expect(await focusedText()).toBe('Details');
    await page.keyboard.press('ArrowDown');
    expect(await focusedText()).toBe('Edit');
    await page.keyboard.press('End');
    expect(await focusedText()).toBe('Delete');
    await page.keyboard.press('ArrowDown');
    expect(await focusedText()).toBe('Details');
    await page.keyboard.press('ArrowUp');
    expect(await focusedText()).toBe('Delete');
    await page.keyboard.press('Home');
    expect(await focusedText()).toBe('Details');
    await page.keyboard.press('Escape');
    await menu.waitFor({ state: 'hidden' });
    expect(await menuButton.evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);

    // Enter opens it too; Edit opens a dialog on the name field; Esc comes back to the menu button.
    await page.keyboard.press('Enter');
    await menu.waitFor();
    await page.keyboard.press('ArrowDown');
    expect(await focusedText()).toBe('Edit');
    await page.keyboard.press('Enter');
    await page.getByTestId('edit-key-dialog').waitFor();
    expect(await page.evaluate('document.activeElement?.id')).toBe('edit-name');
    await page.keyboard.press('Escape');
    await page.getByTestId('edit-key-dialog').waitFor({ state: 'detached' });
    expect(await menuButton.evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);

    // A destructive confirmation starts on Cancel.
    await page.keyboard.press('Enter');
    await page.keyboard.press('End');
    await page.keyboard.press('Enter');
    await page.getByTestId('confirm-dialog').waitFor();
    expect(await focusedText()).toBe('Cancel');
    await page.keyboard.press('Escape');
    expect(await menuButton.evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);
  });

  test('from the keyboard: an admin reveals someone else’s key, typing the reason at once; focus returns to that row’s Reveal', async () => {
    const { page } = e;
    const reveal = page.getByRole('button', { name: 'Reveal alice-ark', exact: true });
    await reveal.focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('reason-dialog').waitFor();
    expect(await page.evaluate('document.activeElement?.id')).toBe('reveal-reason');
    await page.keyboard.type('INC-77 keyboard check');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.getByTestId('reveal-dialog').waitFor();
    // Copy is the main action, and has the focus.
    expect(await page.evaluate('document.activeElement?.dataset?.testid')).toBe('secret-copy');
    expect(await page.getByTestId('secret-copy').getAttribute('class')).toContain('primary');
    await page.keyboard.press('Escape');
    await page.getByTestId('reveal-dialog').waitFor({ state: 'detached' });
    expect(await reveal.evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);
    expect(await e.pageTraces()).not.toContain(aliceKey.secret);
  });

  test('every row’s buttons name their key for a screen reader, in both languages', async () => {
    const { page } = e;
    const names = await page.locator('[data-testid=key-row] .key-name').allTextContents();
    expect(names.length).toBe(3);
    for (const name of names) {
      await page.getByRole('button', { name: `Reveal ${name}`, exact: true }).waitFor();
      await page.getByRole('button', { name: `More actions for ${name}`, exact: true }).waitFor();
    }
    await setLang(page, 'zh');
    for (const name of names) {
      await page.getByRole('button', { name: `查看“${name}”的密钥值`, exact: true }).waitFor();
      await page.getByRole('button', { name: `“${name}”的更多操作`, exact: true }).waitFor();
    }
    await setLang(page, 'en');
    expect(await page.getByRole('button', { name: 'Reveal', exact: true }).count()).toBe(0);
  });

  test('no CSP violation or page error happened, and no secret reached the server log', () => {
    expect(e.problems).toEqual([]);
    for (const s of [aliceKey.secret, adminKey.secret]) expect(e.logText()).not.toContain(s);
  });
});
