import 'reflect-metadata';
import { spawn, ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import request from 'supertest';
import type { Express } from 'express';
import { loadConfig, Config } from '../../src/config';
import { openDatabase, Database } from '../../src/db/database';
import { buildContainer, Container } from '../../src/container';
import { createApp } from '../../src/app';
import { CaptureTransport, createLogger } from '../../src/logger';
import { newId } from '../../src/ids';
import { hintFor } from '../../src/modules/provider-keys/providers';
import type { SecretBinding } from '../../src/crypto/envelope';
import type { TestContext } from './test-app';
import { sealedOf } from './leak-check';

export const PKV_BIN = path.resolve(__dirname, '../../dist/src/cli/pkv.js');

/** Spawned tests run the built CLI; `npm test` builds first, a direct `npx jest` needs `npm run build`. */
export function assertBuilt(): void {
  if (!fs.existsSync(PKV_BIN)) throw new Error(`${PKV_BIN} is missing: run \`npm run build\` before these tests`);
}

type Env = Record<string, string | undefined>;

/** The environment with the keyring replaced: `PKV_MASTER_KEYS` set, the `PKV_MASTER_KEY` shorthand removed. */
export function withKeyring(env: Env, keyring: string): Env {
  return { ...env, PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: keyring };
}

/** A second vault process in all but name: its own config, connection and services over an existing database. */
export interface Instance {
  config: Config;
  db: Database;
  container: Container;
  app: Express;
  capture: CaptureTransport;
  http(): ReturnType<typeof request>;
  close(): Promise<void>;
}

/** loadConfig → openDatabase → buildContainer → createApp, as test-app.ts and main.ts do; the database must be migrated. */
export async function openInstance(env: Env): Promise<Instance> {
  const config = loadConfig(env, { generateDevSecrets: false });
  const db = await openDatabase(config.database);
  const capture = new CaptureTransport();
  let container: Container;
  try {
    container = await buildContainer(config, createLogger('debug', [capture]), db);
  } catch (err) {
    await db.close();
    throw err;
  }
  const app = createApp(container);
  return {
    config,
    db,
    container,
    app,
    capture,
    http: () => request(app),
    close: async () => {
      await container.usage.stop();
      await db.close();
    },
  };
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
  const fingerprintKey = await ctx.container.keyring.systemKey(ctx.db, 'fingerprint');
  const placeholders = `(${KEY_COLUMNS.map(() => '?').join(', ')})`;
  const seeded: SeededKey[] = [];
  const now = Date.now();
  for (let start = 0; start < count; start += batchSize) {
    const params: unknown[] = [];
    const n = Math.min(batchSize, count - start);
    for (let i = 0; i < n; i++) {
      const id = newId(now + start + i);
      const secret = `sk-${crypto.randomBytes(30).toString('base64url')}`;
      const binding = { keyId: id, ownerId: owner.ownerId, projectId: owner.projectId };
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
        const binding: SecretBinding = { keyId: k.id, ownerId: k.ownerId, projectId: k.projectId };
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

export async function waitFor<T>(probe: () => Promise<T | undefined | false>, what: string, timeoutMs = 20_000, intervalMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface PkvResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface PkvProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<PkvResult>;
  /** SIGKILL (or the given signal) and wait for the exit; a no-op once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<PkvResult>;
}

const live = new Set<PkvProcess>();

/** A clean environment: only what a process needs to run, plus the test's PKV_* variables (undefined ones dropped). */
function processEnv(env: Env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', LANG: 'C.UTF-8' };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * Starts `node dist/src/cli/pkv.js ARGS` in `cwd` (a temp dir, so no stray .env is read), SIGKILLed after `timeoutMs`
 * at the latest. Every spawned process is tracked so `killAllPkv()` can end stragglers in afterAll.
 */
export function spawnPkv(args: string[], env: Env, opts: { cwd: string; timeoutMs?: number }): PkvProcess {
  assertBuilt();
  const child = spawn(process.execPath, [PKV_BIN, ...args], { cwd: opts.cwd, env: processEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const exited = new Promise<PkvResult>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(proc);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  const proc: PkvProcess = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  live.add(proc);
  return proc;
}

/** Runs a pkv command to its end. With `killOnStdout`, a process that prints a match (say, it started listening) is killed at once. */
export async function runPkv(args: string[], env: Env, opts: { cwd: string; timeoutMs?: number; killOnStdout?: RegExp }): Promise<PkvResult> {
  const p = spawnPkv(args, env, opts);
  if (opts.killOnStdout) {
    const re = opts.killOnStdout;
    p.child.stdout!.on('data', () => {
      if (re.test(p.stdout())) p.child.kill('SIGKILL');
    });
  }
  return p.exited;
}

export async function killAllPkv(): Promise<void> {
  await Promise.all([...live].map((p) => p.kill('SIGKILL')));
}

export interface ServingPkv extends PkvProcess {
  url: URL;
  /** From the `TLS certificate SHA-256 fingerprint:` line, when serving with --tls-self-signed. */
  fingerprint: string | undefined;
  /** SIGTERM (graceful stop) and wait; SIGKILL if it takes longer than 15 s. */
  stop(): Promise<PkvResult>;
}

/** `pkv serve ARGS`, resolved once it prints its URL; rejects with its output if it exits first. */
export async function servePkv(args: string[], env: Env, opts: { cwd: string; timeoutMs?: number }): Promise<ServingPkv> {
  const p = spawnPkv(['serve', ...args], env, { cwd: opts.cwd, timeoutMs: opts.timeoutMs ?? 120_000 });
  const listening = /provider-key-vault listening on (https?:\/\/\S+)/;
  const url = await new Promise<string>((resolve, reject) => {
    const startup = setTimeout(() => reject(new Error(`pkv serve did not listen within 30 s\nstdout:\n${p.stdout()}\nstderr:\n${p.stderr()}`)), 30_000);
    const onData = () => {
      const m = listening.exec(p.stdout());
      if (!m) return;
      clearTimeout(startup);
      p.child.stdout!.off('data', onData);
      resolve(m[1]);
    };
    p.child.stdout!.on('data', onData);
    void p.exited.then((r) => {
      clearTimeout(startup);
      reject(new Error(`pkv serve exited (${r.code ?? r.signal}) before listening\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`));
    });
  }).catch(async (err) => {
    await p.kill('SIGKILL');
    throw err;
  });
  const fp = /TLS certificate SHA-256 fingerprint: ([0-9A-F:]+)/.exec(p.stdout());
  return {
    ...p,
    url: new URL(url),
    fingerprint: fp?.[1],
    stop: async () => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return p.exited;
      p.child.kill('SIGTERM');
      const force = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
      const r = await p.exited;
      clearTimeout(force);
      return r;
    },
  };
}

/** The non-empty lines of a stream's text. */
export const linesOf = (text: string): string[] => text.split(/\r?\n/).filter((l) => l.trim() !== '');

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
export async function fetchJson(url: URL, opts: RequestOptions & { ca?: string | Buffer; servername?: string }): Promise<HttpAnswer> {
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
export async function pinnedRequest(url: URL, fingerprint256: string, opts: RequestOptions): Promise<HttpAnswer & { peerFingerprint: string }> {
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
