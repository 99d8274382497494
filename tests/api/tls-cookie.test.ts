import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { loadConfig } from '../../src/config';
import { start, type RunningServer } from '../../src/main';
import { CaptureTransport, createLogger } from '../../src/logger';
import { CONSOLE_DIR } from '../../src/http/console';
import { createTestDatabase, dbKind, testEnv, type TestDatabase } from '../support/test-app';
import { writeTestCertificate } from '../support/keyring-helpers';
import { CHROMIUM, CHROMIUM_ARGS } from '../e2e/helpers';

// The cookie's flags depend on the transport, not the database: SQLite alone is enough.
const describeTls = dbKind() === 'sqlite' ? describe : describe.skip;
const itBrowser = fs.existsSync(CHROMIUM) || process.env.CI === 'true' ? it : it.skip;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface Served {
  url: URL;
  server: RunningServer;
  tdb: TestDatabase;
  capture: CaptureTransport;
}

interface Cookie {
  name: string;
  value: string;
  attrs: Map<string, string>;
}

/** The pkv_session Set-Cookie of a response, its attribute names lower-cased. */
function sessionCookie(res: Answer): Cookie | undefined {
  for (const line of res.headers['set-cookie'] ?? []) {
    const [pair, ...rest] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    if (pair.slice(0, eq) !== 'pkv_session') continue;
    const attrs = new Map(rest.map((a) => [a.split('=')[0].toLowerCase(), a.includes('=') ? a.slice(a.indexOf('=') + 1) : '']));
    return { name: 'pkv_session', value: pair.slice(eq + 1), attrs };
  }
  return undefined;
}

describeTls('the console’s session cookie: Secure exactly when the request came over TLS', () => {
  const password = `cookie-admin-${crypto.randomBytes(9).toString('base64url')}`;
  let certDir: string;
  let cert: { certFile: string; keyFile: string };
  let ca: Buffer;
  const running: Served[] = [];

  beforeAll(() => {
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-tls-cookie-'));
    cert = writeTestCertificate(certDir);
    ca = fs.readFileSync(cert.certFile);
  });

  /** The real server (src/main.ts start) on a fresh SQLite database, over TLS or plain HTTP. */
  const serve = async (env: Record<string, string> = {}, tls = false): Promise<Served> => {
    const tdb = await createTestDatabase('sqlite');
    const config = loadConfig(testEnv(tdb, { PKV_BOOTSTRAP_ADMIN_PASSWORD: password, PKV_LOG_LEVEL: 'info', ...env }), { generateDevSecrets: false });
    const capture = new CaptureTransport();
    const server = await start(config, createLogger('info', [capture]), { port: 0, host: '127.0.0.1', ...(tls ? { tls: { cert: ca, key: fs.readFileSync(cert.keyFile) } } : {}) });
    const served = { url: new URL(server.url), server, tdb, capture };
    running.push(served);
    return served;
  };

  const send = (s: Served, opts: { method?: string; path: string; headers?: Record<string, string>; body?: unknown }): Promise<Answer> => {
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const mod = s.url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        {
          host: s.url.hostname,
          port: s.url.port,
          path: opts.path,
          method: opts.method ?? 'GET',
          headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...opts.headers },
          timeout: 10_000,
          agent: false,
          ...(s.url.protocol === 'https:' ? { ca } : {}),
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.end(payload);
    });
  };

  const cookieLogin = (s: Served, headers: Record<string, string> = {}) => send(s, { method: 'POST', path: '/api/v1/auth/login', headers, body: { username: 'admin', password, cookie: true } });

  afterAll(async () => {
    for (const s of running) {
      await s.server.close().catch(() => undefined);
      await s.tdb.drop().catch(() => undefined);
    }
    if (certDir) fs.rmSync(certDir, { recursive: true, force: true });
  });

  describe('served over HTTPS', () => {
    let s: Served;
    beforeAll(async () => {
      s = await serve({}, true);
    }, 60_000);

    it('sets pkv_session Secure, HttpOnly, SameSite=Strict on /api/v1, puts no token in the body, and the cookie signs requests in', async () => {
      expect(s.url.protocol).toBe('https:');
      const res = await cookieLogin(s);
      expect(res.status).toBe(200);
      const c = sessionCookie(res);
      expect(c).toBeDefined();
      expect(c!.attrs.has('secure')).toBe(true);
      expect(c!.attrs.has('httponly')).toBe(true);
      expect(c!.attrs.get('samesite')).toBe('Strict');
      expect(c!.attrs.get('path')).toBe('/api/v1');
      const body = JSON.parse(res.body) as { tokenType: string; accessToken?: string; csrfToken: string };
      expect(body.tokenType).toBe('Cookie');
      expect(body.accessToken).toBeUndefined();
      expect(res.body).not.toContain(c!.value);

      const me = await send(s, { path: '/api/v1/auth/me', headers: { cookie: `pkv_session=${c!.value}` } });
      expect(me.status).toBe(200);
      expect(JSON.parse(me.body)).toMatchObject({ username: 'admin', via: 'session' });

      // Signing out clears it with the same flags (a browser would not let a non-Secure header replace a Secure cookie).
      const out = await send(s, { method: 'POST', path: '/api/v1/auth/logout', headers: { cookie: `pkv_session=${c!.value}`, 'x-csrf-token': body.csrfToken } });
      expect(out.status).toBe(204);
      const cleared = sessionCookie(out);
      expect(cleared?.value).toBe('');
      expect(cleared!.attrs.has('secure')).toBe(true);
      expect(cleared!.attrs.has('httponly')).toBe(true);
      expect((await send(s, { path: '/api/v1/auth/me', headers: { cookie: `pkv_session=${c!.value}` } })).status).toBe(401);
    });

    it('sets no cookie at all for a bearer login (no `cookie` field)', async () => {
      const res = await send(s, { method: 'POST', path: '/api/v1/auth/login', body: { username: 'admin', password } });
      expect(res.status).toBe(200);
      expect(res.headers['set-cookie']).toBeUndefined();
      expect(JSON.parse(res.body).tokenType).toBe('Bearer');
    });

    itBrowser(
      'the console itself, signed in through Chromium over HTTPS, holds a Secure, HttpOnly, SameSite=Strict session cookie',
      async () => {
        if (!fs.existsSync(path.join(CONSOLE_DIR, 'index.html'))) throw new Error(`the web console is not built (${CONSOLE_DIR}); run \`npm run build\` first`);
        const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
        try {
          // The test certificate is self-signed: this browser accepts it, the product is served exactly as in production.
          const context = await browser.newContext({ ignoreHTTPSErrors: true, locale: 'en-US', timezoneId: 'UTC' });
          const page = await context.newPage();
          page.setDefaultTimeout(10_000);
          const problems: string[] = [];
          page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
          page.on('console', (m) => {
            if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
          });
          const loginSeen = page.waitForRequest((r) => r.url().endsWith('/api/v1/auth/login') && r.method() === 'POST');
          await page.goto(`${s.url.origin}/keys`);
          await page.fill('#login-username', 'admin');
          await page.fill('#login-password', password);
          await page.click('form.login-card button[type=submit]');
          expect(JSON.parse((await loginSeen).postData() ?? '{}')).toMatchObject({ username: 'admin', cookie: true });
          await page.locator('[data-testid=user-menu]').waitFor();
          const session = (await context.cookies(`${s.url.origin}/api/v1/auth/me`)).find((c) => c.name === 'pkv_session');
          expect(session).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Strict', path: '/api/v1' });
          expect(String(await page.evaluate('document.cookie'))).not.toContain('pkv_session');
          expect(problems).toEqual([]);
        } finally {
          await browser.close();
        }
      },
      90_000,
    );
  });

  describe('served over plain HTTP', () => {
    let s: Served;
    beforeAll(async () => {
      s = await serve();
    }, 60_000);

    it('sets pkv_session HttpOnly and SameSite=Strict but not Secure (a Secure cookie would never come back over http)', async () => {
      expect(s.url.protocol).toBe('http:');
      const res = await cookieLogin(s);
      expect(res.status).toBe(200);
      const c = sessionCookie(res);
      expect(c).toBeDefined();
      expect(c!.attrs.has('secure')).toBe(false);
      expect(c!.attrs.has('httponly')).toBe(true);
      expect(c!.attrs.get('samesite')).toBe('Strict');
      expect((await send(s, { path: '/api/v1/auth/me', headers: { cookie: `pkv_session=${c!.value}` } })).status).toBe(200);
    });

    it('ignores X-Forwarded-Proto: https when PKV_TRUST_PROXY is not set', async () => {
      const c = sessionCookie(await cookieLogin(s, { 'x-forwarded-proto': 'https' }));
      expect(c).toBeDefined();
      expect(c!.attrs.has('secure')).toBe(false);
    });
  });

  describe('behind a proxy (PKV_TRUST_PROXY)', () => {
    it('a trusted proxy’s X-Forwarded-Proto: https makes the cookie Secure; without it, or with http, it is not', async () => {
      const s = await serve({ PKV_TRUST_PROXY: 'loopback' });
      expect(sessionCookie(await cookieLogin(s, { 'x-forwarded-proto': 'https' }))!.attrs.has('secure')).toBe(true);
      expect(sessionCookie(await cookieLogin(s))!.attrs.has('secure')).toBe(false);
      expect(sessionCookie(await cookieLogin(s, { 'x-forwarded-proto': 'http' }))!.attrs.has('secure')).toBe(false);
    }, 60_000);

    it('an untrusted peer’s X-Forwarded-Proto: https does not (the test client, 127.0.0.1, is outside 10.0.0.0/8)', async () => {
      const s = await serve({ PKV_TRUST_PROXY: '10.0.0.0/8' });
      const c = sessionCookie(await cookieLogin(s, { 'x-forwarded-proto': 'https' }));
      expect(c).toBeDefined();
      expect(c!.attrs.has('secure')).toBe(false);
      expect(c!.attrs.has('httponly')).toBe(true);
      expect(c!.attrs.get('samesite')).toBe('Strict');
    }, 60_000);
  });

  it('no session token reached any server log', () => {
    expect(running).toHaveLength(4);
    for (const s of running) expect(s.capture.lines.join('\n')).not.toMatch(/pkv_session=|eyJ[\w-]+\.eyJ/);
  });
});
