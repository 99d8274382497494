import { RateLimiterAbstract, RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimitedError } from './errors';

export interface RateLimits {
  /** Failed sign-ins per username+IP. */
  loginByUserIp: RateLimiterAbstract;
  /** Failed sign-ins per IP, whatever the username (slows spraying). */
  loginByIp: RateLimiterAbstract;
  /** Reveals per user per minute, allowed or not. */
  revealByUser: RateLimiterAbstract;
}

export function createRateLimits(opts: { loginRateLimit: number; revealRateLimit: number }): RateLimits {
  return {
    loginByUserIp: new RateLimiterMemory({ keyPrefix: 'login_ui', points: opts.loginRateLimit, duration: 15 * 60, blockDuration: 15 * 60 }),
    loginByIp: new RateLimiterMemory({ keyPrefix: 'login_ip', points: opts.loginRateLimit * 10, duration: 60 * 60, blockDuration: 60 * 60 }),
    revealByUser: new RateLimiterMemory({ keyPrefix: 'reveal', points: opts.revealRateLimit, duration: 60 }),
  };
}

function retryAfter(res: RateLimiterRes): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
}

/** Consumes a point; a refusal becomes RateLimitedError with Retry-After. Store failures propagate (fail closed). */
export async function consume(limiter: RateLimiterAbstract, key: string): Promise<void> {
  try {
    await limiter.consume(key);
  } catch (err) {
    if (err instanceof RateLimiterRes) throw new RateLimitedError(retryAfter(err));
    throw err;
  }
}

/** Tells whether the key is currently blocked, without spending a point. */
export async function blockedFor(limiter: RateLimiterAbstract, key: string): Promise<number | undefined> {
  const res = await limiter.get(key);
  if (res && res.remainingPoints <= 0 && res.msBeforeNext > 0) return retryAfter(res);
  return undefined;
}

/** Spends a point for a failure without throwing. */
export async function penalize(limiter: RateLimiterAbstract, key: string): Promise<void> {
  await limiter.penalty(key, 1);
}
