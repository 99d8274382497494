import Redis from 'ioredis';
import {
  IRateLimiterOptions,
  RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterMySQL,
  RateLimiterRedis,
  RateLimiterRes,
} from 'rate-limiter-flexible';
import { RateLimitedError, UnavailableError } from './errors';
import type { Database } from './db/database';
import { Settled, TurnBatcher } from './batcher';

export interface RateLimits {
  /** Failed sign-ins per username+IP. */
  loginByUserIp: RateLimiterAbstract;
  /** Failed sign-ins per IP, whatever the username (slows spraying). */
  loginByIp: RateLimiterAbstract;
  /** Reveals per user per minute, allowed or not. */
  revealByUser: RateLimiterAbstract;
  /** Reveals per client IP per minute (ten users' worth): a stolen pile of credentials still drains slowly. */
  revealByIp: RateLimiterAbstract;
  /** Where the counters live: shared across instances unless `memory`. */
  store: 'memory' | 'mysql' | 'redis';
  close(): Promise<void>;
}

interface Windows {
  loginRateLimit: number;
  revealRateLimit: number;
}

interface MySQLPool {
  query(sql: string, values: unknown[], cb: (err: Error | null, result: unknown) => void): void;
}
type CounterRow = { points: number; expire: number | null };

/** Keeps the count handed back through LAST_INSERT_ID() positive (0 means "no value"), whatever rewards did to it. */
const COUNT_OFFSET = 2 ** 31;

interface Spend {
  key: string;
  points: number;
  msDuration: number;
}

/**
 * rate-limiter-flexible's MySQL store spends a transaction on every point: BEGIN, the upsert, a SELECT, COMMIT (four
 * round trips and a commit, twice per reveal). This one spends one statement: the same atomic upsert, which hands
 * the new count back in the OK packet through LAST_INSERT_ID(expr). The window's end is read only when a refusal
 * needs it for Retry-After. Points spent on one key in the same turn of the event loop (a busy user, everyone
 * behind one address) go in one upsert of their sum, each caller getting the count its own point made, exactly as
 * if they had run one after another: one commit on that hot row instead of one each.
 */
class OneStatementMySQLLimiter extends RateLimiterMySQL {
  private readonly spends = new TurnBatcher<Spend, CounterRow[]>((all) => this.spendTogether(all), 256);

  private run(sql: string, values: unknown[]): Promise<unknown> {
    const self = this as unknown as { client: MySQLPool };
    return new Promise((resolve, reject) => self.client.query(sql, values, (err, result) => (err ? reject(err) : resolve(result))));
  }

  private async stored(key: string): Promise<CounterRow[]> {
    const self = this as unknown as { dbName: string; tableName: string };
    const rows = (await this.run('SELECT points, expire FROM ??.?? WHERE `key` = ?', [self.dbName, self.tableName, key])) as CounterRow[];
    return rows.map((r) => ({ points: Number(r.points), expire: r.expire === null ? null : Number(r.expire) }));
  }

  /** Overrides the store's upsert (same contract: resolves to the key's row after adding `points`). */
  async _upsert(key: string, points: number, msDuration: number, forceExpire = false): Promise<CounterRow[]> {
    if (points > 0 && !forceExpire) return this.spends.submit({ key, points, msDuration });
    return this.upsert(key, points, msDuration, forceExpire);
  }

  private async spendTogether(all: Spend[]): Promise<Array<Settled<CounterRow[]>>> {
    const limit = (this as unknown as { points: number }).points;
    const groups = new Map<string, number[]>();
    all.forEach((s, i) => {
      const group = `${s.msDuration}|${s.key}`;
      const members = groups.get(group);
      if (members) members.push(i);
      else groups.set(group, [i]);
    });
    const out: Array<Settled<CounterRow[]>> = new Array(all.length);
    await Promise.all(
      [...groups.values()].map(async (members) => {
        const { key, msDuration } = all[members[0]];
        const total = members.reduce((sum, i) => sum + all[i].points, 0);
        try {
          const [row] = await this.upsert(key, total, msDuration, false);
          let count = row.points - total;
          for (const i of members) {
            count += all[i].points;
            out[i] = { status: 'fulfilled', value: [{ points: count, expire: count <= limit ? null : row.expire }] };
          }
        } catch (reason) {
          for (const i of members) out[i] = { status: 'rejected', reason };
        }
      }),
    );
    return out;
  }

  private async upsert(key: string, points: number, msDuration: number, forceExpire: boolean): Promise<CounterRow[]> {
    const self = this as unknown as { dbName: string; tableName: string; points: number };
    const now = Date.now();
    const expire = msDuration > 0 ? now + msDuration : null;
    const counted = `CAST(LAST_INSERT_ID(${forceExpire ? '?' : 'IF(expire <= ?, ?, points + (?))'} + ${COUNT_OFFSET}) AS SIGNED) - ${COUNT_OFFSET}`;
    // Assignments run left to right: `expire` is still the old window's end when `points` is computed.
    const sql = `INSERT INTO ??.?? (\`key\`, points, expire) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE points = ${counted}, expire = ${forceExpire ? '?' : 'IF(expire <= ?, ?, expire)'}`;
    const values = forceExpire
      ? [self.dbName, self.tableName, key, points, expire, points, expire]
      : [self.dbName, self.tableName, key, points, expire, now, points, points, now, expire];
    const result = (await this.run(sql, values)) as { insertId?: number; affectedRows?: number };
    const insertId = Number(result.insertId ?? 0);
    // No LAST_INSERT_ID() call: the row was new, so it holds exactly what was inserted.
    if (insertId === 0) return result.affectedRows === 1 ? [{ points, expire }] : this.stored(key);
    const count = insertId - COUNT_OFFSET;
    if (forceExpire) return [{ points: count, expire }];
    // An allowed point does not need the window's end (msBeforeNext is then -1). A refusal reads it for Retry-After,
    // but keeps the count its own upsert made: a row reset or deleted meanwhile must not turn it into an allowance.
    if (count <= self.points) return [{ points: count, expire: null }];
    const [row] = await this.stored(key);
    return [{ points: count, expire: row?.expire ?? expire }];
  }
}

/**
 * Rate limiters whose state is shared by every instance: Redis when PKV_REDIS_URL is set, else the MySQL
 * database itself; an embedded SQLite vault is one process, so memory is enough there.
 */
export function createRateLimits(opts: Windows & { redisUrl?: string }, db?: Database): RateLimits {
  let make: (o: IRateLimiterOptions) => RateLimiterAbstract = (o) => new RateLimiterMemory(o);
  let store: RateLimits['store'] = 'memory';
  let close = async () => undefined as void;
  if (opts.redisUrl) {
    const client = new Redis(opts.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
    client.on('error', () => undefined); // surfaced per request as 503 by guard() below
    make = (o) => new RateLimiterRedis({ ...o, storeClient: client });
    store = 'redis';
    close = async () => {
      client.disconnect();
    };
  } else if (db?.kind === 'mysql') {
    const driver = db.dataSource.driver as unknown as { pool: unknown; database?: string };
    make = (o) => new OneStatementMySQLLimiter({ ...o, storeClient: driver.pool, storeType: 'pool', dbName: driver.database, tableName: 'pkv_rate_limits', tableCreated: true, clearExpiredByTimeout: false });
    store = 'mysql';
  }
  return {
    loginByUserIp: make({ keyPrefix: 'login_ui', points: opts.loginRateLimit, duration: 15 * 60 }),
    loginByIp: make({ keyPrefix: 'login_ip', points: opts.loginRateLimit * 10, duration: 60 * 60 }),
    revealByUser: make({ keyPrefix: 'reveal', points: opts.revealRateLimit, duration: 60 }),
    revealByIp: make({ keyPrefix: 'reveal_ip', points: opts.revealRateLimit * 10, duration: 60 }),
    store,
    close,
  };
}

function retryAfter(res: RateLimiterRes): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
}

/** A limiter store that cannot answer fails closed: 503, never an unlimited pass. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof RateLimiterRes || err instanceof RateLimitedError) throw err;
    throw new UnavailableError('Rate-limit state is unavailable', err);
  }
}

/** Consumes a point; a refusal becomes RateLimitedError with Retry-After. */
export async function consume(limiter: RateLimiterAbstract, key: string): Promise<void> {
  await guard(async () => {
    try {
      await limiter.consume(key);
    } catch (err) {
      if (err instanceof RateLimiterRes) throw new RateLimitedError(retryAfter(err));
      throw err;
    }
  });
}

/** Gives back a point spent by an attempt that turned out fine. */
export async function reward(limiter: RateLimiterAbstract, key: string): Promise<void> {
  await guard(() => limiter.reward(key, 1));
}

export async function forgive(limiter: RateLimiterAbstract, key: string): Promise<void> {
  await guard(() => limiter.delete(key));
}
