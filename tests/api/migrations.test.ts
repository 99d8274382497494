import fs from 'node:fs';
import path from 'node:path';
import { loadConfig, Config } from '../../src/config';
import { createDataSource, openDatabase } from '../../src/db/data-source';
import { Database } from '../../src/db/database';
import { openMigrated, start, StartupError } from '../../src/main';
import { CaptureTransport, createLogger } from '../../src/logger';
import { migrations } from '../../migrations';
import { Initial1763900000000 } from '../../migrations/1763900000000-Initial';
import { RedTeam1764800000000 } from '../../migrations/1764800000000-RedTeam';
import { Gateway1764820000000 } from '../../migrations/1764820000000-Gateway';
import { DataSource } from 'typeorm';
import { buildContainer } from '../../src/container';
import { cliActor } from '../../src/modules/auth/actor';
import { createTestDatabase, dbKind, testEnv, TestDatabase } from '../support/test-app';
import { assertBuilt, killAll, runPkv } from '../support/processes';

const kind = dbKind();
const onMysql = kind === 'mysql' ? describe : describe.skip;
const onSqlite = kind === 'sqlite' ? describe : describe.skip;

const TABLES = [
  'users',
  'projects',
  'revoked_sessions',
  'provider_keys',
  'api_tokens',
  'audit_events',
  'audit_chain_head',
  'kek_canaries',
  'system_keys',
  'virtual_keys',
  'gateway_usage',
  'key_health_events',
  'webhooks',
  'webhook_deliveries',
  'webhook_attempts',
  'pkv_migrations',
];
const MIGRATION_NAMES = migrations.map((m) => new m().name ?? m.name);

async function existingTables(db: Database): Promise<string[]> {
  const runner = db.dataSource.createQueryRunner();
  try {
    const found: string[] = [];
    for (const t of TABLES) if (await runner.hasTable(t)) found.push(t);
    return found;
  } finally {
    await runner.release();
  }
}

const quietLogger = () => createLogger('warn', [new CaptureTransport()]);

describe('migrations', () => {
  let tdb: TestDatabase;
  let config: Config;
  const open: Database[] = [];

  beforeEach(async () => {
    tdb = await createTestDatabase(kind);
    config = loadConfig(testEnv(tdb, { PKV_PORT: '0' }), { generateDevSecrets: false });
  });
  afterEach(async () => {
    await killAll();
    for (const db of open.splice(0)) await db.close();
    await tdb.drop();
  });

  const openDb = async () => {
    const db = await openDatabase(config.database);
    open.push(db);
    return db;
  };

  describe('db.migrate() on an empty database', () => {
    it('creates every table, and running it again applies nothing', async () => {
      const db = await openDb();
      expect(await existingTables(db)).toEqual([]);
      expect(await db.pendingMigrations()).toBe(true);

      expect(await db.migrate()).toEqual(MIGRATION_NAMES);
      expect(await existingTables(db)).toEqual(TABLES);
      expect(await db.pendingMigrations()).toBe(false);

      expect(await db.migrate()).toEqual([]);
      const recorded = await db.read((m) => m.query('SELECT name FROM pkv_migrations ORDER BY id'));
      expect(recorded.map((r: { name: string }) => r.name)).toEqual(MIGRATION_NAMES);
    });

    it('creates every column the entities map', async () => {
      const db = await openDb();
      await db.migrate();
      const runner = db.dataSource.createQueryRunner();
      try {
        const missing: string[] = [];
        for (const entity of db.dataSource.entityMetadatas) {
          const table = await runner.getTable(entity.tableName);
          if (!table) {
            missing.push(entity.tableName);
            continue;
          }
          const columns = new Set(table.columns.map((c) => c.name));
          for (const column of entity.columns) if (!columns.has(column.databaseName)) missing.push(`${entity.tableName}.${column.databaseName}`);
        }
        expect(missing).toEqual([]);
      } finally {
        await runner.release();
      }
    });
  });

  describe('the RedTeam migration on a database that already holds data', () => {
    it('keeps projects whose names the new rule folds alike, refuses new clashes, and leaves every user without a forced password change', async () => {
      const initialOnly = new DataSource({ ...createDataSource(config.database).options, migrations: [Initial1763900000000] } as ConstructorParameters<typeof DataSource>[0]);
      await initialOnly.initialize();
      // Pairs the old unique index let through: SQLite compared bytes, MySQL's collation weighs every astral letter alike.
      const [first, second] = kind === 'sqlite' ? ['Äpfel', 'äpfel'] : ['team 𝐀', 'team a'];
      const now = Date.now();
      try {
        await initialOnly.runMigrations();
        await initialOnly.query('INSERT INTO projects (id, name, description, created_at, updated_at) VALUES (?, ?, NULL, ?, ?), (?, ?, NULL, ?, ?)', [
          '01900000-0000-7000-8000-000000000001', first, now, now, '01900000-0000-7000-8000-000000000002', second, now, now,
        ]);
        await initialOnly.query("INSERT INTO users (id, username, display_name, role, status, password_hash, session_epoch, created_at, updated_at) VALUES (?, 'old-admin', NULL, 'admin', 'active', 'x', 0, ?, ?)", [
          '01900000-0000-7000-8000-0000000000aa', now, now,
        ]);
      } finally {
        await initialOnly.destroy();
      }

      const db = await openDb();
      expect(await db.migrate()).toEqual(['RedTeam1764800000000', 'Gateway1764820000000', 'Health1764830000000', 'CredentialMacs1764840000000', 'UsageEstimate1764850000000']);
      const rows: Array<{ name: string; name_key: string }> = await db.read((m) => m.query('SELECT name, name_key FROM projects ORDER BY id'));
      expect(rows.map((r) => r.name)).toEqual([first, second]);
      expect(rows[0].name_key).toMatch(/^[0-9a-f]{64}$/);
      expect(rows[1].name_key).not.toBe(rows[0].name_key);
      const [user] = await db.read((m) => m.query('SELECT must_change_password AS must FROM users'));
      expect(Number(user.must)).toBe(0);

      const container = await buildContainer(config, quietLogger(), db);
      try {
        await expect(container.projects.create(cliActor(null), { name: second.toUpperCase() })).rejects.toMatchObject({ code: 'conflict' });
        await expect(container.projects.create(cliActor(null), { name: `${first} 2` })).resolves.toMatchObject({ name: `${first} 2` });
      } finally {
        await container.usage.stop();
        await container.audit.chain.stop();
      }
    });
  });

  describe('the Health migration on a database that already holds keys', () => {
    it('dates each secret from its last successful rotation (else its creation), and starts every key unknown and unchecked', async () => {
      const before = new DataSource({ ...createDataSource(config.database).options, migrations: [Initial1763900000000, RedTeam1764800000000, Gateway1764820000000] } as ConstructorParameters<typeof DataSource>[0]);
      await before.initialize();
      const created = Date.UTC(2024, 0, 1);
      const rotated = Date.UTC(2024, 5, 1);
      const [user, rotatedKey, plainKey] = ['01900000-0000-7000-8000-0000000000a1', '01900000-0000-7000-8000-0000000000b1', '01900000-0000-7000-8000-0000000000b2'];
      try {
        await before.runMigrations();
        await before.query("INSERT INTO users (id, username, display_name, role, status, password_hash, session_epoch, must_change_password, created_at, updated_at) VALUES (?, 'owner', NULL, 'member', 'active', 'x', 0, 0, ?, ?)", [user, created, created]);
        for (const id of [rotatedKey, plainKey]) {
          await before.query(
            "INSERT INTO provider_keys (id, name, provider, hint, status, owner_id, project_id, remark, created_by, created_at, updated_at, reveal_count, format_version) VALUES (?, 'k', 'openai', 'h', 'active', ?, ?, NULL, ?, ?, ?, 0, 1)",
            [id, user, '01900000-0000-7000-8000-0000000000c1', user, created, created],
          );
        }
        const audit = (id: string, at: number, outcome: string) =>
          before.query("INSERT INTO audit_events (id, seq, chain_hash, row_mac, at, action, outcome, key_id) VALUES (?, NULL, NULL, 'm', ?, 'provider_key.rotate', ?, ?)", [id, at, outcome, rotatedKey]);
        await audit('01900000-0000-7000-8000-0000000000d1', rotated - 1000, 'success');
        await audit('01900000-0000-7000-8000-0000000000d2', rotated, 'success');
        await audit('01900000-0000-7000-8000-0000000000d3', rotated + 1000, 'denied');
      } finally {
        await before.destroy();
      }

      const db = await openDb();
      expect(await db.migrate()).toEqual(['Health1764830000000', 'CredentialMacs1764840000000', 'UsageEstimate1764850000000']);
      const rows: Array<Record<string, unknown>> = await db.read((m) => m.query('SELECT id, secret_set_at, health_status, health_checked_at, health_next_check_at, expiry_notice_days FROM provider_keys ORDER BY id'));
      expect(rows.map((r) => ({ ...r, secret_set_at: Number(r.secret_set_at) }))).toEqual([
        { id: rotatedKey, secret_set_at: rotated, health_status: 'unknown', health_checked_at: null, health_next_check_at: null, expiry_notice_days: null },
        { id: plainKey, secret_set_at: created, health_status: 'unknown', health_checked_at: null, health_next_check_at: null, expiry_notice_days: null },
      ]);
    });
  });

  onMysql('serving MySQL/MariaDB', () => {
    it('refuses an unmigrated schema in openMigrated() and start(), saying to run `pkv migrate`, and creates none of its tables', async () => {
      await expect(openMigrated(config)).rejects.toThrow(StartupError);
      await expect(openMigrated(config)).rejects.toThrow(/pkv migrate/);
      await expect(start(config, quietLogger(), { port: 0, host: '127.0.0.1' })).rejects.toThrow(/pkv migrate/);
      expect((await existingTables(await openDb())).filter((t) => t !== 'pkv_migrations')).toEqual([]);
    });

    it('serves after `pkv migrate`, which applies the migrations once', async () => {
      assertBuilt();
      const env = testEnv(tdb);
      const first = await runPkv(['migrate'], env);
      expect(first).toMatchObject({ code: 0, stderr: '', timedOut: false });
      expect(first.stdout).toContain(`applied ${MIGRATION_NAMES.length} migration(s): ${MIGRATION_NAMES.join(', ')}`);

      const again = await runPkv(['migrate'], env);
      expect(again).toMatchObject({ code: 0, stderr: '' });
      expect(again.stdout.trim()).toBe('schema is up to date');

      const running = await start(config, quietLogger(), { port: 0, host: '127.0.0.1' });
      try {
        const res = await fetch(`${running.url}/readyz`);
        expect(res.status).toBe(200);
      } finally {
        await running.close();
      }
    });

    it('puts every table in utf8mb4 even in a latin1 database, so text outside latin1 is kept and the audit chain stays valid', async () => {
      const db = await openDb();
      await db.read((m) => m.query('ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci'));
      expect((await db.read((m) => m.query('SELECT @@character_set_database AS cs')))[0].cs).toBe('latin1');
      await db.migrate();
      // pkv_migrations is TypeORM's own table (ASCII migration names); every text column of ours is utf8mb4.
      const columns: Array<{ t: string; col: string; c: string }> = await db.read((m) =>
        m.query(
          "SELECT TABLE_NAME AS t, COLUMN_NAME AS col, COLLATION_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND DATA_TYPE IN ('varchar', 'text', 'char') AND TABLE_NAME <> 'pkv_migrations'",
        ),
      );
      expect(columns.length).toBeGreaterThan(20);
      expect(columns.map((r) => `${r.t}.${r.col}`)).toEqual(expect.arrayContaining(['audit_events.user_agent', 'audit_events.reason', 'users.display_name', 'projects.name', 'provider_keys.name']));
      expect(columns.filter((r) => r.c !== 'utf8mb4_unicode_ci')).toEqual([]);

      const container = await buildContainer(config, quietLogger(), db);
      const displayName = '张三 Ünïcødé 🔐';
      const actor = { ...cliActor(null), userAgent: 'pkv-cli 测试 😀' };
      const created = await container.users.create(actor, { username: 'unicode-user', password: 'a-long-password-1', role: 'member', displayName });
      expect((await container.users.get(cliActor(null), created.id)).displayName).toBe(displayName);
      await container.audit.chain.sealPending();
      const verified = await container.audit.chain.verify();
      expect(verified).toMatchObject({ ok: true, unsealed: 0 });
      expect(verified.checked).toBeGreaterThan(0);
      const [row] = await db.read((m) => m.query("SELECT user_agent FROM audit_events WHERE action = 'user.create'"));
      expect(row.user_agent).toBe('pkv-cli 测试 😀');
      await container.usage.stop();
      await container.audit.chain.stop();
    });

    it('stops `pkv serve` on an unmigrated schema before it listens, naming `pkv migrate`', async () => {
      const res = await runPkv(['serve'], testEnv(tdb, { PKV_PORT: '0' }));
      expect(res.timedOut).toBe(false);
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain('pkv migrate');
      expect(res.stdout).not.toContain('listening on');
    });
  });

  onSqlite('serving the embedded SQLite database', () => {
    it('start() migrates it itself and serves', async () => {
      const running = await start(config, quietLogger(), { port: 0, host: '127.0.0.1' });
      try {
        expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
      } finally {
        await running.close();
      }
      const db = await openDb();
      expect(await db.pendingMigrations()).toBe(false);
      expect(await existingTables(db)).toEqual(TABLES);
    });

    it('openMigrated() brings an empty file up to date', async () => {
      const db = await openMigrated(config);
      open.push(db);
      expect(await db.pendingMigrations()).toBe(false);
    });
  });
});

describe('the schema', () => {
  const listSources = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const p = path.join(dir, e.name);
      return e.isDirectory() ? listSources(p) : /\.[cm]?[jt]s$/.test(e.name) ? [p] : [];
    });

  it('is never synchronized from the entities: no source turns synchronize on', () => {
    const root = path.join(__dirname, '..', '..');
    const files = [...listSources(path.join(root, 'src')), ...listSources(path.join(root, 'migrations'))];
    expect(files.length).toBeGreaterThan(10);
    const offenders = files.filter((f) => /synchronize\s*:\s*true/.test(fs.readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });

  it.each([
    ['sqlite', { kind: 'sqlite' as const, path: path.join(__dirname, 'never-created.db') }],
    ['mysql', { kind: 'mysql' as const, url: 'mysql://u:p@127.0.0.1:1/never' }],
  ])('builds %s data sources with synchronize, migrationsRun and dropSchema off', (_name, database) => {
    const options = createDataSource(database).options;
    expect(options.synchronize).toBe(false);
    expect(options.migrationsRun ?? false).toBe(false);
    expect(options.dropSchema ?? false).toBe(false);
  });
});
