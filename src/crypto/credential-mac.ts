import crypto from 'node:crypto';

/** The label of the credential-row MAC key: derived from the audit key, never the audit key itself (domain separation). */
export const CREDENTIAL_MAC_LABEL = 'pkv/v1/credential-row-mac';

/** Which table a sealed row is from: part of the MAC, so a row's fields cannot be replayed as the other kind's. */
export type CredentialKind = 'virtual_key' | 'api_token';

/** A field as it decides what a credential may do: text, a number (limits, epoch milliseconds) or null. */
export type SealedField = string | number | null;

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * HMAC-SHA256 over the columns of a credential row (virtual keys, API tokens) that decide what it may do, under a key
 * derived from the audit key (a system key wrapped under the master keyring, so not usable from the database alone).
 * A database writer can still insert or change rows, but not make one whose MAC holds: the product refuses such a row.
 */
export class CredentialMac {
  private readonly key: Buffer;

  constructor(auditKey: Buffer) {
    this.key = crypto.createHmac('sha256', auditKey).update(CREDENTIAL_MAC_LABEL, 'utf8').digest();
  }

  /** Fixed order, JSON-encoded (no separator ambiguity), numbers as numbers: MySQL's BIGINT strings are normalised by the caller. */
  of(kind: CredentialKind, fields: readonly SealedField[]): string {
    return crypto.createHmac('sha256', this.key).update(JSON.stringify([kind, ...fields]), 'utf8').digest('hex');
  }

  /** Constant-time; a missing (null) or malformed stored MAC never verifies. */
  verifies(kind: CredentialKind, fields: readonly SealedField[], stored: string | null | undefined): boolean {
    if (typeof stored !== 'string' || !HEX64.test(stored)) return false;
    return crypto.timingSafeEqual(Buffer.from(this.of(kind, fields), 'hex'), Buffer.from(stored, 'hex'));
  }
}
