/**
 * The auditor's workflow in headless Chromium (its clock in Asia/Shanghai) against the real server: preset filters
 * for the usual questions agree with the API, reveals by someone other than the key's owner are marked, filters
 * apply as they change, times carry their zone (UTC+8) in both languages and in the date filters, the chain head
 * can be copied, and a CSV export opens in a spreadsheet with names and Chinese text intact (parsed with csv-parse:
 * byte order mark, names beside ids, CJK).
 */
import crypto from 'node:crypto';
import { parse } from 'csv-parse/sync';
import { describeE2E, downloadText, E2E, eventually, type SeededUser } from './helpers';

jest.setTimeout(240_000);

const ZONE = 'Asia/Shanghai';

describeE2E('web console: the auditor’s workflow', () => {
  let e: E2E;
  let admin: SeededUser;
  let alice: SeededUser;
  let bob: SeededUser;
  let audrey: SeededUser;
  let adminToken: string;
  let project: { id: string; name: string };
  let aliceKey: { id: string; secret: string };
  let bobKey: { id: string; secret: string };

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${e.url}/api/v1${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (res.status === 204 ? null : await res.json()) as any };
  };
  const apiIds = async (query: string) => ((await call(adminToken, 'GET', `/audit-events?limit=200&${query}`)).body.items as Array<{ id: string }>).map((x) => x.id);

  beforeAll(async () => {
    e = await E2E.start({ PKV_REVEAL_RATE_LIMIT: '3' }, { timezoneId: ZONE });
    admin = await e.user('admin', 'root-admin');
    alice = await e.user('member', 'alice', '艾丽丝');
    bob = await e.user('member', 'bob');
    audrey = await e.user('auditor', 'audrey', '审计王');
    project = await e.project('对话机器人-生产', '客服');
    aliceKey = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: '方舟-对话-主密钥', provider: 'volcengine-ark', secret: crypto.randomUUID() });
    bobKey = await e.key(admin, { ownerId: bob.id, projectId: project.id, name: 'bob-openai' });
    adminToken = await e.apiLogin(admin);
    const aliceToken = await e.apiLogin(alice);
    const bobToken = await e.apiLogin(bob);
    expect((await call(aliceToken, 'POST', `/provider-keys/${aliceKey.id}/reveal`, {})).status).toBe(200);
    expect((await call(adminToken, 'POST', `/provider-keys/${aliceKey.id}/reveal`, { reason: '排查 INC-7：核对密钥是否有效' })).status).toBe(200);
    expect((await call(adminToken, 'POST', `/provider-keys/${aliceKey.id}/reveal`, {})).status).toBe(400);
    expect((await call(bobToken, 'POST', `/provider-keys/${aliceKey.id}/reveal`, {})).status).toBe(404);
    // Bob's refused attempt counts towards his 3 a minute too.
    for (let i = 0; i < 2; i++) expect((await call(bobToken, 'POST', `/provider-keys/${bobKey.id}/reveal`, {})).status).toBe(200);
    expect((await call(bobToken, 'POST', `/provider-keys/${bobKey.id}/reveal`, {})).status).toBe(429);
    await e.container.audit.chain.sealPending();
  });

  afterAll(async () => {
    await e?.close();
  });

  const rows = () => e.page.locator('[data-testid=audit-row]');
  const attrs = (name: string) => rows().evaluateAll((els, n) => els.map((el) => el.getAttribute(n as string)), name);
  const shownIds = async () => {
    const ids: string[] = [];
    for (const row of await rows().all()) {
      await row.locator('button.link').click();
      ids.push(((await e.page.locator('.details-row dd code').first().textContent()) ?? '').trim());
    }
    return ids;
  };
  const settled = () => eventually(async () => expect(await e.page.getByTestId('audit-table').getAttribute('aria-busy')).toBe('false'));

  test('presets answer the usual questions exactly as the API does, and say which one is on', async () => {
    const { page } = e;
    await e.signIn(audrey, '/audit');
    await rows().first().waitFor();
    // There is no Apply button: filters take effect as they change.
    expect(await page.getByRole('button', { name: 'Apply' }).count()).toBe(0);

    await page.getByTestId('preset-reveals').click();
    await eventually(async () => expect(new Set(await attrs('data-action'))).toEqual(new Set(['provider_key.reveal'])));
    await settled();
    expect(await page.getByTestId('preset-reveals').getAttribute('aria-pressed')).toBe('true');
    expect(await page.getByTestId('preset-all').getAttribute('aria-pressed')).toBe('false');
    expect(await shownIds()).toEqual(await apiIds('action=provider_key.reveal'));

    await page.getByTestId('preset-admin-others').click();
    await eventually(async () => expect(await rows().count()).toBe(2));
    await settled();
    expect(await shownIds()).toEqual(await apiIds('action=provider_key.reveal&actorRole=admin&byOwner=false'));
    expect(await attrs('data-outcome')).toEqual(['denied', 'success']);
    for (const text of await rows().allTextContents()) expect(text).toMatch(/root-admin.*方舟-对话-主密钥.*alice/);
    expect(new URL(page.url()).searchParams.get('byOwner')).toBe('false');

    await page.getByTestId('preset-refused').click();
    await eventually(async () => expect(new Set(await attrs('data-outcome'))).toEqual(new Set(['denied', 'rate_limited'])));
    await settled();
    expect(await shownIds()).toEqual(await apiIds('outcome=denied,rate_limited'));
    expect(await page.inputValue('[data-testid=audit-outcome]')).toBe('denied,rate_limited');
  });

  test('the owner column marks reveals by someone other than the key’s owner, and only those', async () => {
    const { page } = e;
    await page.getByTestId('preset-reveals').click();
    await eventually(async () => expect(await rows().count()).toBe(7));
    await settled();
    const marked = page.locator('[data-testid=audit-row][data-other=true]');
    // The admin's two, bob's refused attempt on alice's key; never alice's or bob's own.
    expect(await marked.count()).toBe(3);
    for (const row of await marked.all()) {
      expect(await row.getByTestId('not-owner').textContent()).toBe('not the owner');
      expect(await row.textContent()).toMatch(/alice/);
    }
    for (const row of await page.locator('[data-testid=audit-row][data-other=false]').all()) expect(await row.getByTestId('not-owner').count()).toBe(0);
  });

  test('times name their zone, the same in both languages and in the date filters', async () => {
    const { page } = e;
    const [first] = (await call(adminToken, 'GET', '/audit-events?limit=1&action=provider_key.reveal')).body.items as Array<{ at: string }>;
    const inShanghai = new Date(Date.parse(first.at) + 8 * 3600_000).toISOString();
    const expected = `${inShanghai.slice(0, 10)} ${inShanghai.slice(11, 19)} UTC+8`;
    const firstTime = () => rows().first().locator('td').first().textContent();
    expect(await firstTime()).toBe(expected);
    expect(await page.locator('[data-testid=audit-filters] label', { has: page.getByTestId('audit-from') }).locator('span').textContent()).toBe('From (UTC+8)');
    await page.selectOption('[data-testid=lang-switch]', 'zh');
    await eventually(async () => expect(await page.locator('h1').textContent()).toBe('审计记录'));
    expect(await firstTime()).toBe(expected);
    expect(await page.locator('[data-testid=audit-filters] label', { has: page.getByTestId('audit-to') }).locator('span').textContent()).toBe('结束时间 (UTC+8)');
    await page.selectOption('[data-testid=lang-switch]', 'en');

    // A time typed in the filter is read in that zone: 08:00 in Shanghai is midnight UTC.
    await page.getByTestId('audit-from').fill('2030-01-02T08:00');
    await eventually(async () => expect(new URL(page.url()).searchParams.get('from')).toBe('2030-01-02T00:00:00.000Z'));
    await page.locator('[data-testid=audit-table] td.empty').waitFor();
    await page.getByTestId('audit-from').fill('');
    await eventually(async () => expect(await rows().count()).toBe(7));
  });

  test('the chain head is copied as {seq, hash}', async () => {
    const { page } = e;
    await page.getByTestId('verify-button').click();
    const result = page.getByTestId('verify-result');
    await eventually(async () => expect(await result.getAttribute('data-ok')).toBe('true'));
    const head = /seq (\d+) · ([0-9a-f]{64})/.exec((await page.getByTestId('verify-head').textContent()) ?? '')!;
    await page.getByTestId('copy-head').click();
    await eventually(async () => expect(JSON.parse(String(await page.evaluate('navigator.clipboard.readText()')))).toEqual({ seq: Number(head[1]), hash: head[2] }));
    expect(await result.textContent()).toMatch(/The trail is intact: \d+ sealed events checked\./);
  });

  test('a CSV export of the reveals opens in a spreadsheet with the names and the Chinese text intact', async () => {
    const { page } = e;
    const csv = await downloadText(page, () => page.getByTestId('export-csv').click());
    expect(csv.name).toMatch(/\.csv$/);
    // UTF-8 with a byte order mark: Excel then reads it as UTF-8.
    expect(csv.text.charCodeAt(0)).toBe(0xfeff);
    const records = parse(csv.text, { bom: true, columns: true }) as Array<Record<string, string>>;
    expect(records).toHaveLength(7);
    expect(Object.keys(records[0])).toEqual(expect.arrayContaining(['keyId', 'keyName', 'projectId', 'projectName', 'ownerId', 'ownerUsername']));
    const keys = Object.keys(records[0]);
    expect(keys.indexOf('keyName')).toBe(keys.indexOf('keyId') + 1);
    for (const r of records) {
      expect(r.action).toBe('provider_key.reveal');
      expect(r.keyName).toBe(r.keyId === aliceKey.id ? '方舟-对话-主密钥' : 'bob-openai');
      // A rate-limited attempt is refused before the key is read: it names the key only.
      expect(r.projectName).toBe(r.projectId ? '对话机器人-生产' : '');
      expect(r.ownerUsername).toBe(r.ownerId ? (r.keyId === aliceKey.id ? 'alice' : 'bob') : '');
    }
    expect(records.filter((r) => r.projectName === '对话机器人-生产')).toHaveLength(6);
    expect(records.find((r) => r.outcome === 'success' && r.actorUsername === 'root-admin')!.reason).toBe('排查 INC-7：核对密钥是否有效');
    expect(csv.text).not.toContain(aliceKey.secret);
    expect(csv.text).not.toContain(bobKey.secret);
  });

  test('no CSP violation or page error happened, and no secret reached the server log', () => {
    expect(e.problems).toEqual([]);
    for (const s of [aliceKey.secret, bobKey.secret]) expect(e.logText()).not.toContain(s);
  });
});
