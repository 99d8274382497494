import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import { createTestContext, openInstance, randomMasterKey, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey } from '../support/factories';
import { ConfigError, loadConfig } from '../../src/config';
import { KeyringMismatchError } from '../../src/modules/keyring/keyring.service';
import { cliActor } from '../../src/modules/auth/actor';

const cliActorForTest = () => cliActor(null);
import { fetchJson, withKeyring } from '../support/keyring-helpers';
import { assertBuilt, killAll, lines, runPkv, servePkv } from '../support/processes';

/** Rows wrapped under each KEK version, provider keys and system keys together, counted in SQL. */
async function wrappedRows(ctx: TestContext): Promise<Record<number, number>> {
  const rows: Array<{ v: unknown; n: unknown }> = await ctx.db.read((m) =>
    m.query(
      'SELECT v, SUM(n) AS n FROM (SELECT kek_version AS v, COUNT(*) AS n FROM provider_keys WHERE kek_version IS NOT NULL GROUP BY kek_version UNION ALL SELECT kek_version AS v, COUNT(*) AS n FROM system_keys GROUP BY kek_version) t GROUP BY v',
    ),
  );
  return Object.fromEntries(rows.map((r) => [Number(r.v), Number(r.n)]));
}

async function canaryVersions(ctx: TestContext): Promise<number[]> {
  const rows: Array<{ kek_version: unknown }> = await ctx.db.read((m) => m.query('SELECT kek_version FROM kek_canaries ORDER BY kek_version'));
  return rows.map((r) => Number(r.kek_version));
}

/** What `openInstance` rejected with (it must reject). */
async function refusal(env: Record<string, string | undefined>): Promise<Error> {
  const opened = await openInstance(env).then(
    async (instance) => {
      await instance.close();
      return undefined;
    },
    (err: Error) => err,
  );
  if (!opened) throw new Error('the instance started, but it should have been refused');
  return opened;
}

describe('start-up against a database sealed under master key version 1', () => {
  const k1 = randomMasterKey();
  const k2 = randomMasterKey();
  let ctx: TestContext;
  let keys: CreatedKey[];
  let rowsUnderV1: number;

  beforeAll(async () => {
    assertBuilt();
    ctx = await createTestContext({ PKV_MASTER_KEY: k1 });
    const admin = await ctx.user('admin');
    const owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    keys = [];
    for (let i = 0; i < 3; i++) keys.push(await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id }));
    rowsUnderV1 = (await wrappedRows(ctx))[1];
  });

  afterAll(async () => {
    await killAll();
    await ctx?.close();
  });

  describe('buildContainer, in-process', () => {
    it('refuses a keyring that dropped version 1 while it still wraps rows, naming the version and the row count, and seals nothing', async () => {
      expect(rowsUnderV1).toBe(keys.length + 2);
      const err = await refusal(withKeyring(ctx.env, `2:${k2}`));
      expect(err).toBeInstanceOf(KeyringMismatchError);
      expect(err.message).toMatch(new RegExp(`^PKV_MASTER_KEYS: master key version 1 is missing but still wraps ${rowsUnderV1} row\\(s\\)`));
      expect(err.message).not.toContain(k2);
      expect(await canaryVersions(ctx)).toEqual([1]);
    });

    it('refuses a wrong key for version 1 (its canary does not open), naming version 1 and no other', async () => {
      for (const keyring of [`1:${randomMasterKey()}`, `2:${k2},1:${randomMasterKey()}`]) {
        const err = await refusal(withKeyring(ctx.env, keyring));
        expect(err).toBeInstanceOf(KeyringMismatchError);
        expect(err.message).toMatch(/^PKV_MASTER_KEYS: master key version 1 does not match/);
        expect(err.message).not.toMatch(/version 2\b/);
      }
      expect(await canaryVersions(ctx)).toEqual([1]);
    });

    it('takes a truncated 31-byte key as a configuration error naming its version, before touching the database', async () => {
      const truncated = Buffer.from(k1, 'base64').subarray(0, 31).toString('base64');
      const env = withKeyring(ctx.env, `2:${k2},1:${truncated}`);
      expect(() => loadConfig(env, { generateDevSecrets: false })).toThrow(ConfigError);
      const err = await refusal(env);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual(['PKV_MASTER_KEYS: version 1 key must be exactly 32 bytes, got 31']);
      expect(await canaryVersions(ctx)).toEqual([1]);
    });
  });

  describe('pkv serve', () => {
    const truncatedV1 = () => Buffer.from(k1, 'base64').subarray(0, 31).toString('base64');
    it.each<[string, () => string, RegExp]>([
      [
        'a keyring without version 1, which still wraps rows: the line names the version and the count',
        () => `2:${k2}`,
        /^pkv: PKV_MASTER_KEYS: master key version 1 is missing but still wraps (\d+) row\(s\)/,
      ],
      ['a wrong key for version 1', () => `2:${k2},1:${randomMasterKey()}`, /^pkv: PKV_MASTER_KEYS: master key version 1 does not match/],
      ['a truncated (31-byte) key for version 1', () => `2:${k2},1:${truncatedV1()}`, /^pkv: configuration: PKV_MASTER_KEYS: version 1 key must be exactly 32 bytes, got 31$/],
    ])('exits non-zero before listening on %s, with one stderr line', async (_story, keyring, line) => {
      const ring = keyring();
      const res = await runPkv(['serve'], { ...withKeyring(ctx.env, ring), PKV_PORT: '0' }, { cwd: ctx.tdb.dir, timeoutMs: 30_000, killOnStdout: /listening on/ });
      expect(res.stdout).not.toContain('listening on');
      expect(res.signal).toBeNull();
      expect(res.code).not.toBe(0);
      expect(lines(res.stderr)).toEqual([expect.stringMatching(line)]);
      const count = line.exec(res.stderr.trim())?.[1];
      if (count !== undefined) expect(Number(count)).toBe(rowsUnderV1);
      for (const material of ring.split(',').map((e) => e.split(':')[1])) expect(res.stdout + res.stderr).not.toContain(material);
    }, 60_000);

    it('still answers `pkv keyring status` when start-up would refuse the keyring, naming the missing version, and seals nothing', async () => {
      const res = await runPkv(['keyring', 'status'], withKeyring(ctx.env, `2:${k2}`), { cwd: ctx.tdb.dir, timeoutMs: 30_000 });
      expect(res.code).toBe(0);
      expect(res.stdout).toContain('active version: 2; configured: 2');
      expect(lines(res.stdout)).toContain(`1        ${String(keys.length).padEnd(15)}${'2'.padEnd(13)}${rowsUnderV1}  (not configured: put it back, after the active key)`);
      expect(await canaryVersions(ctx)).toEqual([1]);
    }, 60_000);

    it('answers /readyz with 200 once it is listening with the right keyring, version 2 added after it', async () => {
      const serving = await servePkv({ ...withKeyring(ctx.env, `1:${k1},2:${k2}`), PKV_PORT: '0' }, { cwd: ctx.tdb.dir });
      try {
        expect(new URL(serving.url).hostname).toBe('127.0.0.1');
        const ready = await fetchJson(serving.url, { path: '/readyz' });
        expect(ready.status).toBe(200);
        expect(ready.json()).toMatchObject({ status: 'ready', database: 'ok', keyring: 'ok' });
      } finally {
        await serving.stop();
      }
      expect(await canaryVersions(ctx)).toEqual([1, 2]);
    }, 60_000);
  });
});

describe('start-up against rows under a version whose canary is missing (a database from before canaries, a partial restore)', () => {
  const k1 = randomMasterKey();
  let ctx: TestContext;
  let key: CreatedKey;
  let owner: TestUser;
  beforeAll(async () => {
    ctx = await createTestContext({ PKV_MASTER_KEY: k1 });
    const admin = await ctx.user('admin');
    owner = await ctx.user('member');
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: (await createProject(ctx, admin)).id });
    await ctx.db.transaction((tx) => tx.query('DELETE FROM kek_canaries'));
  });
  afterAll(() => ctx.close());

  it('refuses a wrong key for that version instead of sealing a canary that would bless it', async () => {
    const err = await refusal(withKeyring(ctx.env, `1:${randomMasterKey()}`));
    expect(err).toBeInstanceOf(KeyringMismatchError);
    expect(err.message).toMatch(/^PKV_MASTER_KEYS: master key version 1 does not open the rows wrapped under it/);
    expect(await canaryVersions(ctx)).toEqual([]);
  });

  it('accepts the right key, seals the canary again, and serves the key', async () => {
    const instance = await openInstance(withKeyring(ctx.env, `1:${k1}`));
    try {
      expect(await canaryVersions(ctx)).toEqual([1]);
      expect(await instance.container.keyring.matches()).toBe(true);
      const res = await instance.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
      expect(res.status).toBe(200);
      expect(res.body.secret).toBe(key.secret);
    } finally {
      await instance.close();
    }
  });
});

describe('GET /readyz on a server left with an outdated keyring after another process rotated', () => {
  const k1 = randomMasterKey();
  const k2 = randomMasterKey();
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ PKV_MASTER_KEY: k1 });
    const admin = await ctx.user('admin');
    const owner = await ctx.user('member');
    await createKey(ctx, admin, { ownerId: owner.id, projectId: (await createProject(ctx, admin)).id });
  });
  afterAll(() => ctx.close());

  it('turns 503 (keyring mismatch) once the system keys are under a version it does not have', async () => {
    expect((await ctx.http().get('/readyz')).status).toBe(200);
    const rotated = await openInstance(withKeyring(ctx.env, `2:${k2},1:${k1}`));
    try {
      const result = await rotated.container.rotation.run(cliActorForTest());
      expect(result).toMatchObject({ toVersion: 2, systemKeys: 2, remaining: 0 });
      expect((await rotated.http().get('/readyz')).status).toBe(200);
    } finally {
      await rotated.close();
    }
    const stale = await ctx.http().get('/readyz');
    expect(stale.status).toBe(503);
    expect(stale.body).toMatchObject({ status: 'unavailable', database: 'ok', keyring: 'mismatch' });
  });
});

describe('GET /readyz, in-process', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('answers 200 while the keyring opens its canary, and 503 naming the keyring once the stored canary no longer matches', async () => {
    const ok = await ctx.http().get('/readyz').expect(200);
    expect(ok.body).toMatchObject({ status: 'ready', database: 'ok', keyring: 'ok' });
    await ctx.db.transaction((tx) => tx.query('UPDATE kek_canaries SET ciphertext = ? WHERE kek_version = 1', [crypto.randomBytes(28)]));
    const bad = await ctx.http().get('/readyz').expect(503);
    expect(bad.body).toMatchObject({ status: 'unavailable', database: 'ok', keyring: 'mismatch' });
  });
});

describe('secrets from <NAME>_FILE variables, end to end', () => {
  let ctx: TestContext;
  let owner: TestUser;
  let key: CreatedKey;
  let secretsDir: string;

  const writeSecret = (name: string, text: string): string => {
    const file = path.join(secretsDir, name);
    fs.writeFileSync(file, text, { mode: 0o600 });
    return file;
  };

  beforeAll(async () => {
    assertBuilt();
    ctx = await createTestContext();
    const admin = await ctx.user('admin');
    owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
    secretsDir = fs.mkdtempSync(path.join(ctx.tdb.dir, 'secrets-'));
  });

  afterAll(async () => {
    await killAll();
    await ctx?.close();
  });

  it('serves with PKV_MASTER_KEYS_FILE and PKV_JWT_SECRET_FILE: sign-in tokens are signed with the file’s secret and keys sealed under the file’s keyring reveal', async () => {
    const jwtSecret = crypto.randomBytes(48).toString('base64url');
    const env = {
      ...ctx.env,
      PKV_MASTER_KEY: undefined,
      PKV_JWT_SECRET: undefined,
      PKV_MASTER_KEYS_FILE: writeSecret('master.keys', `1:${ctx.env.PKV_MASTER_KEY}\n`),
      PKV_JWT_SECRET_FILE: writeSecret('jwt.secret', `${jwtSecret}\n`),
      PKV_PORT: '0',
    };
    const serving = await servePkv(env, { cwd: ctx.tdb.dir });
    try {
      const login = await fetchJson(serving.url, { method: 'POST', path: '/api/v1/auth/login', body: { username: owner.username, password: owner.password } });
      expect(login.status).toBe(200);
      const token = login.json().accessToken as string;
      expect(() => jwt.verify(token, jwtSecret, { algorithms: ['HS256'] })).not.toThrow();
      expect(() => jwt.verify(token, ctx.env.PKV_JWT_SECRET!, { algorithms: ['HS256'] })).toThrow();

      const auth = { authorization: `Bearer ${token}` };
      const me = await fetchJson(serving.url, { path: '/api/v1/auth/me', headers: auth });
      expect(me.status).toBe(200);
      expect(me.json()).toMatchObject({ id: owner.id, via: 'session' });
      const revealed = await fetchJson(serving.url, { method: 'POST', path: `/api/v1/provider-keys/${key.id}/reveal`, headers: auth, body: {} });
      expect(revealed.status).toBe(200);
      expect(revealed.json().secret).toBe(key.secret);
      expect(serving.stdout() + serving.stderr()).not.toContain(jwtSecret);
    } finally {
      await serving.stop();
    }
  }, 60_000);

  it.each(['PKV_MASTER_KEYS', 'PKV_JWT_SECRET'])('refuses %s set together with its _FILE variant, naming the variable, before listening', async (name) => {
    const value = name === 'PKV_MASTER_KEYS' ? `1:${ctx.env.PKV_MASTER_KEY}` : ctx.env.PKV_JWT_SECRET!;
    const env = { ...ctx.env, ...(name === 'PKV_MASTER_KEYS' ? { PKV_MASTER_KEY: undefined } : {}), [name]: value, [`${name}_FILE`]: writeSecret(`both-${name}`, `${value}\n`), PKV_PORT: '0' };
    const res = await runPkv(['serve'], env, { cwd: ctx.tdb.dir, timeoutMs: 30_000, killOnStdout: /listening on/ });
    expect(res.stdout).not.toContain('listening on');
    expect(res.code).not.toBe(0);
    expect(res.code).not.toBeNull();
    expect(lines(res.stderr)).toEqual([`pkv: configuration: ${name}: set either ${name} or ${name}_FILE, not both`]);
    expect(res.stderr).not.toContain(value);
  }, 60_000);
});
