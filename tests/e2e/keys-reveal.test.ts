/**
 * The web console end to end, in headless Chromium against the real server: an admin pastes a key and sees
 * only its hint; its owner reveals, copies and watches it vanish; another member cannot see it; an admin must
 * give a reason; refusals read as sentences; markup in a name or remark stays text.
 */
import crypto from 'node:crypto';
import { describeE2E, E2E, eventually, noticeText, pickOwner, WAIT_MS, type SeededUser } from './helpers';

jest.setTimeout(180_000);

describeE2E('web console: keys and the reveal', () => {
  let e: E2E;
  let admin: SeededUser;
  let alice: SeededUser;
  let bob: SeededUser;
  let carol: SeededUser;
  let project: { id: string; name: string };
  const secret = `sk-${crypto.randomBytes(30).toString('base64url')}`;
  let keyId: string;
  const secretsSeen: string[] = [secret];

  beforeAll(async () => {
    e = await E2E.start({ PKV_REVEAL_RATE_LIMIT: '4' });
    admin = await e.user('admin', 'root-admin');
    alice = await e.user('member', 'alice', 'Alice Zhang');
    bob = await e.user('member', 'bob');
    carol = await e.user('member', 'carol');
    project = await e.project('chatbot-prod');
  });

  afterAll(async () => {
    await e?.close();
  });

  test('the admin pastes a key and sees only its hint; the session cookie is HttpOnly and SameSite=Strict', async () => {
    const { page } = e;
    await e.signIn(admin);
    const cookies = await e.browser.cookies(`${e.url}/api/v1/auth/me`);
    const session = cookies.find((c) => c.name === 'pkv_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/api/v1' });
    expect(String(await page.evaluate('document.cookie'))).not.toContain('pkv_session');

    await page.click('[data-testid=add-key]');
    const dialog = page.locator('[data-testid=add-key-dialog]');
    await dialog.waitFor();
    expect(await page.getAttribute('#key-secret', 'type')).toBe('password');
    await pickOwner(page, 'alice');
    await page.selectOption('#key-project', project.id);
    await page.selectOption('#key-provider', 'openai');
    await page.fill('#key-name', 'alice-openai');
    // A paste from a provider console carries a newline and spaces: the vault trims them.
    await page.fill('#key-secret', `  ${secret}\n`);
    await page.fill('#key-remark', 'for the chatbot');
    await dialog.locator('button[type=submit]').click();
    await dialog.waitFor({ state: 'detached' });

    const hint = `sk-…${secret.slice(-4)}`;
    await eventually(async () => expect(await noticeText(page)).toContain(hint));
    const row = page.locator('[data-testid=key-row]', { hasText: 'alice-openai' });
    await row.waitFor();
    keyId = (await row.getAttribute('data-key-id'))!;
    expect(await row.locator('[data-testid=key-hint]').textContent()).toBe(hint);
    expect(await row.textContent()).toContain('alice');
    expect(await row.textContent()).toContain('chatbot-prod');
    expect(await e.pageTraces()).not.toContain(secret);
    expect(await e.pageTraces()).not.toContain(secret.slice(3, 20));
  });

  test('pasting the same secret again names the existing key', async () => {
    const { page } = e;
    await page.click('[data-testid=add-key]');
    const dialog = page.locator('[data-testid=add-key-dialog]');
    await pickOwner(page, 'bob');
    await page.selectOption('#key-project', project.id);
    await page.selectOption('#key-provider', 'openai');
    await page.fill('#key-name', 'copy-of-alice');
    await page.fill('#key-secret', secret);
    await dialog.locator('button[type=submit]').click();
    const notice = dialog.locator('[data-testid=duplicate-notice]');
    await eventually(async () => expect(await notice.textContent()).toMatch(/already stored as the key “alice-openai”/));
    expect(await notice.locator('a').getAttribute('href')).toBe(`/keys/${keyId}`);
    await dialog.locator('button', { hasText: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
  });

  test('the owner reveals, copies, and watches the secret vanish after the 30 s countdown', async () => {
    const { page } = e;
    await e.signOut();
    // The product's 30 s stay as they are; the test only drives the page's clock.
    await page.clock.install();
    await e.signIn(alice);
    const rows = page.locator('[data-testid=key-row]');
    await rows.first().waitFor();
    expect(await rows.count()).toBe(1);
    const row = rows.first();
    expect(await row.textContent()).toContain('alice-openai');
    const historyBefore = Number(await page.evaluate('history.length'));

    await row.locator('[data-testid=reveal-button]').click();
    const dialog = page.locator('[data-testid=reveal-dialog]');
    await dialog.waitFor();
    // Masked first: the secret is not even in the DOM until "Show".
    await page.locator('[data-testid=secret-mask]').waitFor();
    expect(await e.pageTraces()).not.toContain(secret);
    expect(await page.locator('[data-testid=reveal-countdown]').textContent()).toContain('Hides in 30 s');

    await page.click('[data-testid=secret-toggle]');
    expect(await page.locator('[data-testid=secret-text]').textContent()).toBe(secret);
    await page.click('[data-testid=secret-toggle]');
    await page.locator('[data-testid=secret-mask]').waitFor();

    await page.click('[data-testid=secret-copy]');
    await eventually(async () => expect(await page.locator('[data-testid=secret-copy]').textContent()).toContain('Copied'));
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe(secret);

    // Never in the URL, storage, the title or history.
    const traces = JSON.parse(await e.pageTraces()) as Record<string, unknown>;
    for (const where of ['url', 'title', 'historyState', 'local', 'session', 'cookie'] as const) expect(JSON.stringify(traces[where])).not.toContain(secret);
    expect(traces.historyLength).toBe(historyBefore);
    expect(traces.local).toEqual([]);

    await page.clock.runFor(10_000);
    await eventually(async () => expect(await page.locator('[data-testid=reveal-countdown]').textContent()).toContain('Hides in 20 s'));
    await page.click('[data-testid=secret-toggle]');
    expect(await page.locator('[data-testid=secret-text]').textContent()).toBe(secret);

    await page.clock.runFor(20_500);
    await dialog.waitFor({ state: 'detached', timeout: WAIT_MS });
    await eventually(async () => expect(await noticeText(page)).toContain('was hidden'));
    expect(await e.pageTraces()).not.toContain(secret);
    // The clipboard still held the secret when it hid: it is emptied too.
    await eventually(async () => expect(await page.evaluate('navigator.clipboard.readText()')).toBe(''));
    // The list now counts the reveal.
    await eventually(async () => expect((await page.locator('[data-testid=key-row] td.num').first().textContent())?.trim()).toBe('1'));
  });

  test('the owner finds the key by the last characters of its hint, as shown in a provider’s console', async () => {
    const { page } = e;
    const search = page.getByRole('searchbox', { name: /Search keys by name or by the last characters/ });
    await search.fill(secret.slice(-4));
    await eventually(async () => expect(await page.locator('[data-testid=key-row]').count()).toBe(1));
    expect(await page.locator('[data-testid=key-row] .key-name').textContent()).toBe('alice-openai');
    await search.fill(secret.slice(-7, -3));
    await eventually(async () => expect(await page.locator('[data-testid=keys-table] td.empty').textContent()).toBe('Nothing matches these filters.'));
    await search.fill('');
    await page.locator('[data-testid=key-row]').first().waitFor();
  });

  test('another member can neither list nor open the key', async () => {
    const { page } = e;
    await e.signIn(bob);
    await page.locator('[data-testid=keys-table] td.empty').waitFor();
    expect(await page.locator('[data-testid=key-row]').count()).toBe(0);
    await page.goto(`${e.url}/keys/${keyId}`);
    await eventually(async () => expect(await page.locator('[role=alert]').textContent()).toContain('does not exist or is not yours'));
    expect(await page.content()).not.toContain('alice-openai');
  });

  test('an admin revealing someone else’s key must give a reason, which lands in the key’s trail', async () => {
    const { page } = e;
    await e.signIn(admin);
    await page.locator('[data-testid=key-row]', { hasText: 'alice-openai' }).locator('[data-testid=reveal-button]').click();
    const reasonDialog = page.locator('[data-testid=reason-dialog]');
    await reasonDialog.waitFor();
    expect(await reasonDialog.textContent()).toContain('This key belongs to alice');
    await reasonDialog.locator('button[type=submit]').click();
    await eventually(async () => expect(await reasonDialog.locator('[role=alert]').textContent()).toContain('Please give a reason.'));
    await page.fill('#reveal-reason', 'INC-42: checking the key still works');
    await reasonDialog.locator('button[type=submit]').click();
    const dialog = page.locator('[data-testid=reveal-dialog]');
    await dialog.waitFor();
    await page.click('[data-testid=secret-toggle]');
    expect(await page.locator('[data-testid=secret-text]').textContent()).toBe(secret);
    // Copied, then something else copied over it: hiding leaves the clipboard alone.
    await page.click('[data-testid=secret-copy]');
    await eventually(async () => expect(await page.evaluate('navigator.clipboard.readText()')).toBe(secret));
    await page.evaluate(`navigator.clipboard.writeText('INC-42 notes')`);
    await page.click('[data-testid=reveal-hide]');
    await dialog.waitFor({ state: 'detached' });
    expect(await e.pageTraces()).not.toContain(secret);
    await page.waitForTimeout(300);
    expect(await page.evaluate('navigator.clipboard.readText()')).toBe('INC-42 notes');

    // Key detail: metadata and its trail — who revealed it, when, from where, why.
    await page.locator('a.key-name', { hasText: 'alice-openai' }).click();
    await page.locator('[data-testid=key-meta]').waitFor();
    await eventually(async () => expect(await page.locator('[data-testid=detail-reveal-count]').textContent()).toBe('2'));
    const reveal = page.locator('[data-testid=audit-row][data-action="provider_key.reveal"]', { hasText: 'INC-42' });
    await reveal.waitFor();
    expect(await reveal.textContent()).toMatch(/root-admin.*127\.0\.0\.1.*INC-42: checking the key still works/);
    // alice's own reveal, and the admin's marked as not the owner's.
    expect(await page.locator('[data-testid=audit-row][data-action="provider_key.reveal"][data-other=false]', { hasText: 'alice' }).count()).toBe(1);
    expect(await reveal.getAttribute('data-other')).toBe('true');
    expect(await reveal.getByTestId('not-owner').textContent()).toBe('not the owner');
  });

  test('disable and enable ask for confirmation; a disabled, an expired and a rate-limited reveal read as sentences', async () => {
    const { page } = e;
    // Disable from the detail page's menu, confirming.
    await page.click('[data-testid=key-menu] > .menu-button');
    await page.getByRole('menuitem', { name: 'Disable' }).click();
    const confirm = page.locator('[data-testid=confirm-dialog]');
    await eventually(async () => expect(await confirm.textContent()).toContain('Disable “alice-openai”?'));
    await confirm.locator('button[type=submit]').click();
    await confirm.waitFor({ state: 'detached' });
    await eventually(async () => expect(await noticeText(page)).toContain('is disabled'));

    const expired = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-expired' });
    secretsSeen.push(expired.secret);
    await e.server.container.db.transaction((m) => m.query('UPDATE provider_keys SET expires_at = ? WHERE id = ?', [Date.now() - 60_000, expired.id]));

    await e.signIn(alice);
    await page.locator('[data-testid=key-row]', { hasText: 'alice-openai' }).locator('[data-testid=reveal-button]').click();
    await eventually(async () => expect(await noticeText(page)).toBe('This key is disabled, so it cannot be revealed. An admin can enable it again.'));
    await page.locator('[data-testid=key-row]', { hasText: 'alice-expired' }).locator('[data-testid=reveal-button]').click();
    await eventually(async () => expect(await noticeText(page)).toBe('This key has expired, so it cannot be revealed. An admin can set a new expiry or replace it.'));
    expect(await page.locator('[data-testid=reveal-dialog]').count()).toBe(0);

    // Rate limit (4 reveals a minute in this file): the fifth is refused with a wait in seconds.
    const carolKey = await e.key(admin, { ownerId: carol.id, projectId: project.id, name: 'carol-key', provider: 'volcengine-ark', secret: crypto.randomBytes(24).toString('hex') });
    secretsSeen.push(carolKey.secret);
    await e.signIn(carol);
    const reveal = page.locator('[data-testid=key-row]').first().locator('[data-testid=reveal-button]');
    for (let i = 0; i < 4; i++) {
      await reveal.click();
      await page.locator('[data-testid=reveal-dialog]').waitFor();
      await page.click('[data-testid=reveal-hide]');
      await page.locator('[data-testid=reveal-dialog]').waitFor({ state: 'detached' });
    }
    await reveal.click();
    await eventually(async () => expect(await noticeText(page)).toMatch(/^Too many attempts\. Please wait \d+ seconds and try again\.$/));

    // Enabling again also asks first.
    await e.signIn(admin);
    const row = page.locator('[data-testid=key-row]', { hasText: 'alice-openai' });
    await row.locator('[data-testid=key-menu] > .menu-button').click();
    await row.getByRole('menuitem', { name: 'Enable' }).click();
    await eventually(async () => expect(await confirm.textContent()).toContain('Enable “alice-openai”?'));
    await confirm.locator('button[type=submit]').click();
    await eventually(async () => expect(await noticeText(page)).toContain('is enabled'));
  });

  test('edit, replace secret and delete each confirm first', async () => {
    const { page } = e;
    const victim = await e.key(admin, { ownerId: bob.id, projectId: project.id, name: 'bob-temp' });
    secretsSeen.push(victim.secret);
    await page.goto(`${e.url}/keys/${victim.id}`);
    await page.locator('[data-testid=key-meta]').waitFor();

    await page.click('[data-testid=key-menu] > .menu-button');
    await page.getByRole('menuitem', { name: 'Edit' }).click();
    const edit = page.locator('[data-testid=edit-key-dialog]');
    await page.fill('#edit-name', 'bob-renamed');
    await edit.locator('button[type=submit]').click();
    await eventually(async () => expect(await edit.locator('[data-testid=change-list]').textContent()).toContain('bob-temp → bob-renamed'));
    await edit.locator('button', { hasText: 'Confirm' }).click();
    await edit.waitFor({ state: 'detached' });
    await eventually(async () => expect(await page.locator('[data-testid=detail-name]').textContent()).toBe('bob-renamed'));

    const fresh = `sk-${crypto.randomBytes(30).toString('base64url')}`;
    secretsSeen.push(fresh);
    await page.click('[data-testid=key-menu] > .menu-button');
    await page.getByRole('menuitem', { name: 'Replace secret' }).click();
    const replace = page.locator('[data-testid=replace-secret-dialog]');
    await page.fill('#replace-secret', fresh);
    await replace.locator('button[type=submit]').click();
    await eventually(async () => expect(await replace.textContent()).toContain('The old secret can no longer be revealed.'));
    await replace.locator('button.danger').click();
    await replace.waitFor({ state: 'detached' });
    await eventually(async () => expect(await noticeText(page)).toContain(`New hint: sk-…${fresh.slice(-4)}`));

    await page.click('[data-testid=key-menu] > .menu-button');
    await page.getByRole('menuitem', { name: 'Delete' }).click();
    const confirm = page.locator('[data-testid=confirm-dialog]');
    await eventually(async () => expect(await confirm.textContent()).toContain('Delete “bob-renamed”?'));
    await confirm.locator('button.danger').click();
    await confirm.waitFor({ state: 'detached' });
    await eventually(async () => expect(await page.locator('.key-title .badge').textContent()).toBe('Deleted'));
    expect(await page.locator('[data-testid=reveal-button]').count()).toBe(0);
    expect(await e.pageTraces()).not.toContain(fresh);
  });

  test('markup in a key name or remark renders as text, never as HTML', async () => {
    const { page } = e;
    const name = '<img src=x onerror="window.__pkvXss=1">';
    const remark = '<script>window.__pkvXss=2</script><b>bold</b>"><svg onload="window.__pkvXss=3">';
    await page.goto(`${e.url}/keys`);
    await page.click('[data-testid=add-key]');
    const dialog = page.locator('[data-testid=add-key-dialog]');
    await pickOwner(page, 'alice');
    await page.selectOption('#key-project', project.id);
    await page.selectOption('#key-provider', 'openai');
    await page.fill('#key-name', name);
    const xssSecret = `sk-${crypto.randomBytes(30).toString('base64url')}`;
    secretsSeen.push(xssSecret);
    await page.fill('#key-secret', xssSecret);
    await page.fill('#key-remark', remark);
    await dialog.locator('button[type=submit]').click();
    await dialog.waitFor({ state: 'detached' });
    const row = page.locator('[data-testid=key-row]', { hasText: 'onerror' });
    await row.waitFor();
    expect(await row.locator('a.key-name').textContent()).toBe(name);
    expect(await row.textContent()).toContain('<script>window.__pkvXss=2</script>');
    await eventually(async () => expect(await noticeText(page)).toContain(name));

    await row.locator('a.key-name').click();
    await page.locator('[data-testid=key-meta]').waitFor();
    expect(await page.locator('[data-testid=detail-name]').textContent()).toBe(name);
    expect(await page.locator('[data-testid=detail-remark]').textContent()).toBe(remark);
    await page.click('[data-testid=key-menu] > .menu-button');
    await page.getByRole('menuitem', { name: 'Delete' }).click();
    await eventually(async () => expect(await page.locator('[data-testid=confirm-dialog]').textContent()).toContain(name));
    await page.locator('[data-testid=confirm-dialog] button', { hasText: 'Cancel' }).click();

    expect(await page.evaluate('window.__pkvXss')).toBeUndefined();
    expect(await page.locator('img[src=x], svg[onload], b:text("bold")').count()).toBe(0);
  });

  test('state-changing calls need the CSRF token; the bearer-token API is unchanged', async () => {
    const { page } = e;
    const status = (init: string) => page.evaluate(`fetch('/api/v1/projects', ${init}).then((r) => r.status)`);
    expect(await status(`{ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'csrf-1' }) }`)).toBe(403);
    expect(await status(`{ method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': 'nope' }, body: JSON.stringify({ name: 'csrf-2' }) }`)).toBe(403);
    expect(await status(`{ method: 'GET' }`)).toBe(200);

    const token = await e.apiLogin(admin);
    const me = await fetch(`${e.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ username: 'root-admin', via: 'session' });
    const created = await fetch(`${e.url}/api/v1/projects`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bearer-ok' }) });
    expect(created.status).toBe(201);
  });

  test('no CSP violation or page error happened, and no secret reached the server log', () => {
    expect(e.problems).toEqual([]);
    const log = e.logText();
    for (const s of secretsSeen) expect(log).not.toContain(s);
  });
});
