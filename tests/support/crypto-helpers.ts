import crypto from 'node:crypto';
import forge from 'node-forge';
import type { TestContext } from './test-app';
import { CredentialMac } from '../../src/crypto/credential-mac';
import { ApiTokenEntity } from '../../src/modules/api-tokens/api-token.entity';
import { apiTokenFields } from '../../src/modules/api-tokens/api-tokens.repository';
import { VirtualKeyEntity } from '../../src/modules/gateway/virtual-key.entity';
import { virtualKeyFields } from '../../src/modules/gateway/virtual-keys.repository';

/** The sealed columns of provider_keys, as stored. */
export const SEALED_COLUMNS = ['wrapped_dek', 'dek_iv', 'dek_tag', 'secret_ciphertext', 'secret_iv', 'secret_tag'] as const;
export type SealedColumn = (typeof SEALED_COLUMNS)[number];

export interface StoredKeyRow {
  id: string;
  ownerId: string;
  projectId: string;
  provider: string;
  baseUrl: string | null;
  status: string;
  hint: string;
  formatVersion: number;
  kekVersion: number | null;
  fingerprint: string | null;
  revealCount: number;
  expiresAt: number | null;
  lastRevealedAt: number | null;
  sealed: Record<SealedColumn, Buffer | null>;
}

const asBuffer = (v: unknown): Buffer | null => (v == null ? null : Buffer.isBuffer(v) ? Buffer.from(v) : v instanceof Uint8Array ? Buffer.from(v) : Buffer.from(String(v), 'binary'));
const asNumber = (v: unknown): number | null => (v == null ? null : Number(v));

/** One provider_keys row straight from the database (no ORM), blobs as Buffers, BIGINTs as numbers. */
export async function storedKey(ctx: TestContext, id: string): Promise<StoredKeyRow> {
  const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT * FROM provider_keys WHERE id = ?', [id]));
  if (rows.length !== 1) throw new Error(`storedKey: ${rows.length} rows for ${id}`);
  const r = rows[0];
  return {
    id: String(r.id),
    ownerId: String(r.owner_id),
    projectId: String(r.project_id),
    provider: String(r.provider),
    baseUrl: r.base_url == null ? null : String(r.base_url),
    status: String(r.status),
    hint: String(r.hint),
    formatVersion: Number(r.format_version),
    kekVersion: asNumber(r.kek_version),
    fingerprint: r.fingerprint == null ? null : String(r.fingerprint),
    revealCount: Number(r.reveal_count),
    expiresAt: asNumber(r.expires_at),
    lastRevealedAt: asNumber(r.last_revealed_at),
    sealed: Object.fromEntries(SEALED_COLUMNS.map((c) => [c, asBuffer(r[c])])) as Record<SealedColumn, Buffer | null>,
  };
}

/** Writes raw column values into a provider_keys row, bypassing the product (an attacker with database access). */
export async function setKeyColumns(ctx: TestContext, id: string, values: Record<string, Buffer | number | string | null>): Promise<void> {
  const cols = Object.keys(values);
  const sql = `UPDATE provider_keys SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`;
  await ctx.db.read((m) => m.query(sql, [...cols.map((c) => values[c]), id]));
}

export function flipBit(buf: Buffer, bit = 0): Buffer {
  const out = Buffer.from(buf);
  out[Math.floor(bit / 8) % out.length] ^= 1 << bit % 8;
  return out;
}

/** The AADs as SPEC §5 and the brief define them, written out independently of src/crypto. */
export const dekAadOf = (keyId: string, kekVersion: number) => Buffer.from(['pkv/v1/dek', keyId, String(kekVersion)].join('\0'), 'utf8');
export interface BindingOf {
  keyId: string;
  ownerId: string;
  projectId: string;
  provider: string;
  baseUrl: string | null;
}
export const secretAadOf = (b: BindingOf) => Buffer.from(['pkv/v2/secret', b.keyId, b.ownerId, b.projectId, b.provider, b.baseUrl ?? ''].join('\0'), 'utf8');
/** Format 1 (before provider and baseUrl were bound). */
export const legacySecretAadOf = (b: BindingOf) => Buffer.from(['pkv/v1/secret', b.keyId, b.ownerId, b.projectId].join('\0'), 'utf8');
export const bindingOfRow = (row: StoredKeyRow): BindingOf => ({ keyId: row.id, ownerId: row.ownerId, projectId: row.projectId, provider: row.provider, baseUrl: row.baseUrl });

const bin = (b: Buffer) => b.toString('binary');

/** AES-GCM decrypt with node-forge's pure-JS implementation: plaintext, or null when the tag does not verify. */
export function forgeGcmOpen(key: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer, aad: Buffer): Buffer | null {
  const decipher = forge.cipher.createDecipher('AES-GCM', forge.util.createBuffer(bin(key)));
  decipher.start({ iv: bin(iv), additionalData: bin(aad), tagLength: 128, tag: forge.util.createBuffer(bin(tag)) });
  decipher.update(forge.util.createBuffer(bin(ciphertext)));
  if (!decipher.finish()) return null;
  return Buffer.from(decipher.output.getBytes(), 'binary');
}

/** AES-GCM encrypt with node-forge. */
export function forgeGcmSeal(key: Buffer, iv: Buffer, plaintext: Buffer, aad: Buffer): { ciphertext: Buffer; tag: Buffer } {
  const cipher = forge.cipher.createCipher('AES-GCM', forge.util.createBuffer(bin(key)));
  cipher.start({ iv: bin(iv), additionalData: bin(aad), tagLength: 128 });
  cipher.update(forge.util.createBuffer(bin(plaintext)));
  cipher.finish();
  return { ciphertext: Buffer.from(cipher.output.getBytes(), 'binary'), tag: Buffer.from(cipher.mode.tag.getBytes(), 'binary') };
}

/** AES-256-GCM decrypt with node:crypto directly: plaintext, or null when authentication fails. */
export function nodeGcmOpen(key: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer, aad: Buffer): Buffer | null {
  try {
    const d = crypto.createDecipheriv(`aes-${key.length * 8}-gcm` as 'aes-256-gcm', key, iv, { authTagLength: 16 });
    d.setAAD(aad);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(ciphertext), d.final()]);
  } catch {
    return null;
  }
}

function need(row: StoredKeyRow): Record<SealedColumn, Buffer> & { kekVersion: number } {
  for (const c of SEALED_COLUMNS) if (!row.sealed[c]) throw new Error(`row ${row.id} has no ${c}`);
  if (row.kekVersion == null) throw new Error(`row ${row.id} has no kek_version`);
  return { ...(row.sealed as Record<SealedColumn, Buffer>), kekVersion: row.kekVersion };
}

/** Unwraps a row's data key from the stored bytes and the master key alone, with node-forge. */
export function forgeUnwrapDek(masterKey: Buffer, row: StoredKeyRow, keyId = row.id): Buffer | null {
  const s = need(row);
  return forgeGcmOpen(masterKey, s.dek_iv, s.wrapped_dek, s.dek_tag, dekAadOf(keyId, s.kekVersion));
}

/** Opens a row's secret from the stored bytes and the master key alone, with node-forge, under the given binding. */
export function forgeOpenSecret(masterKey: Buffer, row: StoredKeyRow, binding: BindingOf = bindingOfRow(row)): Buffer | null {
  const s = need(row);
  const dek = forgeUnwrapDek(masterKey, row);
  if (!dek) return null;
  return forgeGcmOpen(dek, s.secret_iv, s.secret_ciphertext, s.secret_tag, secretAadOf(binding));
}

/** Every printable form a stored byte string could leak as. */
export function encodings(b: Buffer): string[] {
  return [b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64'), b.toString('base64url')];
}

/** The needles a leak check looks for: the secret itself and every encoding of what is stored for it. */
export function storedNeedles(row: StoredKeyRow): string[] {
  const out: string[] = [];
  for (const c of SEALED_COLUMNS) {
    const b = row.sealed[c];
    // 12-byte IVs and 16-byte tags are long enough (24+ hex chars) that a chance match is not a concern.
    if (b && b.length >= 12) out.push(...encodings(b));
  }
  if (row.fingerprint) out.push(row.fingerprint, row.fingerprint.toUpperCase(), ...encodings(Buffer.from(row.fingerprint, 'hex')));
  return out;
}

/** The first needle found in the haystack, for a readable failure; undefined when none is. */
export function firstLeak(haystack: string, needles: string[]): string | undefined {
  return needles.find((n) => n.length > 0 && haystack.includes(n));
}

/** AES-256-GCM encrypt with node:crypto and a fresh random IV: what an attacker holding the master key could write. */
export function nodeGcmSeal(key: Buffer, plaintext: Buffer, aad: Buffer): { iv: Buffer; ciphertext: Buffer; tag: Buffer } {
  const iv = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
  c.setAAD(aad);
  const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
  return { iv, ciphertext, tag: c.getAuthTag() };
}

/**
 * Sets columns of a credential row and seals it again as the vault would have: for a test that needs a state the API
 * cannot make at once (an expired token). Without resealing, a change by SQL breaks the row MAC and the row is refused
 * for that reason, whatever the test meant to check.
 */
export async function setCredentialAsTheVault(ctx: TestContext, table: 'api_tokens' | 'virtual_keys', id: string, values: Record<string, number | string | null>): Promise<void> {
  const mac = new CredentialMac(await ctx.container.keyring.systemKey('audit_chain'));
  await ctx.db.transaction(async (tx) => {
    const cols = Object.keys(values);
    await tx.query(`UPDATE ${table} SET ${cols.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`, [...cols.map((c) => values[c]), id]);
    const rowMac =
      table === 'api_tokens'
        ? mac.of('api_token', apiTokenFields(await tx.findOneByOrFail(ApiTokenEntity, { id })))
        : mac.of('virtual_key', virtualKeyFields(await tx.findOneByOrFail(VirtualKeyEntity, { id })));
    await tx.query(`UPDATE ${table} SET row_mac = ? WHERE id = ?`, [rowMac, id]);
  });
}
