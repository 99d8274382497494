/**
 * Users, projects and API tokens in the console (headless Chromium, real server): admin pages for users and
 * projects with their confirmations and plain-sentence refusals; everyone's own API tokens, shown once.
 */
import { describeE2E, E2E, eventually, noticeText, type SeededUser } from './helpers';

jest.setTimeout(180_000);

describeE2E('web console: users, projects and API tokens', () => {
  let e: E2E;
  let admin: SeededUser;
  let member: SeededUser;

  beforeAll(async () => {
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin');
    member = await e.user('member', 'mei');
  });

  afterAll(async () => {
    await e?.close();
  });

  test('an admin adds a user; a taken username and demoting the last admin read as sentences; disabling confirms first', async () => {
    const { page } = e;
    await e.signIn(admin, '/users');
    await page.locator('[data-testid=user-row]').first().waitFor();
    const add = async (username: string) => {
      await page.click('[data-testid=add-user]');
      await page.fill('#user-username', username);
      await page.selectOption('#user-role', 'member');
      await page.fill('#user-password', 'a-long-enough-password');
      await page.click('[data-testid=add-user-dialog] button[type=submit]');
    };
    await add('wang.fang');
    await eventually(async () => expect(await noticeText(page)).toBe('User wang.fang was created.'));
    await page.locator('[data-testid=user-row]', { hasText: 'wang.fang' }).waitFor();
    await add('wang.fang');
    await eventually(async () => expect(await page.locator('[data-testid=add-user-dialog] [role=alert]').textContent()).toBe('This username is already taken.'));
    await page.locator('[data-testid=add-user-dialog] button', { hasText: 'Cancel' }).click();

    // Disabling asks first. Disable the bootstrap admin: root-admin is then the last active admin…
    const bootstrap = page.locator('[data-testid=user-row]', { has: page.locator('strong', { hasText: /^admin$/ }) });
    await bootstrap.locator('.row-menu > .menu-button').click();
    await bootstrap.getByRole('menuitem', { name: 'Disable' }).click();
    await eventually(async () => expect(await page.locator('[data-testid=confirm-dialog] .confirm-message').textContent()).toContain('Disable admin? They are signed out at once'));
    await page.click('[data-testid=confirm-dialog] button.danger');
    await eventually(async () => expect(await bootstrap.locator('.badge').last().textContent()).toBe('Disabled'));

    // …and cannot demote themself.
    const me = page.locator('[data-testid=user-row]', { hasText: 'root-admin' });
    await me.locator('.row-menu > .menu-button').click();
    await me.getByRole('menuitem', { name: 'Edit' }).click();
    await page.selectOption('#edit-role', 'member');
    await page.click('dialog button[type=submit]');
    await page.locator('dialog .change-list', { hasText: 'Role: Admin → Member' }).waitFor();
    await page.click('dialog button:text("Confirm")');
    await eventually(async () => expect(await page.locator('dialog [role=alert]').textContent()).toBe('This is the last active admin. Make another user an admin first.'));
    await page.click('dialog button:text("Back")');
    await page.click('dialog button:text("Cancel")');
    expect(await me.locator('.badge').first().textContent()).toBe('Admin');
  });

  test('projects: create, edit with a confirmation, and a delete refused while the project holds keys', async () => {
    const { page } = e;
    await page.click('.mainnav a:text("Projects")');
    await page.click('[data-testid=add-project]');
    await page.fill('#project-name', 'ark-eval');
    await page.fill('#project-description', 'Evaluation runs');
    await page.click('[data-testid=project-dialog] button[type=submit]');
    await eventually(async () => expect(await noticeText(page)).toBe('Project “ark-eval” was created.'));
    const row = page.locator('[data-testid=project-row]', { hasText: 'ark-eval' });
    await row.waitFor();

    await row.locator('.row-menu > .menu-button').click();
    await row.getByRole('menuitem', { name: 'Edit' }).click();
    await page.fill('#project-description', 'Model evaluation runs');
    await page.click('[data-testid=project-dialog] button[type=submit]');
    await page.locator('[data-testid=project-dialog] .change-list', { hasText: 'Description: Evaluation runs → Model evaluation runs' }).waitFor();
    await page.click('[data-testid=project-dialog] button:text("Confirm")');
    await eventually(async () => expect(await row.textContent()).toContain('Model evaluation runs'));

    const projectId = new URL((await row.locator('a', { hasText: 'Keys' }).getAttribute('href'))!, e.url).searchParams.get('projectId')!;
    await e.key(admin, { ownerId: member.id, projectId, name: 'eval-key' });
    await row.locator('.row-menu > .menu-button').click();
    await row.getByRole('menuitem', { name: 'Delete' }).click();
    await page.click('[data-testid=confirm-dialog] button.danger');
    await eventually(async () => expect(await page.locator('[data-testid=confirm-dialog] [role=alert]').textContent()).toBe('This project still holds keys. Move or delete its keys first.'));
    await page.click('[data-testid=confirm-dialog] button:text("Cancel")');

    // Its "Keys" link opens the keys list filtered to it.
    await row.locator('a', { hasText: 'Keys' }).click();
    await page.locator('[data-testid=key-row]', { hasText: 'eval-key' }).waitFor();
    expect(await page.locator('[data-testid=filter-project]').inputValue()).toBe(projectId);
  });

  test('an admin can give a token metrics:read, named in both languages and not ticked by default', async () => {
    const { page } = e;
    await e.signIn(admin, '/tokens');
    await page.click('[data-testid=create-token]');
    const dialog = page.locator('[data-testid=create-token-dialog]');
    const box = dialog.locator('input[value="metrics:read"]');
    expect(await box.isChecked()).toBe(false);
    expect(await dialog.locator('input[value="audit:read"]').isChecked()).toBe(true);
    const label = dialog.locator('label.checkbox:has(input[value="metrics:read"])');
    expect(await label.textContent()).toBe('metrics:read Read operational metrics (Prometheus)');
    await page.locator('[data-testid=create-token-dialog] .dialog-actions button', { hasText: 'Cancel' }).click();
    await page.selectOption('[data-testid=lang-switch]', 'zh');
    await eventually(async () => expect(await page.locator('html').getAttribute('lang')).toBe('zh-CN'));
    await page.click('[data-testid=create-token]');
    expect(await label.textContent()).toBe('metrics:read 读取运行指标（Prometheus）');
    await page.selectOption('[data-testid=lang-switch]', 'en');
    await eventually(async () => expect(await page.locator('html').getAttribute('lang')).toBe('en'));
  });

  test('a member manages their own API tokens: the token is shown once with a copy button, then only its prefix', async () => {
    const { page } = e;
    await e.signIn(member, '/tokens');
    await page.click('[data-testid=create-token]');
    const scopes = await page.locator('[data-testid=create-token-dialog] input[type=checkbox]').evaluateAll((els) => els.map((el) => (el as unknown as { value: string }).value));
    expect(scopes).toEqual(['provider-keys:read', 'provider-keys:reveal', 'projects:read']);
    await page.fill('#token-name', 'ci-bot');
    await page.check('[data-testid=create-token-dialog] input[value="provider-keys:reveal"]');
    await page.click('[data-testid=create-token-dialog] button[type=submit]');
    const issued = page.locator('[data-testid=issued-token]');
    await issued.waitFor();
    const token = (await issued.textContent())!;
    expect(token).toMatch(/^pkv_[A-Za-z0-9_-]{43}$/);
    await page.click('[data-testid=copy-token]');
    await eventually(async () => expect(await page.evaluate('navigator.clipboard.readText()')).toBe(token));
    await page.locator('[data-testid=issued-token-dialog] .dialog-actions button', { hasText: 'Close' }).click();
    await issued.waitFor({ state: 'detached' });

    const row = page.locator('[data-testid=token-row]', { hasText: 'ci-bot' });
    await row.waitFor();
    const prefix = ((await row.locator('[data-testid=token-prefix]').textContent()) ?? '').replace('…', '');
    expect(token.startsWith(prefix)).toBe(true);
    expect(prefix.length).toBeLessThan(16);
    expect(await e.pageTraces()).not.toContain(token);

    // The token works as a bearer credential for scripts…
    const ok = await fetch(`${e.url}/api/v1/provider-keys`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    // …until it is revoked, after a confirmation.
    await row.locator('.row-menu > .menu-button').click();
    await row.getByRole('menuitem', { name: 'Revoke' }).click();
    await eventually(async () => expect(await page.locator('[data-testid=confirm-dialog]').textContent()).toContain('This cannot be undone.'));
    await page.click('[data-testid=confirm-dialog] button.danger');
    await eventually(async () => expect(await noticeText(page)).toBe('Token “ci-bot” was revoked.'));
    expect((await fetch(`${e.url}/api/v1/provider-keys`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
  });

  test('members have no admin pages', async () => {
    const { page } = e;
    expect(await page.locator('.mainnav a').allTextContents()).toEqual(['Keys', 'API tokens']);
    await page.goto(`${e.url}/users`);
    await eventually(async () => expect(await page.locator('.page .empty').textContent()).toBe('Your role cannot open this page.'));
    expect(await page.locator('[data-testid=users-table]').count()).toBe(0);
  });

  test('a user whose password an admin set sees only a password form until choosing their own, then signs in with it', async () => {
    const { page } = e;
    const lei = await e.user('member', 'li.lei');
    const adminToken = await e.apiLogin(admin);
    const set = await fetch(`${e.url}/api/v1/users/${lei.id}`, { method: 'PATCH', headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }, body: JSON.stringify({ password: 'chosen-by-the-admin' }) });
    expect(set.status).toBe(200);

    await page.goto(`${e.url}/keys`);
    await page.locator('#login-username, [data-testid=user-menu]').first().waitFor();
    if (await page.locator('[data-testid=user-menu]').count()) await e.signOut();
    await page.fill('#login-username', 'li.lei');
    await page.fill('#login-password', 'chosen-by-the-admin');
    await page.click('form.login-card button[type=submit]');
    await page.locator('#password-required-title').waitFor();
    expect(await page.locator('[data-testid=user-menu]').count()).toBe(0);
    expect(await page.locator('.login-card [role=status], .login-card .alert').first().textContent()).toContain('set by someone else');

    await page.fill('#pw-current', 'chosen-by-the-admin');
    await page.fill('#pw-new', 'chosen-by-lei-herself');
    await page.fill('#pw-repeat', 'chosen-by-lei-herself');
    await page.click('.login-card button[type=submit]');
    await page.locator('#login-username').waitFor();
    await eventually(async () => expect(await page.locator('.login-card').textContent()).toContain('Your password was changed'));
    await e.signIn({ ...lei, password: 'chosen-by-lei-herself' });
    expect(await page.locator('#password-required-title').count()).toBe(0);
  });

  test('no CSP violation or page error happened', () => {
    expect(e.problems).toEqual([]);
  });
});
