/**
 * The console's two long lists in headless Chromium against the real server: on Keys the search box and the
 * provider and status filters narrow the table to exactly the matching keys, paging walks forward and back
 * without repeating or losing a row, and a member sees only their own keys; on Audit the project filter and the
 * `to` bound narrow the trail, and paging agrees with GET /audit-events page by page.
 */
import crypto from 'node:crypto';
import { describeE2E, E2E, eventually, WAIT_MS, type SeededUser } from './helpers';

jest.setTimeout(180_000);

interface Seeded {
  id: string;
  name: string;
  projectId: string;
  provider: 'openai' | 'anthropic';
  ownerId: string;
  disabled: boolean;
}

const sorted = (ids: readonly string[]) => [...ids].sort();

describeE2E('web console: key and audit lists (search, filters, paging)', () => {
  let e: E2E;
  let admin: SeededUser;
  let alice: SeededUser;
  let bob: SeededUser;
  let audrey: SeededUser;
  let alpha: { id: string; name: string };
  let beta: { id: string; name: string };
  let adminToken: string;
  let aliceToken: string;
  const seeded: Seeded[] = [];
  const secrets: string[] = [];
  // The first minute boundary after the seeded history: rows before it are "batch A", rows made after it "batch B".
  let boundary: number;

  const api = async (token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${e.url}/api/v1${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: res.status === 204 ? null : await res.json() };
  };

  /** Every id the API lists for `path` (all pages, newest first). */
  const listIds = async (token: string, path: string): Promise<string[]> => {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const res = await api(token, 'GET', `${path}${sep}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(res.status).toBe(200);
      ids.push(...(res.body.items as Array<{ id: string }>).map((x) => x.id));
      cursor = res.body.nextCursor;
    } while (cursor);
    return ids;
  };

  /** The API's own pages of `size`, as the console's pager should show them. */
  const pagesOf = async (token: string, path: string, size: number): Promise<string[][]> => {
    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const res = await api(token, 'GET', `${path}${sep}limit=${size}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      expect(res.status).toBe(200);
      pages.push((res.body.items as Array<{ id: string }>).map((x) => x.id));
      cursor = res.body.nextCursor;
    } while (cursor);
    return pages;
  };

  const addKey = async (i: number, projectId: string, provider: Seeded['provider'], ownerId: string, name: string): Promise<Seeded> => {
    const secret = provider === 'anthropic' ? `sk-ant-${crypto.randomBytes(24).toString('base64url')}` : `sk-${crypto.randomBytes(24).toString('base64url')}`;
    secrets.push(secret);
    const res = await api(adminToken, 'POST', '/provider-keys', { ownerId, projectId, name, provider, secret, remark: `seed ${i}` });
    expect(res.status).toBe(201);
    return { id: res.body.id, name, projectId, provider, ownerId, disabled: false };
  };

  beforeAll(async () => {
    e = await E2E.start();
    admin = await e.user('admin', 'root-admin');
    alice = await e.user('member', 'alice');
    bob = await e.user('member', 'bob');
    audrey = await e.user('auditor', 'audrey');
    alpha = await e.project('alpha-prod');
    beta = await e.project('beta-staging');
    adminToken = await e.apiLogin(admin);
    aliceToken = await e.apiLogin(alice);
    // 34 keys through the API: two projects, two providers, two owners, a searchable name on every fifth, three disabled.
    for (let i = 0; i < 34; i++) {
      const name = i % 5 === 0 ? `billing-${String(i).padStart(2, '0')}` : `svc-${String(i).padStart(2, '0')}`;
      seeded.push(await addKey(i, i % 2 ? beta.id : alpha.id, i % 3 === 0 ? 'anthropic' : 'openai', i % 4 < 2 ? alice.id : bob.id, name));
    }
    for (const i of [4, 13, 27]) {
      expect((await api(adminToken, 'PATCH', `/provider-keys/${seeded[i].id}`, { status: 'disabled' })).status).toBe(200);
      seeded[i].disabled = true;
    }
    boundary = (Math.floor(Date.now() / 60_000) + 1) * 60_000;
  });

  afterAll(async () => {
    await e?.close();
  });

  const keyIds = () => e.page.locator('[data-testid=key-row]').evaluateAll((els) => els.map((el) => el.getAttribute('data-key-id') ?? ''));
  const idsOf = (pred: (k: Seeded) => boolean) => seeded.filter(pred).map((k) => k.id);
  const pageLabel = () => e.page.getByTestId('pager-page');
  const nextButton = () => e.page.getByRole('button', { name: /Next/ });
  const prevButton = () => e.page.getByRole('button', { name: /Previous/ });
  /** Waits for the table to show exactly `ids` (in this order) on page `n`, not loading. */
  const expectKeyRows = async (ids: string[], n = 1) =>
    eventually(async () => {
      expect(await e.page.getByTestId('keys-table').getAttribute('aria-busy')).toBe('false');
      expect(await pageLabel().textContent()).toBe(`Page ${n}`);
      expect(await keyIds()).toEqual(ids);
    });

  test('the admin’s search box, provider filter and status filter each narrow the table to exactly the matching keys', async () => {
    const { page } = e;
    await e.signIn(admin);
    const search = page.getByRole('searchbox', { name: 'Search' });
    const provider = page.getByRole('combobox', { name: 'Provider', exact: true });
    const status = page.getByRole('combobox', { name: 'Status', exact: true });

    // Search (on the name, as the API’s q does): the seven billing-* keys, nothing else; the term never reaches the URL.
    await search.fill('billing');
    const billing = idsOf((k) => k.name.startsWith('billing-'));
    expect(billing).toHaveLength(7);
    await eventually(async () => expect(sorted(await keyIds())).toEqual(sorted(billing)));
    expect(await keyIds()).toEqual(await listIds(adminToken, '/provider-keys?q=billing'));
    expect(page.url()).not.toContain('billing');
    await search.fill('no-such-key');
    await eventually(async () => expect(await page.locator('[data-testid=keys-table] td.empty').textContent()).toBe('Nothing matches these filters.'));
    expect(await keyIds()).toEqual([]);
    await search.fill('');

    // Provider: the twelve Anthropic keys.
    await provider.selectOption('anthropic');
    const anthropic = idsOf((k) => k.provider === 'anthropic');
    expect(anthropic).toHaveLength(12);
    await eventually(async () => expect(sorted(await keyIds())).toEqual(sorted(anthropic)));
    expect(await keyIds()).toEqual(await listIds(adminToken, '/provider-keys?provider=anthropic'));
    expect(new URL(page.url()).searchParams.get('provider')).toBe('anthropic');
    for (const text of await page.locator('[data-testid=key-row] td:nth-child(2)').allTextContents()) expect(text).toBe('Anthropic');

    // Provider and status together: of those, only the disabled one (i = 27).
    await status.selectOption('disabled');
    await eventually(async () => expect(await keyIds()).toEqual([seeded[27].id]));

    // Status alone: the three disabled keys, across both providers and projects.
    await provider.selectOption('');
    const disabled = idsOf((k) => k.disabled);
    await eventually(async () => expect(sorted(await keyIds())).toEqual(sorted(disabled)));
    expect(await keyIds()).toEqual(await listIds(adminToken, '/provider-keys?status=disabled'));
    for (const text of await page.locator('[data-testid=key-row] td:nth-child(6)').allTextContents()) expect(text).toContain('Disabled');

    await status.selectOption('active');
    const active = idsOf((k) => !k.disabled);
    expect(active).toHaveLength(31);
    // 31 rows: the first page holds 25 of them.
    await eventually(async () => expect(await keyIds()).toEqual((await listIds(adminToken, '/provider-keys?status=active')).slice(0, 25)));
    await status.selectOption('');
    await eventually(async () => expect(new URL(page.url()).search).toBe(''));
  });

  test('paging forward and back shows the API’s pages in order, no key repeated or lost', async () => {
    const pages = await pagesOf(adminToken, '/provider-keys', 25);
    expect(pages.map((p) => p.length)).toEqual([25, 9]);
    expect(sorted(pages.flat())).toEqual(sorted(seeded.map((k) => k.id)));

    await expectKeyRows(pages[0], 1);
    expect(await prevButton().isDisabled()).toBe(true);
    await nextButton().click();
    await expectKeyRows(pages[1], 2);
    expect(await nextButton().isDisabled()).toBe(true);
    await prevButton().click();
    await expectKeyRows(pages[0], 1);
    await nextButton().click();
    await expectKeyRows(pages[1], 2);

    // A filter change goes back to the first page.
    await e.page.getByRole('combobox', { name: 'Project', exact: true }).selectOption(beta.id);
    const betaIds = idsOf((k) => k.projectId === beta.id);
    await eventually(async () => {
      expect(await pageLabel().textContent()).toBe('Page 1');
      expect(sorted(await keyIds())).toEqual(sorted(betaIds));
    });
    await e.page.getByRole('combobox', { name: 'Project', exact: true }).selectOption('');
    await expectKeyRows(pages[0], 1);
  });

  test('a member sees only her own keys, has no owner filter, and her filters stay within them', async () => {
    const { page } = e;
    await e.signIn(alice);
    const own = idsOf((k) => k.ownerId === alice.id);
    expect(own).toHaveLength(18);
    await eventually(async () => expect(sorted(await keyIds())).toEqual(sorted(own)));
    expect(await keyIds()).toEqual(await listIds(aliceToken, '/provider-keys'));
    expect(await page.getByTestId('filter-owner').count()).toBe(0);
    for (const text of await page.locator('[data-testid=key-row] td:nth-child(4)').allTextContents()) expect(text).toBe('alice (you)');
    expect(await nextButton().isDisabled()).toBe(true);

    await page.getByRole('combobox', { name: 'Provider', exact: true }).selectOption('anthropic');
    await eventually(async () => expect(sorted(await keyIds())).toEqual(sorted(idsOf((k) => k.ownerId === alice.id && k.provider === 'anthropic'))));
    await page.getByRole('searchbox', { name: 'Search' }).fill('billing');
    await eventually(async () => expect(sorted(await keyIds())).toEqual(sorted(idsOf((k) => k.ownerId === alice.id && k.provider === 'anthropic' && k.name.startsWith('billing-')))));
    // bob's billing keys exist, but not for her.
    expect(idsOf((k) => k.ownerId === bob.id && k.name.startsWith('billing-')).length).toBeGreaterThan(0);
    for (const id of idsOf((k) => k.ownerId === bob.id)) expect(await keyIds()).not.toContain(id);
  });

  test('the audit project filter and the `to` bound narrow the trail, and paging agrees with GET /audit-events', async () => {
    const { page } = e;
    // Batch B: three more keys in alpha-prod, made after the boundary minute the `to` filter will name.
    const wait = boundary + 100 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const late: Seeded[] = [];
    for (let i = 0; i < 3; i++) late.push(await addKey(100 + i, alpha.id, 'openai', bob.id, `late-${i}`));

    await e.signIn(audrey, '/audit');
    const rows = () => page.locator('[data-testid=audit-row]');
    /** The event ids of the rows shown, read from each row's details. */
    const auditIds = async (): Promise<string[]> => {
      const ids: string[] = [];
      const n = await rows().count();
      for (let i = 0; i < n; i++) {
        const row = rows().nth(i);
        await row.getByRole('button', { name: 'Details' }).click();
        ids.push(((await row.locator('xpath=following-sibling::tr[1][contains(@class, "details-row")]').locator('dd code').first().textContent({ timeout: WAIT_MS })) ?? '').trim());
      }
      if (n) await rows().nth(n - 1).getByRole('button', { name: 'Details' }).click();
      return ids;
    };
    const settled = async (n: number) =>
      eventually(async () => {
        expect(await page.getByTestId('audit-table').getAttribute('aria-busy')).toBe('false');
        expect(await pageLabel().textContent()).toBe(`Page ${n}`);
      });
    await rows().first().waitFor();

    // Project: the project's own creation, and every key create and update in it, from both batches.
    const inAlpha = seeded.filter((k) => k.projectId === alpha.id);
    const alphaActions = { 'project.create': 1, 'provider_key.create': inAlpha.length + late.length, 'provider_key.update': inAlpha.filter((k) => k.disabled).length };
    expect(alphaActions).toEqual({ 'project.create': 1, 'provider_key.create': 17 + 3, 'provider_key.update': 1 });
    const expectedAlpha = 1 + 20 + 1;
    const actionCounts = async () =>
      (await rows().evaluateAll((els) => els.map((el) => el.getAttribute('data-action') ?? ''))).reduce<Record<string, number>>((m, a) => ({ ...m, [a]: (m[a] ?? 0) + 1 }), {});
    // Filters apply as they change.
    await page.getByRole('combobox', { name: 'Project', exact: true }).selectOption(alpha.id);
    await eventually(async () => expect(await rows().count()).toBe(expectedAlpha));
    await settled(1);
    for (const text of await rows().locator('td:nth-child(7)').allTextContents()) expect(text).toBe('alpha-prod');
    expect(new URL(page.url()).searchParams.get('projectId')).toBe(alpha.id);
    const alphaIds = await auditIds();
    expect(alphaIds).toEqual(await listIds(adminToken, `/audit-events?projectId=${alpha.id}`));
    expect(await actionCounts()).toEqual(alphaActions);

    // `to` (exclusive) at the boundary minute: batch B falls away, batch A stays.
    const to = new Date(boundary).toISOString();
    await page.getByTestId('audit-to').fill(to.slice(0, 16));
    await eventually(async () => expect(await rows().count()).toBe(expectedAlpha - late.length));
    await settled(1);
    expect(new URL(page.url()).searchParams.get('to')).toBe(to);
    const beforeIds = await auditIds();
    const apiBefore = await listIds(adminToken, `/audit-events?projectId=${alpha.id}&to=${encodeURIComponent(to)}`);
    expect(beforeIds).toEqual(apiBefore);
    expect(await actionCounts()).toEqual({ ...alphaActions, 'provider_key.create': inAlpha.length });
    // The rows it dropped are exactly the three late creates, the newest three.
    expect(alphaIds.slice(late.length)).toEqual(beforeIds);
    for (const text of await rows().allTextContents()) expect(text).not.toMatch(/late-\d/);

    // Paging the whole trail: page by page equal to the API's own pages of 25, then back to the first.
    await page.getByRole('button', { name: 'Reset' }).click();
    const pages = await pagesOf(adminToken, '/audit-events', 25);
    expect(pages.length).toBeGreaterThanOrEqual(2);
    await eventually(async () => expect(await rows().count()).toBe(pages[0].length));
    await settled(1);
    expect(await auditIds()).toEqual(pages[0]);
    expect(await prevButton().isDisabled()).toBe(true);
    const seen: string[] = [...pages[0]];
    for (let n = 2; n <= pages.length; n++) {
      await nextButton().click();
      await settled(n);
      await eventually(async () => expect(await rows().count()).toBe(pages[n - 1].length));
      const ids = await auditIds();
      expect(ids).toEqual(pages[n - 1]);
      seen.push(...ids);
    }
    expect(await nextButton().isDisabled()).toBe(true);
    expect(new Set(seen).size).toBe(seen.length);
    expect(sorted(seen)).toEqual(sorted(await listIds(adminToken, '/audit-events')));
    for (let n = pages.length - 1; n >= 1; n--) {
      await prevButton().click();
      await settled(n);
      expect(await auditIds()).toEqual(pages[n - 1]);
    }
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
