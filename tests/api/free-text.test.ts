import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createApiToken, createKey, createProject, CreatedKey } from '../support/factories';
import { expectError, Headers, uniqueName } from '../support/auth-helpers';

type Row = Record<string, unknown>;
const nfd = (s: string) => s.normalize('NFD');

/**
 * One rule for every piece of free text people send (project, key, token and display names, remarks, descriptions,
 * reveal reasons), the same on SQLite and MySQL: NFC, trimmed of spaces and invisible characters, no bidirectional
 * controls, no invisible characters inside a name, and text made only of invisible characters is empty.
 */
describe('free text', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let member: TestUser;
  let project: { id: string; name: string };
  let key: CreatedKey;
  let token: { id: string };

  const call = (method: 'post' | 'patch', path: string, body: object, auth: Headers = admin.auth) => ctx.http()[method](`/api/v1${path}`).set(auth).send(body);

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    member = await ctx.user('member');
    project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: member.id, projectId: project.id });
    token = await createApiToken(ctx, admin, ['projects:read']);
  });
  afterAll(() => ctx.close());

  /** Every free-text field of every request body, with a body that is otherwise accepted. */
  const FIELDS: Array<[string, 'post' | 'patch', () => string, (v: string) => object]> = [
    ['POST /projects name', 'post', () => '/projects', (v) => ({ name: v })],
    ['POST /projects description', 'post', () => '/projects', (v) => ({ name: uniqueName('p'), description: v })],
    ['PATCH /projects/:id name', 'patch', () => `/projects/${project.id}`, (v) => ({ name: v })],
    ['PATCH /projects/:id description', 'patch', () => `/projects/${project.id}`, (v) => ({ description: v })],
    ['POST /provider-keys name', 'post', () => '/provider-keys', (v) => ({ name: v, provider: 'custom', ownerId: member.id, projectId: project.id, secret: `s-${uniqueName('x')}` })],
    ['POST /provider-keys remark', 'post', () => '/provider-keys', (v) => ({ name: 'k', remark: v, provider: 'custom', ownerId: member.id, projectId: project.id, secret: `s-${uniqueName('x')}` })],
    ['PATCH /provider-keys/:id name', 'patch', () => `/provider-keys/${key.id}`, (v) => ({ name: v })],
    ['PATCH /provider-keys/:id remark', 'patch', () => `/provider-keys/${key.id}`, (v) => ({ remark: v })],
    ['POST /provider-keys/:id/reveal reason', 'post', () => `/provider-keys/${key.id}/reveal`, (v) => ({ reason: v })],
    ['POST /users displayName', 'post', () => '/users', (v) => ({ username: uniqueName('u'), role: 'member', displayName: v })],
    ['PATCH /users/:id displayName', 'patch', () => `/users/${member.id}`, (v) => ({ displayName: v })],
    ['POST /api-tokens name', 'post', () => '/api-tokens', (v) => ({ name: v, scopes: ['projects:read'] })],
    ['PATCH /api-tokens/:id name', 'patch', () => `/api-tokens/${token.id}`, (v) => ({ name: v })],
  ];

  describe('bidirectional controls', () => {
    const BIDI = [['U+202E RIGHT-TO-LEFT OVERRIDE', 'invoice\u202Efdp.exe'], ['U+2066 LEFT-TO-RIGHT ISOLATE', 'a\u2066b'], ['U+200F RIGHT-TO-LEFT MARK', 'name\u200F'], ['U+061C ARABIC LETTER MARK', '\u061Cx y']];
    const cases = FIELDS.flatMap(([field, method, path, body]) => BIDI.map(([what, value]) => [field, what, method, path, body, value] as const));

    it.each(cases)('%s refuses %s with 400 naming the field, writing nothing', async (field, _what, method, path, body, value) => {
      const before = await auditRows(ctx);
      const res = await call(method, path(), body(value));
      expectError(res, 400, 'validation_failed');
      const name = field.split(' ').pop()!;
      expect(res.body.error.details).toEqual([{ field: `body.${name}`, message: 'must not contain bidirectional control characters' }]);
      expect(await auditRows(ctx)).toHaveLength(before.length);
    });
  });

  describe('invisible characters', () => {
    const SINGLE_LINE = FIELDS.filter(([f]) => / (name|displayName)$/.test(f));

    it.each(SINGLE_LINE.flatMap(([field, method, path, body]) => ['a\u200Bb', 'a\u2060b', 'a\u00ADb', 'a\uFEFFb', 'a\u3164b'].map((v) => [field, JSON.stringify(v), method, path, body, v] as const)))(
      '%s refuses %s (an invisible character inside a name) with 400',
      async (field, _shown, method, path, body, value) => {
        const res = await call(method, path(), body(value));
        expectError(res, 400, 'validation_failed');
        expect(res.body.error.details).toEqual([{ field: `body.${field.split(' ').pop()}`, message: 'must not contain invisible characters' }]);
      },
    );

    it('keeps joiners and emoji presentation selectors inside names (they shape visible text), and strips invisible characters at the ends', async () => {
      for (const name of ['👩‍👩‍👧 family', 'می‌خواهم', '❤️ ops']) {
        const res = await call('post', '/projects', { name });
        expect({ name, status: res.status, stored: res.body.name }).toEqual({ name, status: 201, stored: name });
      }
      const res = await call('post', '/projects', { name: '\u200B\u2060 edged \uFEFF\u00AD' });
      expect(res.status).toBe(201);
      expect(res.body.name).toBe('edged');
    });

    it.each(['\u200B', '\u2060', '\u00AD', ' \u200B\u2060 \n', '\uFEFF', '\u2800', '\u3164'])(
      'counts the reveal reason %j (invisible only) as no reason: 400 reason required, audited as denied, nothing revealed',
      async (reason) => {
        const res = await call('post', `/provider-keys/${key.id}/reveal`, { reason });
        expectError(res, 400, 'validation_failed');
        expect(res.body.error.details).toEqual([{ field: 'body.reason', message: 'required when revealing another user’s key' }]);
        expect(res.text).not.toContain(key.secret);
        const [row] = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
        expect(row).toMatchObject({ outcome: 'denied', actor_id: admin.id, reason: null, request_id: res.headers['x-request-id'] });
        expect(JSON.parse(String(row.detail))).toEqual({ why: 'reason_required' });
      },
    );

    it.each([
      ['POST /projects name', '/projects', { name: '\u200B\u2060' }, 'name', 'must not be empty'],
      ['POST /api-tokens name', '/api-tokens', { name: '\u00AD', scopes: ['projects:read'] }, 'name', 'must not be empty'],
    ])('counts %s made only of invisible characters as empty: 400', async (_story, path, body, field, message) => {
      const res = await call('post', path, body);
      expectError(res, 400, 'validation_failed');
      expect(res.body.error.details).toEqual([{ field: `body.${field}`, message }]);
    });

    it('keeps a visible reason, zero-width characters inside included, exactly as NFC', async () => {
      const res = await call('post', `/provider-keys/${key.id}/reveal`, { reason: ` ticket\u200B 42 Cafe\u0301 ` });
      expect(res.status).toBe(200);
      const [row] = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
      expect(row).toMatchObject({ outcome: 'success', reason: 'ticket\u200B 42 Caf\u00e9' });
    });
  });

  describe('one stored form, one comparison, on both databases', () => {
    it('stores every free-text field in NFC, whatever form was sent', async () => {
      const cafe = 'Cafe\u0301 Ünïcødé';
      const expected = cafe.normalize('NFC');
      const p = await call('post', '/projects', { name: `${cafe} ${uniqueName('p')}`, description: cafe });
      expect(p.status).toBe(201);
      expect(p.body.name.startsWith(expected)).toBe(true);
      expect(p.body.description).toBe(expected);
      const k = await call('post', '/provider-keys', { name: cafe, remark: cafe, provider: 'custom', ownerId: member.id, projectId: project.id, secret: `s-${uniqueName('nfc')}` });
      expect(k.body).toMatchObject({ name: expected, remark: expected });
      const t = await call('post', '/api-tokens', { name: cafe, scopes: ['projects:read'] });
      expect(t.body.name).toBe(expected);
      ctx.secrets.add('api token', t.body.token);
      const u = await call('patch', `/users/${member.id}`, { displayName: cafe });
      expect(u.body.displayName).toBe(expected);
      const rows: Row[] = await ctx.db.read((m) => m.query('SELECT name, description FROM projects WHERE id = ?', [p.body.id]));
      expect(rows[0].description).toBe(expected);
    });

    it.each([
      ['the NFD form of an NFC name', 'Café Noir', nfd('Café Noir')],
      ['a lower-case non-ASCII name', 'Äpfel', 'äpfel'],
      ['an upper-case non-ASCII name', 'äpfel', 'ÄPFEL'],
      ['a full-width name', 'Orchard', 'Ｏｒｃｈａｒｄ'],
      ['a ligature', 'file store', 'ﬁle store'],
      ['a sharp s and its capital spelling', 'Straße', 'STRASSE'],
    ])('refuses a project whose name is %s of an existing one with 409, on SQLite as on MySQL', async (_story, first, second) => {
      const suffix = ` ${uniqueName('n')}`;
      expect((await call('post', '/projects', { name: first + suffix })).status).toBe(201);
      const res = await call('post', '/projects', { name: second + suffix.toUpperCase() });
      expectError(res, 409, 'conflict');
    });

    it('keeps names apart that differ by more than case and compatibility form (an accent), on both databases alike', async () => {
      const suffix = ` ${uniqueName('n')}`;
      expect((await call('post', '/projects', { name: `Apfel${suffix}` })).status).toBe(201);
      expect((await call('post', '/projects', { name: `Äpfel${suffix}` })).status).toBe(201);
    });

    it('applies the same comparison on rename: a clash is 409, a change of case of its own name is fine', async () => {
      const a = await createProject(ctx, admin, `Birne ${uniqueName('r')}`);
      const b = await createProject(ctx, admin, `Quitte ${uniqueName('r')}`);
      expectError(await call('patch', `/projects/${b.id}`, { name: a.name.toUpperCase() }), 409, 'conflict');
      const own = await call('patch', `/projects/${a.id}`, { name: a.name.toUpperCase() });
      expect(own.status).toBe(200);
      expect(own.body.name).toBe(a.name.toUpperCase());
    });

    it('finds a key by an NFD search for its NFC name', async () => {
      const name = `Crème ${uniqueName('q')}`;
      const k = await createKey(ctx, admin, { ownerId: member.id, projectId: project.id, name });
      const res = await ctx.http().get(`/api/v1/provider-keys?q=${encodeURIComponent(nfd(name))}`).set(admin.auth);
      expect(res.status).toBe(200);
      expect(res.body.items.map((i: { id: string }) => i.id)).toEqual([k.id]);
    });
  });
});
