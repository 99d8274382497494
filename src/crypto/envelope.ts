import crypto from 'node:crypto';
import { IntegrityError } from '../errors';
import { aad, open, seal } from './aead';
import type { Keyring } from './keyring';

export const FORMAT_VERSION = 1;

/** Where a secret belongs; the secret's AAD binds it here, so a ciphertext copied to another row does not open. */
export interface SecretBinding {
  keyId: string;
  ownerId: string;
  projectId: string;
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

export const secretAad = (b: SecretBinding) => aad('pkv/v1/secret', b.keyId, b.ownerId, b.projectId);

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
  open(binding: SecretBinding, stored: SealedSecret): Buffer {
    const { kekVersion, wrappedDek, dekIv, dekTag, secretCiphertext, secretIv, secretTag } = stored;
    if (stored.formatVersion !== FORMAT_VERSION || kekVersion == null || !wrappedDek || !dekIv || !dekTag || !secretCiphertext || !secretIv || !secretTag) {
      throw new IntegrityError('stored secret is incomplete or of an unknown format');
    }
    const dek = this.keyring.unwrap({ kekVersion, iv: dekIv, tag: dekTag, ciphertext: wrappedDek }, binding.keyId);
    try {
      return open(dek, { iv: secretIv, tag: secretTag, ciphertext: secretCiphertext }, secretAad(binding));
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
