import fs from 'node:fs';
import path from 'node:path';
import { loadConfig, Config } from '../../src/config';
import { createDataSource, openDatabase, Database } from '../../src/db/database';
import { openMigrated, start, StartupError } from '../../src/main';
import { CaptureTransport, createLogger } from '../../src/logger';
import { migrations } from '../../migrations';
import { buildContainer } from '../../src/container';
import { cliActor } from '../../src/modules/auth/actor';
import { createTestDatabase, dbKind, testEnv, TestDatabase } from '../support/test-app';
import { assertBuilt, killAll, runPkv } from '../support/cli-helpers';

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
