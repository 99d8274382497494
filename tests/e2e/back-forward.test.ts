/**
 * Back and Forward with the browser's back/forward cache ON (as in every real browser; Playwright turns it off by
 * default, helpers.ts turns it back on): after a member revealed and showed a secret, left the page by a full page
 * load and signed out, no navigation shows the secret or any of their data. The console's page is sent no-store, so
 * Chromium does not keep it; and should a browser or proxy keep it anyway (simulated by rewriting the header), the page
 * blanked itself on pagehide and asks the server who is signed in before showing anything again.
 */
import type { Page, Route } from 'playwright-core';
import { describeE2E, E2E, eventually, type SeededUser } from './helpers';

jest.setTimeout(180_000);

interface Shown {
  persisted: boolean;
  html: string;
}

describeE2E('web console: Back and Forward never show a secret or a signed-out user’s data', () => {
  let e: E2E;
  let alice: SeededUser;
  let key: { id: string; secret: string; hint: string };

  beforeAll(async () => {
    e = await E2E.start();
    const admin = await e.user('admin', 'root-admin');
    alice = await e.user('member', 'alice');
    const project = await e.project('vault-bfcache');
    key = await e.key(admin, { ownerId: alice.id, projectId: project.id, name: 'alice-bfcache-key' });
    // Runs before the console's own scripts, so its pageshow listener sees the page exactly as it was restored.
    await e.page.addInitScript(`window.__pkvShows = [];
      window.addEventListener('pageshow', (ev) => window.__pkvShows.push({ persisted: ev.persisted, html: document.documentElement.outerHTML }));`);
  });

  afterAll(async () => {
    await e?.close();
  });

  const shows = async (page: Page) => (await page.evaluate('window.__pkvShows')) as Shown[];

  /** Signs alice in, reveals her key and presses Show: the secret is on screen. */
  const revealAndShow = async () => {
    const { page } = e;
    await e.signIn(alice);
    await page.getByTestId('key-row').first().waitFor();
    await page.getByTestId('reveal-button').click();
    await page.getByTestId('secret-toggle').click();
    expect(await page.getByTestId('secret-text').textContent()).toBe(key.secret);
  };

  /** Neither the secret, nor the hint, nor the key's name anywhere in the page; the sign-in form is there. */
  const expectSignedOutAndClean = async () => {
    const { page } = e;
    await page.locator('#login-username').waitFor();
    const traces = await e.pageTraces();
    for (const leak of [key.secret, key.hint, 'alice-bfcache-key', 'vault-bfcache']) expect(traces).not.toContain(leak);
    expect(await page.getByTestId('user-menu').count()).toBe(0);
  };

  test('the page is sent no-store: after sign-out, Back and Forward load it afresh and show the sign-in page', async () => {
    const { page } = e;
    const res = await fetch(`${e.url}/keys`, { headers: { accept: 'text/html' } });
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect((await fetch(`${e.url}/index.html`)).headers.get('cache-control')).toBe('no-store');

    await revealAndShow();
    // A full page load (address bar, bookmark) to another page of the console, then sign out there.
    await page.goto(`${e.url}/tokens`);
    await page.getByTestId('tokens-table').waitFor();
    await e.signOut();

    await page.goBack({ waitUntil: 'commit' });
    await expectSignedOutAndClean();
    expect(new URL(page.url()).pathname).toBe('/keys');
    const reasons = String(await page.evaluate(`JSON.stringify(performance.getEntriesByType('navigation')[0].notRestoredReasons)`));
    expect(reasons).toContain('response-cache-control-no-store');
    expect((await shows(page)).every((s) => !s.persisted)).toBe(true);

    await page.goForward({ waitUntil: 'commit' });
    await expectSignedOutAndClean();
  });

  test('when the page is kept in the back/forward cache anyway, it comes back blank and then shows the sign-in page', async () => {
    const { page } = e;
    // What a browser that caches no-store pages, or a proxy rewriting the header, would do.
    const rewrite = async (route: Route) => {
      if (route.request().resourceType() !== 'document') return route.continue();
      const res = await route.fetch();
      await route.fulfill({ response: res, headers: { ...res.headers(), 'cache-control': 'no-cache' } });
    };
    await page.route(`${e.url}/**`, rewrite);
    try {
      await revealAndShow();
      await page.goto(`${e.url}/tokens`);
      await page.getByTestId('tokens-table').waitFor();

      // Back while still signed in: restored from the cache, without the secret; the list comes back once the session checks out.
      await page.goBack({ waitUntil: 'commit' });
      await eventually(async () => expect((await shows(page)).some((s) => s.persisted)).toBe(true));
      let restored = (await shows(page)).filter((s) => s.persisted);
      for (const s of restored) for (const leak of [key.secret, 'alice-bfcache-key', key.hint]) expect(s.html).not.toContain(leak);
      await page.getByTestId('key-row').first().waitFor();
      expect(await page.getByTestId('reveal-dialog').count()).toBe(0);
      expect(await e.pageTraces()).not.toContain(key.secret);

      // Forward, sign out there, Back: restored from the cache again, blank, and the server says nobody is signed in.
      await page.goForward({ waitUntil: 'commit' });
      await page.getByTestId('tokens-table').waitFor();
      await page.goto(`${e.url}/keys`);
      await page.getByTestId('reveal-button').click();
      await page.getByTestId('secret-toggle').click();
      await page.goto(`${e.url}/tokens`);
      await page.getByTestId('tokens-table').waitFor();
      await e.signOut();
      await page.goBack({ waitUntil: 'commit' });
      await eventually(async () => expect((await shows(page)).filter((s) => s.persisted).length).toBeGreaterThan(0));
      restored = (await shows(page)).filter((s) => s.persisted);
      for (const s of restored) for (const leak of [key.secret, 'alice-bfcache-key', key.hint]) expect(s.html).not.toContain(leak);
      await expectSignedOutAndClean();
      await page.goForward({ waitUntil: 'commit' });
      await expectSignedOutAndClean();
    } finally {
      await page.unroute(`${e.url}/**`, rewrite);
    }
  });

  test('no CSP violation or page error happened, and no secret reached the server log', () => {
    expect(e.problems).toEqual([]);
    expect(e.logText()).not.toContain(key.secret);
  });
});
