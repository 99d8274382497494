import type { EntityManager, QueryRunner } from 'typeorm';
import { takeAfterCommit } from './hooks';

export type Tx = EntityManager;
export interface Committed {
  result: unknown;
  hooks: Array<() => void>;
}

interface Job {
  fn: (tx: Tx) => Promise<unknown>;
  resolve: (value: Committed) => void;
  reject: (err: unknown) => void;
}

/** Serializes work on SQLite's single writer connection (TypeORM shares one query runner for it). */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

const MAX_GROUP = 64;

/**
 * Group commit for SQLite: transactions that queue up while one commits run together in the next single
 * BEGIN IMMEDIATE…COMMIT, each inside its own SAVEPOINT (a failing one rolls back only itself). Every caller gets its
 * answer only after the COMMIT that made its work durable; one fsync serves the whole group.
 *
 * The transaction is plain SQL on the runner's public query(): TypeORM never believes a transaction is open, so no
 * state of its own can drift from SQLite's, and recovery is SQL too (ROLLBACK, whose "no transaction" error is moot).
 */
export class GroupCommitter {
  private queue: Job[] = [];
  private draining = false;
  /** COMMITs issued, each for a whole group. */
  commits = 0;
  /** True while a group holds the writer. */
  busy = false;
  /** Told how many transactions each COMMIT made durable (the metrics). */
  onGroup: ((size: number) => void) | undefined;

  constructor(
    private readonly runner: () => QueryRunner,
    private readonly mutex: Mutex,
  ) {}

  /** Transactions waiting for the next group. */
  get queued(): number {
    return this.queue.length;
  }

  run(fn: (tx: Tx) => Promise<unknown>): Promise<Committed> {
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
   * would always hold one job. The drain therefore waits for the event loop's check phase (setImmediate), after every
   * request that arrived in this loop iteration has reached its transaction; between groups it yields again.
   */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, MAX_GROUP);
        await this.mutex.run(async () => {
          this.busy = true;
          try {
            await this.commitGroup(batch);
          } finally {
            this.busy = false;
          }
        });
        if (this.queue.length === 0) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.draining = false;
    }
  }

  private async commitGroup(batch: Job[]): Promise<void> {
    const qr = this.runner();
    const failAll = async (err: unknown, jobs: Job[]) => {
      await qr.query('ROLLBACK').catch(() => undefined);
      for (const job of jobs) job.reject(err);
    };
    try {
      // IMMEDIATE takes the write lock now: a deferred transaction that reads and then writes would fail at once with
      // SQLITE_BUSY when another process (`pkv keyring rotate`, a second server) writes meanwhile; this waits its turn.
      await qr.query('BEGIN IMMEDIATE');
    } catch (err) {
      return failAll(err, batch);
    }
    const outcomes: Array<{ ok: true; committed: Committed } | { ok: false; err: unknown }> = [];
    for (const [i, job] of batch.entries()) {
      try {
        await qr.query('SAVEPOINT pkv_job');
        const result = await job.fn(qr.manager);
        await qr.query('RELEASE pkv_job');
        outcomes.push({ ok: true, committed: { result, hooks: takeAfterCommit(qr.manager) } });
      } catch (err) {
        takeAfterCommit(qr.manager);
        const undone = await qr.query('ROLLBACK TO pkv_job').then(
          () => qr.query('RELEASE pkv_job').then(() => true),
          () => false,
        );
        // No savepoint to go back to: SQLite ended the whole transaction by itself (SQLITE_FULL, IOERR, NOMEM, or a
        // job's own ROLLBACK). Nothing of this group can commit, and every caller so far must hear so; the rest of
        // the batch runs in the next group.
        if (!undone) {
          this.queue.unshift(...batch.slice(i + 1));
          await qr.query('ROLLBACK').catch(() => undefined);
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
      await qr.query('COMMIT');
    } catch (err) {
      return failAll(err, batch);
    }
    this.onGroup?.(batch.length);
    batch.forEach((job, i) => {
      const o = outcomes[i];
      if (o.ok) job.resolve(o.committed);
      else job.reject(o.err);
    });
  }
}
