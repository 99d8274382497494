import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { DataSource } from 'typeorm';
import { entities } from '../../db/entities';
import { Database } from '../../db/database';
import { migrations } from '../../../migrations';
import { Envelope } from '../../crypto/envelope';
import type { Keyring } from '../../crypto/keyring';
import type { Logger } from '../../logger';
import { AuditChain, ChainHead } from '../audit/audit-chain';
import { KekCanaryEntity, SystemKeyEntity } from '../keyring/keyring.entities';
import { KeyringService } from '../keyring/keyring.service';
import { ProviderKeysRepository } from '../provider-keys/provider-keys.repository';
import { bindingOf } from '../provider-keys/provider-key.entity';

export const MANIFEST_SUFFIX = '.manifest.json';
export const MANIFEST_FORMAT = 'pkv-backup/1';

/** Why `pkv backup` and `pkv restore` do not work on MySQL/MariaDB, and what to do instead (docs/operations.md). */
export const MYSQL_REFUSAL =
  'pkv backup/restore copy the embedded SQLite database only; on MySQL/MariaDB take a consistent online dump with ' +
  '`mysqldump --single-transaction --quick DB` (or `mariadb-backup --backup`), restore it with the database\'s own tools, ' +
  'and keep the keyring (PKV_MASTER_KEYS) apart from it: see "Backup and restore" in docs/operations.md';

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  createdAt: string;
  database: 'sqlite';
  /** The backup file's name (the manifest lives beside it as NAME.manifest.json). */
  file: string;
  bytes: number;
  sha256: string;
  schema: { migrations: number; lastMigration: string | null };
  /** Master key versions that wrap something in the copy (provider keys' data keys, system keys); keep them all. */
  kekVersions: number[];
  /** Versions with a canary in the copy: each must open under the keyring it is restored with. */
  canaryVersions: number[];
  auditHead: ChainHead;
  /** Audit rows committed but not yet sealed when the copy was taken: they are in the copy and get sealed after a restore. */
  unsealedAuditRows: number;
  rows: Record<string, number>;
  /**
   * HMAC-SHA256 under a key derived from the copy's audit key ('pkv/v1/backup-manifest') over format, file, bytes,
   * sha256, auditHead and createdAt: without the keyring nobody can trim the copy and rewrite the manifest to match.
   */
  mac: string;
}

export const manifestPathOf = (file: string) => `${file}${MANIFEST_SUFFIX}`;

/** The manifest's MAC (see Manifest.mac); fields the MAC does not cover (row counts, versions) are informative only. */
export function manifestMac(auditKey: Buffer, m: Omit<Manifest, 'mac'>): string {
  const key = crypto.createHmac('sha256', auditKey).update('pkv/v1/backup-manifest', 'utf8').digest();
  return crypto
    .createHmac('sha256', key)
    .update(JSON.stringify([m.format, m.file, m.bytes, m.sha256, m.auditHead.seq, m.auditHead.hash, m.createdAt]), 'utf8')
    .digest('hex');
}

/** The audit key of a raw SQLite copy, unwrapped under the keyring (throws when the keyring does not open it). */
function rawAuditKey(db: BetterSqlite3.Database, keyring: Keyring): Buffer {
  const row = db.prepare("SELECT kek_version, iv, tag, wrapped FROM system_keys WHERE name = 'audit_chain'").get() as { kek_version: number; iv: Buffer; tag: Buffer; wrapped: Buffer } | undefined;
  if (!row) throw new Error('the database holds no audit key');
  return keyring.unwrap({ kekVersion: Number(row.kek_version), iv: row.iv, tag: row.tag, ciphertext: row.wrapped }, 'system:audit_chain');
}

/** fsyncs a directory, so a rename in it survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncFile(file: string): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function sha256Of(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** A name in `dir` for a temporary file, hidden, unique, never the target's own name. */
const tempBeside = (target: string, tag: string) => path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}-${crypto.randomBytes(4).toString('hex')}.tmp`);

/** Writes text to `file` atomically: 0600 temp file in the same directory, fsync, rename, fsync the directory. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = tempBeside(file, 'write');
  try {
    const fh = await fsp.open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(file));
}

/** What the copy holds, read from the copy itself (so the manifest describes exactly the file beside it). */
function describe(db: BetterSqlite3.Database): Omit<Manifest, 'format' | 'createdAt' | 'database' | 'file' | 'bytes' | 'sha256' | 'mac'> {
  const names = db.prepare('SELECT name FROM pkv_migrations ORDER BY timestamp ASC, id ASC').all() as Array<{ name: string }>;
  const versions = (sql: string) => (db.prepare(sql).all() as Array<{ v: number }>).map((r) => Number(r.v)).sort((a, b) => a - b);
  const head = db.prepare('SELECT seq, hash FROM audit_chain_head WHERE id = 1').get() as { seq: number; hash: string } | undefined;
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as Array<{ name: string }>;
  const rows: Record<string, number> = {};
  for (const { name } of tables) rows[name] = Number((db.prepare(`SELECT COUNT(*) AS n FROM "${name.replace(/"/g, '""')}"`).get() as { n: number }).n);
  return {
    schema: { migrations: names.length, lastMigration: names.at(-1)?.name ?? null },
    kekVersions: versions('SELECT kek_version AS v FROM provider_keys WHERE kek_version IS NOT NULL UNION SELECT kek_version AS v FROM system_keys'),
    canaryVersions: versions('SELECT kek_version AS v FROM kek_canaries'),
    auditHead: { seq: Number(head?.seq ?? 0), hash: head?.hash ?? '0'.repeat(64) },
    unsealedAuditRows: Number((db.prepare('SELECT COUNT(*) AS n FROM audit_events WHERE seq IS NULL').get() as { n: number }).n),
    rows,
  };
}

export interface BackupOptions {
  onProgress?: (p: { done: number; total: number }) => void;
  /**
   * Test-only pacing (PKV_BACKUP_TEST_PACE_MS): pages per step drop to one and each step waits this long, so a test
   * can kill a backup mid-copy. Only makes the copy slower; never changes what is copied.
   */
  paceMs?: number;
}

/**
 * An online, consistent copy of the SQLite database at `source` into `out`, with its manifest beside it.
 * SQLite's online backup API copies the pages under one read transaction held from start to end (a WAL snapshot):
 * servers keep writing meanwhile, and the copy is the database as of that snapshot. The copy goes to a 0600 temp
 * file in the target's directory, is switched to rollback-journal mode (one self-contained file), fsynced and
 * renamed into place after its manifest; a killed backup leaves only a hidden `.NAME.*.tmp` file, never `out`.
 */
export async function takeBackup(source: string, out: string, keyring: Keyring, opts: BackupOptions = {}): Promise<Manifest> {
  const target = path.resolve(out);
  if (path.resolve(source) === target) throw new Error('--out: the backup cannot replace the live database');
  const tmp = tempBeside(target, 'backup');
  const cleanup = () => Promise.all([tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`].map((f) => fsp.rm(f, { force: true })));
  try {
    await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    // SQLite gives the file (and its journal) the mode of the file it finds: create it private first.
    await (await fsp.open(tmp, 'wx', 0o600)).close();
    const src = new BetterSqlite3(source, { fileMustExist: true });
    try {
      src.pragma('busy_timeout = 5000');
      src.exec('BEGIN');
      // The first read starts the snapshot every backup step then reads from.
      src.prepare('SELECT seq FROM audit_chain_head WHERE id = 1').get();
      const pace = opts.paceMs && opts.paceMs > 0 ? opts.paceMs : 0;
      const wait = new Int32Array(new SharedArrayBuffer(4));
      await src.backup(tmp, {
        progress: ({ totalPages, remainingPages }) => {
          opts.onProgress?.({ done: totalPages - remainingPages, total: totalPages });
          if (!pace) return 256;
          Atomics.wait(wait, 0, 0, pace);
          return 1;
        },
      });
      src.exec('COMMIT');
    } finally {
      src.close();
    }
    const copy = new BetterSqlite3(tmp, { fileMustExist: true });
    let facts: ReturnType<typeof describe>;
    let auditKey: Buffer;
    try {
      copy.pragma('journal_mode = DELETE');
      facts = describe(copy);
      auditKey = rawAuditKey(copy, keyring);
    } finally {
      copy.close();
    }
    await syncFile(tmp);
    const { sha256, bytes } = await sha256Of(tmp);
    const body: Omit<Manifest, 'mac'> = { format: MANIFEST_FORMAT, createdAt: new Date().toISOString(), database: 'sqlite', file: path.basename(target), bytes, sha256, ...facts };
    const manifest: Manifest = { ...body, mac: manifestMac(auditKey, body) };
    auditKey.fill(0);
    // The manifest first: a file under the target name always has its manifest beside it.
    await writeFileAtomic(manifestPathOf(target), JSON.stringify(manifest, null, 2) + '\n');
    await fsp.rename(tmp, target);
    await syncDir(path.dirname(target));
    return manifest;
  } catch (err) {
    await cleanup();
    throw err;
  }
}

export interface Check {
  ok: boolean;
  /** One line: what was checked, and why it failed. Never a secret. */
  line: string;
}

export interface VerifyReport {
  ok: boolean;
  checks: Check[];
  manifest?: Manifest;
  /** The copy's chain head, when it could be read. */
  head?: ChainHead;
}

function readManifest(file: string): { manifest?: Manifest; problem?: string } {
  const where = manifestPathOf(file);
  let text: string;
  try {
    text = fs.readFileSync(where, 'utf8');
  } catch (err) {
    return { problem: `manifest: cannot read ${where} (${(err as NodeJS.ErrnoException).code ?? 'error'}); a backup is the file and its manifest together` };
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (m.format !== MANIFEST_FORMAT || typeof m.sha256 !== 'string' || !Number.isSafeInteger(m.bytes) || !m.auditHead || !Array.isArray(m.kekVersions)) {
      return { problem: `manifest: ${where} is not a ${MANIFEST_FORMAT} manifest` };
    }
    return { manifest: m };
  } catch {
    return { problem: `manifest: ${where} is not valid JSON (truncated or altered)` };
  }
}

/** The copy as a Database, read-only: nothing is migrated, sealed or written, and the file is never converted to WAL. */
export async function openReadOnly(file: string): Promise<Database> {
  const ds = new DataSource({ type: 'better-sqlite3', database: file, readonly: true, fileMustExist: true, entities, synchronize: false, logging: false });
  await ds.initialize();
  return new Database('sqlite', ds);
}

/** The audit chain key of a database, unwrapped under the keyring; throws when the keyring does not open it. */
export async function auditKeyOf(db: Database, keyring: Keyring): Promise<Buffer> {
  const row = await db.read((m) => m.getRepository(SystemKeyEntity).findOneBy({ name: 'audit_chain' }));
  if (!row) throw new Error('the database holds no audit key');
  return keyring.unwrap({ kekVersion: row.kekVersion, iv: row.iv, tag: row.tag, ciphertext: row.wrapped }, 'system:audit_chain');
}

const SAMPLE = 25;

/**
 * Checks a backup without touching the live database: the file against its manifest (size, SHA-256), SQLite's own
 * integrity check, the schema, every master key version's canary under `keyring`, that provider keys' envelopes open
 * (a random sample, or all), and the audit chain up to its head with the product's own verification (AuditChain).
 * Plaintexts are zeroed as soon as they have opened; nothing about them is reported.
 */
export async function verifyBackup(file: string, keyring: Keyring, logger: Logger, opts: { all?: boolean } = {}): Promise<VerifyReport> {
  const checks: Check[] = [];
  const pass = (line: string) => checks.push({ ok: true, line });
  const fail = (line: string) => checks.push({ ok: false, line });
  const report = (extra: Partial<VerifyReport> = {}): VerifyReport => ({ ok: checks.every((c) => c.ok), checks, ...extra });

  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    fail(`file: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return report();
  }
  const { manifest, problem } = readManifest(file);
  if (problem) fail(problem);
  if (manifest) {
    if (stat.size < manifest.bytes) fail(`file: truncated: ${stat.size} of the ${manifest.bytes} bytes its manifest records`);
    else if (stat.size !== manifest.bytes) fail(`file: ${stat.size} bytes where its manifest records ${manifest.bytes} (altered or not this manifest's file)`);
    else {
      const { sha256 } = await sha256Of(file);
      if (sha256 !== manifest.sha256) fail('file: SHA-256 does not match the manifest: the file was altered or damaged (bit flip)');
      else pass(`file: ${stat.size} bytes, SHA-256 ${sha256} as in the manifest`);
    }
  }

  // SQLite's own page-level check first: a damaged file is named as such, not as a confusing query error later.
  try {
    const raw = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
    try {
      const result = raw.pragma('integrity_check', { simple: true }) as string;
      if (result !== 'ok') {
        fail(`database: SQLite integrity check failed (${String(result).slice(0, 200)})`);
        return report({ manifest });
      }
      pass('database: SQLite integrity check ok');
    } finally {
      raw.close();
    }
  } catch (err) {
    fail(`database: not a readable SQLite database (${(err as { code?: string }).code ?? (err as Error).message})`);
    return report({ manifest });
  }

  let db: Database;
  try {
    db = await openReadOnly(file);
  } catch (err) {
    fail(`database: cannot open the copy (${(err as { code?: string }).code ?? (err as Error).message})`);
    return report({ manifest });
  }
  try {
    // Schema: every migration in the copy is one this build knows (an older copy is migrated forward on restore).
    const applied = (await db.read((m) => m.query('SELECT name FROM pkv_migrations ORDER BY timestamp ASC, id ASC'))) as Array<{ name: string }>;
    const known = new Set(migrations.map((m) => m.name));
    const unknown = applied.filter((a) => !known.has(a.name)).map((a) => a.name);
    const last = applied.at(-1)?.name ?? null;
    if (unknown.length) fail(`schema: migration(s) ${unknown.join(', ')} are unknown to this pkv: the backup comes from a newer version`);
    else if (manifest && manifest.schema.lastMigration !== last) fail(`schema: the copy's last migration ${last} differs from the manifest's ${manifest.schema.lastMigration}`);
    else pass(`schema: ${applied.length} migration(s), last ${last}${applied.length < migrations.length ? ` (${migrations.length - applied.length} more are applied on restore)` : ''}`);

    // Keyring: every canary under its configured key; every version in use configured.
    const canaries = await db.read((m) => m.getRepository(KekCanaryEntity).find());
    const inUse = await new KeyringService(db, keyring).rowsByVersion();
    const missing = [...new Set([...canaries.map((c) => c.kekVersion), ...inUse.map((v) => v.version)])].filter((v) => !keyring.has(v)).sort((a, b) => a - b);
    if (missing.length) fail(`keyring: master key version(s) ${missing.join(', ')} used by the backup are not in the configured keyring (PKV_MASTER_KEYS): keep old versions as long as backups need them`);
    const wrong = canaries.filter((c) => keyring.has(c.kekVersion) && !keyring.opensCanary(c.kekVersion, c)).map((c) => c.kekVersion);
    if (wrong.length) fail(`keyring: master key version(s) ${wrong.join(', ')} do not open their canary: wrong keyring for this backup`);
    if (!missing.length && !wrong.length) pass(`keyring: canaries of version(s) ${canaries.map((c) => c.kekVersion).join(', ') || 'none'} open; versions in use: ${inUse.map((v) => v.version).join(', ') || 'none'}`);

    let auditKey: Buffer | undefined;
    try {
      auditKey = await auditKeyOf(db, keyring);
    } catch {
      fail('keyring: the audit key in the backup does not open under the configured keyring (wrong keyring)');
    }
    // The manifest, authenticated: a copy trimmed together with a manifest rewritten to match fails here.
    if (manifest && auditKey) {
      const { mac, ...body } = manifest as Manifest;
      if (typeof mac !== 'string' || !/^[0-9a-f]{64}$/.test(mac)) fail('manifest: it carries no MAC (written by an older pkv, or stripped): its SHA-256 and audit head are not authenticated');
      else if (!crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(manifestMac(auditKey, body)))) {
        fail("manifest: its MAC does not verify under the backup's audit key: the manifest was altered, or is not this backup's");
      } else pass("manifest: MAC verifies under the backup's audit key");
    }

    // Provider keys: the envelope opens (the data key unwraps under its KEK and the secret's AEAD tag verifies).
    const envelope = new Envelope(keyring);
    const repo = new ProviderKeysRepository();
    const total = Number(((await db.read((m) => m.query('SELECT COUNT(*) AS n FROM provider_keys WHERE secret_iv IS NOT NULL'))) as Array<{ n: number }>)[0].n);
    let checked = 0;
    let skipped = 0;
    const bad: string[] = [];
    const unusable = new Set([...missing, ...wrong]);
    const openAll = async (ids: string[]) => {
      const rows = await db.read((m) => repo.findByIds(m, ids));
      for (const key of rows.values()) {
        checked++;
        // Under a version already reported missing or wrong: one line for all of them, not one per key.
        if (key.kekVersion != null && unusable.has(key.kekVersion)) {
          skipped++;
          continue;
        }
        try {
          // Format-1 sealings (before provider and baseUrl were bound) are checked as such: the next start upgrades them.
          envelope.open(bindingOf(key), key, { legacy: true }).fill(0);
        } catch {
          bad.push(key.id);
        }
      }
    };
    if (opts.all) {
      for (let after = ''; ; ) {
        const ids = ((await db.read((m) => m.query('SELECT id FROM provider_keys WHERE secret_iv IS NOT NULL AND id > ? ORDER BY id LIMIT 500', [after]))) as Array<{ id: string }>).map((r) => r.id);
        if (ids.length) await openAll(ids);
        if (ids.length < 500) break;
        after = ids[ids.length - 1];
      }
    } else {
      const ids = ((await db.read((m) => m.query('SELECT id FROM provider_keys WHERE secret_iv IS NOT NULL ORDER BY RANDOM() LIMIT ?', [SAMPLE]))) as Array<{ id: string }>).map((r) => r.id);
      await openAll(ids);
    }
    if (skipped) fail(`provider keys: ${skipped} of the ${checked} checked are under a master key version reported above, so they cannot open`);
    for (const id of bad.slice(0, 20)) fail(`provider key ${id}: its envelope does not open (AEAD check failed or its master key version is missing)`);
    if (bad.length > 20) fail(`provider keys: ${bad.length - 20} more do not open`);
    if (!bad.length && !skipped) pass(`provider keys: ${checked} of ${total} envelope(s) open${opts.all ? '' : ' (a random sample; --all opens every one)'}`);

    // The audit chain, by the product's own verification, up to the head the manifest recorded.
    const head = await db.read((m) => m.query('SELECT seq, hash FROM audit_chain_head WHERE id = 1')).then((r: Array<{ seq: number; hash: string }>) => (r[0] ? { seq: Number(r[0].seq), hash: r[0].hash } : undefined));
    if (manifest && head && (head.seq !== manifest.auditHead.seq || head.hash !== manifest.auditHead.hash)) {
      fail(`audit chain: the copy's head (seq ${head.seq}) is not the manifest's (seq ${manifest.auditHead.seq})`);
    }
    if (auditKey) {
      const result = await new AuditChain(db, auditKey, logger).verify(manifest?.auditHead);
      auditKey.fill(0);
      if (result.ok) pass(`audit chain: ${result.checked} sealed row(s) verified up to head seq ${result.head.seq}; ${result.unsealed} unsealed row(s) MAC-checked`);
      else {
        const seq = result.firstBadId
          ? ((await db.read((m) => m.query('SELECT seq FROM audit_events WHERE id = ?', [result.firstBadId]))) as Array<{ seq: number | null }>)[0]?.seq
          : undefined;
        const at = seq != null ? `at seq ${seq}` : result.firstBadId ? `at row ${result.firstBadId}` : `after seq ${result.checked}`;
        fail(`audit chain: broken ${at}: ${result.reason}`);
      }
    }
    return report({ manifest, head });
  } finally {
    await db.close();
  }
}
