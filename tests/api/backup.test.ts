import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { createTestContext, randomMasterKey, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey } from '../support/factories';
import { seedProviderKeys, SeededKey, withKeyring } from '../support/keyring-helpers';
import { httpJson } from '../support/audit-helpers';
import { LeakBook } from '../support/resilience-helpers';
import { loadConfig } from '../../src/config';
import { Keyring } from '../../src/crypto/keyring';
import { auditKeyOf, openReadOnly } from '../../src/modules/backup/backup';
import { installBackup, markerMac } from '../../src/modules/backup/restore';
import { assertBuilt, Env, killAll, PkvResult, runPkv, servePkv, sleep, spawnPkv, waitFor } from '../support/processes';

const sqlite = process.env.PKV_TEST_DB !== 'mysql';
const describeSqlite = sqlite ? describe : describe.skip;
const describeMysql = sqlite ? describe.skip : describe;

/** Every command's output, searched for secrets at the end. */
const outputs: string[] = [];
async function pkv(args: string[], env: Env, cwd: string, timeoutMs = 120_000): Promise<PkvResult> {
  const res = await runPkv(args, env, { cwd, timeoutMs });
  outputs.push(res.stdout, res.stderr);
  return res;
}

/** The environment of a vault whose database and data dir are `dir` (a fresh one for a restore). */
const vaultIn = (env: Env, dir: string): Env => ({ ...env, PKV_DATABASE_URL: `sqlite:${path.join(dir, 'vault.db')}`, PKV_DATA_DIR: dir });

const failLines = (res: PkvResult) => res.stdout.split('\n').filter((l) => l.startsWith('FAIL'));

function rows<T>(dbFile: string, sql: string, params: unknown[] = []): T[] {
  const db = new BetterSqlite3(dbFile, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/** Copies a backup and its manifest to `name` beside it; `change` may damage the copy (the manifest stays as written). */
function copyBackup(file: string, name: string): string {
  const to = path.join(path.dirname(file), name);
  fs.copyFileSync(file, to);
  fs.copyFileSync(`${file}.manifest.json`, `${to}.manifest.json`);
  return to;
}

describeSqlite('pkv backup, backup verify and restore (embedded SQLite)', () => {
  /** Copies the live vault's database and checkpoint file into `dir`, so a restore over it leaves the suite's own as it is. */
  const copyLiveVault = (dir: string) => {
    for (const f of ['vault.db', 'vault.db-wal', 'audit-checkpoints.ndjson']) if (fs.existsSync(path.join(ctx.tdb.dir, f))) fs.copyFileSync(path.join(ctx.tdb.dir, f), path.join(dir, f));
  };
  const k1 = randomMasterKey();
  const k2 = randomMasterKey();
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let keys: CreatedKey[];
  let seeded: SeededKey[];
  let work: string;
  let backupFile: string;
  let backupHead: { seq: number; hash: string };
  /** Request ids of reveals that had answered 200 before `pkv backup` started. */
  let revealedBefore: string[];
  const book = new LeakBook();

  beforeAll(async () => {
    assertBuilt();
    ctx = await createTestContext({ PKV_MASTER_KEY: k1, PKV_REVEAL_RATE_LIMIT: '100000' });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    book.addUser(admin);
    book.addUser(owner);
    const project = await createProject(ctx, admin);
    keys = [];
    for (let i = 0; i < 4; i++) keys.push(await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id }));
    // A database of a few MB, so a paced backup takes long enough to be killed mid-copy.
    seeded = await seedProviderKeys(ctx, 1500, { ownerId: owner.id, projectId: project.id, createdBy: admin.id });
    for (const k of [...keys, ...seeded]) book.add(k.secret);
    work = fs.mkdtempSync(path.join(path.dirname(ctx.tdb.dir), 'pkv-backup-'));
  }, 120_000);

  afterAll(async () => {
    await killAll();
    if (ctx) expect(await book.check(ctx, outputs.join('\n') + fs.readdirSync(work).filter((f) => f.endsWith('.json')).map((f) => fs.readFileSync(path.join(work, f), 'utf8')).join('\n'))).toEqual({});
    await ctx?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('takes a consistent copy while the server keeps revealing; every reveal answered before it is in the copy, which verifies', async () => {
    const server = await servePkv(ctx.env, { cwd: ctx.tdb.dir });
    try {
      const auth = { Authorization: `Bearer ${(await httpJson(server.url, 'POST', '/auth/login', { body: { username: owner.username, password: owner.password } })).body.accessToken}` };
      book.add(auth.Authorization.slice(7));
      const answered: Array<{ requestId: string; at: number }> = [];
      const statuses: Record<number, number> = {};
      let stopAt = Date.now() + 60_000;
      const reveal = async (i: number) => {
        const key = keys[i % keys.length];
        const res = await fetch(`${server.url}/api/v1/provider-keys/${key.id}/reveal`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: '{}', signal: AbortSignal.timeout(30_000) });
        const body = (await res.json()) as { secret?: string };
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status !== 200) return;
        expect(body.secret).toBe(key.secret);
        answered.push({ requestId: res.headers.get('x-request-id')!, at: Date.now() });
      };
      // Four clients on loopback, bounded in count and time; they stop a second after the backup ends.
      let n = 0;
      const load = Promise.all(Array.from({ length: 4 }, async () => {
        while (Date.now() < stopAt && n < 5000) await reveal(n++);
      }));
      await waitFor('reveals under way', () => answered.length >= 40);
      const backupStartedAt = Date.now();
      revealedBefore = answered.filter((a) => a.at <= backupStartedAt).map((a) => a.requestId);
      backupFile = path.join(work, 'vault-backup.db');
      const res = await pkv(['backup', '--out', backupFile], ctx.env, ctx.tdb.dir);
      stopAt = Math.min(stopAt, Date.now() + 1000);
      await load;
      expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 0, stderr: '' });
      expect(statuses[200]).toBeGreaterThan(revealedBefore.length);
      expect(Object.keys(statuses)).toEqual(['200']);
      expect(res.stdout).toMatch(/^backup written to .*vault-backup\.db \(\d+ bytes, SHA-256 [0-9a-f]{64}\)$/m);
    } finally {
      await server.stop();
    }
    // 0600, no temp file left beside it, and a manifest describing the file.
    for (const f of [backupFile, `${backupFile}.manifest.json`]) expect(fs.statSync(f).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(work).sort()).toEqual(['vault-backup.db', 'vault-backup.db.manifest.json']);
    const manifest = JSON.parse(fs.readFileSync(`${backupFile}.manifest.json`, 'utf8'));
    expect(manifest).toMatchObject({ format: 'pkv-backup/1', database: 'sqlite', file: 'vault-backup.db', bytes: fs.statSync(backupFile).size, kekVersions: [1], canaryVersions: [1] });
    expect(manifest.sha256).toBe(crypto.createHash('sha256').update(fs.readFileSync(backupFile)).digest('hex'));
    expect(manifest.rows.provider_keys).toBe(keys.length + seeded.length);
    expect(manifest.schema.lastMigration).toMatch(/^\w+\d{13}$/);
    const [head] = rows<{ seq: number; hash: string }>(backupFile, 'SELECT seq, hash FROM audit_chain_head');
    backupHead = head;
    expect(manifest.auditHead).toEqual(head);
    // Every reveal that had answered 200 before the backup started is in the copy (sealed or not yet).
    const inCopy = new Set(rows<{ request_id: string }>(backupFile, "SELECT request_id FROM audit_events WHERE action = 'provider_key.reveal' AND outcome = 'success'").map((r) => r.request_id));
    expect(revealedBefore.filter((id) => !inCopy.has(id))).toEqual([]);
    expect(revealedBefore.length).toBeGreaterThanOrEqual(40);

    const verified = await pkv(['backup', 'verify', backupFile, '--all'], ctx.env, ctx.tdb.dir);
    expect({ code: verified.code, fail: failLines(verified) }).toEqual({ code: 0, fail: [] });
    expect(verified.stdout).toContain(`ok    provider keys: ${keys.length + seeded.length} of ${keys.length + seeded.length} envelope(s) open`);
    expect(verified.stdout).toMatch(new RegExp(`^ok    audit chain: \\d+ sealed row\\(s\\) verified up to head seq ${head.seq};`, 'm'));
  }, 180_000);

  it('restores into a fresh data dir; the first start records vault.restore with the backup’s head, reveals work and the trail verifies', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'restored-'));
    const env = vaultIn(ctx.env, dir);
    const res = await pkv(['restore', backupFile], env, dir);
    expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 0, stderr: '' });
    expect(fs.statSync(path.join(dir, 'vault.db')).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(path.join(dir, 'restore-pending.json'))).toBe(true);

    const server = await servePkv(env, { cwd: dir });
    try {
      const login = await httpJson(server.url, 'POST', '/auth/login', { body: { username: admin.username, password: admin.password } });
      expect(login.status).toBe(200);
      const auth = { Authorization: `Bearer ${login.body.accessToken}` };
      book.add(login.body.accessToken);
      const reveal = await httpJson(server.url, 'POST', `/provider-keys/${keys[0].id}/reveal`, { body: { reason: 'restore drill' }, headers: auth });
      expect(reveal.status).toBe(200);
      expect(reveal.body.secret).toBe(keys[0].secret);
      const restored = await httpJson(server.url, 'GET', '/audit-events?action=vault.restore', { headers: auth });
      expect(restored.status).toBe(200);
      expect(restored.body.items).toHaveLength(1);
      expect(restored.body.items[0]).toMatchObject({ action: 'vault.restore', outcome: 'success', actorUsername: 'restore', detail: { backupFile: 'vault-backup.db', restoredHead: backupHead, previousCheckpoint: null } });
    } finally {
      await server.stop();
    }
    expect(fs.existsSync(path.join(dir, 'restore-pending.json'))).toBe(false);
    const trail = new Set(rows<{ request_id: string }>(path.join(dir, 'vault.db'), "SELECT request_id FROM audit_events WHERE action = 'provider_key.reveal' AND outcome = 'success'").map((r) => r.request_id));
    expect(revealedBefore.filter((id) => !trail.has(id))).toEqual([]);
    const audit = await pkv(['audit', 'verify'], env, dir);
    expect(audit.code).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true });
    // Accepted once: the marker is gone and a second start records nothing more.
    expect(rows(path.join(dir, 'vault.db'), "SELECT id FROM audit_events WHERE action = 'vault.restore'")).toHaveLength(1);
  }, 120_000);

  it('restoring over the live vault (--force) moves its database aside, keeps its checkpoint file as evidence and records the rewind', async () => {
    // Make the live trail run ahead of the backup and anchor it in the data dir's checkpoint file.
    const ahead = await pkv(['audit', 'verify'], ctx.env, ctx.tdb.dir);
    expect(ahead.code).toBe(0);
    const liveHead = JSON.parse(ahead.stdout).head as { seq: number; hash: string };
    expect(liveHead.seq).toBeGreaterThan(backupHead.seq);
    const refused = await pkv(['restore', backupFile], ctx.env, ctx.tdb.dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^pkv: the target is not empty \(.*vault\.db.*\): restore into an empty data dir, or pass --force/m);
    expect(refused.stdout).toBe('');
    // This suite's own connection has the live database open, as a running server would: --force refuses too.
    const busy = await pkv(['restore', backupFile, '--force'], ctx.env, ctx.tdb.dir);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/^pkv: the database .*vault\.db is open in another process \(a running server\?\): stop every server using it, then restore$/m);
    expect(fs.readdirSync(ctx.tdb.dir).filter((f) => f.includes('before-restore') || f === 'restore-pending.json')).toEqual([]);

    // A copy of the live vault, so the suite's own database stays as it is.
    const dir = fs.mkdtempSync(path.join(work, 'forced-'));
    fs.copyFileSync(path.join(ctx.tdb.dir, 'vault.db'), path.join(dir, 'vault.db'));
    for (const f of ['vault.db-wal', 'audit-checkpoints.ndjson']) if (fs.existsSync(path.join(ctx.tdb.dir, f))) fs.copyFileSync(path.join(ctx.tdb.dir, f), path.join(dir, f));
    const env = vaultIn(ctx.env, dir);
    const res = await pkv(['restore', backupFile, '--force'], env, dir);
    expect(res.code).toBe(0);
    // STAMP-RAND: two restores in one second never share a name, and a move never replaces a file.
    expect(res.stdout).toMatch(/^moved aside: .*vault\.db\.before-restore-\d{8}T\d{6}Z-[0-9a-f]{8}$/m);
    const audit = await pkv(['audit', 'verify'], env, dir);
    expect(audit.code).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true });
    const [row] = rows<{ detail: string }>(path.join(dir, 'vault.db'), "SELECT detail FROM audit_events WHERE action = 'vault.restore'");
    const detail = JSON.parse(row.detail);
    expect(detail).toMatchObject({ restoredHead: backupHead, previousCheckpoint: { seq: liveHead.seq, hash: liveHead.hash }, checkpointFileArchivedAs: expect.stringMatching(/^audit-checkpoints\.ndjson\.before-restore-\d{8}T\d{6}Z-[0-9a-f]{8}$/) });
    expect(fs.existsSync(path.join(dir, detail.checkpointFileArchivedAs))).toBe(true);
  }, 120_000);

  it('a restore marker that was altered is not accepted: the rewound trail is reported as before, and nothing is recorded as a restore', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'forged-marker-'));
    fs.copyFileSync(path.join(ctx.tdb.dir, 'vault.db'), path.join(dir, 'vault.db'));
    for (const f of ['vault.db-wal', 'audit-checkpoints.ndjson']) if (fs.existsSync(path.join(ctx.tdb.dir, f))) fs.copyFileSync(path.join(ctx.tdb.dir, f), path.join(dir, f));
    const env = vaultIn(ctx.env, dir);
    expect((await pkv(['restore', backupFile, '--force'], env, dir)).code).toBe(0);
    const markerFile = path.join(dir, 'restore-pending.json');
    const marker = JSON.parse(fs.readFileSync(markerFile, 'utf8'));
    fs.writeFileSync(markerFile, JSON.stringify({ ...marker, backup: { ...marker.backup, file: 'another.db' } }));
    const audit = await pkv(['audit', 'verify'], env, dir);
    expect(audit.code).toBe(1);
    expect(audit.stderr).toContain("is not accepted: its MAC does not verify under this database's audit key");
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: false, reason: expect.stringMatching(/rows were removed and the chain head was rewound/) });
    expect(rows(path.join(dir, 'vault.db'), "SELECT id FROM audit_events WHERE action = 'vault.restore'")).toEqual([]);
    expect(fs.existsSync(markerFile)).toBe(true);
  }, 120_000);

  it('a marker whose MAC is not hex is refused, not a crash; vault.restore rows planted without a valid row MAC are ignored: no path from them is used', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'odd-marker-'));
    copyLiveVault(dir);
    const env = vaultIn(ctx.env, dir);
    expect((await pkv(['restore', backupFile, '--force'], env, dir)).code).toBe(0);
    const markerFile = path.join(dir, 'restore-pending.json');
    const marker = JSON.parse(fs.readFileSync(markerFile, 'utf8'));
    // 64 characters, one of them not ASCII: a byte-length check would throw inside timingSafeEqual.
    fs.writeFileSync(markerFile, JSON.stringify({ ...marker, mac: `é${'0'.repeat(63)}` }));
    const odd = await pkv(['audit', 'verify'], env, dir);
    expect(odd.code).toBe(1);
    expect(odd.stderr).toContain('is not accepted: it is not a restore marker');
    expect(odd.stderr).not.toMatch(/ERR_CRYPTO|timingSafeEqual/);
    // The genuine marker back, and a database writer's vault.restore rows: one naming the marker (with a path in its
    // detail, to skip the checks and move the checkpoint file out of the data dir), one whose detail is not JSON.
    fs.writeFileSync(markerFile, JSON.stringify(marker));
    const db = new BetterSqlite3(path.join(dir, 'vault.db'));
    try {
      const plant = db.prepare("INSERT INTO audit_events (id, row_mac, at, action, outcome, detail) VALUES (?, ?, ?, 'vault.restore', 'success', ?)");
      plant.run(crypto.randomUUID(), '0'.repeat(64), Date.now(), JSON.stringify({ restoreId: marker.id, checkpointFileArchivedAs: '../moved-away' }));
      plant.run(crypto.randomUUID(), 'é'.repeat(64), Date.now(), '{not json');
    } finally {
      db.close();
    }
    const planted = await pkv(['audit', 'verify'], env, dir);
    expect(planted.stderr).not.toContain('already recorded');
    expect(planted.stderr).not.toMatch(/ERR_CRYPTO|SyntaxError/);
    // The marker was judged on its own: accepted, and the checkpoint file archived in the data dir under a name pkv chose.
    expect(fs.existsSync(markerFile)).toBe(false);
    expect(fs.existsSync(path.join(work, 'moved-away'))).toBe(false);
    const genuine = rows<{ detail: string }>(path.join(dir, 'vault.db'), "SELECT detail FROM audit_events WHERE action = 'vault.restore' AND row_mac NOT IN (?, ?)", ['0'.repeat(64), 'é'.repeat(64)]);
    expect(genuine).toHaveLength(1);
    const archived = JSON.parse(genuine[0].detail).checkpointFileArchivedAs;
    expect(archived).toMatch(/^audit-checkpoints\.ndjson\.before-restore-\d{8}T\d{6}Z-[0-9a-f]{8}$/);
    expect(fs.existsSync(path.join(dir, archived))).toBe(true);
    // The planted rows themselves are what verify reports.
    expect(planted.code).toBe(1);
    expect(planted.stderr).not.toContain('unexpected error');
    expect(JSON.parse(planted.stdout)).toMatchObject({ ok: false, reason: 'an unsealed row was changed or forged' });
  }, 120_000);

  it('a consumed marker put back with the database it restored (a further rewind) is refused, and the rewind is reported', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'replay-'));
    copyLiveVault(dir);
    const env = vaultIn(ctx.env, dir);
    expect((await pkv(['restore', backupFile, '--force'], env, dir)).code).toBe(0);
    const markerFile = path.join(dir, 'restore-pending.json');
    const marker = fs.readFileSync(markerFile);
    expect(JSON.parse(marker.toString()).anchor).toMatchObject({ seq: expect.any(Number), hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const restoredDb = fs.readFileSync(path.join(dir, 'vault.db'));
    const first = await pkv(['audit', 'verify'], env, dir);
    expect(first.code).toBe(0);
    expect(rows(path.join(dir, 'vault.db'), "SELECT id FROM audit_events WHERE action = 'vault.restore'")).toHaveLength(1);
    // The restored head is anchored in the fresh checkpoint file.
    const fresh = fs.readFileSync(path.join(dir, 'audit-checkpoints.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(fresh[0]).toMatchObject(backupHead);

    // Someone with the data dir rewinds the database to the restored copy (before its vault.restore row) and puts the old marker back.
    for (const f of ['vault.db-wal', 'vault.db-shm']) fs.rmSync(path.join(dir, f), { force: true });
    fs.writeFileSync(path.join(dir, 'vault.db'), restoredDb);
    fs.writeFileSync(markerFile, marker);
    const replay = await pkv(['audit', 'verify'], env, dir);
    expect(replay.code).toBe(1);
    expect(replay.stderr).toMatch(/is not accepted: the checkpoint file's newest anchor \(seq \d+\) is not the one it had at the restore \(seq \d+\)/);
    expect(JSON.parse(replay.stdout)).toMatchObject({ ok: false, reason: expect.stringMatching(/rows were removed and the chain head was rewound/) });
    expect(rows(path.join(dir, 'vault.db'), "SELECT id FROM audit_events WHERE action = 'vault.restore'")).toEqual([]);
  }, 120_000);

  it('a genuine marker older than 7 days is refused: the rewound trail is reported as without one', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'stale-marker-'));
    copyLiveVault(dir);
    const env = vaultIn(ctx.env, dir);
    expect((await pkv(['restore', backupFile, '--force'], env, dir)).code).toBe(0);
    const markerFile = path.join(dir, 'restore-pending.json');
    const { mac: _mac, ...body } = JSON.parse(fs.readFileSync(markerFile, 'utf8'));
    // Re-signed with the vault's own audit key (as `pkv restore` would have 8 days ago): only its age is wrong.
    const db = await openReadOnly(path.join(dir, 'vault.db'));
    let stale: Record<string, unknown>;
    try {
      const auditKey = await auditKeyOf(db, new Keyring(loadConfig(ctx.env, { generateDevSecrets: false }).masterKeys));
      const old = { ...body, at: new Date(Date.now() - 8 * 24 * 3600 * 1000).toISOString() };
      stale = { ...old, mac: markerMac(auditKey, old) };
    } finally {
      await db.close();
    }
    fs.writeFileSync(markerFile, JSON.stringify(stale));
    const res = await pkv(['audit', 'verify'], env, dir);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/is not accepted: it was written at \S+, more than 7 days ago \(or in the future\): run `pkv restore` again/);
    expect(JSON.parse(res.stdout)).toMatchObject({ ok: false, reason: expect.stringMatching(/rows were removed and the chain head was rewound/) });
    expect(rows(path.join(dir, 'vault.db'), "SELECT id FROM audit_events WHERE action = 'vault.restore'")).toEqual([]);
  }, 120_000);

  it('restore --force checks its copy before it moves the live database aside: a copy that does not match leaves the database where it was', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'copy-fails-'));
    copyLiveVault(dir);
    const before = fs.readdirSync(dir).sort();
    const liveSha = crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, 'vault.db'))).digest('hex');
    const manifest = JSON.parse(fs.readFileSync(`${backupFile}.manifest.json`, 'utf8'));
    const keyring = new Keyring(loadConfig(ctx.env, { generateDevSecrets: false }).masterKeys);
    // The copy written is checked against the manifest's SHA-256; a wrong one stands for a copy that came out damaged.
    await expect(installBackup(backupFile, { ...manifest, sha256: '0'.repeat(64) }, path.join(dir, 'vault.db'), dir, keyring)).rejects.toThrow(/differs from the backup \(SHA-256\)/);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    expect(crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, 'vault.db'))).digest('hex')).toBe(liveSha);
  }, 60_000);

  it.each<[string, (file: string) => void, RegExp]>([
    ['a truncated file', (f) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2)), /^FAIL {2}file: truncated: \d+ of the \d+ bytes its manifest records$/m],
    [
      'a flipped bit',
      (f) => {
        const b = fs.readFileSync(f);
        b[Math.floor(b.length / 2)] ^= 0x10;
        fs.writeFileSync(f, b);
      },
      /^FAIL {2}file: SHA-256 does not match the manifest: the file was altered or damaged \(bit flip\)$/m,
    ],
  ])('verify fails on %s, with a named line', async (_story, damage, line) => {
    const file = copyBackup(backupFile, `damaged-${crypto.randomBytes(3).toString('hex')}.db`);
    damage(file);
    const res = await pkv(['backup', 'verify', file], ctx.env, ctx.tdb.dir);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(line);
    expect(res.stderr).toMatch(/^pkv: backup verification FAILED: \d+ check\(s\) failed$/m);
    // And restore refuses it, writing nothing.
    const dir = fs.mkdtempSync(path.join(work, 'refused-'));
    const restore = await pkv(['restore', file], vaultIn(ctx.env, dir), dir);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toMatch(/the backup did not verify: nothing was restored/);
    expect(fs.readdirSync(dir)).toEqual([]);
  }, 60_000);

  it('verify names the provider key whose envelope does not open and the seq where the audit chain is broken (file and manifest consistent, rows changed)', async () => {
    const file = copyBackup(backupFile, 'tampered.db');
    const db = new BetterSqlite3(file);
    db.prepare("UPDATE audit_events SET reason = 'rewritten' WHERE seq = 2").run();
    db.prepare('UPDATE provider_keys SET secret_ciphertext = randomblob(length(secret_ciphertext)) WHERE id = ?').run(keys[2].id);
    db.close();
    const manifest = JSON.parse(fs.readFileSync(`${file}.manifest.json`, 'utf8'));
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(`${file}.manifest.json`, JSON.stringify({ ...manifest, bytes: bytes.length, sha256: crypto.createHash('sha256').update(bytes).digest('hex') }));
    const res = await pkv(['backup', 'verify', file, '--all'], ctx.env, ctx.tdb.dir);
    expect(res.code).toBe(1);
    expect(failLines(res)).toEqual([
      "FAIL  manifest: its MAC does not verify under the backup's audit key: the manifest was altered, or is not this backup's",
      `FAIL  provider key ${keys[2].id}: its envelope does not open (AEAD check failed or its master key version is missing)`,
      'FAIL  audit chain: broken at seq 2: row 2 was changed after it was written',
    ]);
  }, 60_000);

  it('verify and restore refuse a copy whose trail was trimmed with its manifest rewritten to match, and a manifest without its MAC', async () => {
    const file = copyBackup(backupFile, 'trimmed.db');
    const db = new BetterSqlite3(file);
    const keep = backupHead.seq - 5;
    const [at] = db.prepare('SELECT chain_hash AS hash FROM audit_events WHERE seq = ?').all(keep) as Array<{ hash: string }>;
    db.prepare('DELETE FROM audit_events WHERE seq > ?').run(keep);
    db.prepare('UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1').run(keep, at.hash);
    db.close();
    const manifest = JSON.parse(fs.readFileSync(`${file}.manifest.json`, 'utf8'));
    expect(manifest.mac).toMatch(/^[0-9a-f]{64}$/);
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(`${file}.manifest.json`, JSON.stringify({ ...manifest, bytes: bytes.length, sha256: crypto.createHash('sha256').update(bytes).digest('hex'), auditHead: { seq: keep, hash: at.hash } }));
    const res = await pkv(['backup', 'verify', file], ctx.env, ctx.tdb.dir);
    expect(res.code).toBe(1);
    // Everything else holds: the trimmed chain verifies up to its rewound head; only the manifest's MAC tells.
    expect(failLines(res)).toEqual(["FAIL  manifest: its MAC does not verify under the backup's audit key: the manifest was altered, or is not this backup's"]);
    const dir = fs.mkdtempSync(path.join(work, 'trimmed-'));
    const restore = await pkv(['restore', file], vaultIn(ctx.env, dir), dir);
    expect(restore.code).toBe(1);
    expect(restore.stderr).toMatch(/the backup did not verify: nothing was restored/);
    expect(fs.readdirSync(dir)).toEqual([]);

    const stripped = copyBackup(backupFile, 'stripped.db');
    const { mac: _mac, ...unsigned } = manifest;
    fs.writeFileSync(`${stripped}.manifest.json`, JSON.stringify(unsigned));
    const bare = await pkv(['backup', 'verify', stripped], ctx.env, ctx.tdb.dir);
    expect(bare.code).toBe(1);
    expect(failLines(bare)).toEqual(['FAIL  manifest: it carries no MAC (written by an older pkv, or stripped): its SHA-256 and audit head are not authenticated']);
  }, 60_000);

  it('verify and restore refuse a wrong keyring, naming the version; the live database is never touched', async () => {
    const before = fs.statSync(path.join(ctx.tdb.dir, 'vault.db')).mtimeMs;
    const wrong = await pkv(['backup', 'verify', backupFile], withKeyring(ctx.env, `1:${randomMasterKey()}`), ctx.tdb.dir);
    expect(wrong.code).toBe(1);
    expect(failLines(wrong)).toEqual([
      'FAIL  keyring: master key version(s) 1 do not open their canary: wrong keyring for this backup',
      'FAIL  keyring: the audit key in the backup does not open under the configured keyring (wrong keyring)',
      expect.stringMatching(/^FAIL {2}provider keys: 25 of the 25 checked are under a master key version reported above, so they cannot open$/),
    ]);
    const dir = fs.mkdtempSync(path.join(work, 'wrong-'));
    const restore = await pkv(['restore', backupFile], vaultIn(withKeyring(ctx.env, `1:${randomMasterKey()}`), dir), dir);
    expect(restore.code).toBe(1);
    expect(fs.existsSync(path.join(dir, 'vault.db'))).toBe(false);
    expect(fs.statSync(path.join(ctx.tdb.dir, 'vault.db')).mtimeMs).toBe(before);
  }, 60_000);

  it('a kill -9 during the copy leaves nothing under the target name; the next backup to that name verifies', async () => {
    const target = path.join(work, 'killed.db');
    // Test-only pacing: one page per step, 20 ms apart.
    const p = spawnPkv(['backup', '--out', target], { ...ctx.env, PKV_BACKUP_TEST_PACE_MS: '20' }, { cwd: ctx.tdb.dir });
    // Under way: the copy's write transaction has begun (its journal exists). The pages themselves may sit in SQLite's
    // page cache until it spills, so the temp file's size says nothing about progress.
    const temp = await waitFor('the copy to be under way', () => {
      const files = fs.readdirSync(work);
      return files.find((f) => /^\.killed\.db\.backup-.*\.tmp$/.test(f) && files.includes(`${f}-journal`));
    }, { timeoutMs: 60_000, intervalMs: 20 });
    await sleep(300);
    await p.kill('SIGKILL');
    outputs.push(p.output());
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.existsSync(`${target}.manifest.json`)).toBe(false);
    expect(temp).toMatch(/^\.killed\.db\.backup-\d+-[0-9a-f]{8}\.tmp$/);
    const again = await pkv(['backup', '--out', target], ctx.env, ctx.tdb.dir);
    expect(again.code).toBe(0);
    expect((await pkv(['backup', 'verify', target], ctx.env, ctx.tdb.dir)).code).toBe(0);
  }, 120_000);

  it('a backup from before `pkv keyring rotate` restores with the old version kept in the keyring, and names it when it is not', async () => {
    const rotated = withKeyring(ctx.env, `2:${k2},1:${k1}`);
    const rotate = await pkv(['keyring', 'rotate'], rotated, ctx.tdb.dir);
    expect(rotate.code).toBe(0);
    const onlyV2 = withKeyring(ctx.env, `2:${k2}`);
    const verify = await pkv(['backup', 'verify', backupFile], onlyV2, ctx.tdb.dir);
    expect(verify.code).toBe(1);
    expect(failLines(verify)[0]).toBe('FAIL  keyring: master key version(s) 1 used by the backup are not in the configured keyring (PKV_MASTER_KEYS): keep old versions as long as backups need them');
    expect((await pkv(['backup', 'verify', backupFile], rotated, ctx.tdb.dir)).code).toBe(0);

    const dir = fs.mkdtempSync(path.join(work, 'rotated-'));
    expect((await pkv(['restore', backupFile], vaultIn(rotated, dir), dir)).code).toBe(0);
    // A restored vault still refuses to start without the versions its rows use, exactly as any start does.
    const refused = await runPkv(['serve'], { ...vaultIn(onlyV2, dir), PKV_PORT: '0', PKV_HOST: '127.0.0.1' }, { cwd: dir, timeoutMs: 30_000, killOnStdout: /listening on/ });
    outputs.push(refused.stdout, refused.stderr);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^pkv: PKV_MASTER_KEYS: master key version 1 is missing but still wraps \d+ row\(s\)/m);
    const server = await servePkv(vaultIn(rotated, dir), { cwd: dir });
    try {
      const login = await httpJson(server.url, 'POST', '/auth/login', { body: { username: owner.username, password: owner.password } });
      book.add(login.body.accessToken);
      const reveal = await httpJson(server.url, 'POST', `/provider-keys/${keys[1].id}/reveal`, { body: {}, headers: { Authorization: `Bearer ${login.body.accessToken}` } });
      expect(reveal.status).toBe(200);
      expect(reveal.body.secret).toBe(keys[1].secret);
    } finally {
      await server.stop();
    }
  }, 180_000);
});

describeMysql('pkv backup on MySQL/MariaDB', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    assertBuilt();
    ctx = await createTestContext();
  });
  afterAll(async () => {
    await killAll();
    await ctx?.close();
  });

  it.each([['backup', '--out'], ['restore']])('`pkv %s` refuses with exit code 4 and the supported way (mysqldump --single-transaction or mariadb-backup), writing nothing', async (...args) => {
    const out = path.join(ctx.tdb.dir, 'mysql-backup.db');
    const res = await runPkv([...args, out], ctx.env, { cwd: ctx.tdb.dir, timeoutMs: 30_000 });
    expect(res.code).toBe(4);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^pkv: pkv backup\/restore copy the embedded SQLite database only; on MySQL\/MariaDB .*`mysqldump --single-transaction --quick DB` \(or `mariadb-backup --backup`\).*docs\/operations\.md$/m);
    expect(fs.readdirSync(ctx.tdb.dir).filter((f) => f.startsWith('mysql-backup') || f.startsWith('.mysql-backup'))).toEqual([]);
  }, 60_000);
});
