import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type { DatabaseConfig } from '../config';
import { UnavailableError } from '../errors';
import { isRetryable, isUnavailable } from './errors';
import { GroupCommitter, Mutex, type Tx } from './group-commit';
import { takeAfterCommit } from './hooks';

export type { Tx } from './group-commit';

/**
 * Runs of a MySQL transaction, read or statement the server refused before changing anything (a deadlock, a Galera
 * certification conflict with a write committed on another node, a node not ready, a connection lost): with backoff,
 * then 503. Galera certification conflicts on a hot row come in runs, so there are a dozen runs, about 0.8 s of waits
 * on average and at most 1.6 s.
 */
export const MAX_ATTEMPTS = 12;
const BACKOFF_BASE_MS = 5;
const BACKOFF_CAP_MS = 250;

/** Exponential backoff with full jitter: 0–5 ms, 0–10 ms, 0–20 ms, … then 0–250 ms. */
const backoff = (attempt: number) => new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1))));

/** Per pooled MySQL connection, its session settings so far (the pool keeps them: resetOnRelease is off). */
const sessions = new WeakMap<object, { causal: boolean }>();

export const DEFAULT_TIMEOUT_MS = 5000;

/** What the database reports to the metrics, from its own acquire, release and commit points. */
export interface DatabaseObserver {
  /** A write transaction from start to commit (or failure), its retries and group-commit wait included. */
  transaction(seconds: number): void;
  /** SQLite: how many transactions one COMMIT made durable. */
  groupCommit(size: number): void;
}

export interface DatabaseOptions {
  /**
   * MySQL: the server is a Galera node (wsrep_on). Reads outside transactions are then causal (wsrep_sync_wait=1):
   * a read waits until this node has applied every write committed anywhere in the cluster before it, so a logout
   * or a revocation made through another node is seen by the very next request here, as on a single server.
   */
  galera?: boolean;
  /** How long a statement may wait for a lock, and a caller for a pooled connection, before it fails as unavailable (503). */
  timeoutMs?: number;
}

export class Database {
  private readonly mutex = new Mutex();
  private readonly group: GroupCommitter;
  /** Operations (transactions and reads) in flight, and how many ever started: what quiesce() watches. */
  private active = 0;
  private started = 0;
  private mysqlCommits = 0;
  /** MySQL transactions, reads and statements run again after the server refused them. */
  retries = 0;
  /** MySQL: pooled connections this process holds, and callers waiting in acquire() for one. */
  private held = 0;
  private awaiting = 0;
  private readonly holding = new WeakSet<QueryRunner>();
  observer: DatabaseObserver | undefined;
  readonly galera: boolean;
  readonly timeoutMs: number;

  constructor(
    readonly kind: DatabaseConfig['kind'],
    readonly dataSource: DataSource,
    /** SQLite only: a second connection for reads, so they never queue behind a commit (WAL readers see committed data). */
    private readonly readSource?: DataSource,
    opts: DatabaseOptions = {},
  ) {
    this.group = new GroupCommitter(() => dataSource.createQueryRunner(), this.mutex);
    this.group.onGroup = (size) => this.observer?.groupCommit(size);
    this.galera = opts.galera ?? false;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * Connections in use and callers waiting, counted at our own acquire and release points (no driver internals).
   * SQLite has no pool: its one writer is in use while a group commits, and the transactions queued for the next
   * group are waiting.
   */
  get pool(): { inUse: number; waiting: number } {
    return this.kind === 'sqlite' ? { inUse: this.group.busy ? 1 : 0, waiting: this.group.queued } : { inUse: this.held, waiting: this.awaiting };
  }

  /** Write transactions committed so far (SQLite: one per group of them), for tests and diagnostics. */
  get commits(): number {
    return this.kind === 'sqlite' ? this.group.commits : this.mysqlCommits;
  }

  /**
   * Runs fn in one transaction; it commits before the promise resolves, and its afterCommit hooks run after that.
   * On MySQL a transaction the server aborted (deadlock, a Galera certification conflict or a node not ready) is run
   * again from the start, a few times with backoff, then reported as unavailable (503).
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.track(async () => {
      const started = this.observer ? process.hrtime.bigint() : 0n;
      try {
        const { result, hooks } = this.kind === 'sqlite' ? await this.guard(() => this.group.run(fn)) : await this.guard(() => this.mysqlWithRetries(fn));
        for (const hook of hooks) hook();
        return result as T;
      } finally {
        this.observer?.transaction(Number(process.hrtime.bigint() - started) / 1e9);
      }
    });
  }

  private mysqlWithRetries<T>(fn: (tx: Tx) => Promise<T>): Promise<{ result: T; hooks: Array<() => void> }> {
    return this.withRetries((state, again) => this.mysqlTransaction(fn, state, again));
  }

  /** Runs `attempt` again while the server refused it before changing anything (see MAX_ATTEMPTS), then rethrows. */
  private async withRetries<T>(attempt: (state: { committing: boolean }, again: boolean) => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      const state = { committing: false };
      try {
        return await attempt(state, n > 1);
      } catch (err) {
        if (n >= MAX_ATTEMPTS || !isRetryable(err, state.committing)) throw err;
        this.retries++;
        await backoff(n);
      }
    }
  }

  /**
   * A pooled connection's session settings, made once per physical connection (a session setting survives release):
   * READ COMMITTED, not before every transaction as TypeORM's startTransaction(level) does (one more round trip on
   * every request). On Galera, causal reads for reads outside transactions only: inside a transaction a causal read
   * made while holding row locks can stall the node's appliers (they wait for those locks, the read waits for them)
   * until the causal-read timeout; a transaction needs none, since certification aborts it (and it is run again) if
   * another node changed a row it writes. Plain MySQL/MariaDB gets no wsrep statement at all.
   * The setting is switched only when a connection goes from one use to the other (Galera only).
   */
  private async connect(qr: QueryRunner, causal = false): Promise<void> {
    const connection = await this.acquire(qr);
    let session = sessions.get(connection);
    if (!session) {
      const seconds = Math.max(1, Math.round(this.timeoutMs / 1000));
      await qr.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
      // Lock waits (a table locked by LOCK TABLES or FLUSH TABLES WITH READ LOCK, a row lock) are bounded too, so a
      // stalled database is a 503 within seconds instead of holding the request for the stall's whole length.
      await qr.query('SET SESSION lock_wait_timeout = ?, innodb_lock_wait_timeout = ?', [seconds, seconds]);
      // Set, not assumed: a server-wide wsrep_sync_wait would otherwise reach transactions too.
      if (this.galera) await qr.query(`SET SESSION wsrep_sync_wait = ${causal ? 1 : 0}`);
      session = { causal };
      sessions.set(connection, session);
    } else if (this.galera && session.causal !== causal) {
      await qr.query(`SET SESSION wsrep_sync_wait = ${causal ? 1 : 0}`);
      session.causal = causal;
    }
  }

  /**
   * A pooled connection, waited for at most timeoutMs (mysql2's pool has no acquire timeout: a connection that comes
   * free after the wait is handed straight back).
   */
  private async acquire(qr: QueryRunner): Promise<object> {
    const connecting = qr.connect() as Promise<object>;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new UnavailableError('No database connection came free in time')), this.timeoutMs);
    });
    this.awaiting++;
    try {
      const connection = await Promise.race([connecting, late]);
      if (!this.holding.has(qr)) {
        this.holding.add(qr);
        this.held++;
      }
      return connection;
    } catch (err) {
      void connecting.then(() => qr.release(), () => undefined);
      throw err;
    } finally {
      this.awaiting--;
      clearTimeout(timer);
    }
  }

  /** Gives a runner's connection back to the pool (and counts it as no longer held). */
  private async release(qr: QueryRunner): Promise<void> {
    if (this.holding.delete(qr)) this.held--;
    await qr.release();
  }

  /**
   * One MySQL transaction at READ COMMITTED, each statement sent on its own through the runner's public API, so a
   * failed COMMIT is always seen. `state.committing` tells the caller whether a failure answered the COMMIT (outcome
   * unknown if the link broke).
   */
  private async mysqlTransaction<T>(fn: (tx: Tx) => Promise<T>, state: { committing: boolean }, again = false): Promise<{ result: T; hooks: Array<() => void> }> {
    const qr = this.dataSource.createQueryRunner();
    try {
      // On Galera a transaction run again after a conflict begins causally (BEGIN waits, holding no lock yet, until
      // this node has applied the write that beat it), then reads without waiting: otherwise a node whose appliers
      // lag reads the same stale rows and loses the same race again.
      await this.connect(qr, again);
      await qr.startTransaction();
      if (again) await this.connect(qr, false);
      let hooks: Array<() => void> = [];
      let result: T;
      try {
        result = await fn(qr.manager);
      } finally {
        hooks = takeAfterCommit(qr.manager);
      }
      state.committing = true;
      await qr.commitTransaction();
      this.mysqlCommits++;
      return { result, hooks };
    } catch (err) {
      // Whatever failed, the transaction may still be open on this connection (a refused COMMIT included).
      await qr.rollbackTransaction().catch(() => undefined);
      throw err;
    } finally {
      await this.release(qr);
    }
  }

  /**
   * Runs reads outside a transaction: on SQLite on its own reader connection; on MySQL on one pooled connection with
   * the session settings above (on Galera, causal: the session and API-token lookups that decide revocation go
   * through here), run again from the start if the server refused them (a node joining the cluster answers 1047 for
   * a while), then 503.
   */
  read<T>(fn: (m: EntityManager) => Promise<T>): Promise<T> {
    if (this.kind === 'sqlite') return this.track(() => this.guard(() => fn((this.readSource ?? this.dataSource).manager)));
    return this.track(() => this.guard(() => this.withRetries(() => this.onConnection(fn, true))));
  }

  /**
   * One autocommitted MySQL statement outside any transaction (an atomic upsert), run again if the server refused it
   * before changing anything, then 503. Returns the driver's answer (rows, or the OK packet of a write).
   */
  statement(sql: string, params: unknown[]): Promise<unknown> {
    if (this.kind === 'sqlite') throw new Error('Database.statement() is for MySQL: SQLite writes go through transaction()');
    // Once sent, a write whose connection broke may have been applied: only a refusal by the server is run again.
    return this.track(() => this.guard(() => this.withRetries((state) => this.onConnection((m) => m.query(sql, params), false, state))));
  }

  private async onConnection<T>(fn: (m: EntityManager) => Promise<T>, causal: boolean, sent?: { committing: boolean }): Promise<T> {
    const qr = this.dataSource.createQueryRunner();
    try {
      await this.connect(qr, causal);
      if (sent) sent.committing = true;
      return await fn(qr.manager);
    } finally {
      await this.release(qr);
    }
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
