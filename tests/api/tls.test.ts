import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import forge from 'node-forge';
import { createTestDatabase, dbKind, testEnv, TestDatabase } from '../support/test-app';
import { fetchJson, pinnedRequest, writeTestCertificate } from '../support/keyring-helpers';
import { assertBuilt, killAll, lines, runPkv, servePkv, ServingPkv } from '../support/processes';

// TLS termination does not depend on the database: SQLite alone is enough.
const describeTls = dbKind() === 'sqlite' ? describe : describe.skip;

describeTls('pkv serve over HTTPS', () => {
  const password = `tls-admin-${crypto.randomBytes(9).toString('base64url')}`;
  let tdb: TestDatabase;
  let env: Record<string, string | undefined>;
  const certFile = () => path.join(tdb.dir, 'tls', 'self-signed.crt');
  const keyFile = () => path.join(tdb.dir, 'tls', 'self-signed.key');

  beforeAll(async () => {
    assertBuilt();
    tdb = await createTestDatabase('sqlite');
    env = testEnv(tdb, { PKV_PORT: '0', PKV_BOOTSTRAP_ADMIN_PASSWORD: password, PKV_LOG_LEVEL: 'warn' });
  });

  afterAll(async () => {
    await killAll();
    await tdb?.drop();
  });

  describe('with --tls-self-signed', () => {
    let first: ServingPkv;
    let fingerprint: string;

    beforeAll(async () => {
      first = await servePkv(env, { args: ['--tls-self-signed'], cwd: tdb.dir });
      fingerprint = first.fingerprint!;
    }, 60_000);
    afterAll(() => first?.stop());

    it('prints the certificate’s SHA-256 fingerprint and an https://127.0.0.1 URL', () => {
      expect(fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      expect(new URL(first.url).protocol).toBe('https:');
      expect(new URL(first.url).hostname).toBe('127.0.0.1');
      expect(first.stdout()).toContain(`TLS certificate SHA-256 fingerprint: ${fingerprint}`);
      expect(fingerprint).toBe(new crypto.X509Certificate(fs.readFileSync(certFile())).fingerprint256);
    });

    it('answers /healthz to a client that pins the certificate by that fingerprint', async () => {
      const res = await pinnedRequest(first.url, fingerprint, { path: '/healthz' });
      expect(res.peerFingerprint).toBe(fingerprint);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ status: 'ok' });
    });

    it('refuses, at the pinning client, a different fingerprint', async () => {
      const other = fingerprint.replace(/^../, fingerprint.startsWith('00') ? '01' : '00');
      await expect(pinnedRequest(first.url, other, { path: '/healthz' })).rejects.toThrow(/pin mismatch/);
    });

    it('verifies for a client trusting the certificate file as its CA under the name localhost, and signs in over it', async () => {
      const ca = fs.readFileSync(certFile());
      const health = await fetchJson(first.url, { path: '/healthz', ca, servername: 'localhost' });
      expect(health.status).toBe(200);
      const login = await fetchJson(first.url, { method: 'POST', path: '/api/v1/auth/login', ca, servername: 'localhost', body: { username: 'admin', password } });
      expect(login.status).toBe(200);
      expect(login.json().tokenType).toBe('Bearer');
    });

    it('is not trusted by a client with only the default CAs', async () => {
      await expect(fetchJson(first.url, { path: '/healthz' })).rejects.toMatchObject({ code: expect.stringMatching(/SELF_SIGNED|UNABLE_TO_VERIFY/) });
    });

    it('holds a certificate for localhost and 127.0.0.1 and a private key readable by its owner only (0600)', () => {
      const pem = fs.readFileSync(certFile(), 'utf8');
      const parsed = forge.pki.certificateFromPem(pem);
      const san = parsed.getExtension('subjectAltName') as { altNames: Array<{ type: number; value?: string; ip?: string }> } | null;
      expect(san).not.toBeNull();
      expect(san!.altNames.filter((n) => n.type === 2).map((n) => n.value)).toContain('localhost');
      expect(san!.altNames.filter((n) => n.type === 7).map((n) => n.ip)).toContain('127.0.0.1');
      expect(parsed.validity.notAfter.getTime()).toBeGreaterThan(Date.now() + 30 * 86_400_000);

      const x509 = new crypto.X509Certificate(pem);
      expect(x509.checkHost('localhost')).toBe('localhost');
      expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
      const key = crypto.createPrivateKey(fs.readFileSync(keyFile()));
      expect(x509.checkPrivateKey(key)).toBe(true);
      expect(fs.statSync(keyFile()).mode & 0o777).toBe(0o600);
    });

    it('reuses the same certificate on the next start (same fingerprint, nothing new written)', async () => {
      await first.stop();
      const before = fs.readFileSync(certFile(), 'utf8');
      const second = await servePkv(env, { args: ['--tls-self-signed'], cwd: tdb.dir });
      try {
        expect(second.fingerprint).toBe(fingerprint);
        expect(second.stdout()).not.toContain('(new)');
        expect(fs.readFileSync(certFile(), 'utf8')).toBe(before);
        const res = await pinnedRequest(second.url, fingerprint, { path: '/healthz' });
        expect(res.status).toBe(200);
      } finally {
        await second.stop();
      }
    }, 60_000);
  });

  it('makes a new self-signed certificate when the kept key does not belong to the kept certificate', async () => {
    const dir = fs.mkdtempSync(path.join(tdb.dir, 'mismatch-'));
    const e = { ...env, PKV_DATA_DIR: dir, PKV_DATABASE_URL: `sqlite:${path.join(dir, 'vault.db')}` };
    const first = await servePkv(e, { args: ['--tls-self-signed'], cwd: tdb.dir });
    await first.stop();
    fs.copyFileSync(writeTestCertificate(fs.mkdtempSync(path.join(tdb.dir, 'stray-'))).keyFile, path.join(dir, 'tls', 'self-signed.key'));
    const second = await servePkv(e, { args: ['--tls-self-signed'], cwd: tdb.dir });
    try {
      expect(second.stdout()).toContain('(new)');
      expect(second.fingerprint).not.toBe(first.fingerprint);
      expect((await pinnedRequest(second.url, second.fingerprint!, { path: '/healthz' })).status).toBe(200);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it('creates the first admin only once it listens: a start that cannot listen leaves the database without users', async () => {
    const dir = fs.mkdtempSync(path.join(tdb.dir, 'busy-'));
    const e = { ...env, PKV_DATA_DIR: dir, PKV_DATABASE_URL: `sqlite:${path.join(dir, 'vault.db')}`, PKV_BOOTSTRAP_ADMIN_PASSWORD: undefined };
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const res = await runPkv(['serve', '--port', String(port)], e, { cwd: tdb.dir, timeoutMs: 30_000, killOnStdout: /listening on/ });
      expect(res.code).toBe(3);
      expect(res.stdout).not.toMatch(/Password:/);
      expect(lines(res.stderr)).toEqual([`pkv: PKV_HOST/PKV_PORT: cannot listen on 127.0.0.1:${port} (EADDRINUSE)`]);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    const serving = await servePkv({ ...e, PKV_PORT: '0' }, { cwd: tdb.dir });
    try {
      expect(serving.stdout()).toMatch(/First admin created\. Username: admin {2}Password: \S+/);
    } finally {
      await serving.stop();
    }
  }, 60_000);

  describe('with --tls-cert and --tls-key', () => {
    it('serves HTTPS with the operator’s own certificate', async () => {
      const own = writeTestCertificate(fs.mkdtempSync(path.join(tdb.dir, 'own-')));
      const serving = await servePkv(env, { args: ['--tls-cert', own.certFile, '--tls-key', own.keyFile], cwd: tdb.dir });
      try {
        expect(new URL(serving.url).protocol).toBe('https:');
        expect(serving.fingerprint).toBeUndefined();
        const res = await pinnedRequest(serving.url, own.fingerprint256, { path: '/healthz' });
        expect(res.status).toBe(200);
        const viaCa = await fetchJson(serving.url, { path: '/readyz', ca: fs.readFileSync(own.certFile) });
        expect(viaCa.status).toBe(200);
      } finally {
        await serving.stop();
      }
    }, 60_000);

    it.each<[string, (f: { certFile: string; keyFile: string }) => string[], RegExp]>([
      ['--tls-cert without --tls-key', (f) => ['--tls-cert', f.certFile], /--tls-cert and --tls-key go together/],
      ['--tls-key without --tls-cert', (f) => ['--tls-key', f.keyFile], /--tls-cert and --tls-key go together/],
      ['--tls-self-signed with --tls-cert/--tls-key', (f) => ['--tls-self-signed', '--tls-cert', f.certFile, '--tls-key', f.keyFile], /cannot be combined/],
      ['a --tls-cert file that does not exist', (f) => ['--tls-cert', `${f.certFile}.missing`, '--tls-key', f.keyFile], /cannot read TLS files/],
      ['a --tls-key that belongs to another certificate', (f) => ['--tls-cert', f.certFile, '--tls-key', writeTestCertificate(fs.mkdtempSync(path.join(tdb.dir, 'other-'))).keyFile], /TLS certificate and key are unusable: .*mismatch/],
      ['a --tls-key file that is not PEM', (f) => ['--tls-cert', f.certFile, '--tls-key', f.certFile], /TLS certificate and key are unusable/],
    ])('exits non-zero before listening with %s, with one stderr line', async (_story, args, line) => {
      const own = writeTestCertificate(fs.mkdtempSync(path.join(tdb.dir, 'bad-')));
      const res = await runPkv(['serve', ...args(own)], env, { cwd: tdb.dir, timeoutMs: 30_000, killOnStdout: /listening on/ });
      expect(res.stdout).not.toContain('listening on');
      expect(res.signal).toBeNull();
      expect(res.code).not.toBe(0);
      expect(lines(res.stderr)).toEqual([expect.stringMatching(line)]);
    }, 60_000);
  });
});
