import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { loadConfig } from '../../src/config';
import { start, type RunningServer } from '../../src/main';
import { CaptureTransport, createLogger } from '../../src/logger';
import { cliActor } from '../../src/modules/auth/actor';
import { CONSOLE_DIR } from '../../src/http/console';
import type { Role } from '../../src/modules/users/user.entity';
import type { Provider } from '../../src/modules/provider-keys/providers';
import { createTestDatabase, testEnv, type TestDatabase } from '../support/test-app';

/** Chromium from Debian; never downloaded by Playwright. */
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Without Chromium the browser tests skip locally, but on CI (CI=true) they run and fail loudly. */
export const describeE2E: jest.Describe = fs.existsSync(CHROMIUM) || process.env.CI === 'true' ? describe : describe.skip;

/** Every wait in these tests is bounded by these. */
export const WAIT_MS = 10_000;

export interface SeededUser {
  id: string;
  username: string;
  password: string;
  role: Role;
}

/**
 * One test file's world: the real server (src/main.ts start) on a fresh SQLite database on a free port, and
 * one headless Chromium with a fresh profile. Users sign in and out of the same browser in turn.
 */
export class E2E {
  readonly problems: string[] = [];
  private constructor(
    readonly server: RunningServer,
    readonly tdb: TestDatabase,
    readonly capture: CaptureTransport,
    readonly browser: BrowserContext,
    readonly page: Page,
    private readonly profileDir: string,
  ) {}

  static async start(env: Record<string, string> = {}, opts: { chromiumArgs?: string[]; timezoneId?: string } = {}): Promise<E2E> {
    if (!fs.existsSync(path.join(CONSOLE_DIR, 'index.html'))) throw new Error(`the web console is not built (${CONSOLE_DIR}); run \`npm run build\` first`);
    const tdb = await createTestDatabase('sqlite');
    const config = loadConfig(testEnv(tdb, env), { generateDevSecrets: false });
    const capture = new CaptureTransport();
    const server = await start(config, createLogger('info', [capture]), { port: 0, host: '127.0.0.1' });
    const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-e2e-profile-'));
    let browser: BrowserContext;
    try {
      browser = await chromium.launchPersistentContext(profileDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: [...CHROMIUM_ARGS, ...(opts.chromiumArgs ?? [])],
        // Playwright turns the back/forward cache off by default; real browsers have it, and Back must be safe with it.
        ignoreDefaultArgs: ['--disable-back-forward-cache'],
        viewport: { width: 1360, height: 860 },
        locale: 'en-US',
        timezoneId: opts.timezoneId ?? 'UTC',
        acceptDownloads: true,
        timeout: 30_000,
      });
    } catch (err) {
      await server.close();
      await tdb.drop();
      fs.rmSync(profileDir, { recursive: true, force: true });
      throw err;
    }
    await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(WAIT_MS);
    page.setDefaultNavigationTimeout(WAIT_MS);
    const e2e = new E2E(server, tdb, capture, browser, page, profileDir);
    // A CSP violation or an uncaught exception anywhere fails the file (checked in afterAll by the tests).
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) e2e.problems.push(`CSP: ${m.text()}`);
    });
    page.on('pageerror', (err) => e2e.problems.push(`page error: ${err.message}`));
    return e2e;
  }

  get url(): string {
    return this.server.url;
  }

  get container() {
    return this.server.container;
  }

  async user(role: Role, username: string, displayName?: string): Promise<SeededUser> {
    const password = `pw-${crypto.randomBytes(12).toString('base64url')}`;
    const u = await this.container.users.create(cliActor(null), { username, password, role, ...(displayName ? { displayName } : {}) });
    return { id: u.id, username, password, role };
  }

  async project(name: string, description?: string): Promise<{ id: string; name: string }> {
    return this.container.projects.create(cliActor(null), { name, ...(description ? { description } : {}) });
  }

  /** A key added through the service, as `by` (an admin). */
  async key(by: SeededUser, f: { ownerId: string; projectId: string; name: string; provider?: Provider; secret?: string; remark?: string; baseUrl?: string }): Promise<{ id: string; secret: string; hint: string }> {
    const secret = f.secret ?? `sk-${crypto.randomBytes(24).toString('base64url')}`;
    const k = await this.container.providerKeys.create(cliActor({ id: by.id, username: by.username, role: by.role }), {
      ownerId: f.ownerId,
      projectId: f.projectId,
      name: f.name,
      provider: f.provider ?? 'openai',
      secret,
      ...(f.remark ? { remark: f.remark } : {}),
      ...(f.baseUrl ? { baseUrl: f.baseUrl } : {}),
    });
    return { id: k.id, secret, hint: k.hint };
  }

  /** A bearer session through the JSON API (the non-console way), for seeding and for checking the API is unchanged. */
  async apiLogin(u: SeededUser): Promise<string> {
    const res = await fetch(`${this.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: u.username, password: u.password }) });
    if (res.status !== 200) throw new Error(`apiLogin ${u.username}: ${res.status}`);
    return ((await res.json()) as { accessToken: string }).accessToken;
  }

  async signIn(u: SeededUser, landing = '/keys'): Promise<void> {
    const { page } = this;
    await page.goto(`${this.url}${landing}`);
    await page.locator('#login-username, [data-testid=user-menu]').first().waitFor();
    if (await page.locator('[data-testid=user-menu]').count()) await this.signOut();
    await page.fill('#login-username', u.username);
    await page.fill('#login-password', u.password);
    await page.click('form.login-card button[type=submit]');
    await page.locator('[data-testid=user-menu]').waitFor();
    if (new URL(page.url()).pathname !== landing.split('?')[0]) {
      await page.goto(`${this.url}${landing}`);
      await page.locator('[data-testid=user-menu]').waitFor();
    }
  }

  async signOut(): Promise<void> {
    const { page } = this;
    await page.click('[data-testid=user-menu] > .menu-button');
    await page.click('[data-testid=sign-out]');
    await page.locator('#login-username').waitFor();
  }

  /** Everything the page could keep or show a secret in, as one string to search. */
  async pageTraces(): Promise<string> {
    return String(
      await this.page.evaluate(`JSON.stringify({
        html: document.documentElement.outerHTML,
        inputs: Array.from(document.querySelectorAll('input, textarea')).map((e) => e.value),
        url: location.href,
        title: document.title,
        historyState: history.state,
        historyLength: history.length,
        local: Object.entries(localStorage),
        session: Object.entries(sessionStorage),
        cookie: document.cookie,
      })`),
    );
  }

  logText(): string {
    return this.capture.lines.join('\n');
  }

  async close(): Promise<void> {
    await this.browser?.close().catch(() => undefined);
    await this.server?.close().catch(() => undefined);
    await this.tdb?.drop().catch(() => undefined);
    fs.rmSync(this.profileDir, { recursive: true, force: true });
  }
}

/** Chooses a key's owner in the Add key / Edit key dialogs' searchable picker, by typing and picking the option. */
export async function pickOwner(page: Page, username: string, field = '#key-owner'): Promise<void> {
  await page.fill(field, username);
  const list = await page.getAttribute(field, 'aria-controls');
  const exact = new RegExp(`^${username.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}( ·|$)`);
  await page.locator(`[id="${list}"] [role=option]`, { hasText: exact }).click();
}

/** WCAG 2.0, 2.1 and 2.2 A and AA rules, and axe's best practices. */
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'];

/**
 * axe's serious and critical findings on the page as it is now (open dialogs included), one line each, prefixed with
 * `where`. axe-core runs in the page itself (nothing is downloaded); legacy mode keeps it to this one page.
 */
export async function axeProblems(page: Page, where: string): Promise<string[]> {
  const results = await new AxeBuilder({ page }).withTags(AXE_TAGS).setLegacyMode(true).analyze();
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${where}: ${v.id} (${v.impact}) at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 4).join(', ')} — ${v.nodes[0]?.failureSummary?.split('\n').slice(0, 2).join(' ')}`);
}

/** Whether the page scrolls sideways (content wider than the viewport): false, or the elements that stick out. */
export async function scrollsSideways(page: Page): Promise<false | string[]> {
  return (await page.evaluate(`(() => {
    if (document.documentElement.scrollWidth <= window.innerWidth) return false;
    const out = [];
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.width && r.right > window.innerWidth + 0.5) out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') + ' ' + Math.round(r.right));
    }
    return out.slice(0, 12);
  })()`)) as false | string[];
}

/** Reads a download fully (bounded by WAIT_MS). */
export async function downloadText(page: Page, click: () => Promise<void>): Promise<{ name: string; text: string }> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: WAIT_MS }), click()]);
  const file = await download.path();
  return { name: download.suggestedFilename(), text: fs.readFileSync(file, 'utf8') };
}

/** Retries `check` (assertions) until it passes or `timeout` ms elapse; then throws its last failure. */
export async function eventually<T>(check: () => Promise<T> | T, timeout = WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The visible text of the page's notice, without its dismiss button. */
export async function noticeText(page: Page): Promise<string> {
  return ((await page.locator('[data-testid=page-notice] .alert-text').textContent()) ?? '').trim();
}
