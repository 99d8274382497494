import crypto from 'node:crypto';
import { IntegrityError } from '../errors';
import { aad, open, seal } from './aead';
import type { Keyring } from './keyring';

/** Sealings bind the key's provider and baseUrl too (format 2), so the secret opens only for the upstream it was sealed for. */
export const FORMAT_VERSION = 2;
/** Format 1 bound key, owner and project only: opened for reveals, backups and the start-up upgrade to format 2, never to send the key anywhere. */
export const LEGACY_FORMAT_VERSION = 1;

/**
 * Where a secret belongs and where it may be sent; the secret's AAD binds it here, so a ciphertext copied to another
 * row does not open, and neither does one whose row a database writer pointed at another upstream.
 */
export interface SecretBinding {
  keyId: string;
  ownerId: string;
  projectId: string;
  provider: string;
  /** null: the provider's default upstream. */
  baseUrl: string | null;
}

/** The stored form of a provider key's secret (columns of provider_keys). */
export interface SealedSecret {
  formatVersion: number;
  kekVersion: number | null;
  wrappedDek: Buffer | null;
  dekIv: Buffer | null;
  dekTag: Buffer | null;
  secretCiphertext: Buffer | null;
  secretIv: Buffer | null;
  secretTag: Buffer | null;
}

// A baseUrl is a non-empty URL, so '' (the provider's default) cannot be mistaken for one.
export const secretAad = (b: SecretBinding) => aad('pkv/v2/secret', b.keyId, b.ownerId, b.projectId, b.provider, b.baseUrl ?? '');
const legacySecretAad = (b: SecretBinding) => aad('pkv/v1/secret', b.keyId, b.ownerId, b.projectId);

export interface OpenOptions {
  /** Also open a format-1 sealing (its provider and baseUrl are not bound): for reveals, backups and the upgrade only. */
  legacy?: boolean;
}

/**
 * Names one sealing of a secret by its random IV and its tag (neither says anything about the plaintext). The audit
 * trail records it at every re-seal and every reveal, so an older copy of the sealed columns put back by someone with
 * database write access is told apart from the current one. Keyring rotation rewraps only the data key: same name.
 */
export function sealIdOf(s: Pick<SealedSecret, 'secretIv' | 'secretTag'>): string | null {
  if (!s.secretIv || !s.secretTag) return null;
  return crypto.createHash('sha256').update(s.secretIv).update(s.secretTag).digest('hex').slice(0, 32);
}

/** Envelope encryption: a fresh data key per secret, sealed under the active master key version. */
export class Envelope {
  constructor(private readonly keyring: Keyring) {}

  seal(binding: SecretBinding, plaintext: Buffer): SealedSecret {
    const dek = crypto.randomBytes(32);
    try {
      const s = seal(dek, plaintext, secretAad(binding));
      const w = this.keyring.wrap(dek, binding.keyId);
      return {
        formatVersion: FORMAT_VERSION,
        kekVersion: w.kekVersion,
        wrappedDek: w.ciphertext,
        dekIv: w.iv,
        dekTag: w.tag,
        secretCiphertext: s.ciphertext,
        secretIv: s.iv,
        secretTag: s.tag,
      };
    } finally {
      dek.fill(0);
    }
  }

  /** Opens a stored secret or throws IntegrityError; never returns unauthenticated bytes. */
  open(binding: SecretBinding, stored: SealedSecret, options: OpenOptions = {}): Buffer {
    const { kekVersion, wrappedDek, dekIv, dekTag, secretCiphertext, secretIv, secretTag } = stored;
    const legacy = stored.formatVersion === LEGACY_FORMAT_VERSION && options.legacy === true;
    if ((stored.formatVersion !== FORMAT_VERSION && !legacy) || kekVersion == null || !wrappedDek || !dekIv || !dekTag || !secretCiphertext || !secretIv || !secretTag) {
      throw new IntegrityError('stored secret is incomplete or of an unknown format');
    }
    const dek = this.keyring.unwrap({ kekVersion, iv: dekIv, tag: dekTag, ciphertext: wrappedDek }, binding.keyId);
    try {
      return open(dek, { iv: secretIv, tag: secretTag, ciphertext: secretCiphertext }, legacy ? legacySecretAad(binding) : secretAad(binding));
    } finally {
      dek.fill(0);
    }
  }

  /** Rewraps only the data key under another KEK version (rotation); the secret's ciphertext is untouched. */
  rewrap(keyId: string, stored: SealedSecret, toVersion = this.keyring.activeVersion): Pick<SealedSecret, 'kekVersion' | 'wrappedDek' | 'dekIv' | 'dekTag'> {
    const { kekVersion, wrappedDek, dekIv, dekTag } = stored;
    if (kekVersion == null || !wrappedDek || !dekIv || !dekTag) throw new IntegrityError('stored data key is incomplete');
    const dek = this.keyring.unwrap({ kekVersion, iv: dekIv, tag: dekTag, ciphertext: wrappedDek }, keyId);
    try {
      const w = this.keyring.wrap(dek, keyId, toVersion);
      return { kekVersion: w.kekVersion, wrappedDek: w.ciphertext, dekIv: w.iv, dekTag: w.tag };
    } finally {
      dek.fill(0);
    }
  }
}
