import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createKey, createProject, CreatedKey } from '../support/factories';
import { listen } from '../support/resilience-helpers';
import { StandInProvider } from '../support/stand-in-provider';

const CLI = path.resolve(__dirname, '../../dist/src/cli/pkv.js');
const DAY_MS = 86_400_000;
const sha256 = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('pkv virtual-key create', () => {
  let ctx: TestContext;
  let provider: StandInProvider;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let key: CreatedKey;

  beforeAll(async () => {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    provider = await new StandInProvider().start();
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    const project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, baseUrl: `${provider.url}/v1` });
    provider.validKeys.add(key.secret);
  });
  afterAll(async () => {
    await provider?.close();
    await ctx?.close();
  });

  /** The built CLI against this context's database, from a directory without a .env. */
  const pkv = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      const env = { PATH: process.env.PATH, ...ctx.env } as NodeJS.ProcessEnv;
      execFile(process.execPath, [CLI, 'virtual-key', 'create', ...args], { env, cwd: ctx.tdb.dir, timeout: 45_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });
  const vkCount = async (): Promise<number> => Number((await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM virtual_keys')))[0].n);

  it('prints only the virtual key on stdout, acting as the key’s owner by default, with the asked models, limits and lifetime; it works at the gateway', async () => {
    const before = Date.now();
    const run = await pkv('--key-id', key.id, '--name', 'nightly batch', '--models', 'gpt-test', 'gpt-other', '--expires-in-days', '3', '--daily-request-limit', '50', '--daily-token-limit', '10000');
    expect(run).toMatchObject({ code: 0 });
    expect(run.stdout).toMatch(/^pkv_vk_[A-Za-z0-9_-]{43}\n$/);
    const vk = run.stdout.trim();
    expect(run.stderr).toContain(`acting as ${owner.username}`);
    expect(run.stderr).not.toContain(vk.slice(15));

    const [row] = await ctx.db.read((m) => m.query('SELECT * FROM virtual_keys WHERE token_hash = ?', [sha256(vk)]));
    expect(row).toMatchObject({ key_id: key.id, user_id: owner.id, name: 'nightly batch', prefix: vk.slice(0, 15), revoked_at: null });
    expect(JSON.parse(String(row.models))).toEqual(['gpt-test', 'gpt-other']);
    expect([Number(row.daily_request_limit), Number(row.daily_token_limit)]).toEqual([50, 10000]);
    expect(Number(row.expires_at)).toBeGreaterThanOrEqual(before + 3 * DAY_MS);
    const [audit] = await auditRows(ctx, { action: 'virtual_key.create', keyId: key.id });
    expect(audit).toMatchObject({ outcome: 'success', actor_id: owner.id, via: 'cli' });

    const vault = await listen(ctx.handler);
    try {
      const res = await fetch(`${vault.url}/gateway/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${vk}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ model: 'gpt-test', messages: [] }) });
      expect(res.status).toBe(200);
      await res.text();
    } finally {
      await vault.close();
    }
  });

  it('acts as an admin for someone else’s key only with --reason (recorded); without it, exit 1 and a denied audit row', async () => {
    const before = await vkCount();
    const refused = await pkv('--key-id', key.id, '--name', 'support', '--username', admin.username);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/reason/i);
    expect(await vkCount()).toBe(before);
    const [denied] = await auditRows(ctx, { action: 'virtual_key.create', keyId: key.id });
    expect(denied).toMatchObject({ outcome: 'denied', actor_id: admin.id, via: 'cli' });

    const ok = await pkv('--key-id', key.id, '--name', 'support', '--username', admin.username, '--reason', 'INC-7: owner on leave');
    expect(ok.code).toBe(0);
    const [row] = await auditRows(ctx, { action: 'virtual_key.create', keyId: key.id });
    expect(row).toMatchObject({ outcome: 'success', actor_id: admin.id, reason: 'INC-7: owner on leave' });
  });

  it('refuses another member (no such key), an unknown user, a disabled user, an unknown key and bad values, making nothing', async () => {
    const before = await vkCount();
    const gone = await ctx.user('member');
    expect((await ctx.http().patch(`/api/v1/users/${gone.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
    const cases: Array<[string[], number, RegExp]> = [
      [['--key-id', key.id, '--name', 'x', '--username', other.username], 1, /No such key/],
      [['--key-id', key.id, '--name', 'x', '--username', 'nobody-here'], 1, /no user named/],
      [['--key-id', key.id, '--name', 'x', '--username', gone.username], 1, /disabled/],
      [['--key-id', '01890000-0000-7000-8000-000000000000', '--name', 'x'], 1, /No such key/],
      [['--key-id', key.id, '--name', 'x', '--daily-request-limit', 'lots'], 2, /--daily-request-limit/],
      [['--key-id', key.id, '--name', '', '--models', 'a'], 2, /--name/],
      [['--key-id', key.id, '--name', 'x', '--models', ''], 2, /--models/],
    ];
    for (const [args, code, error] of cases) {
      const run = await pkv(...args);
      expect({ args, code: run.code, stdout: run.stdout, error: error.test(run.stderr) }).toEqual({ args, code, stdout: '', error: true });
    }
    expect(await vkCount()).toBe(before);
  });
});
