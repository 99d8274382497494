import crypto from 'node:crypto';
import jwt from 'jsonwebtoken';

export const ISSUER = 'provider-key-vault';
export const AUDIENCE = 'pkv-api';
/** Seconds of clock skew allowed on exp (and on iat in the future). */
const CLOCK_TOLERANCE = 2;

export interface SessionClaims {
  sub: string;
  jti: string;
  /** The user's session epoch when issued; a password change moves it. */
  ep: number;
  exp: number;
  iat: number;
}

/** Session JWTs: HS256 pinned both ways, issuer and audience checked, short TTL, random jti for logout. */
export class SessionTokens {
  /** Built once: handed raw bytes, jsonwebtoken tries createPublicKey first and throws on every single verify. */
  private readonly key: crypto.KeyObject;

  constructor(
    private readonly secret: Buffer,
    readonly ttlSeconds: number,
  ) {
    this.key = crypto.createSecretKey(secret);
  }

  issue(userId: string, epoch: number): { token: string; jti: string; expiresAt: Date } {
    const jti = crypto.randomBytes(18).toString('base64url');
    const token = jwt.sign({ ep: epoch }, this.key, {
      algorithm: 'HS256',
      subject: userId,
      jwtid: jti,
      issuer: ISSUER,
      audience: AUDIENCE,
      expiresIn: this.ttlSeconds,
    });
    const { exp } = jwt.decode(token) as { exp: number };
    return { token, jti, expiresAt: new Date(exp * 1000) };
  }

  /** The console's CSRF token for a cookie session: derived from its jti, so any instance can check it statelessly. */
  csrfFor(jti: string): string {
    return crypto.createHmac('sha256', this.secret).update(`csrf|${jti}`).digest('base64url');
  }

  /** Returns the claims, or undefined for anything not issued by us and current. Errors are not distinguished on purpose. */
  verify(token: string): SessionClaims | undefined {
    try {
      const claims = jwt.verify(token, this.key, { algorithms: ['HS256'], issuer: ISSUER, audience: AUDIENCE, clockTolerance: CLOCK_TOLERANCE }) as jwt.JwtPayload;
      if (typeof claims.sub !== 'string' || typeof claims.jti !== 'string' || typeof claims.ep !== 'number' || typeof claims.exp !== 'number') return undefined;
      // jsonwebtoken checks exp and nbf but not iat: a token claiming to be issued in the future was not issued by us.
      if (typeof claims.iat !== 'number' || claims.iat > Date.now() / 1000 + CLOCK_TOLERANCE) return undefined;
      return claims as SessionClaims;
    } catch {
      return undefined;
    }
  }
}
