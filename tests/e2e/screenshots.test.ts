/**
 * Renders every main page of the console with realistic data in headless Chromium and screenshots it.
 * With PKV_SCREENSHOTS=1 (npm run screenshots) the images go to docs/screenshots/ for the README; otherwise to
 * a temporary directory, so the run is a smoke test of every page (no CSP violation, no page error).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeE2E, E2E, eventually, pickOwner, type SeededUser } from './helpers';

jest.setTimeout(240_000);

const OUT = process.env.PKV_SCREENSHOTS === '1' ? path.resolve(__dirname, '..', '..', 'docs', 'screenshots') : fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-shots-'));

const arkKey = () => crypto.randomUUID();
const hex = (n: number) => crypto.randomBytes(n).toString('hex');

describeE2E('web console: screenshots of the main pages', () => {
  let e: E2E;
  let admin: SeededUser;
  let zhang: SeededUser;
  let li: SeededUser;
  let chen: SeededUser;
  let auditor: SeededUser;
  const keys: Record<string, { id: string; secret: string }> = {};

  const shot = async (name: string, fullPage = false) => {
    const file = path.join(OUT, name);
    await e.page.mouse.move(1, 1);
    await e.page.screenshot({ path: file, fullPage, animations: 'disabled', caret: 'hide' });
    expect(fs.statSync(file).size).toBeGreaterThan(10_000);
  };
  const call = async (token: string, method: string, p: string, body?: unknown) => {
    const res = await fetch(`${e.url}/api/v1${p}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return res.status === 204 ? null : res.json();
  };

  beforeAll(async () => {
    fs.mkdirSync(OUT, { recursive: true });
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin', 'Platform Admin');
    zhang = await e.user('member', 'zhang.wei', '张伟');
    li = await e.user('member', 'li.na', '李娜');
    chen = await e.user('member', 'chen.jie', '陈杰');
    auditor = await e.user('auditor', 'audit.wang', '王审计');
    const prod = await e.project('chatbot-prod', '生产环境对话机器人');
    const search = await e.project('search-staging', 'Semantic search, staging');
    const evalp = await e.project('ark-eval', '方舟模型评测');
    keys.chat = await e.key(admin, { ownerId: zhang.id, projectId: prod.id, name: 'ark-chat-prod', provider: 'volcengine-ark', secret: arkKey(), remark: '豆包 Pro 32k 推理接入点' });
    keys.embed = await e.key(admin, { ownerId: li.id, projectId: search.id, name: 'ark-embedding', provider: 'volcengine-ark', secret: arkKey(), remark: 'Doubao embedding endpoint' });
    keys.batch = await e.key(admin, { ownerId: chen.id, projectId: evalp.id, name: 'ark-eval-batch', provider: 'volcengine-ark', secret: arkKey() });
    keys.openai = await e.key(admin, { ownerId: zhang.id, projectId: prod.id, name: 'openai-fallback', provider: 'openai', secret: `sk-proj-${crypto.randomBytes(36).toString('base64url')}` });
    keys.claude = await e.key(admin, { ownerId: li.id, projectId: evalp.id, name: 'claude-review', provider: 'anthropic', secret: `sk-ant-api03-${crypto.randomBytes(60).toString('base64url')}` });
    keys.deepseek = await e.key(admin, { ownerId: chen.id, projectId: search.id, name: 'deepseek-r1', provider: 'deepseek', secret: `sk-${hex(16)}` });

    const adminToken = await e.apiLogin(admin);
    const zhangToken = await e.apiLogin(zhang);
    const chenToken = await e.apiLogin(chen);
    await call(adminToken, 'PATCH', `/provider-keys/${keys.claude.id}`, { status: 'disabled' });
    await call(adminToken, 'PATCH', `/provider-keys/${keys.batch.id}`, { expiresAt: new Date(Date.now() + 30 * 86_400_000).toISOString() });
    await call(zhangToken, 'POST', `/provider-keys/${keys.chat.id}/reveal`, {});
    await call(zhangToken, 'POST', `/provider-keys/${keys.chat.id}/reveal`, {});
    await call(chenToken, 'POST', `/provider-keys/${keys.chat.id}/reveal`, {});
    await call(adminToken, 'POST', `/provider-keys/${keys.chat.id}/reveal`, { reason: 'INC-2031: 排查限流问题 / checking rate limits' });
    await call(adminToken, 'POST', `/provider-keys/${keys.embed.id}/reveal`, { reason: 'Rotating the staging endpoint' });
    const bot = (await call(adminToken, 'POST', '/api-tokens', { name: 'deploy-bot', scopes: ['provider-keys:read', 'provider-keys:reveal'], expiresInDays: 30 })) as { token: string };
    await call(adminToken, 'POST', '/api-tokens', { name: 'siem-export', scopes: ['audit:read'], expiresInDays: 365 });
    await call(bot.token, 'GET', '/provider-keys');
    // Two virtual keys on openai-fallback, and 30 days of their calls (a quieter weekend, the odd 429).
    const supportBot = (await call(zhangToken, 'POST', `/provider-keys/${keys.openai.id}/virtual-keys`, { name: 'support-bot (prod)', models: ['gpt-4o-mini', 'gpt-4o'], dailyRequestLimit: 5000, dailyTokenLimit: 5_000_000 })) as { id: string };
    await call(zhangToken, 'POST', `/provider-keys/${keys.openai.id}/virtual-keys`, { name: 'nightly eval', expiresInDays: 30 });
    for (let day = 29; day >= 0; day--) {
      const calls = 14 + ((day * 7) % 11) + (day % 7 < 2 ? 0 : 22);
      for (let i = 0; i < calls; i++) {
        e.container.gateway.usage.record({
          at: new Date(Date.now() - day * 86_400_000 - i * 1000),
          virtualKeyId: supportBot.id,
          keyId: keys.openai.id,
          userId: zhang.id,
          model: 'gpt-4o-mini',
          status: i % 31 === 5 ? 429 : 200,
          latencyMs: 800,
          promptTokens: 600 + ((i * 37) % 900),
          completionTokens: 150 + ((i * 53) % 400),
          requestBytes: 2000,
          responseBytes: 3000,
        });
      }
    }
    // Two webhooks, one with a secret its receiver chose, for their page.
    await e.container.gateway.usage.flush();
    await call(adminToken, 'POST', '/webhooks', { url: 'https://hooks.example.com/pkv/key-health', events: ['provider_key.health_changed', 'provider_key.expiring', 'provider_key.revealed'] });
    await call(adminToken, 'POST', '/webhooks', { url: 'https://siem.example.com/ingest/pkv', events: ['provider_key.revealed', 'audit.verify_failed'], secret: `whsec-own-${hex(16)}` });
    await e.container.usage.flush();
    await e.container.audit.chain.sealPending();
  });

  afterAll(async () => {
    await e?.close();
  });

  test('sign-in', async () => {
    await e.page.goto(`${e.url}/`);
    await e.page.locator('#login-username').waitFor();
    await shot('01-sign-in.png');
  });

  test('keys list as admin, and the add-key dialog with a pasted (masked) secret', async () => {
    const { page } = e;
    await e.signIn(admin);
    await eventually(async () => expect(await page.locator('[data-testid=key-row]').count()).toBe(6));
    await shot('02-keys-admin.png');
    await page.click('[data-testid=add-key]');
    await pickOwner(page, 'zhang.wei');
    await page.selectOption('#key-project', { label: 'chatbot-prod' });
    await page.fill('#key-name', 'ark-vision-prod');
    await page.fill('#key-secret', arkKey());
    await page.fill('#key-remark', 'Doubao vision endpoint');
    await page.locator('#key-name').focus();
    await shot('03-add-key.png');
    // A Volcengine AK/SK pair pasted where an Ark API key belongs: flagged before saving.
    await page.fill('#key-secret', `AKLT${crypto.randomBytes(32).toString('base64url')}`);
    await page.getByTestId('shape-warning').waitFor();
    await shot('12-add-key-warning.png');
    await page.click('[data-testid=add-key-dialog] button:text("Cancel")');
  });

  test('reveal with its countdown (secret still masked)', async () => {
    const { page } = e;
    await page.clock.install();
    await e.signIn(zhang);
    await page.locator('[data-testid=key-row]', { hasText: 'ark-chat-prod' }).locator('[data-testid=reveal-button]').click();
    await page.locator('[data-testid=reveal-dialog]').waitFor();
    await page.clock.runFor(6_000);
    await eventually(async () => expect(await page.locator('[data-testid=reveal-countdown]').textContent()).toContain('Hides in 24 s'));
    await page.click('[data-testid=secret-copy]');
    await eventually(async () => expect(await page.locator('[data-testid=secret-copy]').textContent()).toContain('Copied'));
    await shot('04-reveal-countdown.png');
    await page.click('[data-testid=reveal-hide]');
  });

  test('key detail with its audit trail', async () => {
    const { page } = e;
    await e.signIn(admin, `/keys/${keys.chat.id}`);
    await page.locator('[data-testid=audit-row]').first().waitFor();
    await page.locator('[data-testid=audit-row] button:text("Details")').first().click();
    await shot('05-key-detail.png', true);
  });

  test('a key’s virtual keys, code snippets and usage; a new virtual key shown once', async () => {
    const { page } = e;
    await e.signIn(zhang, `/keys/${keys.openai.id}`);
    await eventually(async () => expect(await page.locator('[data-testid=vk-row]').count()).toBe(2));
    await eventually(async () => expect(await page.locator('[aria-busy=true]').count()).toBe(0));
    const from = (await page.locator('section.gateway').boundingBox())!;
    const to = (await page.getByTestId('usage').boundingBox())!;
    await page.mouse.move(1, 1);
    const file = path.join(OUT, '19-key-gateway.png');
    await page.screenshot({ path: file, fullPage: true, clip: { x: 0, y: from.y - 8, width: 1360, height: to.y + to.height - from.y + 24 }, animations: 'disabled', caret: 'hide' });
    expect(fs.statSync(file).size).toBeGreaterThan(10_000);

    await page.clock.install();
    await page.getByTestId('create-virtual-key').click();
    await page.fill('#vk-name', 'billing job');
    await page.fill('#vk-models', 'gpt-4o-mini');
    await page.fill('#vk-requests', '1000');
    await page.getByTestId('vk-submit').click();
    await page.getByTestId('issued-vk-dialog').waitFor();
    await page.clock.runFor(4_000);
    await page.getByTestId('secret-copy').click();
    await eventually(async () => expect(await page.getByTestId('secret-copy').textContent()).toContain('Copied'));
    await shot('20-virtual-key-once.png');
    await page.getByTestId('reveal-hide').click();
  });

  test('audit page with the verify result', async () => {
    const { page } = e;
    await e.signIn(auditor, '/audit');
    await page.locator('[data-testid=audit-row]').first().waitFor();
    await e.container.audit.chain.sealPending();
    await page.click('[data-testid=verify-button]');
    await page.locator('[data-testid=verify-result][data-ok=true]').waitFor();
    await shot('06-audit-verify.png');
  });

  test('users, API tokens and projects', async () => {
    const { page } = e;
    await e.signIn(admin, '/users');
    await page.locator('[data-testid=user-row]').first().waitFor();
    await shot('07-users.png');
    await page.click('.mainnav a:text("API tokens")');
    await eventually(async () => expect(await page.locator('[data-testid=token-row]').count()).toBe(2));
    await shot('08-api-tokens.png');
    await page.click('.mainnav a:text("Projects")');
    await eventually(async () => expect(await page.locator('[data-testid=project-row]').count()).toBe(3));
    await shot('09-projects.png');
  });

  test('the hygiene report and webhooks', async () => {
    const { page } = e;
    await page.click('.mainnav a:text("Hygiene")');
    await page.getByTestId('hygiene-generated').waitFor();
    await shot('21-hygiene.png', true);
    await page.click('.mainnav a:text("Webhooks")');
    await eventually(async () => expect(await page.locator('[data-testid=webhook-row]').count()).toBe(2));
    await shot('22-webhooks.png');
  });

  test('the Chinese UI', async () => {
    const { page } = e;
    await page.click('.mainnav a:text("Keys")');
    await page.selectOption('[data-testid=lang-switch]', 'zh');
    await eventually(async () => expect(await page.locator('h1').textContent()).toBe('供应商密钥'));
    await eventually(async () => expect(await page.locator('[data-testid=key-row]').count()).toBe(6));
    await shot('10-keys-zh.png');
    await page.locator('[data-testid=key-row]', { hasText: 'ark-embedding' }).locator('[data-testid=reveal-button]').click();
    await page.locator('[data-testid=reason-dialog]').waitFor();
    await page.fill('#reveal-reason', '排查检索服务鉴权失败');
    await shot('11-reveal-reason-zh.png');
    await page.click('[data-testid=reason-dialog] button:text("取消")');
    await page.selectOption('[data-testid=lang-switch]', 'en');
  });

  test('dark mode (from the system setting)', async () => {
    const { page } = e;
    await page.emulateMedia({ colorScheme: 'dark' });
    await e.signIn(admin, '/keys');
    await eventually(async () => expect(await page.locator('[data-testid=key-row]').count()).toBe(6));
    await shot('13-keys-dark.png');
    await e.signIn(auditor, '/audit');
    await page.getByTestId('preset-admin-others').click();
    await eventually(async () => expect(await page.locator('[data-testid=audit-row]').count()).toBe(2));
    await shot('14-audit-dark.png');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  test('a phone (390 px): cards with their actions, and the reveal', async () => {
    const { page } = e;
    await page.setViewportSize({ width: 390, height: 844 });
    await page.clock.install();
    await e.signIn(zhang, '/keys');
    await eventually(async () => expect(await page.locator('[data-testid=key-row]').count()).toBe(2));
    await shot('15-phone-keys.png');
    await page.locator('[data-testid=key-row]', { hasText: 'ark-chat-prod' }).getByTestId('reveal-button').click();
    await page.getByTestId('reveal-dialog').waitFor();
    await page.clock.runFor(3_000);
    await shot('16-phone-reveal.png');
    await page.getByTestId('reveal-hide').click();
    await e.signIn(auditor, '/audit');
    await page.locator('[data-testid=audit-row]').first().waitFor();
    await shot('17-phone-audit.png');
    await page.setViewportSize({ width: 1360, height: 860 });
  });

  test('the first run: an empty vault’s setup path', async () => {
    const fresh = await E2E.start();
    try {
      const { page } = fresh;
      await fresh.signIn({ id: '', username: 'admin', password: fresh.server.bootstrapPassword!, role: 'admin' });
      await page.getByTestId('setup-guide').waitFor();
      await page.mouse.move(1, 1);
      const file = path.join(OUT, '18-first-run.png');
      await page.screenshot({ path: file, animations: 'disabled', caret: 'hide' });
      expect(fs.statSync(file).size).toBeGreaterThan(10_000);
      expect(fresh.problems).toEqual([]);
    } finally {
      await fresh.close();
    }
  });

  test('no CSP violation or page error happened on any page', () => {
    expect(e.problems).toEqual([]);
  });
});
