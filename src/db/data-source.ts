import fs from 'node:fs';
import path from 'node:path';
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import type { DatabaseConfig } from '../config';
import { UnavailableError } from '../errors';
import { entities } from './entities';
import { migrations } from '../../migrations';
import { Database, DEFAULT_TIMEOUT_MS } from './database';

/** A TypeORM data source for the configured database (the driver is chosen by the URL's scheme in config.ts). */
export function createDataSource(config: DatabaseConfig): DataSource {
  const common = { entities, migrations, migrationsTableName: 'pkv_migrations', synchronize: false, logging: false } as const;
  if (config.kind === 'sqlite') {
    fs.mkdirSync(path.dirname(config.path), { recursive: true, mode: 0o700 });
    return new DataSource({
      ...common,
      type: 'better-sqlite3',
      database: config.path,
      statementCacheSize: 200,
      prepareDatabase: (db: { pragma(s: string): unknown }) => {
        // Durability is never traded for speed: a committed audit row survives a power cut.
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        db.pragma('foreign_keys = ON');
        // Deleted and overwritten cells are zeroed, so a destroyed ciphertext or wrapped key is gone from the file.
        db.pragma('secure_delete = ON');
        // better-sqlite3 waits for a lock synchronously: the same bound as MySQL's lock waits, so a stall is a 503.
        db.pragma(`busy_timeout = ${Math.trunc(config.timeoutMs ?? DEFAULT_TIMEOUT_MS)}`);
      },
    });
  }
  return new DataSource({
    ...common,
    type: 'mysql',
    url: config.url,
    timezone: 'Z',
    charset: 'utf8mb4_unicode_ci',
    poolSize: 24,
    connectTimeout: 5000,
    // resetOnRelease stays off on purpose: a pooled connection keeps its session settings (READ COMMITTED, causal reads on Galera; database.ts).
    extra: { enableKeepAlive: true, maxIdle: 24, idleTimeout: 60000, resetOnRelease: false },
  });
}

/** Opens the database. The embedded SQLite default migrates itself; MySQL must be migrated explicitly (`pkv migrate`). */
export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  if (config.kind === 'sqlite') createPrivately(config.path);
  const ds = createDataSource(config);
  // SQLite: a second connection for reads, so they never queue behind a commit (WAL readers see committed data).
  const readDs = config.kind === 'sqlite' ? createDataSource(config) : undefined;
  try {
    await ds.initialize();
    await readDs?.initialize();
  } catch (err) {
    if (ds.isInitialized) await ds.destroy();
    throw new UnavailableError(`cannot open the ${config.kind} database`, err);
  }
  if (config.kind === 'sqlite') {
    for (const file of [config.path, `${config.path}-wal`, `${config.path}-shm`]) {
      try {
        fs.chmodSync(file, 0o600);
      } catch {
        /* best effort: a read-only mount keeps its own mode; a WAL file may not exist yet */
      }
    }
  }
  return new Database(config.kind, ds, readDs, { galera: config.kind === 'mysql' && (await isGaleraNode(ds)), timeoutMs: config.timeoutMs ?? DEFAULT_TIMEOUT_MS });
}

/** A MariaDB Galera node (wsrep_on=ON); MySQL and plain MariaDB answer no row or OFF. */
async function isGaleraNode(ds: DataSource): Promise<boolean> {
  try {
    const rows = (await ds.query("SHOW VARIABLES LIKE 'wsrep_on'")) as Array<{ Value?: string }>;
    return rows[0]?.Value === 'ON';
  } catch (err) {
    await ds.destroy();
    throw new UnavailableError('cannot open the mysql database', err);
  }
}

/**
 * Creates a missing SQLite file as 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database
 * file's mode, so a file first created under the umask (0644) would leave those readable by others.
 */
function createPrivately(file: string): void {
  if (file === ':memory:' || fs.existsSync(file)) return;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.closeSync(fs.openSync(file, 'a', 0o600));
}
