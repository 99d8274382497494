import crypto from 'node:crypto';
import { promisify } from 'node:util';

const scrypt = promisify(crypto.scrypt) as (pw: crypto.BinaryLike, salt: crypto.BinaryLike, len: number, opts: crypto.ScryptOptions) => Promise<Buffer>;
const KEY_LEN = 32;

function params(logN: number): crypto.ScryptOptions {
  const N = 2 ** logN;
  return { N, r: 8, p: 1, maxmem: 128 * N * 8 + 16 * 1024 * 1024 };
}

/** scrypt (memory-hard), self-describing: `scrypt$ln=17,r=8,p=1$salt$hash`, so the cost can grow later. */
export async function hashPassword(password: string, logN: number): Promise<string> {
  const salt = crypto.randomBytes(16);
  const hash = await scrypt(password.normalize('NFKC'), salt, KEY_LEN, params(logN));
  return `scrypt$ln=${logN},r=8,p=1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Stored for an account created without a password: no password verifies against it (it is not a scrypt string). */
export const NO_PASSWORD = '!none';

export const isUsablePasswordHash = (stored: string): boolean => stored.startsWith('scrypt$');

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^scrypt\$ln=(\d+),r=8,p=1\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const expected = Buffer.from(m[3], 'base64');
  const actual = await scrypt(password.normalize('NFKC'), Buffer.from(m[2], 'base64'), expected.length, params(Number(m[1])));
  return crypto.timingSafeEqual(actual, expected);
}
