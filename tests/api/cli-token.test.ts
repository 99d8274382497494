import crypto from 'node:crypto';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows } from '../support/factories';
import { assertBuilt, killAll, PkvResult, runPkv } from '../support/processes';

const TOKEN_SHAPE = /^pkv_[A-Za-z0-9_-]{43}$/;
const DAY_MS = 86_400_000;
const sha256 = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

describe('pkv token create', () => {
  let ctx: TestContext;
  let user: TestUser;

  beforeAll(async () => {
    assertBuilt();
    ctx = await createTestContext();
    user = await ctx.user('member');
  });
  afterAll(async () => {
    await killAll();
    await ctx.close();
  });

  /** The built CLI against this context's database, with its master key and JWT secret, from a directory without a .env. */
  const pkv = (...args: string[]): Promise<PkvResult> => runPkv(['token', 'create', ...args], ctx.env, { cwd: ctx.tdb.dir, timeoutMs: 45_000 });
  const tokenCount = async (): Promise<number> => Number((await ctx.db.read((m) => m.query('SELECT COUNT(*) AS n FROM api_tokens')))[0].n);

  it('prints only the token on stdout; it works against the server, acting as the user with the asked scopes and expiry', async () => {
    const before = Date.now();
    const run = await pkv('--username', user.username, '--name', 'deploy bot', '--scope', 'provider-keys:read', 'provider-keys:reveal', '--expires-in-days', '7');
    const after = Date.now();
    expect(run).toMatchObject({ code: 0 });
    expect(run.stdout).toMatch(/^pkv_[A-Za-z0-9_-]{43}\n$/);
    const token = run.stdout.trim();
    expect(token).toMatch(TOKEN_SHAPE);
    expect(run.stderr).not.toContain(token.slice(12));

    const me = await ctx.http().get('/api/v1/auth/me').set('Authorization', `Bearer ${token}`);
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: user.id, username: user.username, role: 'member', via: 'api_token', scopes: ['provider-keys:read', 'provider-keys:reveal'] });
    expect((await ctx.http().get('/api/v1/provider-keys').set('X-API-Key', token)).status).toBe(200);
    expect((await ctx.http().get('/api/v1/projects').set('X-API-Key', token)).status).toBe(403);

    const [row] = await ctx.db.read((m) => m.query('SELECT * FROM api_tokens WHERE token_hash = ?', [sha256(token)]));
    expect(row).toMatchObject({ id: me.body.apiTokenId, user_id: user.id, name: 'deploy bot', prefix: token.slice(0, 12), scopes: 'provider-keys:read provider-keys:reveal', revoked_at: null });
    expect(Number(row.expires_at)).toBeGreaterThanOrEqual(before + 7 * DAY_MS);
    expect(Number(row.expires_at)).toBeLessThanOrEqual(after + 7 * DAY_MS);

    const listed = await ctx.http().get(`/api/v1/api-tokens/${row.id}`).set(user.auth);
    expect(listed.status).toBe(200);
    expect(Date.parse(listed.body.expiresAt)).toBe(Number(row.expires_at));

    const created = (await auditRows(ctx, { action: 'api_token.create' })).filter((r) => JSON.parse(String(r.detail)).tokenId === row.id);
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({ outcome: 'success', via: 'cli' });
    expect(JSON.parse(String(created[0].detail))).toMatchObject({ userId: user.id, scopes: ['provider-keys:read', 'provider-keys:reveal'] });
    expect(JSON.stringify(await auditRows(ctx))).not.toContain(token.slice(12));
  });

  it.each([
    ['an unknown scope', ['--username', '$USER', '--name', 'n', '--scope', 'provider-keys:admin'], /provider-keys:admin/, 'parser'],
    ['a scope beyond the user’s role', ['--username', '$USER', '--name', 'n', '--scope', 'users:write'], /users:write/, 'ours'],
    ['an unknown user', ['--username', 'nobody-here', '--name', 'n', '--scope', 'provider-keys:read'], /nobody-here/, 'ours'],
    ['0 days', ['--username', '$USER', '--name', 'n', '--scope', 'provider-keys:read', '--expires-in-days', '0'], /--expires-in-days/, 'ours'],
    ['366 days', ['--username', '$USER', '--name', 'n', '--scope', 'provider-keys:read', '--expires-in-days', '366'], /--expires-in-days/, 'ours'],
    ['1.5 days', ['--username', '$USER', '--name', 'n', '--scope', 'provider-keys:read', '--expires-in-days', '1.5'], /--expires-in-days/, 'ours'],
    ['no scope', ['--username', '$USER', '--name', 'n'], /--scope/, 'parser'],
  ])('refuses %s with a non-zero exit and a one-line error on stderr, minting nothing', async (_what, args, names, usage) => {
    const count = await tokenCount();
    const run = await pkv(...args.map((a) => (a === '$USER' ? user.username : a)));
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    const [first, ...rest] = run.stderr.trimEnd().split('\n');
    expect(first).toMatch(/^(pkv|error): /);
    expect(first).toMatch(names);
    // Usage errors caught by the argument parser are followed by the command's help (showHelpAfterError), nothing else.
    if (rest.length > 0) expect(rest.slice(0, 2)).toEqual(['', 'Usage: pkv token create [options]']);
    if (usage === 'ours') expect(rest).toEqual([]);
    expect(run.stderr).not.toMatch(/^\s+at /m);
    expect(await tokenCount()).toBe(count);
  });
});
