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

export const VIRTUAL_KEY_PREFIX = 'pkv_vk_';
const VIRTUAL_KEY_SHAPE = /^pkv_vk_[A-Za-z0-9_-]{43}$/;

/** A new gateway virtual key: 256 bits from the CSPRNG, `pkv_vk_` + 43 base64url characters, stored only as its SHA-256. */
export function newVirtualKey(): { token: string; hash: string; prefix: string } {
  const token = VIRTUAL_KEY_PREFIX + crypto.randomBytes(32).toString('base64url');
  return { token, hash: hashApiToken(token), prefix: token.slice(0, VIRTUAL_KEY_PREFIX.length + 8) };
}

export function isVirtualKeyShape(token: string): boolean {
  return VIRTUAL_KEY_SHAPE.test(token);
}
