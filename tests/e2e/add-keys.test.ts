/**
 * An admin entering many console-issued keys, in headless Chromium against the real server: the owner is found by
 * typing part of a username or display name, "Add and add another" keeps owner, project and provider and starts the
 * next key empty, a pasted value that does not look like the provider's key is flagged before saving (a Volcengine
 * AK/SK pair where an Ark API key belongs, an OpenAI key without sk-) without blocking a deliberate save, and the
 * hint shown before saving is the one the server stores.
 */
import crypto from 'node:crypto';
import { describeE2E, E2E, eventually, type SeededUser } from './helpers';

jest.setTimeout(240_000);

describeE2E('web console: adding many keys', () => {
  let e: E2E;
  let admin: SeededUser;
  let zhang: SeededUser;
  let project: { id: string; name: string };
  let token: string;
  const secrets: string[] = [];

  beforeAll(async () => {
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin');
    for (const [name, display] of [['li.na', '李娜'], ['wang.fang', '王芳'], ['chen.jie', '陈杰'], ['liu.yang', '刘洋'], ['zhao.lei', '赵磊']] as const) await e.user('member', name, display);
    zhang = await e.user('member', 'zhang.wei', '张伟');
    await e.user('auditor', 'zhang.audit', '张审计');
    await e.project('alpha');
    project = await e.project('ark-eval');
    token = await e.apiLogin(admin);
  });

  afterAll(async () => {
    await e?.close();
  });

  const listed = async () => {
    const res = await fetch(`${e.url}/api/v1/provider-keys?limit=200`, { headers: { authorization: `Bearer ${token}` } });
    return ((await res.json()) as { items: Array<{ name: string; ownerId: string; projectId: string; provider: string; hint: string }> }).items;
  };

  test('the owner picker finds people by part of a name or display name, and offers no auditor', async () => {
    const { page } = e;
    await e.signIn(admin);
    await page.getByTestId('add-key').click();
    await page.getByTestId('add-key-dialog').waitFor();
    const options = () => page.locator('#key-owner ~ [role=listbox] [role=option]').allTextContents();
    await page.fill('#key-owner', 'zhang');
    await eventually(async () => expect(await options()).toEqual(['zhang.wei · 张伟']));
    await page.fill('#key-owner', '芳');
    await eventually(async () => expect(await options()).toEqual(['wang.fang · 王芳']));
    await page.fill('#key-owner', 'nobody-like-this');
    await eventually(async () => expect(await options()).toEqual(['No active admin or member matches.']));
    // Chosen with the keyboard: type, arrow, Enter.
    await page.fill('#key-owner', '张');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    expect(await page.inputValue('#key-owner')).toBe('zhang.wei');
  });

  test('a Volcengine AK/SK pair pasted as an Ark API key is flagged before saving; the first press saves nothing', async () => {
    const { page } = e;
    const dialog = page.getByTestId('add-key-dialog');
    await page.selectOption('#key-project', project.id);
    await page.selectOption('#key-provider', 'volcengine-ark');
    await page.fill('#key-name', 'ark-batch-1');
    // An AK is AKLT then letters and digits: a base64url '-' or '_' early in it hid the AK in about one run in five.
    const aksk = `AKLT${crypto.randomBytes(32).toString('hex')}\n${crypto.randomBytes(40).toString('base64')}`;
    secrets.push(aksk);
    await page.fill('#key-secret', aksk);
    const warning = dialog.getByTestId('shape-warning');
    await eventually(async () => expect(await warning.textContent()).toContain('This looks like a Volcengine access key pair (AK/SK, the AK starting with AKLT), not a Volcengine Ark API key.'));
    expect(await page.getAttribute('#key-secret', 'aria-describedby')).toBe('key-secret-check');
    await page.getByTestId('add-submit').click();
    await eventually(async () => expect(await page.getByTestId('add-submit').textContent()).toBe('Add anyway'));
    expect(await warning.textContent()).toContain('If it is right, add it anyway.');
    expect(await listed()).toEqual([]);

    // The right value: the warning goes, and the button is plain "Add key" again.
    const ark = crypto.randomUUID();
    secrets.push(ark);
    await page.fill('#key-secret', ark);
    await eventually(async () => expect(await warning.count()).toBe(0));
    expect(await page.getByTestId('add-submit').textContent()).toBe('Add key');
    expect(await dialog.getByTestId('hint-preview').textContent()).toBe(`It will be shown as …${ark.slice(-4)}`);
  });

  test('“Add and add another” keeps owner, project and provider, empties the rest and returns to the name', async () => {
    const { page } = e;
    const dialog = page.getByTestId('add-key-dialog');
    await page.fill('#key-remark', 'first of the batch');
    await page.getByTestId('add-another').click();
    const added = dialog.getByTestId('added-notice');
    await eventually(async () => expect(await added.textContent()).toMatch(/^Key “ark-batch-1” was added \(…[0-9a-f]{4}\)\. Owner, project and provider are kept for the next one\.$/));
    expect(await page.inputValue('#key-owner')).toBe('zhang.wei');
    expect(await page.inputValue('#key-project')).toBe(project.id);
    expect(await page.inputValue('#key-provider')).toBe('volcengine-ark');
    for (const f of ['#key-name', '#key-secret', '#key-remark', '#key-expires']) expect(await page.inputValue(f)).toBe('');
    expect(await page.evaluate('document.activeElement?.id')).toBe('key-name');

    for (let i = 2; i <= 3; i++) {
      const s = crypto.randomUUID();
      secrets.push(s);
      await page.keyboard.type(`ark-batch-${i}`);
      await page.fill('#key-secret', s);
      await page.getByTestId('add-another').click();
      await eventually(async () => expect(await added.textContent()).toContain(`Key “ark-batch-${i}” was added (…${s.slice(-4)})`));
    }
    const keys = (await listed()).filter((k) => k.name.startsWith('ark-batch-'));
    expect(keys.map((k) => k.name).sort()).toEqual(['ark-batch-1', 'ark-batch-2', 'ark-batch-3']);
    for (const k of keys) expect(k).toMatchObject({ ownerId: zhang.id, projectId: project.id, provider: 'volcengine-ark' });
    expect(await e.pageTraces()).not.toContain(secrets[secrets.length - 1]);
  });

  test('an OpenAI key without sk- is flagged; a deliberate second press saves it; the previewed hint is the stored one', async () => {
    const { page } = e;
    const dialog = page.getByTestId('add-key-dialog');
    await page.selectOption('#key-provider', 'openai');
    await page.fill('#key-name', 'openai-odd');
    const odd = `proj-${crypto.randomBytes(30).toString('base64url')}`;
    secrets.push(odd);
    await page.fill('#key-secret', `  ${odd}\n`);
    await eventually(async () => expect(await dialog.getByTestId('shape-warning').textContent()).toContain('OpenAI keys start with “sk-”; this does not.'));
    const preview = ((await dialog.getByTestId('hint-preview').textContent()) ?? '').replace('It will be shown as ', '');
    expect(preview).toBe(`…${odd.slice(-4)}`);
    await page.getByTestId('add-submit').click();
    await eventually(async () => expect(await page.getByTestId('add-submit').textContent()).toBe('Add anyway'));
    await page.getByTestId('add-submit').click();
    await dialog.waitFor({ state: 'detached' });
    const saved = (await listed()).find((k) => k.name === 'openai-odd');
    expect(saved).toMatchObject({ provider: 'openai', ownerId: zhang.id, hint: preview });
    await page.locator('[data-testid=key-row]', { hasText: 'openai-odd' }).waitFor();
    expect(await page.locator('[data-testid=key-row]', { hasText: 'ark-batch-' }).count()).toBe(3);
  });

  test('no CSP violation or page error happened, and no secret reached the page or the server log', async () => {
    expect(e.problems).toEqual([]);
    const log = e.logText();
    const traces = await e.pageTraces();
    for (const s of secrets) {
      expect(log).not.toContain(s);
      expect(traces).not.toContain(s);
    }
  });
});
