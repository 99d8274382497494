import Redis from 'ioredis';
import { IRateLimiterOptions, RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedError, UnavailableError } from './errors';
import type { Database } from './db/database';
import { perTurn } from './batching';

/** A fixed-window counter per key. Fails closed: a store that cannot answer is 503, never an unlimited pass. */
export interface Limiter {
  /** Spends a point; rejects with RateLimitedError (Retry-After) once the window's points are spent. */
  consume(key: string): Promise<void>;
  /** Gives back a point spent by an attempt that turned out fine. */
  reward(key: string): Promise<void>;
  /** Forgets the key's window. */
  forgive(key: string): Promise<void>;
}

export interface RateLimits {
  /** Failed sign-ins per username+IP. */
  loginByUserIp: Limiter;
  /** Failed sign-ins per IP, whatever the username (slows spraying). */
  loginByIp: Limiter;
  /** Reveals per user per minute, allowed or not. */
  revealByUser: Limiter;
  /** Reveals per client IP per minute (ten users' worth): a stolen pile of credentials still drains slowly. */
  revealByIp: Limiter;
  /** Manual health checks per user per minute: four times the reveal allowance. */
  checkByUser: Limiter;
  /** Manual health checks per client IP per minute (ten users' worth). */
  checkByIp: Limiter;
  /** Where the counters live: shared across instances unless `memory`. */
  store: 'memory' | 'mysql' | 'redis';
  close(): Promise<void>;
}

interface Windows {
  loginRateLimit: number;
  revealRateLimit: number;
}

interface Window {
  prefix: string;
  points: number;
  seconds: number;
}

const retryAfter = (msBeforeNext: number) => Math.max(1, Math.ceil(msBeforeNext / 1000));

/** Memory (one process) and Redis (shared): rate-limiter-flexible, through its public API. */
class FlexibleLimiter implements Limiter {
  constructor(private readonly limiter: RateLimiterAbstract) {}

  async consume(key: string): Promise<void> {
    try {
      await this.limiter.consume(key);
    } catch (err) {
      if (err instanceof RateLimiterRes) throw new RateLimitedError(retryAfter(err.msBeforeNext));
      throw new UnavailableError('Rate-limit state is unavailable', err);
    }
  }

  async reward(key: string): Promise<void> {
    await this.limiter.reward(key, 1).catch((err: unknown) => {
      throw new UnavailableError('Rate-limit state is unavailable', err);
    });
  }

  async forgive(key: string): Promise<void> {
    await this.limiter.delete(key).catch((err: unknown) => {
      throw new UnavailableError('Rate-limit state is unavailable', err);
    });
  }
}

/** Keeps the count handed back through LAST_INSERT_ID() positive (0 means "no value"), whatever rewards did to it. */
const COUNT_OFFSET = 2 ** 31;

/**
 * MySQL/MariaDB (shared by every instance on one database): the `pkv_rate_limits` table, one atomic upsert that hands
 * the new count back in its OK packet (LAST_INSERT_ID(expr)), autocommitted. rate-limiter-flexible's own MySQL store
 * spends a transaction of four round trips per point; this is one. The points spent on one key in one turn of the
 * event loop (a busy script, everyone behind one address) go in one upsert of their sum, each caller counted in the
 * order it asked, as if one after another: the counter row is hot, and every upsert holds its lock until its commit.
 * The window's end is read only when a refusal needs it for Retry-After. A deadlock or a Galera certification
 * conflict is run again with backoff by Database.statement (the upsert changed nothing then), a few times, then 503.
 */
class MySQLCounterLimiter implements Limiter {
  private readonly spends = perTurn<string, number>((keys) => this.spendTogether(keys), 256);

  constructor(
    private readonly db: Database,
    private readonly window: Window,
  ) {}

  async consume(key: string): Promise<void> {
    const stored = `${this.window.prefix}:${key}`;
    const count = await this.spends.load(stored);
    if (count <= this.window.points) return;
    // A refusal keeps the count its own upsert made: a row reset or deleted meanwhile must not turn it into an allowance.
    const rows = (await this.run('SELECT expire FROM pkv_rate_limits WHERE `key` = ?', [stored])) as Array<{ expire: number | string | null }>;
    const ends = rows[0]?.expire == null ? Date.now() + this.window.seconds * 1000 : Number(rows[0].expire);
    throw new RateLimitedError(retryAfter(ends - Date.now()));
  }

  async reward(key: string): Promise<void> {
    await this.add(`${this.window.prefix}:${key}`, -1);
  }

  async forgive(key: string): Promise<void> {
    await this.run('DELETE FROM pkv_rate_limits WHERE `key` = ?', [`${this.window.prefix}:${key}`]);
  }

  /** One upsert per distinct key of the turn; each caller gets the count its own point made. */
  private async spendTogether(keys: readonly string[]): Promise<Array<number | Error>> {
    const callers = new Map<string, number[]>();
    keys.forEach((k, i) => {
      const members = callers.get(k);
      if (members) members.push(i);
      else callers.set(k, [i]);
    });
    const out: Array<number | Error> = new Array(keys.length);
    await Promise.all(
      [...callers].map(async ([key, members]) => {
        try {
          let count = (await this.add(key, members.length)) - members.length;
          for (const i of members) out[i] = ++count;
        } catch (err) {
          for (const i of members) out[i] = err instanceof Error ? err : new Error(String(err));
        }
      }),
    );
    return out;
  }

  /** Adds `points` in the current window (a new window once the stored one has ended) and returns the new count. */
  private async add(key: string, points: number): Promise<number> {
    const now = Date.now();
    const expire = now + this.window.seconds * 1000;
    // Assignments run left to right: `expire` is still the old window's end when `points` is computed.
    const sql =
      'INSERT INTO pkv_rate_limits (`key`, points, expire) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE ' +
      `points = CAST(LAST_INSERT_ID(IF(expire <= ?, ?, points + ?) + ${COUNT_OFFSET}) AS SIGNED) - ${COUNT_OFFSET}, expire = IF(expire <= ?, ?, expire)`;
    const result = (await this.run(sql, [key, points, expire, now, points, points, now, expire])) as { insertId?: number | string };
    const insertId = Number(result.insertId ?? 0);
    // No LAST_INSERT_ID() call: the row was new, so it holds exactly what was inserted.
    return insertId === 0 ? points : insertId - COUNT_OFFSET;
  }

  private async run(sql: string, params: unknown[]): Promise<unknown> {
    try {
      return await this.db.statement(sql, params);
    } catch (err) {
      throw new UnavailableError('Rate-limit state is unavailable', err instanceof UnavailableError ? err.cause : err);
    }
  }
}

/**
 * Rate limiters whose state is shared by every instance: Redis when PKV_REDIS_URL is set, else the MySQL
 * database itself; an embedded SQLite vault is one process, so memory is enough there.
 */
export function createRateLimits(opts: Windows & { redisUrl?: string }, db?: Database): RateLimits {
  let make: (w: Window) => Limiter = (w) => new FlexibleLimiter(new RateLimiterMemory(flexible(w)));
  let store: RateLimits['store'] = 'memory';
  let close = async () => undefined as void;
  if (opts.redisUrl) {
    const client = new Redis(opts.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
    client.on('error', () => undefined); // surfaced per request as 503
    make = (w) => new FlexibleLimiter(new RateLimiterRedis({ ...flexible(w), storeClient: client }));
    store = 'redis';
    close = async () => {
      client.disconnect();
    };
  } else if (db?.kind === 'mysql') {
    make = (w) => new MySQLCounterLimiter(db, w);
    store = 'mysql';
  }
  return {
    loginByUserIp: make({ prefix: 'login_ui', points: opts.loginRateLimit, seconds: 15 * 60 }),
    loginByIp: make({ prefix: 'login_ip', points: opts.loginRateLimit * 10, seconds: 60 * 60 }),
    revealByUser: make({ prefix: 'reveal', points: opts.revealRateLimit, seconds: 60 }),
    revealByIp: make({ prefix: 'reveal_ip', points: opts.revealRateLimit * 10, seconds: 60 }),
    checkByUser: make({ prefix: 'check', points: opts.revealRateLimit * 4, seconds: 60 }),
    checkByIp: make({ prefix: 'check_ip', points: opts.revealRateLimit * 40, seconds: 60 }),
    store,
    close,
  };
}

function flexible(w: Window): IRateLimiterOptions {
  return { keyPrefix: w.prefix, points: w.points, duration: w.seconds };
}
