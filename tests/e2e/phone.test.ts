/**
 * The console on a phone (390 × 844) in headless Chromium against the real server: no page scrolls sideways, lists
 * are cards whose actions are all on screen, long names wrap between words (never one letter per line), and dialogs
 * fit the screen, centred. Every role, every page, both languages.
 */
import crypto from 'node:crypto';
import type { Locator, Page } from 'playwright-core';
import { describeE2E, E2E, eventually, scrollsSideways, type SeededUser } from './helpers';

jest.setTimeout(300_000);

const WIDTH = 390;
const HEIGHT = 844;

describeE2E('web console on a phone (390 px)', () => {
  let e: E2E;
  let admin: SeededUser;
  let alice: SeededUser;
  let audrey: SeededUser;
  let aliceKey: { id: string; secret: string };
  const LONG = 'openai-production-fallback-for-the-customer-support-chatbot';

  beforeAll(async () => {
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin', 'Platform Admin');
    alice = await e.user('member', 'alice.zhang-long-username@example.com', '张爱丽丝');
    audrey = await e.user('auditor', 'audrey', '审计王');
    const project = await e.project('customer-support-chatbot-production-环境', '生产环境对话机器人，供客服系统使用');
    aliceKey = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: LONG, provider: 'openai', remark: 'A long remark that goes on for a while to see that it is clamped in a card rather than widening it.' });
    await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'ark-chat', provider: 'volcengine-ark', secret: crypto.randomUUID() });
    await e.key(admin, { ownerId: admin.id, projectId: project.id, name: 'admin-own-key', provider: 'deepseek', secret: `sk-${crypto.randomBytes(16).toString('hex')}` });
    const adminToken = await e.apiLogin(admin);
    await fetch(`${e.url}/api/v1/provider-keys/${aliceKey.id}/reveal`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'INC-1: 排查客服机器人鉴权失败，确认密钥是否仍然有效' }) });
    await fetch(`${e.url}/api/v1/api-tokens`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'a-deploy-bot-with-a-long-name', scopes: ['provider-keys:read', 'provider-keys:reveal', 'projects:read'], expiresInDays: 30 }) });
    // A virtual key with a long name and a few calls, for the key page's gateway and usage parts.
    const aliceToken = await e.apiLogin(alice);
    const vk = (await (
      await fetch(`${e.url}/api/v1/provider-keys/${aliceKey.id}/virtual-keys`, { method: 'POST', headers: { authorization: `Bearer ${aliceToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'nightly-billing-reconciliation-for-the-support-chatbot', models: ['gpt-4o-mini', 'gpt-4.1-2025-04-14-long-model-name'], dailyTokenLimit: 2_000_000_000 }) })
    ).json()) as { id: string };
    for (let day = 0; day < 30; day += 3) e.container.gateway.usage.record({ at: new Date(Date.now() - day * 86_400_000), virtualKeyId: vk.id, keyId: aliceKey.id, userId: alice.id, model: 'gpt-4o-mini', status: 200, latencyMs: 200, promptTokens: 123_456 * (day + 1), completionTokens: 65_432, requestBytes: 100, responseBytes: 100 });
    await e.container.gateway.usage.flush();
    await e.page.setViewportSize({ width: WIDTH, height: HEIGHT });
  });

  afterAll(async () => {
    await e?.close();
  });

  const settle = async (page: Page) => {
    await page.locator('h1').first().waitFor();
    await eventually(async () => expect(await page.locator('[aria-busy=true]').count()).toBe(0));
  };

  /** The element is laid out entirely between the screen's left and right edges. */
  const onScreen = async (l: Locator, what: string) => {
    await l.scrollIntoViewIfNeeded();
    const box = await l.boundingBox();
    expect({ what, box: box && { left: Math.round(box.x), right: Math.round(box.x + box.width) } }).toEqual({ what, box: { left: expect.any(Number), right: expect.any(Number) } });
    expect({ what, left: box!.x >= 0, right: box!.x + box!.width <= WIDTH }).toEqual({ what, left: true, right: true });
  };

  /** The page does not scroll sideways, its lists are cards, and every card's actions are on screen. */
  const checkPage = async (where: string) => {
    const { page } = e;
    await settle(page);
    expect({ where, sideways: await scrollsSideways(page) }).toEqual({ where, sideways: false });
    expect(await page.locator('main table').count()).toBe(0);
    const cards = page.locator('.card-item');
    // Nothing sticks out of a card either (a long time or name would, with nowrap).
    expect({ where, overflowing: await cards.evaluateAll((els) => els.filter((el) => el.scrollWidth > el.clientWidth + 1).length) }).toEqual({ where, overflowing: 0 });
    for (let i = 0; i < (await cards.count()); i++) {
      const actions = cards.nth(i).locator('.card-actions').locator('button:visible, a:visible');
      for (let j = 0; j < (await actions.count()); j++) await onScreen(actions.nth(j), `${where} card ${i} action ${j}`);
    }
    // Long names wrap between words, never a letter or two per line: every line but the last is wide.
    for (const name of await page.locator('.card-title .key-name, .card-title .name').all()) {
      const lines = await name.evaluate((el) => Array.from(el.getClientRects() as ArrayLike<{ width: number }>).map((r) => Math.round(r.width)));
      expect({ where, lines: lines.length <= 3 && lines.slice(0, -1).every((w) => w >= 120) }).toEqual({ where, lines: true });
    }
  };

  const pages: Array<[string, () => SeededUser, string[]]> = [
    ['an admin', () => admin, ['/keys', '/keys/KEY', '/audit', '/users', '/projects', '/tokens']],
    ['a member', () => alice, ['/keys', '/keys/KEY', '/tokens']],
    ['an auditor', () => audrey, ['/keys', '/keys/KEY', '/audit', '/users', '/projects', '/tokens']],
  ];

  test.each(pages)('no page scrolls sideways for %s, and every card’s actions are on screen (English and Chinese)', async (_who, who, paths) => {
    const { page } = e;
    await e.signIn(who());
    for (const lang of ['en', 'zh']) {
      await page.selectOption('[data-testid=lang-switch]', lang);
      for (const p of paths) {
        await page.goto(`${e.url}${p.replace('KEY', aliceKey.id)}`);
        await checkPage(`${who().username} ${lang} ${p}`);
      }
    }
    await page.selectOption('[data-testid=lang-switch]', 'en');
  });

  test('the sign-in page fits', async () => {
    const { page } = e;
    await e.signOut();
    expect(await scrollsSideways(page)).toEqual(false);
    await onScreen(page.locator('form.login-card button[type=submit]'), 'sign in');
  });

  test('a member’s Reveal is on screen, and the reveal dialog fits the screen, centred', async () => {
    const { page } = e;
    await e.signIn(alice);
    const card = page.locator('[data-testid=key-row]', { hasText: LONG });
    const reveal = card.getByTestId('reveal-button');
    await onScreen(reveal, 'reveal');
    await reveal.click();
    const dialog = page.getByTestId('reveal-dialog');
    await dialog.waitFor();
    await page.getByTestId('secret-toggle').click();
    const box = (await dialog.boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(WIDTH);
    expect(box.y + box.height).toBeLessThanOrEqual(HEIGHT);
    expect(Math.abs(box.x - (WIDTH - box.x - box.width))).toBeLessThanOrEqual(2);
    for (const id of ['secret-copy', 'secret-toggle', 'reveal-hide']) await onScreen(page.getByTestId(id), id);
    expect(await scrollsSideways(page)).toEqual(false);
    await page.getByTestId('reveal-hide').click();
    await dialog.waitFor({ state: 'detached' });
  });

  test('on a key’s page, the usage chart fits, and making a virtual key fits the screen from the form to the key shown once', async () => {
    const { page } = e;
    await page.goto(`${e.url}/keys/${aliceKey.id}`);
    await settle(page);
    for (const chart of ['requests-chart', 'tokens-chart']) await onScreen(page.getByTestId(chart).locator('svg'), chart);
    await page.getByTestId('create-virtual-key').click();
    const form = page.getByTestId('create-vk-dialog');
    await form.waitFor();
    const box = (await form.boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(WIDTH);
    expect(await form.evaluate((d) => d.scrollWidth <= d.clientWidth)).toBe(true);
    await page.fill('#vk-name', 'phone');
    await page.getByTestId('vk-submit').click();
    const shown = page.getByTestId('issued-vk-dialog');
    await shown.waitFor();
    await page.getByTestId('secret-toggle').click();
    for (const id of ['secret-copy', 'secret-toggle', 'reveal-hide']) await onScreen(shown.getByTestId(id), id);
    expect(await scrollsSideways(page)).toEqual(false);
    await page.getByTestId('reveal-hide').click();
    await shown.waitFor({ state: 'detached' });
    await checkPage('alice key page with two virtual keys');
  });

  test('an admin’s Add key dialog fits the screen, with its fields one per row and its buttons on screen', async () => {
    const { page } = e;
    await e.signIn(admin);
    await page.getByTestId('add-key').click();
    const dialog = page.getByTestId('add-key-dialog');
    await dialog.waitFor();
    const box = (await dialog.boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(WIDTH);
    expect(box.height).toBeLessThanOrEqual(HEIGHT);
    expect(Math.abs(box.x - (WIDTH - box.x - box.width))).toBeLessThanOrEqual(2);
    expect(await dialog.evaluate((d) => d.scrollWidth <= d.clientWidth)).toBe(true);
    for (const b of await dialog.locator('.dialog-actions button').all()) await onScreen(b, `add key: ${await b.textContent()}`);
    await page.keyboard.press('Escape');
  });

  test('an audit card opens its details inside the card; a row menu opens on screen', async () => {
    const { page } = e;
    await page.goto(`${e.url}/audit`);
    await settle(page);
    const card = page.locator('[data-testid=audit-row][data-other=true]').first();
    await card.locator('button.link').click();
    await card.locator('.audit-details').waitFor();
    expect(await scrollsSideways(page)).toEqual(false);
    await page.goto(`${e.url}/keys`);
    await settle(page);
    const row = page.locator('[data-testid=key-row]', { hasText: LONG });
    await row.locator('.menu-button').click();
    const menu = row.getByRole('menu');
    await menu.waitFor();
    await onScreen(menu, 'row menu');
    expect(await scrollsSideways(page)).toEqual(false);
  });

  test('no CSP violation or page error happened', () => {
    expect(e.problems).toEqual([]);
    expect(e.logText()).not.toContain(aliceKey.secret);
  });
});
