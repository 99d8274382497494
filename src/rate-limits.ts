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
    make = (o) => new RateLimiterMySQL({ ...o, storeClient: driver.pool, storeType: 'pool', dbName: driver.database, tableName: 'pkv_rate_limits', tableCreated: true, clearExpiredByTimeout: false });
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
