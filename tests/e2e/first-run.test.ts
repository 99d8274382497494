/**
 * The first run in headless Chromium against the real server: an empty vault says, for each role, what belongs on
 * each page; the admin gets a setup path (project → users → first key) whose links lead, step by step, to a first
 * key; Add key without a project, or with no one else to own keys, links to where that is fixed.
 */
import crypto from 'node:crypto';
import { axeProblems, describeE2E, E2E, eventually, noticeText, pickOwner, type SeededUser } from './helpers';

jest.setTimeout(240_000);

describeE2E('web console: the first run', () => {
  let e: E2E;
  let admin: SeededUser;
  let waiting: SeededUser;
  let audrey: SeededUser;
  const secret = `sk-${crypto.randomBytes(30).toString('base64url')}`;

  beforeAll(async () => {
    e = await E2E.start();
    // The bootstrap admin that start() created on the empty database, with the password it printed: a true first run.
    expect(e.server.bootstrapPassword).toEqual(expect.any(String));
    admin = { id: '', username: 'admin', password: e.server.bootstrapPassword!, role: 'admin' };
    audrey = await e.user('auditor', 'audrey');
  });

  afterAll(async () => {
    await e?.close();
  });

  const empty = () => e.page.locator('[data-testid=keys-table] .empty');

  test('before any key exists, an auditor is told what will appear, not “nothing here”', async () => {
    const { page } = e;
    await e.signIn(audrey);
    await eventually(async () => expect(await empty().textContent()).toBe('No keys are stored yet. Keys appear here once an admin adds them.'));
    await page.goto(`${e.url}/projects`);
    await eventually(async () => expect(await page.locator('[data-testid=projects-table] .empty').textContent()).toBe('No projects yet.'));
    expect(await page.getByTestId('setup-guide').count()).toBe(0);
  });

  test('the admin lands on the setup path; Add key without a project links to creating one', async () => {
    const { page } = e;
    await e.signIn(admin);
    const guide = page.getByTestId('setup-guide');
    await guide.waitFor();
    expect(await guide.locator('h2').textContent()).toBe('Set up the vault');
    expect(await guide.locator('li').evaluateAll((els) => els.map((el) => `${el.getAttribute('data-testid')}:${el.getAttribute('data-done')}`))).toEqual(['setup-project:false', 'setup-users:false', 'setup-key:false']);
    expect(await page.getByTestId('setup-add-key').isDisabled()).toBe(true);
    for (const lang of ['en', 'zh'] as const) {
      await page.selectOption('[data-testid=lang-switch]', lang);
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme: scheme });
        expect(await axeProblems(page, `setup path ${lang} ${scheme}`)).toEqual([]);
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
    await page.selectOption('[data-testid=lang-switch]', 'en');

    await page.getByTestId('add-key').click();
    const dialog = page.getByTestId('add-key-dialog');
    const noProject = dialog.getByTestId('no-project');
    await noProject.waitFor();
    expect(await noProject.textContent()).toBe('There is no project yet, and every key belongs to one. Create a project');
    expect(await dialog.locator('.help', { hasText: 'You are the only possible owner so far.' }).count()).toBe(1);
    // The link closes the dialog and opens the project form where projects live.
    await noProject.getByRole('link', { name: 'Create a project' }).click();
    await dialog.waitFor({ state: 'detached' });
    await page.getByTestId('project-dialog').waitFor();
    expect(new URL(page.url()).pathname).toBe('/projects');
    expect(await page.evaluate('document.activeElement?.id')).toBe('project-name');
    await page.fill('#project-name', '对话机器人-prod');
    await page.click('[data-testid=project-dialog] button[type=submit]');
    await eventually(async () => expect(await noticeText(page)).toBe('Project “对话机器人-prod” was created.'));
    await eventually(async () => expect(await page.getByTestId('setup-project').getAttribute('data-done')).toBe('true'));
  });

  test('the path goes on to users, then to the first key, and disappears once there is one', async () => {
    const { page } = e;
    await page.getByTestId('setup-users').getByRole('link', { name: 'Add users' }).click();
    await page.getByTestId('add-user-dialog').waitFor();
    expect(new URL(page.url()).pathname).toBe('/users');
    await page.fill('#user-username', 'alice');
    await page.fill('#user-display', '艾丽丝');
    await page.fill('#user-password', 'a-long-enough-password');
    await page.click('[data-testid=add-user-dialog] button[type=submit]');
    await eventually(async () => expect(await noticeText(page)).toBe('User alice was created.'));
    await eventually(async () => expect(await page.getByTestId('setup-users').getAttribute('data-done')).toBe('true'));

    await page.getByTestId('setup-key').getByRole('link', { name: 'Add the first key' }).click();
    const dialog = page.getByTestId('add-key-dialog');
    await dialog.waitFor();
    expect(new URL(page.url()).pathname).toBe('/keys');
    // The only project is already chosen; the new user is on offer as owner.
    expect(await page.locator('#key-project option:checked').textContent()).toBe('对话机器人-prod');
    await pickOwner(page, 'alice');
    await page.selectOption('#key-provider', 'openai');
    await page.fill('#key-name', 'chatbot-openai');
    await page.fill('#key-secret', secret);
    expect(await dialog.getByTestId('hint-preview').textContent()).toBe(`It will be shown as sk-…${secret.slice(-4)}`);
    await page.getByTestId('add-submit').click();
    await dialog.waitFor({ state: 'detached' });
    const row = page.locator('[data-testid=key-row]', { hasText: 'chatbot-openai' });
    await row.waitFor();
    expect(await row.textContent()).toContain('alice');
    await eventually(async () => expect(await page.getByTestId('setup-guide').count()).toBe(0));
    await page.goto(`${e.url}/projects`);
    await page.locator('[data-testid=project-row]').first().waitFor();
    expect(await page.getByTestId('setup-guide').count()).toBe(0);
    expect(await e.pageTraces()).not.toContain(secret);
  });

  test('a member without keys is told how keys reach them, and what API tokens are for', async () => {
    const { page } = e;
    waiting = await e.user('member', 'waiting-member');
    await e.signIn(waiting);
    await eventually(async () => expect(await empty().textContent()).toBe('No keys are assigned to you yet. When an admin adds a key and makes you its owner, it appears here.'));
    expect(await page.getByTestId('setup-guide').count()).toBe(0);
    await page.goto(`${e.url}/tokens`);
    await eventually(async () => expect(await page.locator('[data-testid=tokens-table] .empty').textContent()).toBe('You have no API tokens yet. Create one for each script or service that uses the vault as you.'));
  });

  test('no CSP violation or page error happened, and no secret reached the server log', () => {
    expect(e.problems).toEqual([]);
    expect(e.logText()).not.toContain(secret);
  });
});
