import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Container } from '../../container';
import type { Keyring } from '../../crypto/keyring';
import { newId } from '../../ids';
import { cliActor } from '../auth/actor';
import type { ChainHead } from '../audit/audit-chain';
import { AuditEventEntity } from '../audit/audit-event.entity';
import { CHECKPOINT_FILE, CheckpointFile } from '../audit/audit-checkpoints';
import { auditKeyOf, Manifest, openReadOnly, sha256Of, syncDir, writeFileAtomic } from './backup';

/**
 * Left in the data dir by `pkv restore`, consumed by the next start: it lets that start accept, once, an audit trail
 * rewound to the backup's head, and record that as a `vault.restore` audit row. MACed under a key derived from the
 * restored database's audit key, so only someone holding the keyring can make a start accept a rewind.
 */
export const RESTORE_MARKER = 'restore-pending.json';

/** A marker older than this is refused: restore again (docs/operations.md). */
export const MARKER_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
/** A marker dated further ahead than this is refused too (it was not written by this machine's clock). */
const MARKER_MAX_SKEW_MS = 5 * 60 * 1000;
const HEX64 = /^[0-9a-f]{64}$/;

/** What may already be in a data dir that `pkv restore` counts as empty: the operator's own secret files. */
const SECRET_FILES = new Set(['master.key', 'jwt.secret']);

export interface RestoreMarker {
  id: string;
  at: string;
  backup: { file: string; sha256: string; createdAt: string };
  head: ChainHead;
  /**
   * The newest valid anchor of the data dir's checkpoint file when the marker was written (null: none). The marker
   * is accepted only while it is still exactly that: once accepted, the restored head is anchored in a fresh file,
   * so the same marker put back later (with the database it restored) no longer matches.
   */
  anchor: ChainHead | null;
  mac: string;
}

export function markerMac(auditKey: Buffer, m: Omit<RestoreMarker, 'mac'>): string {
  const key = crypto.createHmac('sha256', auditKey).update('pkv/v1/restore-marker', 'utf8').digest();
  return crypto
    .createHmac('sha256', key)
    .update(JSON.stringify([m.id, m.at, m.backup.file, m.backup.sha256, m.backup.createdAt, m.head.seq, m.head.hash, m.anchor ? [m.anchor.seq, m.anchor.hash] : 'none']), 'utf8')
    .digest('hex');
}

const DB_SUFFIXES = ['', '-wal', '-shm', '-journal'];

/** What makes the restore target non-empty: the database file (or its WAL), or anything in the data dir but the secret files. */
export function occupiedBy(dbPath: string, dataDir: string): string[] {
  const found = DB_SUFFIXES.map((s) => `${dbPath}${s}`).filter((f) => fs.existsSync(f));
  let entries: string[] = [];
  try {
    entries = fs.readdirSync(dataDir);
  } catch {
    /* a data dir that does not exist yet is empty */
  }
  const ours = new Set(DB_SUFFIXES.map((s) => path.basename(dbPath) + s));
  for (const e of entries) if (!SECRET_FILES.has(e) && !(path.resolve(dataDir) === path.dirname(path.resolve(dbPath)) && ours.has(e))) found.push(path.join(dataDir, e));
  return found;
}

/**
 * True when another connection has the SQLite database open (a running server, a CLI command): taking SQLite's
 * exclusive lock fails then, at once. A file SQLite cannot open is not in use by SQLite.
 */
export function inUse(dbPath: string): boolean {
  if (!fs.existsSync(dbPath)) return false;
  let db: BetterSqlite3.Database | undefined;
  try {
    db = new BetterSqlite3(dbPath, { fileMustExist: true, timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
    return false;
  } catch (err) {
    return (err as { code?: string }).code === 'SQLITE_BUSY' || (err as { code?: string }).code === 'SQLITE_LOCKED';
  } finally {
    db?.close();
  }
}

/** STAMP-RAND for a name something is moved aside to: a time to read, and random hex so two moves never share a name. */
const stamp = () => `${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${crypto.randomBytes(4).toString('hex')}`;

/** Moves `from` to `to` without ever replacing a file at `to` (link fails with EEXIST there), then removes `from`. */
async function moveNoClobber(from: string, to: string): Promise<void> {
  await fsp.link(from, to);
  await fsp.unlink(from);
}

const newestOf = (valid: Array<{ seq: number; hash: string }>): ChainHead | null =>
  valid.reduce<ChainHead | null>((best, cp) => (!best || cp.seq > best.seq ? { seq: cp.seq, hash: cp.hash } : best), null);

export interface Installed {
  movedAside: string[];
  head: ChainHead;
  marker: string;
}

/**
 * Puts a verified backup in place of the database at `dbPath` (stop every server first). The copy is written 0600 to
 * a temp file beside the target, fsynced and checked against the manifest's SHA-256 first; only then, with `force`,
 * are the files there moved aside (`NAME.before-restore-STAMP-RAND`, its WAL beside it; never deleted, never over
 * another file), and the copy is renamed into place. Then the restore marker is written for the next start, bound to
 * the newest anchor of the data dir's checkpoint file.
 */
export async function installBackup(file: string, manifest: Manifest, dbPath: string, dataDir: string, keyring: Keyring): Promise<Installed> {
  const movedAside: string[] = [];
  const moved: Array<[from: string, to: string]> = [];
  await fsp.mkdir(path.dirname(dbPath), { recursive: true, mode: 0o700 });
  await fsp.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const tmp = path.join(path.dirname(dbPath), `.${path.basename(dbPath)}.restore-${process.pid}-${crypto.randomBytes(4).toString('hex')}.tmp`);
  try {
    await fsp.copyFile(file, tmp, fs.constants.COPYFILE_EXCL);
    await fsp.chmod(tmp, 0o600);
    const fh = await fsp.open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    const { sha256 } = await sha256Of(tmp);
    if (sha256 !== manifest.sha256) throw new Error('the copy written differs from the backup (SHA-256): disk trouble? nothing was restored');
    // The copy holds: only now is the database there moved aside.
    const when = stamp();
    for (const suffix of DB_SUFFIXES) {
      const from = `${dbPath}${suffix}`;
      if (!fs.existsSync(from)) continue;
      const to = `${dbPath}.before-restore-${when}${suffix}`;
      await moveNoClobber(from, to);
      moved.push([from, to]);
      movedAside.push(to);
    }
    await fsp.rename(tmp, dbPath);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    // Whatever was moved aside goes back where it was, so a failed restore leaves the target as it found it.
    if (!fs.existsSync(dbPath)) for (const [from, to] of moved) await moveNoClobber(to, from).catch(() => undefined);
    throw err;
  }
  await syncDir(path.dirname(dbPath));

  const db = await openReadOnly(dbPath);
  let marker: RestoreMarker;
  try {
    const auditKey = await auditKeyOf(db, keyring);
    const rows = (await db.read((m) => m.query('SELECT seq, hash FROM audit_chain_head WHERE id = 1'))) as Array<{ seq: number; hash: string }>;
    const { valid } = await CheckpointFile.inDataDir(dataDir, auditKey).read();
    const body = {
      id: newId(),
      at: new Date().toISOString(),
      backup: { file: path.basename(file), sha256: manifest.sha256, createdAt: manifest.createdAt },
      head: { seq: Number(rows[0].seq), hash: rows[0].hash },
      anchor: newestOf(valid),
    };
    marker = { ...body, mac: markerMac(auditKey, body) };
    auditKey.fill(0);
  } finally {
    await db.close();
  }
  const markerFile = path.join(dataDir, RESTORE_MARKER);
  await writeFileAtomic(markerFile, JSON.stringify(marker, null, 2) + '\n');
  return { movedAside, head: marker.head, marker: markerFile };
}

/** The restoreId a vault.restore row's detail names, if it is readable JSON that names one. */
function restoreIdOf(detail: string | null): string | undefined {
  try {
    const d = JSON.parse(detail ?? '{}') as { restoreId?: unknown };
    return typeof d?.restoreId === 'string' ? d.restoreId : undefined;
  } catch {
    return undefined;
  }
}

const isHead = (h: unknown): h is ChainHead =>
  !!h && typeof h === 'object' && Number.isSafeInteger((h as ChainHead).seq) && (h as ChainHead).seq >= 0 && typeof (h as ChainHead).hash === 'string' && HEX64.test((h as ChainHead).hash);

function parseMarker(text: string): RestoreMarker | undefined {
  try {
    const m = JSON.parse(text) as RestoreMarker;
    const ok =
      !!m && typeof m.id === 'string' && typeof m.at === 'string' && typeof m.mac === 'string' && HEX64.test(m.mac) && typeof m.backup?.file === 'string' &&
      typeof m.backup.sha256 === 'string' && typeof m.backup.createdAt === 'string' && isHead(m.head) && (m.anchor === null || isHead(m.anchor));
    return ok ? m : undefined;
  } catch {
    return undefined;
  }
}

const sameHead = (a: ChainHead | null, b: ChainHead | null) => (a === null || b === null ? a === b : a.seq === b.seq && a.hash === b.hash);
const named = (h: ChainHead | null) => (h ? `seq ${h.seq}` : 'none');

/**
 * The first start after `pkv restore`: accepts the rewound trail once, and says so in it. The marker must verify
 * under this database's audit key, be at most 7 days old, name the head the database has, and name the newest anchor
 * the data dir's checkpoint file still has; then a `vault.restore` row records the backup, the restored head and the
 * newest head the checkpoint file had anchored, the checkpoint file is kept under a new name
 * (`audit-checkpoints.ndjson.before-restore-STAMP-RAND`: evidence, never deleted, never over another file), the
 * restored head is anchored in a fresh checkpoint file (so the same marker put back later no longer matches), and the
 * marker is removed. Anything else leaves everything as it is: the start-up anchor check then reports a rewind as before.
 */
export async function acceptRestore(c: Container): Promise<'none' | 'accepted' | 'rejected'> {
  const markerFile = path.join(c.config.dataDir, RESTORE_MARKER);
  let text: string;
  try {
    text = await fsp.readFile(markerFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    throw err;
  }
  const reject = (why: string) => {
    c.logger.error(`${markerFile} is not accepted: ${why}; the audit trail is checked against its checkpoint as usual`, { event: 'vault.restore_rejected' });
    return 'rejected' as const;
  };
  const marker = parseMarker(text);
  if (!marker) return reject('it is not a restore marker');
  const auditKey = await c.keyring.systemKey('audit_chain');
  const { mac, ...body } = marker;
  const expected = markerMac(auditKey, body);
  if (!crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(mac))) return reject("its MAC does not verify under this database's audit key (not written by `pkv restore` for this database)");

  const checkpoints = CheckpointFile.inDataDir(c.config.dataDir, auditKey);
  // Only rows whose MAC holds count: a database writer cannot make one (the row MAC is keyed by the audit key).
  const recorded = await c.db.read((m) => m.getRepository(AuditEventEntity).findBy({ action: 'vault.restore' }));
  const genuine = recorded.filter((r) => typeof r.rowMac === 'string' && HEX64.test(r.rowMac) && crypto.timingSafeEqual(Buffer.from(r.rowMac), Buffer.from(c.audit.chain.macOf(r))));
  if (genuine.some((r) => restoreIdOf(r.detail) === marker.id)) {
    // Already recorded (a start that stopped after its vault.restore row): the marker goes, and nothing else is done.
    // If the checkpoint file was not archived, the trail reads as rewound, loudly, until an operator archives it.
    await fsp.rm(markerFile, { force: true });
    await syncDir(c.config.dataDir);
    return reject(`restore ${marker.id} is already recorded; the marker was removed`);
  }
  const age = Date.now() - Date.parse(marker.at);
  if (!Number.isFinite(age) || age > MARKER_MAX_AGE_MS || age < -MARKER_MAX_SKEW_MS) {
    return reject(`it was written at ${marker.at}, more than 7 days ago (or in the future): run \`pkv restore\` again`);
  }
  const head = await c.audit.chain.head();
  if (head.seq !== marker.head.seq || head.hash !== marker.head.hash) return reject(`the database's audit head (seq ${head.seq}) is not the restored one (seq ${marker.head.seq})`);
  const { valid, forged } = await checkpoints.read();
  const newest = newestOf(valid);
  if (!sameHead(newest, marker.anchor)) {
    return reject(`the checkpoint file's newest anchor (${named(newest)}) is not the one it had at the restore (${named(marker.anchor)}): the marker was used already, or the file changed since`);
  }
  const archiveAs = fs.existsSync(checkpoints.file) ? `${CHECKPOINT_FILE}.before-restore-${stamp()}` : null;
  await c.db.transaction((tx) =>
    c.audit.record(tx, { ...cliActor(null), username: 'restore' }, 'vault.restore', 'success', {}, {
      detail: {
        restoreId: marker.id,
        restoredAt: marker.at,
        backupFile: marker.backup.file,
        backupSha256: marker.backup.sha256,
        backupCreatedAt: marker.backup.createdAt,
        restoredHead: marker.head,
        previousCheckpoint: valid.find((cp) => newest && cp.seq === newest.seq && cp.hash === newest.hash) ?? null,
        previousCheckpointLines: { valid: valid.length, forged },
        checkpointFileArchivedAs: archiveAs,
      },
    }),
  );
  if (archiveAs) await moveNoClobber(checkpoints.file, path.join(c.config.dataDir, archiveAs));
  // The restored head, anchored in the fresh file: from now on the trail may not fall behind it, and this marker no longer matches.
  await checkpoints.append(marker.head);
  await fsp.rm(markerFile, { force: true });
  await syncDir(c.config.dataDir);
  c.logger.warn(`restored from backup ${marker.backup.file} (audit head seq ${marker.head.seq}): recorded as vault.restore`, { event: 'vault.restored', headSeq: marker.head.seq });
  return 'accepted';
}
