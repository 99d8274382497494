import crypto from 'node:crypto';

export const API_TOKEN_PREFIX = 'pkv_';
const TOKEN_SHAPE = /^pkv_[A-Za-z0-9_-]{43}$/;

/** A new API token: 256 bits from the CSPRNG, `pkv_` + 43 base64url characters. */
export function newApiToken(): { token: string; hash: string; prefix: string } {
  const token = API_TOKEN_PREFIX + crypto.randomBytes(32).toString('base64url');
  return { token, hash: hashApiToken(token), prefix: displayPrefix(token) };
}

/** Tokens are high-entropy, so a plain SHA-256 is the right hash: it allows an indexed lookup, no scan. */
export function hashApiToken(token: string): string {
  return crypto.createHash('sha256').update(token, 'utf8').digest('hex');
}

export function isApiTokenShape(token: string): boolean {
  return TOKEN_SHAPE.test(token);
}

/** What lists show: enough to tell tokens apart, 48 of 256 bits. */
export function displayPrefix(token: string): string {
  return token.slice(0, 12);
}
