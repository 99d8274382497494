import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { cliActor } from '../../src/modules/auth/actor';
import { createTestDatabase, dbKind, Instance, openInstance, randomMasterKey, testEnv, TestDatabase } from '../support/test-app';
import { uniqueSecret } from '../support/factories';
import { assertBuilt, Env, killAll, lines, PkvResult, runPkv } from '../support/processes';

const kind = dbKind();
const uname = (prefix: string) => `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
const newPassword = () => `pw-${crypto.randomBytes(15).toString('base64url')}`;

beforeAll(() => assertBuilt());
afterAll(() => killAll());

/** Starts the runs of a table up front, a few at a time (they share nothing), so each story only awaits its own result, by its name. */
function runAhead<T extends [string, ...unknown[]]>(cases: T[], run: (...c: T) => Promise<PkvResult>, concurrency = 4): (name: string) => Promise<PkvResult> {
  const pending = new Map<string, Promise<PkvResult>>();
  beforeAll(() => {
    const lanes: Array<Promise<unknown>> = Array.from({ length: concurrency }, () => Promise.resolve());
    cases.forEach((c, i) => {
      const result = lanes[i % concurrency].then(() => run(...c));
      lanes[i % concurrency] = result.catch(() => undefined);
      pending.set(c[0], result);
    });
  });
  // Runs whose story was filtered out (-t) are still awaited, so no process outlives its describe.
  afterAll(() => Promise.allSettled(pending.values()));
  return (name) => pending.get(name)!;
}

describe('pkv --help', () => {
  it('lists every command and exits 0', async () => {
    const res = await runPkv(['--help']);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    for (const command of ['serve', 'migrate', 'user', 'token', 'keyring', 'audit']) expect(res.stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
  });

  const helpCases: Array<[string, string[]]> = [
    ['serve', ['--host', '--port', '--tls-cert', '--tls-key', '--tls-self-signed']],
    ['migrate', []],
    ['user', ['create', 'reset-password']],
    ['user create', ['--username', '--role', '--password-stdin', 'admin', 'member', 'auditor']],
    ['user reset-password', ['--username', '--password-stdin']],
    ['token', ['create']],
    ['token create', ['--username', '--name', '--scope', '--expires-in-days', 'provider-keys:reveal']],
    ['keyring', ['generate', 'status', 'rotate']],
    ['keyring generate', []],
    ['keyring status', []],
    ['keyring rotate', ['--batch-size']],
    ['audit', ['verify', 'export']],
    ['audit verify', ['--head-seq', '--head-hash']],
    ['audit export', ['--format', '--from', '--to', '--out', 'csv', 'ndjson']],
    ['virtual-key', ['create']],
    ['virtual-key create', ['--key-id', '--name', '--models', '--expires-in-days', '--daily-request-limit', '--daily-token-limit', '--username', '--reason']],
  ];
  const help = runAhead<[string, string[]]>(helpCases, (command) => runPkv([...command.split(' '), '--help']));
  it.each(helpCases)('pkv %s --help exits 0 and names its options', async (command, mentions) => {
    const res = await help(command);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout).toContain(`Usage: pkv ${command}`);
    for (const word of mentions) expect(res.stdout).toContain(word);
  });
});

describe('pkv usage errors', () => {
  const usageCases: Array<[string, string[], RegExp]> = [
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['an unknown subcommand', ['user', 'delete', '--username', 'x'], /unknown command 'delete'/],
    ['an unknown option', ['migrate', '--force'], /unknown option '--force'/],
    ['user create without --username', ['user', 'create', '--role', 'member'], /--username/],
    ['user create without --role', ['user', 'create', '--username', 'someone'], /--role/],
    ['user reset-password without --username', ['user', 'reset-password'], /--username/],
    ['token create without --scope', ['token', 'create', '--username', 'someone', '--name', 'ci'], /--scope/],
    ['audit export without --format', ['audit', 'export'], /--format/],
    ['virtual-key create without --key-id', ['virtual-key', 'create', '--name', 'ci'], /--key-id/],
    ['virtual-key create with a key id that is not a UUID', ['virtual-key', 'create', '--key-id', 'nope', '--name', 'ci'], /--key-id: must be a UUID/],
    ['virtual-key create with a lifetime out of range', ['virtual-key', 'create', '--key-id', '01890000-0000-7000-8000-000000000000', '--name', 'ci', '--expires-in-days', '0'], /--expires-in-days/],
    ['serve with a port out of range', ['serve', '--port', '70000'], /--port/],
  ];
  const usage = runAhead<[string, string[], RegExp]>(usageCases, (_story, args) => runPkv(args));
  it.each(usageCases)('%s exits non-zero with the error on stderr and nothing on stdout', async (story, _args, error) => {
    const res = await usage(story);
    expect(res.timedOut).toBe(false);
    expect(res.code).not.toBe(0);
    expect(res.stdout).toBe('');
    expect(lines(res.stderr)[0]).toMatch(error);
  });
});

describe('pkv keyring generate', () => {
  it('prints a fresh base64 32-byte master key that the config accepts', async () => {
    const [a, b] = await Promise.all([runPkv(['keyring', 'generate']), runPkv(['keyring', 'generate'])]);
    for (const res of [a, b]) {
      expect(res).toMatchObject({ code: 0, stderr: '' });
      expect(res.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
      expect(Buffer.from(res.stdout.trim(), 'base64')).toHaveLength(32);
    }
    expect(a.stdout).not.toBe(b.stdout);
    const config = loadConfig({ NODE_ENV: 'test', PKV_MASTER_KEYS: `2:${a.stdout.trim()}`, PKV_JWT_SECRET: 'x'.repeat(32) }, { generateDevSecrets: false });
    expect(config.masterKeys[0]).toEqual({ version: 2, key: Buffer.from(a.stdout.trim(), 'base64') });
  });
});

describe('pkv commands against a database', () => {
  let tdb: TestDatabase;
  let env: Env;
  let vault: Instance;

  beforeAll(async () => {
    tdb = await createTestDatabase(kind);
    // The default level: CLI commands keep stderr for warnings and errors (debug would log every audit row there).
    env = testEnv(tdb, { PKV_LOG_LEVEL: 'info' });
    vault = await openInstance(env, { migrate: true });
  });
  afterAll(async () => {
    await killAll();
    await vault?.close();
    await tdb?.drop();
  });

  const userRow = async (username: string) => (await vault.db.read((m) => m.query('SELECT id, role FROM users WHERE username = ?', [username])))[0] as { id: string; role: string } | undefined;
  const me = (token: string) => vault.http().get('/api/v1/auth/me').set('Authorization', `Bearer ${token}`);

  describe('pkv user create', () => {
    it('--password-stdin creates a user who signs in, audited as user.create via cli', async () => {
      const username = uname('piped');
      const password = newPassword();
      const res = await runPkv(['user', 'create', '--username', username, '--role', 'member', '--display-name', 'Piped Member', '--password-stdin'], env, { stdin: `${password}\n` });
      expect(res).toMatchObject({ code: 0, stderr: '' });
      const row = await userRow(username);
      expect(row).toMatchObject({ role: 'member' });
      expect(lines(res.stdout)).toEqual([`created member ${username} (${row!.id})`]);
      expect(res.stdout + res.stderr).not.toContain(password);

      const login = await vault.login(username, password);
      expect(login.status).toBe(200);
      // The operator chose this password, not the user: it must be changed at the first sign-in.
      expect(login.body.user).toMatchObject({ username, role: 'member', displayName: 'Piped Member', mustChangePassword: true });

      const audit = await vault.db.read((m) => m.query("SELECT * FROM audit_events WHERE action = 'user.create' AND detail LIKE ?", [`%${username}%`]));
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({ outcome: 'success', via: 'cli', actor_username: 'cli' });
      expect(JSON.parse(audit[0].detail)).toMatchObject({ userId: row!.id, username, role: 'member' });
    });

    it('keeps the password out of stderr even at PKV_LOG_LEVEL=debug', async () => {
      const username = uname('debug');
      const password = newPassword();
      const res = await runPkv(['user', 'create', '--username', username, '--role', 'member', '--password-stdin'], { ...env, PKV_LOG_LEVEL: 'debug' }, { stdin: password });
      expect(res.code).toBe(0);
      expect(res.stderr).toContain('user.create');
      expect(res.stdout + res.stderr).not.toContain(password);
      expect((await vault.login(username, password)).status).toBe(200);
    });

    it('exits when it is done with PKV_REDIS_URL set (the shared rate-limit client is closed, not left holding the process)', async () => {
      const username = uname('redis');
      const password = newPassword();
      const res = await runPkv(['user', 'create', '--username', username, '--role', 'member', '--password-stdin'], { ...env, PKV_REDIS_URL: 'redis://127.0.0.1:6379' }, { stdin: password, timeoutMs: 15_000 });
      expect(res).toMatchObject({ code: 0, timedOut: false, stderr: '' });
      expect((await vault.login(username, password)).status).toBe(200);
    });

    it('without --password-stdin prints a random password once, which signs in', async () => {
      const username = uname('printed');
      const res = await runPkv(['user', 'create', '--username', username, '--role', 'auditor'], env);
      expect(res).toMatchObject({ code: 0, stderr: '' });
      const m = /^password: (\S+)$/m.exec(res.stdout);
      expect(m).not.toBeNull();
      const password = m![1];
      expect(password.length).toBeGreaterThanOrEqual(16);
      expect(res.stdout.split(password)).toHaveLength(2);
      const login = await vault.login(username, password);
      expect(login.status).toBe(200);
      expect(login.body.user.role).toBe('auditor');
    });

    it('refuses a role it does not know, with one error line naming --role, and creates nobody', async () => {
      const username = uname('boss');
      const res = await runPkv(['user', 'create', '--username', username, '--role', 'boss', '--password-stdin'], env, { stdin: newPassword() });
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe('');
      const errors = lines(res.stderr).filter((l) => /error/i.test(l));
      expect(errors).toEqual([expect.stringMatching(/--role.*'boss'.*admin, member, auditor/)]);
      expect(await userRow(username)).toBeUndefined();
    });

    it('refuses a username it does not allow, with one stderr line', async () => {
      const password = newPassword();
      const res = await runPkv(['user', 'create', '--username', 'no spaces!', '--role', 'member', '--password-stdin'], env, { stdin: password });
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe('');
      expect(lines(res.stderr)).toEqual([expect.stringMatching(/^pkv: --username: /)]);
      expect(res.stderr).not.toContain(password);
    });

    it('checks --display-name like the API does: a bidi control is refused with one stderr line, a name is stored NFC', async () => {
      const refused = uname('bidi');
      const res = await runPkv(['user', 'create', '--username', refused, '--role', 'member', '--display-name', 'Admin\u202Etxt.exe'], env);
      expect(res.code).toBe(2);
      expect(res.stdout).toBe('');
      expect(lines(res.stderr)).toEqual(['pkv: --display-name: must not contain bidirectional control characters']);
      expect(await userRow(refused)).toBeUndefined();

      const username = uname('nfd');
      const ok = await runPkv(['user', 'create', '--username', username, '--role', 'member', '--display-name', ' Cafe\u0301 '], env);
      expect(ok.code).toBe(0);
      const [row] = await vault.db.read((m) => m.query('SELECT display_name FROM users WHERE username = ?', [username]));
      expect(row.display_name).toBe('Caf\u00e9');
    });

    it('refuses a piped password shorter than 12 characters without echoing it', async () => {
      const username = uname('shortpw');
      const res = await runPkv(['user', 'create', '--username', username, '--role', 'member', '--password-stdin'], env, { stdin: 'tiny-pw\n' });
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe('');
      expect(lines(res.stderr)).toEqual([expect.stringMatching(/^pkv: password: must be at least 12 characters$/)]);
      expect(await userRow(username)).toBeUndefined();
    });

    it('refuses a taken username with one stderr line and prints no password', async () => {
      const username = uname('taken');
      await vault.container.users.create(cliActor(null), { username, password: newPassword(), role: 'member' });
      const res = await runPkv(['user', 'create', '--username', username, '--role', 'admin'], env);
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe('');
      expect(lines(res.stderr)).toEqual([expect.stringMatching(/^pkv: .*taken/)]);
      expect((await userRow(username))!.role).toBe('member');
    });
  });

  describe('pkv user reset-password', () => {
    it('ends the user’s sessions and prints a new password that signs in', async () => {
      const username = uname('reset');
      const oldPassword = newPassword();
      await vault.container.users.create(cliActor(null), { username, password: oldPassword, role: 'member' });
      const session = (await vault.login(username, oldPassword)).body.accessToken as string;
      expect((await me(session)).status).toBe(200);

      const res = await runPkv(['user', 'reset-password', '--username', username], env);
      expect(res).toMatchObject({ code: 0, stderr: '' });
      expect(res.stdout).toContain(`password reset for ${username}`);
      const m = /^password: (\S+)$/m.exec(res.stdout);
      expect(m).not.toBeNull();

      expect((await me(session)).status).toBe(401);
      expect((await vault.login(username, oldPassword)).status).toBe(401);
      const fresh = await vault.login(username, m![1]);
      expect(fresh.status).toBe(200);
      expect(fresh.body.user.mustChangePassword).toBe(true);
      expect((await me(fresh.body.accessToken)).status).toBe(200);
    });

    it('with --password-stdin sets the piped password and prints none', async () => {
      const username = uname('reset-piped');
      await vault.container.users.create(cliActor(null), { username, password: newPassword(), role: 'auditor' });
      const password = newPassword();
      const res = await runPkv(['user', 'reset-password', '--username', username, '--password-stdin'], env, { stdin: password });
      expect(res).toMatchObject({ code: 0, stderr: '' });
      expect(res.stdout).not.toContain(password);
      expect(res.stdout).not.toMatch(/^password:/m);
      expect((await vault.login(username, password)).status).toBe(200);
    });

    it('refuses an unknown user with a non-zero exit and nothing on stdout', async () => {
      const res = await runPkv(['user', 'reset-password', '--username', uname('ghost')], env);
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe('');
      expect(lines(res.stderr)).toEqual([expect.stringMatching(/^pkv: No user named "ghost-/)]);
    });
  });

  describe('pkv token create', () => {
    it('prints the token once on stdout, never on stderr, and it authenticates with its scopes', async () => {
      const username = uname('bot');
      await vault.container.users.create(cliActor(null), { username, password: newPassword(), role: 'member' });
      const res = await runPkv(['token', 'create', '--username', username, '--name', 'ci', '--scope', 'provider-keys:read', '--expires-in-days', '7'], env);
      expect(res.code).toBe(0);
      const token = res.stdout.trim();
      expect(token).toMatch(/^pkv_[A-Za-z0-9_-]{43}$/);
      expect(res.stderr).not.toContain(token);
      const whoami = await vault.http().get('/api/v1/auth/me').set('X-API-Key', token);
      expect(whoami.status).toBe(200);
      expect(whoami.body).toMatchObject({ username, via: 'api_token', scopes: ['provider-keys:read'] });
    });
  });

  describe('configuration errors', () => {
    const configCases: Array<[string, string[]]> = [
      ['serve', ['serve']],
      ['migrate', ['migrate']],
      ['user create', ['user', 'create', '--username', 'cfg-user', '--role', 'member']],
      ['user reset-password', ['user', 'reset-password', '--username', 'cfg-user']],
      ['token create', ['token', 'create', '--username', 'cfg-user', '--name', 'n', '--scope', 'audit:read']],
      ['keyring status', ['keyring', 'status']],
      ['keyring rotate', ['keyring', 'rotate']],
      ['audit verify', ['audit', 'verify']],
      ['audit export', ['audit', 'export', '--format', 'ndjson']],
    ];
    const configured = runAhead<[string, string[]]>(configCases, (_name, args) => runPkv(args, { ...env, PKV_JWT_TTL: 'forever', PKV_PORT: '0' }));
    it.each(configCases)('stop pkv %s with `pkv: configuration: PKV_…` on stderr and nothing on stdout', async (name) => {
      const res = await configured(name);
      expect(res.timedOut).toBe(false);
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe('');
      expect(lines(res.stderr)).toEqual([expect.stringMatching(/^pkv: configuration: PKV_JWT_TTL: /)]);
    });

    it('name a bad secret variable without echoing its value', async () => {
      const shortKey = crypto.randomBytes(24).toString('base64');
      const res = await runPkv(['keyring', 'status'], { ...env, PKV_MASTER_KEY: shortKey, PKV_JWT_SECRET: 'sixteen-byte-jwt', PKV_DATABASE_URL: 'mysql://root:hunter2@' });
      expect(res.code).not.toBe(0);
      expect(res.stdout).toBe('');
      const errors = lines(res.stderr);
      expect(errors.map((l) => /^pkv: configuration: ([A-Z_]+):/.exec(l)?.[1]).sort()).toEqual(['PKV_DATABASE_URL', 'PKV_JWT_SECRET', 'PKV_MASTER_KEY']);
      for (const secret of [shortKey, 'sixteen-byte-jwt', 'hunter2']) expect(res.stderr).not.toContain(secret);
    });

    it('are read from a .env file in the working directory too', async () => {
      const cwd = fs.mkdtempSync(path.join(tdb.dir, 'cwd-'));
      const dotenv = Object.entries(env).map(([k, v]) => `${k}=${v}`).join('\n');
      fs.writeFileSync(path.join(cwd, '.env'), `${dotenv}\n`);
      const ok = await runPkv(['migrate'], {}, { cwd });
      expect(ok).toMatchObject({ code: 0, stderr: '' });
      expect(ok.stdout.trim()).toBe('schema is up to date');

      fs.writeFileSync(path.join(cwd, '.env'), `${dotenv}\nPKV_SCRYPT_COST=99\n`.replace(/^PKV_SCRYPT_COST=14$/m, ''));
      const bad = await runPkv(['migrate'], {}, { cwd });
      expect(bad.code).not.toBe(0);
      expect(lines(bad.stderr)).toEqual([expect.stringMatching(/^pkv: configuration: PKV_SCRYPT_COST: /)]);
    });
  });
});

describe('pkv keyring status', () => {
  let tdb: TestDatabase;
  afterAll(async () => {
    await killAll();
    await tdb?.drop();
  });

  async function pasteKeys(env: Env, count: number): Promise<void> {
    const vault = await openInstance(env, { migrate: true });
    try {
      const password = newPassword();
      const admin = await vault.container.users.create(cliActor(null), { username: uname('kr-admin'), password, role: 'admin' });
      const auth = { Authorization: `Bearer ${(await vault.login(admin.username, password)).body.accessToken}` };
      const project = await vault.http().post('/api/v1/projects').set(auth).send({ name: uname('kr-project') }).expect(201);
      for (let i = 0; i < count; i++) {
        await vault.http().post('/api/v1/provider-keys').set(auth).send({ name: `k${i}`, provider: 'openai', ownerId: admin.id, projectId: project.body.id, secret: uniqueSecret() }).expect(201);
      }
    } finally {
      await vault.close();
    }
  }

  it('counts the rows wrapped under each master key version', async () => {
    tdb = await createTestDatabase(kind);
    const k1 = randomMasterKey();
    const k2 = randomMasterKey();
    const base = testEnv(tdb, { PKV_MASTER_KEY: undefined });
    await pasteKeys({ ...base, PKV_MASTER_KEYS: `1:${k1}` }, 2);
    await pasteKeys({ ...base, PKV_MASTER_KEYS: `2:${k2},1:${k1}` }, 3);

    const res = await runPkv(['keyring', 'status'], { ...base, PKV_MASTER_KEYS: `2:${k2},1:${k1}` });
    expect(res).toMatchObject({ code: 0, stderr: '' });
    const out = lines(res.stdout);
    expect(out[0]).toBe('active version: 2; configured: 2, 1');
    const table = out.slice(2).map((l) => l.trim().split(/\s+/).map(Number));
    // version, provider_keys, system_keys (fingerprint + audit chain, created under version 1), total
    expect(table).toEqual([
      [2, 3, 0, 3],
      [1, 2, 2, 4],
    ]);
    for (const k of [k1, k2]) expect(res.stdout + res.stderr).not.toContain(k);
  });
});
