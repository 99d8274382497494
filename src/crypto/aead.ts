import crypto from 'node:crypto';
import { IntegrityError } from '../errors';

export interface Sealed {
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** AES-256-GCM with a fresh random 96-bit IV per call (never reused: random IVs under per-key DEKs). */
export function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Sealed {
  const iv = crypto.randomBytes(IV_BYTES);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, tag: cipher.getAuthTag(), ciphertext };
}

/** Opens or throws IntegrityError: a changed byte anywhere (or the wrong AAD) never yields plaintext. */
export function open(key: Buffer, sealed: Sealed, aad: Buffer): Buffer {
  if (sealed.iv.length !== IV_BYTES || sealed.tag.length !== TAG_BYTES) throw new IntegrityError();
  let unverified: Buffer | undefined;
  try {
    const decipher = crypto.createDecipheriv('aes-256-gcm', key, sealed.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.tag);
    unverified = decipher.update(sealed.ciphertext);
    const plaintext = Buffer.concat([unverified, decipher.final()]);
    unverified.fill(0);
    return plaintext;
  } catch (err) {
    // The tag did not verify: the bytes update() produced are never returned, and not left in memory either.
    unverified?.fill(0);
    throw new IntegrityError(undefined, err);
  }
}

/** Domain-separated AAD: a label and fields joined by NUL (ids never contain NUL). */
export function aad(label: string, ...fields: Array<string | number>): Buffer {
  return Buffer.from([label, ...fields.map(String)].join('\0'), 'utf8');
}
