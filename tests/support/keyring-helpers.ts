import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import type request from 'supertest';
import type { Database } from '../../src/db/database';
import type { Container } from '../../src/container';
import { newId } from '../../src/ids';
import { hintFor } from '../../src/modules/provider-keys/providers';
import type { SecretBinding } from '../../src/crypto/envelope';
import type { TestContext } from './test-app';
import { sealedOf } from './leak-check';
import type { Env } from './processes';

/** The environment with the keyring replaced: `PKV_MASTER_KEYS` set, the `PKV_MASTER_KEY` shorthand removed. */
export function withKeyring(env: Env, keyring: string): Env {
  return { ...env, PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: keyring };
}

export async function loginTo(http: () => ReturnType<typeof request>, username: string, password: string): Promise<{ Authorization: string }> {
  const res = await http().post('/api/v1/auth/login').send({ username, password });
  if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${JSON.stringify(res.body)}`);
  return { Authorization: `Bearer ${res.body.accessToken}` };
}

export interface SeededKey {
  id: string;
  ownerId: string;
  projectId: string;
  secret: string;
}

const KEY_COLUMNS = [
  'id', 'name', 'provider', 'hint', 'status', 'owner_id', 'project_id', 'remark', 'created_by', 'created_at', 'updated_at',
  'expires_at', 'last_revealed_at', 'reveal_count', 'format_version', 'kek_version', 'wrapped_dek', 'dek_iv', 'dek_tag',
  'secret_ciphertext', 'secret_iv', 'secret_tag', 'fingerprint',
] as const;

/**
 * Inserts `count` live provider keys straight through SQL in multi-row batches, each secret sealed by the context's
 * envelope (its active master key version) and fingerprinted with the vault's own fingerprint key, as a paste would be.
 */
export async function seedProviderKeys(
  ctx: TestContext,
  count: number,
  owner: { ownerId: string; projectId: string; createdBy: string },
  batchSize = 500,
): Promise<SeededKey[]> {
  const fingerprintKey = await ctx.container.keyring.systemKey('fingerprint');
  const placeholders = `(${KEY_COLUMNS.map(() => '?').join(', ')})`;
  const seeded: SeededKey[] = [];
  const now = Date.now();
  for (let start = 0; start < count; start += batchSize) {
    const params: unknown[] = [];
    const n = Math.min(batchSize, count - start);
    for (let i = 0; i < n; i++) {
      const id = newId(now + start + i);
      const secret = `sk-${crypto.randomBytes(30).toString('base64url')}`;
      const binding = { keyId: id, ownerId: owner.ownerId, projectId: owner.projectId, provider: 'openai', baseUrl: null };
      const s = ctx.container.envelope.seal(binding, Buffer.from(secret, 'utf8'));
      const fingerprint = crypto.createHmac('sha256', fingerprintKey).update(secret, 'utf8').digest('hex');
      params.push(
        id, `seeded ${start + i}`, 'openai', hintFor('openai', secret), 'active', owner.ownerId, owner.projectId, null, owner.createdBy, now, now,
        null, null, 0, s.formatVersion, s.kekVersion, s.wrappedDek, s.dekIv, s.dekTag, s.secretCiphertext, s.secretIv, s.secretTag, fingerprint,
      );
      seeded.push({ id, ownerId: owner.ownerId, projectId: owner.projectId, secret });
    }
    const sql = `INSERT INTO provider_keys (${KEY_COLUMNS.join(', ')}) VALUES ${Array(n).fill(placeholders).join(', ')}`;
    await ctx.db.transaction((tx) => tx.query(sql, params));
  }
  return seeded;
}

/** Live provider keys per KEK version, counted in SQL: `{ 1: 4000, 2: 6000 }`. */
export async function kekVersionCounts(db: Database): Promise<Record<number, number>> {
  const rows: Array<{ v: unknown; n: unknown }> = await db.read((m) =>
    m.query('SELECT kek_version AS v, COUNT(*) AS n FROM provider_keys WHERE kek_version IS NOT NULL GROUP BY kek_version'),
  );
  return Object.fromEntries(rows.map((r) => [Number(r.v), Number(r.n)]));
}

/** The KEK version of each system key, by name. */
export async function systemKeyVersions(db: Database): Promise<Record<string, number>> {
  const rows: Array<{ name: string; kek_version: unknown }> = await db.read((m) => m.query('SELECT name, kek_version FROM system_keys'));
  return Object.fromEntries(rows.map((r) => [r.name, Number(r.kek_version)]));
}

/**
 * Opens the stored secret of each key with the given instance's envelope, reading the sealed columns in SQL.
 * Returns the ids that did not open to the expected plaintext (empty when every one did).
 */
export async function keysThatDoNotOpen(container: Container, db: Database, keys: readonly SeededKey[], chunk = 500): Promise<string[]> {
  const bad: string[] = [];
  for (let i = 0; i < keys.length; i += chunk) {
    const part = keys.slice(i, i + chunk);
    const rows: Array<Record<string, unknown>> = await db.read((m) =>
      m.query(`SELECT * FROM provider_keys WHERE id IN (${part.map(() => '?').join(', ')})`, part.map((k) => k.id)),
    );
    const byId = new Map(rows.map((r) => [String(r.id), r]));
    for (const k of part) {
      const r = byId.get(k.id);
      try {
        if (!r) throw new Error('row missing');
        const binding: SecretBinding = { keyId: k.id, ownerId: k.ownerId, projectId: k.projectId, provider: String(r.provider), baseUrl: r.base_url == null ? null : String(r.base_url) };
        const plain = container.envelope.open(binding, sealedOf(r));
        if (plain.toString('utf8') !== k.secret) throw new Error('wrong plaintext');
      } catch {
        bad.push(k.id);
      }
    }
  }
  return bad;
}

/** Every `step`-th key, plus the first and the last: a spread-out sample. */
export function sampleOf<T>(items: readonly T[], size: number): T[] {
  const step = Math.max(1, Math.floor(items.length / size));
  const out = items.filter((_, i) => i % step === 0).slice(0, size);
  if (items.length > 0 && out[out.length - 1] !== items[items.length - 1]) out.push(items[items.length - 1]);
  return out;
}

export interface HttpAnswer {
  status: number;
  body: string;
  json(): any;
}

function collect(res: http.IncomingMessage): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    let body = '';
    res.setEncoding('utf8').on('data', (d: string) => (body += d));
    res.on('end', () => resolve({ status: res.statusCode ?? 0, body, json: () => JSON.parse(body) }));
    res.on('error', reject);
  });
}

export interface RequestOptions {
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: unknown;
}

/** A plain fetch against a spawned server (http or https with a trusted CA), with a 10 s bound. */
export async function fetchJson(to: string | URL, opts: RequestOptions & { ca?: string | Buffer; servername?: string }): Promise<HttpAnswer> {
  const url = new URL(to);
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        host: url.hostname,
        port: url.port,
        path: opts.path,
        method: opts.method ?? 'GET',
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...opts.headers },
        timeout: 10_000,
        ...(url.protocol === 'https:' ? { ca: opts.ca, servername: opts.servername, agent: false } : {}),
      },
      (res) => collect(res).then(resolve, reject),
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * An https request that trusts exactly one certificate, by its SHA-256 fingerprint (certificate pinning): the TLS
 * handshake is finished and the peer's fingerprint compared before a single byte of the request is written.
 */
export async function pinnedRequest(to: string | URL, fingerprint256: string, opts: RequestOptions): Promise<HttpAnswer & { peerFingerprint: string }> {
  const url = new URL(to);
  const socket = tls.connect({ host: url.hostname, port: Number(url.port), servername: 'localhost', rejectUnauthorized: false });
  const peerFingerprint = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => (socket.destroy(), reject(new Error('TLS handshake timed out'))), 10_000);
    socket.once('secureConnect', () => (clearTimeout(t), resolve(socket.getPeerCertificate().fingerprint256)));
    socket.once('error', (e) => (clearTimeout(t), reject(e)));
  });
  if (peerFingerprint !== fingerprint256) {
    socket.destroy();
    throw new Error(`certificate pin mismatch: expected ${fingerprint256}, got ${peerFingerprint}`);
  }
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const answer = await new Promise<HttpAnswer>((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        path: opts.path,
        method: opts.method ?? 'GET',
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...opts.headers, connection: 'close' },
        createConnection: () => socket,
        timeout: 10_000,
      },
      (res) => collect(res).then(resolve, reject),
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(payload);
  });
  socket.destroy();
  return { ...answer, peerFingerprint };
}

/** A throwaway self-signed certificate for 127.0.0.1, made here with node-forge (not by the product), written to dir. */
export function writeTestCertificate(dir: string): { certFile: string; keyFile: string; fingerprint256: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = '7f' + crypto.randomBytes(8).toString('hex');
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const subject = [{ name: 'commonName', value: 'pkv-test-operator-cert' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }]);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  const certPem = forge.pki.certificateToPem(cert);
  const certFile = path.join(dir, 'operator.crt');
  const keyFile = path.join(dir, 'operator.key');
  fs.writeFileSync(certFile, certPem);
  fs.writeFileSync(keyFile, keyPem, { mode: 0o600 });
  return { certFile, keyFile, fingerprint256: new crypto.X509Certificate(certPem).fingerprint256 };
}
