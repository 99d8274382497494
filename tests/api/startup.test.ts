import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { openDatabase } from '../../src/db/data-source';
import { start } from '../../src/main';
import { CaptureTransport, createLogger } from '../../src/logger';
import { createTestDatabase, dbKind, openInstance, randomMasterKey, testEnv, TestDatabase } from '../support/test-app';
import { assertBuilt, Env, killAll, lines, runPkv, servePkv } from '../support/processes';

const kind = dbKind();

async function login(url: string, username: string, password: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  return { status: res.status, body: await res.json() };
}

/** MySQL is migrated explicitly before serving (SPEC §7); SQLite migrates itself. */
async function migrateIfServerDb(env: Env): Promise<void> {
  if (kind !== 'mysql') return;
  const res = await runPkv(['migrate'], env);
  if (res.code !== 0) throw new Error(`pkv migrate failed: ${res.stderr}`);
}

/** Seals the database to the given keyring: migrates, checks the keyring (writing its canaries) and creates the system keys. */
async function sealDatabase(env: Env): Promise<void> {
  const vault = await openInstance(env, { migrate: true });
  await vault.close();
}

describe('start-up', () => {
  let tdb: TestDatabase;

  beforeAll(() => assertBuilt());
  beforeEach(async () => {
    tdb = await createTestDatabase(kind);
  });
  afterEach(async () => {
    await killAll();
    await tdb.drop();
  });

  describe('the first admin on an empty database', () => {
    it('is created as `admin` from PKV_BOOTSTRAP_ADMIN_PASSWORD, which signs in; no password is printed', async () => {
      const password = `boot-${crypto.randomBytes(12).toString('base64url')}`;
      const env = testEnv(tdb, { PKV_BOOTSTRAP_ADMIN_PASSWORD: password });
      await migrateIfServerDb(env);
      const serve = await servePkv(env);
      const res = await login(serve.url, 'admin', password);
      expect(res.status).toBe(200);
      expect(res.body.user).toMatchObject({ username: 'admin', role: 'admin', status: 'active' });
      expect((await login(serve.url, 'admin', 'not-the-password')).status).toBe(401);
      expect(await serve.stop()).toEqual({ code: 0, signal: null });
      expect(serve.stdout()).not.toMatch(/Password:/);
      expect(serve.stdout()).not.toContain(password);
      expect(serve.stderr()).not.toContain(password);
    });

    it('gets a random password in development, printed once to stdout; the next start prints none and reuses the generated dev secrets', async () => {
      const env = testEnv(tdb, { NODE_ENV: 'development', PKV_MASTER_KEY: undefined, PKV_JWT_SECRET: undefined, PKV_LOG_LEVEL: 'info' });
      await migrateIfServerDb(env);

      const first = await servePkv(env);
      const m = /Username: admin\s+Password: (\S+)/.exec(first.stdout());
      expect(m).not.toBeNull();
      const password = m![1];
      expect(password.length).toBeGreaterThanOrEqual(16);
      expect(first.stdout().split(password)).toHaveLength(2);
      expect(first.stderr()).not.toContain(password);
      const signedIn = await login(first.url, 'admin', password);
      expect(signedIn.status).toBe(200);
      expect(signedIn.body.user).toMatchObject({ username: 'admin', role: 'admin' });
      for (const name of ['master.key', 'jwt.secret']) expect(fs.statSync(path.join(tdb.dir, name)).mode & 0o777).toBe(0o600);
      if (tdb.url.startsWith('sqlite:')) {
        // The database, its WAL and its shared-memory index alike: owner only, whatever the umask.
        const db = tdb.url.slice('sqlite:'.length);
        const files = [db, `${db}-wal`, `${db}-shm`].filter((f) => fs.existsSync(f));
        expect(files).toContain(`${db}-shm`);
        expect(files.map((f) => [path.basename(f), fs.statSync(f).mode & 0o777])).toEqual(files.map((f) => [path.basename(f), 0o600]));
      }
      expect(await first.stop()).toEqual({ code: 0, signal: null });

      const second = await servePkv(env);
      expect(second.stdout()).not.toMatch(/Password:/);
      expect(second.stdout()).not.toContain(password);
      // The same jwt.secret: a session from the first start still works; the same master.key: the canary check passed.
      const me = await fetch(`${second.url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${signedIn.body.accessToken}` } });
      expect(me.status).toBe(200);
      expect((await login(second.url, 'admin', password)).status).toBe(200);
      expect(await second.stop()).toEqual({ code: 0, signal: null });
      expect(second.stdout()).not.toContain('config.dev_secret_generated');
    });

    it('is never given a generated password in production: no admin, no password, a warning', async () => {
      const env = testEnv(tdb);
      // The file-backed test database lives under a temp dir, which production config refuses; the start-up logic is what is under test.
      const config = { ...loadConfig(env, { generateDevSecrets: false }), nodeEnv: 'production' as const };
      if (kind === 'mysql') {
        const db = await openDatabase(config.database);
        await db.migrate();
        await db.close();
      }
      const capture = new CaptureTransport();
      const running = await start(config, createLogger('debug', [capture]), { port: 0, host: '127.0.0.1' });
      try {
        expect(running.bootstrapPassword).toBeUndefined();
        expect(await running.container.users.isEmpty()).toBe(true);
        expect((await login(running.url, 'admin', 'anything-at-all')).status).toBe(401);
        expect(capture.lines.join('\n')).toContain('bootstrap.skipped');
      } finally {
        await running.close();
      }
    });

    it('is created in production from PKV_BOOTSTRAP_ADMIN_PASSWORD, and only on an empty database', async () => {
      const password = `boot-${crypto.randomBytes(12).toString('base64url')}`;
      const env = testEnv(tdb, { PKV_BOOTSTRAP_ADMIN_PASSWORD: password });
      const config = { ...loadConfig(env, { generateDevSecrets: false }), nodeEnv: 'production' as const };
      if (kind === 'mysql') {
        const db = await openDatabase(config.database);
        await db.migrate();
        await db.close();
      }
      const logger = createLogger('warn', [new CaptureTransport()]);
      const first = await start(config, logger, { port: 0, host: '127.0.0.1' });
      try {
        expect(first.bootstrapPassword).toBeUndefined();
        expect((await login(first.url, 'admin', password)).status).toBe(200);
      } finally {
        await first.close();
      }
      const other = `other-${crypto.randomBytes(12).toString('base64url')}`;
      const second = await start({ ...config, bootstrapAdminPassword: other }, logger, { port: 0, host: '127.0.0.1' });
      try {
        expect((await login(second.url, 'admin', other)).status).toBe(401);
        expect((await login(second.url, 'admin', password)).status).toBe(200);
      } finally {
        await second.close();
      }
    });
  });

  describe('a master key that does not match the database', () => {
    it('stops `pkv serve` before it listens, with a non-zero exit and one stderr line naming the version', async () => {
      const right = randomMasterKey();
      const wrong = randomMasterKey();
      const env = testEnv(tdb, { PKV_MASTER_KEY: right });
      await sealDatabase(env);

      const res = await runPkv(['serve'], { ...env, PKV_MASTER_KEY: wrong, PKV_PORT: '0' });
      expect(res.timedOut).toBe(false);
      expect(res.code).not.toBe(0);
      expect(res.code).not.toBeNull();
      expect(res.stdout).not.toContain('listening on');
      expect(lines(res.stderr)).toEqual([expect.stringMatching(/^pkv: PKV_MASTER_KEYS: master key version 1 does not match/)]);
      for (const k of [right, wrong]) expect(res.stderr + res.stdout).not.toContain(k);
    });

    it('names only the wrong version of a two-version keyring', async () => {
      const k1 = randomMasterKey();
      const k2 = randomMasterKey();
      const env = testEnv(tdb, { PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `2:${k2},1:${k1}` });
      await sealDatabase(env);

      const res = await runPkv(['serve'], { ...env, PKV_MASTER_KEYS: `2:${k2},1:${randomMasterKey()}`, PKV_PORT: '0' });
      expect(res.code).not.toBe(0);
      expect(res.stdout).not.toContain('listening on');
      const errors = lines(res.stderr);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatch(/version 1\b/);
      expect(errors[0]).not.toMatch(/version 2\b/);
    });

    it('refuses a keyring that dropped a version still wrapping rows, naming it', async () => {
      const env = testEnv(tdb, { PKV_MASTER_KEY: randomMasterKey() });
      await sealDatabase(env);

      const res = await runPkv(['serve'], { ...env, PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `2:${randomMasterKey()}`, PKV_PORT: '0' });
      expect(res.code).not.toBe(0);
      expect(res.stdout).not.toContain('listening on');
      expect(lines(res.stderr)).toEqual([expect.stringMatching(/^pkv: PKV_MASTER_KEYS: master key version 1 is missing/)]);
    });
  });

  describe('serving and stopping', () => {
    it('answers /readyz with 200 while serving, and on SIGTERM finishes the request in flight, refuses new work and exits 0', async () => {
      const password = `boot-${crypto.randomBytes(12).toString('base64url')}`;
      const env = testEnv(tdb, { PKV_BOOTSTRAP_ADMIN_PASSWORD: password });
      await migrateIfServerDb(env);
      const serve = await servePkv(env);
      expect(serve.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

      const ready = await fetch(`${serve.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', database: 'ok', keyring: 'ok' });

      // Expect: 100-continue makes the server confirm it has taken the request before the body is sent.
      const body = JSON.stringify({ username: 'admin', password });
      const { port } = new URL(serve.url);
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/api/v1/auth/login', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' } });
      const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        });
        req.on('error', reject);
      });
      await new Promise<void>((resolve) => req.once('continue', () => resolve()));

      serve.child.kill('SIGTERM');
      // New work is turned away (connection refused, or 503 from /readyz) while the old request is still open.
      const deadline = Date.now() + 5000;
      let refused = false;
      while (!refused && Date.now() < deadline) {
        refused = await fetch(`${serve.url}/readyz`, { signal: AbortSignal.timeout(1000) }).then(
          (r) => r.status === 503,
          () => true,
        );
        if (!refused) await new Promise((r) => setTimeout(r, 50));
      }
      expect(refused).toBe(true);
      expect(serve.child.exitCode).toBeNull();

      req.end(body);
      const res = await response;
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).accessToken).toEqual(expect.any(String));
      expect(await serve.stop('SIGTERM', 15_000)).toEqual({ code: 0, signal: null });
      expect(serve.stdout()).toContain('"event":"server.stopped"');
    });
  });
});
