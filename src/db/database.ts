import fs from 'node:fs';
import path from 'node:path';
import 'reflect-metadata';
import { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type { Pool } from 'mysql2/promise';
import type { DatabaseConfig } from '../config';
import { UnavailableError } from '../errors';
import { entities } from './entities';
import { migrations } from '../../migrations';
import { takeAfterCommit } from './hooks';

export type Tx = EntityManager;

/** One SQL statement with its bound values (`?` placeholders only: never a value spliced into the text). */
export interface Statement {
  sql: string;
  params: unknown[];
}

export type Row = Record<string, unknown>;

/** The decision between a two-step transaction's read and its writes: synchronous, so no I/O can slip in between. */
export type Decide<T, W> = (rows: Row[], alongside: W) => { writes: Statement[]; result: T };


/**
 * MySQL: rows of bound values as a derived table (`SELECT ? AS a, ? AS b UNION ALL SELECT ?, ?…`), for an UPDATE
 * joined to it on the primary key: one index lookup per row, where a CASE by id walks every arm for every row
 * (n² comparisons per batch). SQLite caps a compound SELECT at 500 terms, so it keeps its CASE.
 */
export function derivedTable(columns: string[], rows: unknown[][]): Statement {
  const first = `SELECT ${columns.map((c) => `? AS ${c}`).join(', ')}`;
  const rest = `SELECT ${columns.map(() => '?').join(', ')}`;
  return { sql: rows.map((_, i) => (i === 0 ? first : rest)).join(' UNION ALL '), params: rows.flat() };
}

/** Serializes work on SQLite's single connection: TypeORM shares one query runner, so two open transactions would interleave. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_CON_COUNT_ERROR', 'ER_SERVER_SHUTDOWN', 'ER_LOCK_WAIT_TIMEOUT', 'ER_QUERY_INTERRUPTED',
  'ER_CONNECTION_KILLED', 'ER_ACCESS_DENIED_ERROR', 'ER_BAD_DB_ERROR', 'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_FULL', 'SQLITE_CANTOPEN',
  'SQLITE_READONLY', 'SQLITE_IOERR', 'SQLITE_PROTOCOL',
]);

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; driverError?: { code?: unknown } };
  const code = e?.driverError?.code ?? e?.code;
  return typeof code === 'string' ? code : undefined;
}

/** True when the database could not be reached or answered: the caller gets 503, not 500. */
export function isUnavailable(err: unknown): boolean {
  const code = errorCode(err);
  if (code && (CONNECTION_CODES.has(code) || /^SQLITE_(IOERR|BUSY|LOCKED)/.test(code))) return true;
  const message = err instanceof Error ? err.message : '';
  return /Pool is closed|Connection is not established|connection is in closed state|Can't add new command when connection is in closed state|database connection is not open/i.test(message);
}

/**
 * Runs a write statement in the transaction and returns how many rows it matched. A plain tx.query() cannot tell:
 * TypeORM's better-sqlite3 runner answers it with the last insert rowid, not the count.
 */
export async function execute(tx: EntityManager, sql: string, params: unknown[]): Promise<number | undefined> {
  if (!tx.queryRunner) throw new Error('execute() needs a transactional entity manager');
  const result = await tx.queryRunner.query(sql, params, true);
  return typeof result.affected === 'number' ? result.affected : undefined;
}

export function isUniqueViolation(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ER_DUP_ENTRY' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

function isDeadlock(err: unknown): boolean {
  return errorCode(err) === 'ER_LOCK_DEADLOCK';
}

interface Job {
  fn: (tx: Tx) => Promise<unknown>;
  resolve: (value: { result: unknown; hooks: Array<() => void> }) => void;
  reject: (err: unknown) => void;
}

const MAX_GROUP = 64;

/** Pooled MySQL connections whose session isolation level is already READ COMMITTED (a new physical connection is not). */
const readCommitted = new WeakSet<object>();

/**
 * Group commit for SQLite: transactions that queue up while one commits run together in the next single
 * BEGIN…COMMIT, each inside its own savepoint (a failing one rolls back only itself). Every caller still gets
 * its answer only after the COMMIT that made its work durable; one fsync serves the whole group.
 */
class GroupCommitter {
  private queue: Job[] = [];
  private draining = false;
  /** COMMITs issued, each for a whole group. */
  commits = 0;

  constructor(
    private readonly dataSource: DataSource,
    private readonly mutex: Mutex,
  ) {}

  run(fn: (tx: Tx) => Promise<unknown>): Promise<{ result: unknown; hooks: Array<() => void> }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ fn, resolve, reject });
      if (!this.draining) {
        this.draining = true;
        setImmediate(() => void this.drain());
      }
    });
  }

  /**
   * better-sqlite3 is synchronous and a transaction's statements resolve as microtasks, so a group started at once
   * would always hold one job: no other request runs until it has committed. The drain therefore waits for the
   * event loop's check phase (setImmediate), after every request that arrived in this loop iteration has reached
   * its transaction; between groups it yields again, so the requests answered by one COMMIT can queue the next group.
   */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_GROUP);
        await this.mutex.run(() => this.commitGroup(batch));
        if (this.queue.length === 0) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.draining = false;
    }
  }

  private async commitGroup(batch: Job[]): Promise<void> {
    const qr = this.dataSource.createQueryRunner();
    const fail = async (err: unknown, jobs: Job[]) => {
      await this.reset(qr);
      for (const job of jobs) job.reject(err);
    };
    try {
      await qr.startTransaction();
      // Take the write lock first, as BEGIN IMMEDIATE would: a deferred transaction that reads and then writes fails at
      // once with SQLITE_BUSY when another process (`pkv keyring rotate`, a second server) writes meanwhile; this waits
      // its turn under busy_timeout instead.
      await qr.query('DELETE FROM pkv_migrations WHERE 0');
    } catch (err) {
      return fail(err, batch);
    }
    const outcomes: Array<{ ok: true; result: unknown; hooks: Array<() => void> } | { ok: false; err: unknown }> = [];
    for (const [i, job] of batch.entries()) {
      try {
        await qr.startTransaction();
        const result = await job.fn(qr.manager);
        await qr.commitTransaction();
        outcomes.push({ ok: true, result, hooks: takeAfterCommit(qr.manager) });
      } catch (err) {
        takeAfterCommit(qr.manager);
        const undone = await qr.rollbackTransaction().then(
          () => true,
          () => false,
        );
        // SQLite ends the whole transaction by itself on some errors (SQLITE_FULL, IOERR, NOMEM): then nothing of this
        // group can commit, and every caller must hear so (the rest of the batch runs in the next group).
        if (!undone || !this.inTransaction() || this.depth(qr) !== 1) {
          this.queue.unshift(...batch.slice(i + 1));
          await this.reset(qr);
          batch.slice(0, i + 1).forEach((earlier, j) => {
            const o = outcomes[j];
            earlier.reject(o && !o.ok ? o.err : err);
          });
          return;
        }
        outcomes.push({ ok: false, err });
      }
    }
    try {
      this.commits++;
      await qr.commitTransaction();
      if (this.inTransaction()) throw new Error('COMMIT left a transaction open');
    } catch (err) {
      return fail(err, batch);
    }
    batch.forEach((job, i) => {
      const o = outcomes[i];
      if (o.ok) job.resolve({ result: o.result, hooks: o.hooks });
      else job.reject(o.err);
    });
  }

  /** The connection's own view: true while a transaction is open on it (better-sqlite3's `inTransaction`). */
  private inTransaction(): boolean {
    return (this.dataSource.driver as unknown as { databaseConnection: { inTransaction: boolean } }).databaseConnection.inTransaction;
  }

  private depth(qr: QueryRunner): number {
    return (qr as unknown as { transactionDepth: number }).transactionDepth;
  }

  /**
   * Back to "no transaction" on both sides: SQLite's (ROLLBACK if one is still open) and TypeORM's, whose single shared
   * query runner never corrects its nesting count when a rollback fails; left alone, every later "COMMIT" would be a
   * RELEASE of a savepoint inside a transaction that never commits.
   */
  private async reset(qr: QueryRunner): Promise<void> {
    if (this.inTransaction()) await qr.query('ROLLBACK').catch(() => undefined);
    const state = qr as unknown as { isTransactionActive: boolean; transactionDepth: number };
    state.isTransactionActive = false;
    state.transactionDepth = 0;
  }
}

export class Database {
  private readonly mutex = new Mutex();
  private readonly group: GroupCommitter;
  /** Operations (transactions and reads) in flight, and how many ever started: what quiesce() watches. */
  private active = 0;
  private started = 0;
  private mysqlCommits = 0;

  constructor(
    readonly kind: DatabaseConfig['kind'],
    readonly dataSource: DataSource,
    /** SQLite only: a second connection for reads, so they never queue behind a commit (WAL readers see committed data). */
    private readonly readSource?: DataSource,
    /** MySQL only: the few connections that carry two-step transactions (multi-statement round trips). */
    private readonly stepPool?: Pool,
  ) {
    this.group = new GroupCommitter(dataSource, this.mutex);
  }

  /** Write transactions committed so far (SQLite: one per group of them), for tests and diagnostics. */
  get commits(): number {
    return this.kind === 'sqlite' ? this.group.commits : this.mysqlCommits;
  }

  /** Runs fn in one transaction; it commits before the promise resolves. Deadlocks are retried. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.track(() => this.runTransaction(fn));
  }

  private async runTransaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.kind === 'sqlite') {
      const { result, hooks } = await this.guard(() => this.group.run(fn));
      for (const hook of hooks) hook();
      return result as T;
    }
    let hooks: Array<() => void> = [];
    const body = async (tx: Tx) => {
      try {
        return await fn(tx);
      } finally {
        hooks = takeAfterCommit(tx);
      }
    };
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.guard(() => this.mysqlTransaction(body));
        for (const hook of hooks) hook();
        return result;
      } catch (err) {
        if (!isDeadlock(err) || attempt >= 3) throw err;
      }
    }
  }

  /**
   * One MySQL transaction at READ COMMITTED. The level is set once per pooled connection (a session setting), not
   * before every transaction as TypeORM's transaction(level) does: that was one more round trip on every reveal.
   */
  private async mysqlTransaction<T>(body: (tx: Tx) => Promise<T>): Promise<T> {
    const qr = this.dataSource.createQueryRunner();
    try {
      const connection = (await qr.connect()) as object;
      if (!readCommitted.has(connection)) {
        await qr.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
        readCommitted.add(connection);
      }
      await qr.startTransaction();
      const result = await body(qr.manager);
      await qr.commitTransaction();
      this.mysqlCommits++;
      return result;
    } catch (err) {
      if (qr.isTransactionActive) await qr.rollbackTransaction().catch(() => undefined);
      throw err;
    } finally {
      await qr.release();
    }
  }

  /**
   * A transaction of one read and its writes, decided in between without I/O: the hot path of a batch of reveals.
   * The read's rows stay locked until commit on MySQL (FOR UPDATE). On MySQL the whole transaction is two round
   * trips on a small pool of its own: START TRANSACTION with the read, then the writes with COMMIT, each sent as one
   * multi-statement query (MySQL stops at the first statement that fails; the rest never run and the transaction is
   * rolled back). Only this method uses that pool, and it sends only the product's own statement texts, whose
   * values are all bound. On SQLite it is an ordinary (group-committed) transaction. Deadlocks are retried.
   *
   * `alongside` is work already under way elsewhere (it must not reject) whose answer the decision needs too: on MySQL
   * the read overlaps it; on SQLite it is awaited before the transaction, which never waits on anything outside.
   */
  async readThenWrite<T, W>(read: Statement, alongside: Promise<W>, decide: Decide<T, W>): Promise<T> {
    if (!this.stepPool) {
      const w = await alongside;
      return this.transaction(async (tx) => {
        const rows: Row[] = await tx.query(read.sql, read.params);
        const { writes, result } = decide(rows, w);
        for (const statement of writes) await tx.query(statement.sql, statement.params);
        return result;
      });
    }
    const pool = this.stepPool;
    return this.track(async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.guard(() => this.twoSteps(pool, read, alongside, decide));
        } catch (err) {
          if (!isDeadlock(err) || attempt >= 3) throw err;
        }
      }
    });
  }

  private async twoSteps<T, W>(pool: Pool, read: Statement, alongside: Promise<W>, decide: Decide<T, W>): Promise<T> {
    const conn = await pool.getConnection();
    try {
      const [[results], w] = await Promise.all([conn.query(`SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION; ${read.sql} FOR UPDATE`, read.params), alongside]);
      const { writes, result } = decide((results as Row[][])[2], w);
      await conn.query([...writes.map((statement) => statement.sql), 'COMMIT'].join('; '), writes.flatMap((statement) => statement.params));
      this.mysqlCommits++;
      conn.release();
      return result;
    } catch (err) {
      // Whatever failed, the transaction may still be open: roll it back, or drop a connection that cannot.
      await conn.query('ROLLBACK').then(
        () => conn.release(),
        () => conn.destroy(),
      );
      throw err;
    }
  }

  /** Runs reads outside a transaction (still serialized on SQLite's single connection). */
  read<T>(fn: (m: EntityManager) => Promise<T>): Promise<T> {
    return this.track(() => this.guard(() => fn((this.readSource ?? this.dataSource).manager)));
  }

  /**
   * Resolves once no operation has been in flight for `quietMs` (or after `maxMs` at the latest). Shutdown calls it
   * after the HTTP server closed: a request whose client hung up still runs its handler, and the audit row it
   * commits must be there before the final seal.
   */
  async quiesce(quietMs = 100, maxMs = 10_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    for (;;) {
      const seen = this.started;
      if (this.active === 0) {
        await new Promise((resolve) => setTimeout(resolve, quietMs));
        if (this.active === 0 && this.started === seen) return;
      } else {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      if (Date.now() >= deadline) return;
    }
  }

  private async track<T>(fn: () => Promise<T>): Promise<T> {
    this.active++;
    this.started++;
    try {
      return await fn();
    } finally {
      this.active--;
    }
  }

  async ping(): Promise<void> {
    await this.read((m) => m.query('SELECT 1'));
  }

  /**
   * After destroying sealed bytes: SQLite keeps the previous page images in the WAL, and the main file holds them
   * until a checkpoint; checkpointing (and truncating the WAL) makes secure_delete's zeroes the only copy left.
   * Best effort: a busy checkpoint simply happens later. InnoDB has no equivalent (its undo log purges by itself).
   */
  async scrub(): Promise<void> {
    if (this.kind !== 'sqlite') return;
    await this.mutex.run(() => this.dataSource.query('PRAGMA wal_checkpoint(TRUNCATE)')).catch(() => undefined);
  }

  async pendingMigrations(): Promise<boolean> {
    return this.dataSource.showMigrations();
  }

  async migrate(): Promise<string[]> {
    const ran = await this.mutex.run(() => this.dataSource.runMigrations({ transaction: 'each' }));
    return ran.map((m) => m.name);
  }

  async close(): Promise<void> {
    await this.stepPool?.end().catch(() => undefined);
    if (this.readSource?.isInitialized) await this.readSource.destroy();
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isUnavailable(err)) throw new UnavailableError(undefined, err);
      throw err;
    }
  }
}

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
        db.pragma('busy_timeout = 5000');
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
    extra: { enableKeepAlive: true, maxIdle: 24, idleTimeout: 60000 },
  });
}

/** Opens the database. The embedded SQLite default migrates itself; MySQL must be migrated explicitly (`pkv migrate`). */
export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  if (config.kind === 'sqlite') createPrivately(config.path);
  const ds = createDataSource(config);
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
  return new Database(config.kind, ds, readDs, config.kind === 'mysql' ? await createStepPool(config.url) : undefined);
}

/**
 * The pool for two-step transactions: the same server and session settings as TypeORM's pool (UTC, utf8mb4, big
 * numbers as strings), plus multi-statement queries, which nothing else may use.
 */
async function createStepPool(url: string): Promise<Pool> {
  const { createPool } = await import('mysql2/promise'); // not loaded at all by an embedded SQLite vault
  return createPool({
    uri: url,
    timezone: 'Z',
    charset: 'UTF8MB4_UNICODE_CI',
    supportBigNumbers: true,
    bigNumberStrings: true,
    multipleStatements: true,
    connectionLimit: 8,
    maxIdle: 8,
    idleTimeout: 60000,
    connectTimeout: 5000,
    enableKeepAlive: true,
  });
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
