import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, describeVariables, loadConfig } from '../../src/config';

type Env = Record<string, string | undefined>;

const key32 = () => crypto.randomBytes(32).toString('base64');
const jwtSecret = () => crypto.randomBytes(48).toString('base64url');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-config-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A valid test environment: every problem a test sees comes from its own override. */
function valid(overrides: Env = {}): Env {
  return {
    NODE_ENV: 'test',
    PKV_DATABASE_URL: `sqlite:${path.join(tmp, 'vault.db')}`,
    PKV_DATA_DIR: path.join(tmp, 'data'),
    PKV_MASTER_KEY: key32(),
    PKV_JWT_SECRET: jwtSecret(),
    ...overrides,
  };
}

/** The problems loadConfig reports, or a failure when it accepts the environment. */
function problemsOf(env: Env, generateDevSecrets = false): string[] {
  try {
    loadConfig(env, { generateDevSecrets });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(Object.keys(env))}`);
}

function writeFile(name: string, content: string): string {
  const file = path.join(tmp, `${name}-${crypto.randomBytes(4).toString('hex')}`);
  fs.writeFileSync(file, content, { mode: 0o600 });
  return file;
}

describe('loadConfig', () => {
  it('accepts a complete test environment', () => {
    const env = valid({ PKV_PORT: '0', PKV_JWT_TTL: '1h', PKV_SCRYPT_COST: '14', PKV_REDIS_URL: 'redis://127.0.0.1:6379' });
    const config = loadConfig(env, { generateDevSecrets: false });
    expect(config.port).toBe(0);
    expect(config.jwtTtlSeconds).toBe(3600);
    expect(config.scryptCost).toBe(14);
    expect(config.masterKeys).toEqual([{ version: 1, key: Buffer.from(env.PKV_MASTER_KEY!, 'base64') }]);
    expect(config.database).toEqual({ kind: 'sqlite', path: path.join(tmp, 'vault.db'), timeoutMs: 5000 });
    expect(config).toMatchObject({ auditCheckpointIntervalSeconds: 10, auditJobsPerUser: 2, auditJobsTotal: 8 });
    expect(Object.isFrozen(config)).toBe(true);
  });

  describe('stops on a bad value with a line naming the variable', () => {
    const cases: Array<[string, Env, RegExp]> = [
      ['PKV_DATABASE_URL with an unknown scheme', { PKV_DATABASE_URL: 'postgres://u:p@localhost/db' }, /^PKV_DATABASE_URL: .*scheme/],
      ['PKV_DATABASE_URL as a mysql URL without a database', { PKV_DATABASE_URL: 'mysql://root@127.0.0.1:3306' }, /^PKV_DATABASE_URL: .*mysql/],
      ['PKV_DATABASE_URL as a mysql URL without a host', { PKV_DATABASE_URL: 'mysql://' }, /^PKV_DATABASE_URL: /],
      ['PKV_DATABASE_URL as sqlite: without a path', { PKV_DATABASE_URL: 'sqlite:' }, /^PKV_DATABASE_URL: /],
      ['PKV_MASTER_KEYS that is not VERSION:BASE64', { PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `v2:${key32()},1:${key32()}` }, /^PKV_MASTER_KEYS: each entry must be VERSION:BASE64KEY/],
      ['PKV_MASTER_KEYS with a key that is not base64', { PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: '1:not*base64!' }, /^PKV_MASTER_KEYS: version 1 .*base64/],
      ['PKV_MASTER_KEYS with version 0', { PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `0:${key32()}` }, /^PKV_MASTER_KEYS: /],
      ['PKV_MASTER_KEY that is not 32 bytes', { PKV_MASTER_KEY: crypto.randomBytes(31).toString('base64') }, /^PKV_MASTER_KEY: .*32 bytes/],
      ['PKV_MASTER_KEY that is not base64', { PKV_MASTER_KEY: 'this is not a key' }, /^PKV_MASTER_KEY: /],
      ['PKV_JWT_SECRET shorter than 32 bytes', { PKV_JWT_SECRET: 'x'.repeat(31) }, /^PKV_JWT_SECRET: .*32 bytes/],
      ['PKV_JWT_TTL that is not a duration', { PKV_JWT_TTL: 'forever' }, /^PKV_JWT_TTL: /],
      ['PKV_JWT_TTL below 30 seconds', { PKV_JWT_TTL: '10s' }, /^PKV_JWT_TTL: /],
      ['PKV_JWT_TTL above 24 hours', { PKV_JWT_TTL: '25h' }, /^PKV_JWT_TTL: /],
      ['PKV_PORT above 65535', { PKV_PORT: '65536' }, /^PKV_PORT: /],
      ['PKV_PORT that is not a number', { PKV_PORT: 'http' }, /^PKV_PORT: /],
      ['PKV_PORT that is negative', { PKV_PORT: '-1' }, /^PKV_PORT: /],
      ['PKV_REVEAL_RATE_LIMIT of zero', { PKV_REVEAL_RATE_LIMIT: '0' }, /^PKV_REVEAL_RATE_LIMIT: /],
      ['PKV_REVEAL_RATE_LIMIT that is not a number', { PKV_REVEAL_RATE_LIMIT: 'lots' }, /^PKV_REVEAL_RATE_LIMIT: /],
      ['PKV_LOGIN_RATE_LIMIT of zero', { PKV_LOGIN_RATE_LIMIT: '0' }, /^PKV_LOGIN_RATE_LIMIT: /],
      ['PKV_LOGIN_RATE_LIMIT with a fraction', { PKV_LOGIN_RATE_LIMIT: '2.5' }, /^PKV_LOGIN_RATE_LIMIT: /],
      ['PKV_LOG_LEVEL that winston does not know', { PKV_LOG_LEVEL: 'loud' }, /^PKV_LOG_LEVEL: /],
      ['PKV_SCRYPT_COST below 14', { PKV_SCRYPT_COST: '10' }, /^PKV_SCRYPT_COST: /],
      ['PKV_SCRYPT_COST above 20', { PKV_SCRYPT_COST: '21' }, /^PKV_SCRYPT_COST: /],
      ['PKV_BOOTSTRAP_ADMIN_PASSWORD shorter than 12 characters', { PKV_BOOTSTRAP_ADMIN_PASSWORD: 'short-pw' }, /^PKV_BOOTSTRAP_ADMIN_PASSWORD: .*12/],
      ['NODE_ENV that is not development, production or test', { NODE_ENV: 'staging' }, /^NODE_ENV: /],
      ['PKV_REDIS_URL that is not redis://', { PKV_REDIS_URL: 'http://127.0.0.1:6379' }, /^PKV_REDIS_URL: .*redis/],
      ['PKV_TRUST_PROXY that is neither a boolean, a hop count nor addresses', { PKV_TRUST_PROXY: 'bogus' }, /^PKV_TRUST_PROXY: invalid IP address: bogus/],
      ['PKV_TRUST_PROXY with a subnet beyond /32', { PKV_TRUST_PROXY: 'loopback, 10.0.0.0/33' }, /^PKV_TRUST_PROXY: /],
      ['PKV_HOST that is neither an address nor a host name', { PKV_HOST: 'local host' }, /^PKV_HOST: .*IP address or a host name/],
      ['PKV_HOST with a URL in it', { PKV_HOST: 'http://0.0.0.0' }, /^PKV_HOST: /],
      ['PKV_DATA_DIR that is a file', { PKV_DATA_DIR: __filename }, /^PKV_DATA_DIR: exists but is not a directory/],
      ['PKV_AUDIT_CHECKPOINT_INTERVAL of zero', { PKV_AUDIT_CHECKPOINT_INTERVAL: '0' }, /^PKV_AUDIT_CHECKPOINT_INTERVAL: /],
      ['PKV_AUDIT_CONCURRENCY_PER_USER that is not a number', { PKV_AUDIT_CONCURRENCY_PER_USER: 'two' }, /^PKV_AUDIT_CONCURRENCY_PER_USER: /],
      ['PKV_AUDIT_CONCURRENCY of zero', { PKV_AUDIT_CONCURRENCY: '0' }, /^PKV_AUDIT_CONCURRENCY: /],
      ['PKV_DB_WAIT_TIMEOUT above ten minutes', { PKV_DB_WAIT_TIMEOUT: '601' }, /^PKV_DB_WAIT_TIMEOUT: /],
      ['PKV_HEALTH_SCHEDULER that is neither on nor off', { PKV_HEALTH_SCHEDULER: 'yes' }, /^PKV_HEALTH_SCHEDULER: must be on or off$/],
      ['PKV_HEALTH_CHECK_INTERVAL under a minute', { PKV_HEALTH_CHECK_INTERVAL: '30s' }, /^PKV_HEALTH_CHECK_INTERVAL: must be a duration from 60s to 168h, like 6h$/],
      ['PKV_HEALTH_CHECK_CONCURRENCY of zero', { PKV_HEALTH_CHECK_CONCURRENCY: '0' }, /^PKV_HEALTH_CHECK_CONCURRENCY: /],
      ['PKV_HEALTH_CHECK_TIMEOUT that is not a duration', { PKV_HEALTH_CHECK_TIMEOUT: 'soon' }, /^PKV_HEALTH_CHECK_TIMEOUT: /],
      ['PKV_WEBHOOK_DISPATCHER that is neither on nor off', { PKV_WEBHOOK_DISPATCHER: '1' }, /^PKV_WEBHOOK_DISPATCHER: must be on or off$/],
      ['PKV_WEBHOOK_RETRY_FOR above a week', { PKV_WEBHOOK_RETRY_FOR: '200h' }, /^PKV_WEBHOOK_RETRY_FOR: /],
      ['PKV_METRICS_PORT that is not a number', { PKV_METRICS_PORT: 'metrics' }, /^PKV_METRICS_PORT: must be a whole number from 0 to 65535$/],
      ['PKV_METRICS_PORT above 65535', { PKV_METRICS_PORT: '70000' }, /^PKV_METRICS_PORT: must be a whole number from 0 to 65535$/],
      ['PKV_METRICS_PORT equal to PKV_PORT', { PKV_PORT: '8080', PKV_METRICS_PORT: '8080' }, /^PKV_METRICS_PORT: 8080 is PKV_PORT too/],
      ['PKV_METRICS_HOST that is neither an address nor a host name', { PKV_METRICS_HOST: '0.0.0.0:9464', PKV_METRICS_PORT: '9464' }, /^PKV_METRICS_HOST: .*IP address or a host name/],
      ['PKV_METRICS_HOST without PKV_METRICS_PORT', { PKV_METRICS_HOST: '10.0.0.5' }, /^PKV_METRICS_HOST: set PKV_METRICS_PORT too/],
    ];
    it.each(cases)('%s', (_story, overrides, line) => {
      const problems = problemsOf(valid(overrides));
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(line);
    });
  });

  it('has no metrics listener unless PKV_METRICS_PORT is set, and binds it to 127.0.0.1 unless told otherwise', () => {
    expect(loadConfig(valid(), { generateDevSecrets: false }).metrics).toBeUndefined();
    expect(loadConfig(valid({ PKV_METRICS_PORT: '9464' }), { generateDevSecrets: false }).metrics).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(loadConfig(valid({ PKV_METRICS_HOST: '10.0.0.5', PKV_METRICS_PORT: '9464' }), { generateDevSecrets: false }).metrics).toEqual({ host: '10.0.0.5', port: 9464 });
  });

  it.each([
    ['true', true],
    ['false', false],
    ['2', 2],
    ['loopback', 'loopback'],
    [' loopback ,10.0.0.0/8, 2001:db8::/32 ', 'loopback, 10.0.0.0/8, 2001:db8::/32'],
  ])('takes PKV_TRUST_PROXY=%j as express would', (value, expected) => {
    expect(loadConfig(valid({ PKV_TRUST_PROXY: value }), { generateDevSecrets: false }).trustProxy).toEqual(expected);
  });

  it('runs the health scheduler and the webhook dispatcher by default, but not under NODE_ENV=test unless asked', () => {
    const dev = loadConfig(valid({ NODE_ENV: 'development' }), { generateDevSecrets: false });
    expect(dev.health).toEqual({ scheduler: true, intervalMs: 6 * 3_600_000, concurrency: 4, timeoutMs: 10_000 });
    expect(dev.webhooks).toEqual({ dispatcher: true, timeoutMs: 10_000, retryBaseMs: 30_000, retryForMs: 24 * 3_600_000 });
    const test = loadConfig(valid(), { generateDevSecrets: false });
    expect([test.health.scheduler, test.webhooks.dispatcher]).toEqual([false, false]);
    const asked = loadConfig(valid({ PKV_HEALTH_SCHEDULER: 'on', PKV_WEBHOOK_DISPATCHER: 'on', PKV_HEALTH_CHECK_INTERVAL: '90m', PKV_WEBHOOK_RETRY_FOR: '2h' }), { generateDevSecrets: false });
    expect([asked.health.scheduler, asked.webhooks.dispatcher, asked.health.intervalMs, asked.webhooks.retryForMs]).toEqual([true, true, 90 * 60_000, 2 * 3_600_000]);
    const off = loadConfig(valid({ NODE_ENV: 'development', PKV_HEALTH_SCHEDULER: 'off', PKV_WEBHOOK_DISPATCHER: 'off' }), { generateDevSecrets: false });
    expect([off.health.scheduler, off.webhooks.dispatcher]).toEqual([false, false]);
  });

  it('names the version of a keyring entry whose key is not 32 bytes', () => {
    const problems = problemsOf(valid({ PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `7:${crypto.randomBytes(16).toString('base64')},1:${key32()}` }));
    expect(problems).toEqual([expect.stringMatching(/^PKV_MASTER_KEYS: version 7 key must be exactly 32 bytes, got 16$/)]);
  });

  it('refuses a keyring listing the same version twice, naming it', () => {
    const problems = problemsOf(valid({ PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `3:${key32()},3:${key32()}` }));
    expect(problems).toEqual([expect.stringMatching(/^PKV_MASTER_KEYS: version 3 is listed twice$/)]);
  });

  it('refuses PKV_MASTER_KEYS and PKV_MASTER_KEY together, naming both', () => {
    const problems = problemsOf(valid({ PKV_MASTER_KEYS: `1:${key32()}` }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^PKV_MASTER_KEYS: /);
    expect(problems[0]).toMatch(/\bPKV_MASTER_KEY\b/);
  });

  it('reads a multi-version keyring with the first entry active, and base64url keys too', () => {
    const k2 = crypto.randomBytes(32);
    const k1 = crypto.randomBytes(32);
    const config = loadConfig(valid({ PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: ` 2:${k2.toString('base64url')} , 1:${k1.toString('base64')} ` }), { generateDevSecrets: false });
    expect(config.masterKeys).toEqual([
      { version: 2, key: k2 },
      { version: 1, key: k1 },
    ]);
  });

  it('lists several problems at once, from the schema and from the keyring alike', () => {
    const masterKey = crypto.randomBytes(20).toString('base64');
    const problems = problemsOf(
      valid({ PKV_PORT: 'eighty', PKV_LOG_LEVEL: 'loud', PKV_JWT_SECRET: 'too-short', PKV_MASTER_KEY: masterKey, PKV_DATABASE_URL: 'oracle://db' }),
    );
    const named = problems.map((p) => p.split(':')[0]).sort();
    expect(named).toEqual(['PKV_DATABASE_URL', 'PKV_JWT_SECRET', 'PKV_LOG_LEVEL', 'PKV_MASTER_KEY', 'PKV_PORT']);
    expect(problems.join('\n')).not.toContain(masterKey);
    expect(problems.join('\n')).not.toContain('too-short');
  });

  it('never repeats a secret value in a problem line', () => {
    const secrets = { PKV_JWT_SECRET: 'sixteen-byte-jwt', PKV_BOOTSTRAP_ADMIN_PASSWORD: 'pw-tiny', PKV_DATABASE_URL: 'mysql://root:hunter2@' };
    const text = problemsOf(valid(secrets)).join('\n');
    for (const value of ['sixteen-byte-jwt', 'pw-tiny', 'hunter2']) expect(text).not.toContain(value);
  });

  describe('<NAME>_FILE variants', () => {
    it('read PKV_MASTER_KEYS, PKV_JWT_SECRET, PKV_BOOTSTRAP_ADMIN_PASSWORD and PKV_DATABASE_URL from files, trimming the newline', () => {
      const k1 = crypto.randomBytes(32);
      const secret = jwtSecret();
      const dbPath = path.join(tmp, 'from-file.db');
      const config = loadConfig(
        valid({
          PKV_MASTER_KEY: undefined,
          PKV_JWT_SECRET: undefined,
          PKV_DATABASE_URL: undefined,
          PKV_MASTER_KEYS_FILE: writeFile('keys', `1:${k1.toString('base64')}\n`),
          PKV_JWT_SECRET_FILE: writeFile('jwt', `${secret}\n`),
          PKV_BOOTSTRAP_ADMIN_PASSWORD_FILE: writeFile('pw', 'correct horse battery\n'),
          PKV_DATABASE_URL_FILE: writeFile('db', `sqlite:${dbPath}\n`),
        }),
        { generateDevSecrets: false },
      );
      expect(config.masterKeys).toEqual([{ version: 1, key: k1 }]);
      expect(config.jwtSecret.toString('utf8')).toBe(secret);
      expect(config.bootstrapAdminPassword).toBe('correct horse battery');
      expect(config.database).toEqual({ kind: 'sqlite', path: dbPath, timeoutMs: 5000 });
    });

    it('read PKV_MASTER_KEY from a file', () => {
      const k = crypto.randomBytes(32);
      const config = loadConfig(valid({ PKV_MASTER_KEY: undefined, PKV_MASTER_KEY_FILE: writeFile('key', `${k.toString('base64')}\n`) }), { generateDevSecrets: false });
      expect(config.masterKeys).toEqual([{ version: 1, key: k }]);
    });

    it('validate what they read like the plain variable', () => {
      const problems = problemsOf(valid({ PKV_JWT_SECRET: undefined, PKV_JWT_SECRET_FILE: writeFile('jwt', 'short\n') }));
      expect(problems).toEqual([expect.stringMatching(/^PKV_JWT_SECRET: .*32 bytes/)]);
    });

    it.each(['PKV_MASTER_KEYS', 'PKV_MASTER_KEY', 'PKV_JWT_SECRET', 'PKV_BOOTSTRAP_ADMIN_PASSWORD', 'PKV_DATABASE_URL'])('refuse %s and %s_FILE at once', (name) => {
      const values: Env = {
        PKV_MASTER_KEYS: `1:${key32()}`,
        PKV_MASTER_KEY: key32(),
        PKV_JWT_SECRET: jwtSecret(),
        PKV_BOOTSTRAP_ADMIN_PASSWORD: 'a long enough password',
        PKV_DATABASE_URL: `sqlite:${path.join(tmp, 'both.db')}`,
      };
      const env = valid({ [name]: values[name], [`${name}_FILE`]: writeFile('both', `${values[name]}\n`) });
      if (name === 'PKV_MASTER_KEYS') delete env.PKV_MASTER_KEY;
      const problems = problemsOf(env);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^${name}: `));
      expect(problems[0]).toContain(`${name}_FILE`);
    });

    it.each(['PKV_MASTER_KEYS', 'PKV_MASTER_KEY', 'PKV_JWT_SECRET', 'PKV_BOOTSTRAP_ADMIN_PASSWORD', 'PKV_DATABASE_URL'])('name %s_FILE when its file cannot be read', (name) => {
      const missing = path.join(tmp, 'no-such-dir', 'secret');
      const env = valid({ [name]: undefined, [`${name}_FILE`]: missing });
      const problems = problemsOf(env);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(new RegExp(`^${name}_FILE: .*ENOENT`));
    });
  });

  describe('with NODE_ENV=production', () => {
    const production = (dataDir: string, overrides: Env = {}): Env => ({
      NODE_ENV: 'production',
      PKV_DATA_DIR: dataDir,
      PKV_DATABASE_URL: 'mysql://pkv:pw@db.internal:3306/pkv',
      PKV_MASTER_KEYS: `1:${key32()}`,
      PKV_JWT_SECRET: jwtSecret(),
      ...overrides,
    });

    it('starts from an explicit keyring, JWT secret and server database', () => {
      const dataDir = path.join(tmp, 'prod-ok');
      const config = loadConfig(production(dataDir), { generateDevSecrets: true });
      expect(config.nodeEnv).toBe('production');
      expect(config.generated).toEqual([]);
      expect(fs.existsSync(dataDir)).toBe(false);
    });

    it('refuses to generate a master key, naming PKV_MASTER_KEYS, and writes no file', () => {
      const dataDir = path.join(tmp, 'prod-no-key');
      const problems = problemsOf(production(dataDir, { PKV_MASTER_KEYS: undefined }), true);
      expect(problems).toEqual([expect.stringMatching(/^PKV_MASTER_KEYS: .*production/)]);
      expect(fs.existsSync(dataDir)).toBe(false);
    });

    it('refuses to generate a JWT secret, naming PKV_JWT_SECRET, and writes no file', () => {
      const dataDir = path.join(tmp, 'prod-no-jwt');
      const problems = problemsOf(production(dataDir, { PKV_JWT_SECRET: undefined }), true);
      expect(problems).toEqual([expect.stringMatching(/^PKV_JWT_SECRET: .*production/)]);
      expect(fs.existsSync(dataDir)).toBe(false);
    });

    it('lists both missing secrets at once and generates neither', () => {
      const dataDir = path.join(tmp, 'prod-nothing');
      fs.mkdirSync(dataDir);
      const problems = problemsOf(production(dataDir, { PKV_MASTER_KEYS: undefined, PKV_JWT_SECRET: undefined }), true);
      expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['PKV_JWT_SECRET', 'PKV_MASTER_KEYS']);
      expect(fs.readdirSync(dataDir)).toEqual([]);
    });

    it('refuses a SQLite database under a temporary directory', () => {
      const problems = problemsOf(production(path.join(tmp, 'prod-sqlite'), { PKV_DATABASE_URL: `sqlite:${path.join(os.tmpdir(), 'pkv', 'vault.db')}` }));
      expect(problems).toEqual([expect.stringMatching(/^PKV_DATABASE_URL: .*temporary/)]);
    });

    it('accepts a SQLite database outside the temporary directories', () => {
      const config = loadConfig(production(path.join(tmp, 'prod-sqlite-ok'), { PKV_DATABASE_URL: 'sqlite:/var/lib/pkv/vault.db' }), { generateDevSecrets: false });
      expect(config.database).toEqual({ kind: 'sqlite', path: '/var/lib/pkv/vault.db', timeoutMs: 5000 });
    });
  });

  describe('in development with generateDevSecrets', () => {
    const dev = (dataDir: string): Env => ({ NODE_ENV: 'development', PKV_DATA_DIR: dataDir, PKV_DATABASE_URL: `sqlite:${path.join(dataDir, 'vault.db')}` });

    it('creates master.key and jwt.secret in the data dir with mode 0600, and reuses them next time', () => {
      const dataDir = path.join(tmp, 'dev');
      const first = loadConfig(dev(dataDir), { generateDevSecrets: true });
      const keyFile = path.join(dataDir, 'master.key');
      const jwtFile = path.join(dataDir, 'jwt.secret');
      expect([...first.generated].sort()).toEqual([jwtFile, keyFile]);
      for (const file of [keyFile, jwtFile]) expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(first.masterKeys).toHaveLength(1);
      expect(first.masterKeys[0].version).toBe(1);
      expect(first.masterKeys[0].key).toHaveLength(32);
      expect(first.jwtSecret.length).toBeGreaterThanOrEqual(32);

      const second = loadConfig(dev(dataDir), { generateDevSecrets: true });
      expect(second.generated).toEqual([]);
      expect(second.masterKeys).toEqual(first.masterKeys);
      expect(second.jwtSecret.equals(first.jwtSecret)).toBe(true);
    });

    it('refuses a jwt.secret file cut short or emptied (it would be a forgeable session key), naming the file', () => {
      for (const content of ['', 'short-secret\n']) {
        const dataDir = path.join(tmp, `dev-short-${crypto.randomBytes(3).toString('hex')}`);
        fs.mkdirSync(dataDir, { recursive: true });
        fs.writeFileSync(path.join(dataDir, 'jwt.secret'), content, { mode: 0o600 });
        const problems = problemsOf(dev(dataDir), true);
        expect(problems).toEqual([`PKV_JWT_SECRET: ${path.join(dataDir, 'jwt.secret')} holds fewer than 32 bytes; delete it to have a new one generated`]);
      }
    });

    it('generates nothing when the environment has problems', () => {
      const dataDir = path.join(tmp, 'dev-bad');
      problemsOf({ ...dev(dataDir), PKV_PORT: 'nope' }, true);
      expect(fs.existsSync(path.join(dataDir, 'master.key'))).toBe(false);
      expect(fs.existsSync(path.join(dataDir, 'jwt.secret'))).toBe(false);
    });

    it('generates nothing when told not to', () => {
      const dataDir = path.join(tmp, 'dev-off');
      const config = loadConfig(dev(dataDir), { generateDevSecrets: false });
      expect(config.generated).toEqual([]);
      expect(fs.existsSync(dataDir)).toBe(false);
    });
  });
});

describe('.env.example', () => {
  const file = path.join(__dirname, '..', '..', '.env.example');

  it('lists every configuration variable', () => {
    const text = fs.readFileSync(file, 'utf8');
    const names = describeVariables().map((v) => v.name);
    expect(names.length).toBeGreaterThan(10);
    const missing = names.filter((name) => !new RegExp(`^#?\\s*${name}=`, 'm').test(text));
    expect(missing).toEqual([]);
  });

  it('shows the defaults the schema actually uses', () => {
    const assigned: Env = {};
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
      if (m) assigned[m[1]] = m[2];
    }
    const fromExample = loadConfig(assigned, { generateDevSecrets: false });
    const fromDefaults = loadConfig({}, { generateDevSecrets: false });
    expect(fromExample).toEqual(fromDefaults);
  });

  it('has a description for every variable in the schema', () => {
    for (const v of describeVariables()) expect(v.description).not.toBe('');
  });
});
