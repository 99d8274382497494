/**
 * The audit side of the console in headless Chromium against the real server: an auditor filters the trail,
 * exports it (CSV and NDJSON downloads), verifies it (and sees tampering); plus sign-out, session end,
 * the language switch and what the browser keeps.
 */
import crypto from 'node:crypto';
import { describeE2E, downloadText, E2E, eventually, type SeededUser } from './helpers';

jest.setTimeout(180_000);

describeE2E('web console: audit, sessions and languages', () => {
  let e: E2E;
  let admin: SeededUser;
  let alice: SeededUser;
  let audrey: SeededUser;
  let key: { id: string; secret: string };

  const api = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${e.url}/api/v1${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: res.status === 204 ? null : await res.json() };
  };

  beforeAll(async () => {
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin');
    alice = await e.user('member', 'alice');
    audrey = await e.user('auditor', 'audrey');
    const project = await e.project('ark-prod');
    key = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'ark-chat', provider: 'volcengine-ark', secret: crypto.randomBytes(24).toString('hex') });
    // Some history through the plain bearer API: the owner reveals twice, an admin once with a reason, and an admin is refused without one.
    const aliceToken = await e.apiLogin(alice);
    const adminToken = await e.apiLogin(admin);
    expect((await api(aliceToken, 'POST', `/provider-keys/${key.id}/reveal`, {})).status).toBe(200);
    expect((await api(aliceToken, 'POST', `/provider-keys/${key.id}/reveal`, {})).status).toBe(200);
    expect((await api(adminToken, 'POST', `/provider-keys/${key.id}/reveal`, {})).status).toBe(400);
    expect((await api(adminToken, 'POST', `/provider-keys/${key.id}/reveal`, { reason: 'INC-7 rotation check' })).status).toBe(200);
  });

  afterAll(async () => {
    await e?.close();
  });

  const rows = () => e.page.locator('[data-testid=audit-row]');
  const attrs = async (name: string) => rows().evaluateAll((els, n) => els.map((el) => el.getAttribute(n as string)), name);

  test('an auditor sees metadata but no reveal button, and filters the trail by action, outcome, user, key and time', async () => {
    const { page } = e;
    await e.signIn(audrey);
    await page.locator('[data-testid=key-row]').first().waitFor();
    expect(await page.locator('[data-testid=reveal-button]').count()).toBe(0);
    expect(await page.locator('.mainnav a').allTextContents()).toEqual(['Keys', 'Audit', 'Users', 'Projects', 'Hygiene', 'API tokens']);

    await page.click('.mainnav a:text("Audit")');
    await rows().first().waitFor();
    // Filters apply as they change, as on Keys.
    await page.selectOption('[data-testid=audit-action]', 'provider_key.reveal');
    await eventually(async () => expect(await attrs('data-action')).toEqual(['provider_key.reveal', 'provider_key.reveal', 'provider_key.reveal', 'provider_key.reveal']));
    expect(page.url()).toContain('action=provider_key.reveal');
    expect(await attrs('data-outcome')).toEqual(['success', 'denied', 'success', 'success']);
    expect(await rows().first().textContent()).toContain('INC-7 rotation check');

    await page.selectOption('[data-testid=audit-outcome]', 'denied');
    await eventually(async () => expect(await attrs('data-outcome')).toEqual(['denied']));
    expect(await rows().first().textContent()).toContain('root-admin');

    await page.selectOption('[data-testid=audit-outcome]', '');
    await page.selectOption('[data-testid=audit-user]', alice.id);
    await page.selectOption('[data-testid=audit-key]', key.id);
    await eventually(async () => expect(await rows().count()).toBe(2));
    for (const text of await rows().allTextContents()) expect(text).toMatch(/alice.*ark-chat/);

    // A window entirely in the future matches nothing.
    await page.fill('[data-testid=audit-from]', '2999-01-01T00:00');
    await page.locator('[data-testid=audit-table] td.empty').waitFor();
    expect(await rows().count()).toBe(0);
    await page.fill('[data-testid=audit-from]', '');
    await eventually(async () => expect(await rows().count()).toBe(2));
  });

  test('the auditor exports the filtered trail as CSV and NDJSON downloads, and the export is itself audited', async () => {
    const { page } = e;
    const csv = await downloadText(page, () => page.click('[data-testid=export-csv]'));
    expect(csv.name).toMatch(/^pkv-audit-.*\.csv$/);
    const lines = csv.text.trim().split(/\r?\n/);
    expect(lines[0]).toMatch(/action/);
    expect(lines).toHaveLength(3);
    for (const line of lines.slice(1)) expect(line).toContain('provider_key.reveal');

    const nd = await downloadText(page, () => page.click('[data-testid=export-ndjson]'));
    expect(nd.name).toMatch(/\.ndjson$/);
    const events = nd.text.trim().split('\n').map((l) => JSON.parse(l) as { action: string; actorUsername: string; keyId: string });
    expect(events).toHaveLength(2);
    for (const ev of events) expect(ev).toMatchObject({ action: 'provider_key.reveal', actorUsername: 'alice', keyId: key.id });
    expect(csv.text + nd.text).not.toContain(key.secret);

    await page.click('button:text("Reset")');
    await page.selectOption('[data-testid=audit-action]', 'audit.export');
    await eventually(async () => expect(await attrs('data-action')).toEqual(['audit.export', 'audit.export']));
    expect(await rows().first().textContent()).toContain('audrey');
  });

  test('“verify trail” shows the result and the chain head, and reports a tampered row', async () => {
    const { page } = e;
    // Let the sealer chain what is there.
    await e.container.audit.chain.sealPending();
    await page.click('[data-testid=verify-button]');
    const result = page.locator('[data-testid=verify-result]');
    await result.waitFor();
    expect(await result.getAttribute('data-ok')).toBe('true');
    expect(await result.textContent()).toMatch(/The trail is intact: \d+ sealed events checked\./);
    expect(await page.locator('[data-testid=verify-head]').textContent()).toMatch(/seq \d+ · [0-9a-f]{64}/);

    // Someone with database access rewrites the reason of a sealed reveal.
    const [row] = await e.container.db.read((m) => m.query("SELECT id FROM audit_events WHERE reason = 'INC-7 rotation check'"));
    await e.container.db.transaction((m) => m.query("UPDATE audit_events SET reason = 'nothing to see' WHERE id = ?", [row.id]));
    await page.click('[data-testid=verify-button]');
    await eventually(async () => expect(await result.getAttribute('data-ok')).toBe('false'));
    expect(await result.textContent()).toContain('The trail failed verification');
    expect(await result.textContent()).toContain(`First bad event: ${row.id}`);
  });

  test('the language switch turns the console into Simplified Chinese and is remembered (only it is stored)', async () => {
    const { page } = e;
    await page.selectOption('[data-testid=lang-switch]', 'zh');
    await eventually(async () => expect(await page.locator('.mainnav a').allTextContents()).toEqual(['密钥', '审计', '用户', '项目', '卫生报告', 'API 令牌']));
    expect(await page.locator('html').getAttribute('lang')).toBe('zh-CN');
    await page.reload();
    await page.locator('[data-testid=audit-table]').waitFor();
    expect(await page.locator('h1').textContent()).toBe('审计记录');
    expect(await page.evaluate('Object.keys(localStorage)')).toEqual(['pkv.lang']);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    await page.click('[data-testid=verify-button]');
    await eventually(async () => expect(await page.locator('[data-testid=verify-result]').textContent()).toContain('审计链校验失败'));
    await page.selectOption('[data-testid=lang-switch]', 'en');
    await eventually(async () => expect(await page.locator('h1').textContent()).toBe('Audit trail'));
  });

  test('signing out ends the session: the cookie is gone and the sign-in page says so', async () => {
    const { page } = e;
    await e.signOut();
    expect(await page.locator('.login-card [role=status]').textContent()).toBe('You have signed out.');
    const cookies = await e.browser.cookies(`${e.url}/api/v1/auth/me`);
    expect(cookies.find((c) => c.name === 'pkv_session')).toBeUndefined();
    expect(await page.evaluate("fetch('/api/v1/auth/me').then((r) => r.status)")).toBe(401);
  });

  test('a wrong password reads as a sentence; a session that ends server-side sends the console back to sign-in', async () => {
    const { page } = e;
    await page.fill('#login-username', 'alice');
    await page.fill('#login-password', 'not-her-password');
    await page.click('form.login-card button[type=submit]');
    await eventually(async () => expect(await page.locator('.login-card [role=alert]').textContent()).toBe('The username or password is not correct.'));

    await e.signIn(alice);
    await page.locator('[data-testid=key-row]').first().waitFor();
    // An admin disables alice: her session stops working at the next request.
    const adminToken = await e.apiLogin(admin);
    expect((await api(adminToken, 'PATCH', `/users/${alice.id}`, { status: 'disabled' })).status).toBe(200);
    await page.click('.mainnav a:text("API tokens")');
    await page.locator('#login-username').waitFor();
    expect(await page.locator('.login-card [role=status]').textContent()).toBe('Your session has ended. Please sign in again.');
  });

  test('the console is served under the strict CSP: no inline script or style, hashed assets cached for good', async () => {
    const res = await fetch(`${e.url}/keys`, { headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style|\sstyle=/);
    expect(html).not.toMatch(/https?:\/\//);
    const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
    expect(assets.length).toBeGreaterThanOrEqual(2);
    for (const a of assets) {
      const r = await fetch(`${e.url}${a}`);
      expect(r.status).toBe(200);
      expect(r.headers.get('cache-control')).toContain('immutable');
      // No CDN: nothing loads code, styles or fonts from another host.
      expect(await r.text()).not.toMatch(/https?:\/\/[^"'`\s]+\.(js|mjs|css|woff2?)\b/);
    }
  });

  test('no CSP violation or page error happened, and no secret reached the server log', () => {
    expect(e.problems).toEqual([]);
    expect(e.logText()).not.toContain(key.secret);
  });
});
