#!/usr/bin/env node
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import tlsModule from 'node:tls';
import { once } from 'node:events';
import { Command, CommanderError, Option } from 'commander';
import type { z } from 'zod';
import { Presets, SingleBar } from 'cli-progress';
import winston from 'winston';
import { ConfigError, loadConfig, Config } from '../config';
import { createLogger, Logger } from '../logger';
import { openDatabase } from '../db/data-source';
import { buildContainer, Container } from '../container';
import { openMigrated, start, StartupError, TlsMaterial } from '../main';
import { Keyring } from '../crypto/keyring';
import { KeyringMismatchError, KeyringService } from '../modules/keyring/keyring.service';
import { ensureSelfSigned } from '../crypto/self-signed';
import { AppError } from '../errors';
import { cliActor, SCOPES, Scope } from '../modules/auth/actor';
import { ROLES, Role } from '../modules/users/user.entity';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from '../modules/audit/audit-event.entity';
import { exportAuditQuery } from '../modules/audit/audit.schemas';
import { createUserBody, password as passwordSchema, username as usernameSchema } from '../modules/users/users.schemas';
import { createTokenBody } from '../modules/api-tokens/api-tokens.schemas';
import { createVirtualKeyBody } from '../modules/gateway/virtual-keys.schemas';
import { isUuid } from '../ids';
import { MYSQL_REFUSAL, takeBackup, verifyBackup, VerifyReport } from '../modules/backup/backup';
import { acceptRestore, installBackup, inUse, occupiedBy } from '../modules/backup/restore';

/** An expected failure: one line on stderr and a non-zero exit, no stack. */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

function readEnvFile(): void {
  if (fs.existsSync('.env')) process.loadEnvFile('.env');
}

function config(): Config {
  readEnvFile();
  return loadConfig(process.env, { generateDevSecrets: true });
}

/** CLI commands log only warnings to stderr so their stdout stays clean for scripts. */
function quietLogger(c: Config): Logger {
  return createLogger(c.logLevel === 'debug' ? 'debug' : 'warn', [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug'] })]);
}

/** Opens the database and services for a one-shot command, runs fn, and closes everything. */
async function withContainer<T>(fn: (c: Container) => Promise<T>): Promise<T> {
  const cfg = config();
  const db = await openMigrated(cfg);
  try {
    const c = await buildContainer(cfg, quietLogger(cfg), db);
    try {
      // The first use after `pkv restore` (a command, not only `serve`) accepts the rewound trail once and audits it.
      await acceptRestore(c);
      return await fn(c);
    } finally {
      await c.usage.stop();
      // Anchors what this command sealed (verify and export seal first) in the data dir's checkpoint file.
      await c.audit.chain.flush();
      await c.gateway.close();
      // A Redis client (PKV_REDIS_URL) keeps the event loop alive: left open, the command would never exit.
      await c.limits.close();
    }
  } finally {
    await db.close();
  }
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new CliError('--password-stdin: pipe the password in, e.g. `printf %s "$PW" | pkv …`', 2);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

async function passwordFrom(fromStdin: boolean | undefined): Promise<{ password: string; generated: boolean }> {
  if (!fromStdin) return { password: crypto.randomBytes(18).toString('base64url'), generated: true };
  const password = await readStdin();
  const ok = passwordSchema.safeParse(password);
  if (!ok.success) throw new CliError(`password: ${ok.error.issues[0].message}`, 2);
  return { password, generated: false };
}

/** An option holding free text, checked and cleaned by the API's own schema for that field. */
function textOption<S extends z.ZodType>(schema: S, value: string, option: string): z.output<S> {
  const ok = schema.safeParse(value);
  if (!ok.success) throw new CliError(`${option}: ${ok.error.issues[0].message}`, 2);
  return ok.data;
}

export function buildProgram(): Command {
  const program = new Command('pkv')
    .description('provider-key-vault: a self-hosted vault for third-party provider API keys')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('serve')
    .description('serve the HTTP API (configuration from PKV_* environment variables and .env)')
    .option('--host <host>', 'listen address (overrides PKV_HOST)')
    .option('--port <port>', 'listen port (overrides PKV_PORT)', (v) => {
      if (!/^\d+$/.test(v) || Number(v) > 65535) throw new CliError('--port: must be a whole number from 0 to 65535', 2);
      return Number(v);
    })
    .option('--tls-cert <file>', 'PEM certificate for HTTPS')
    .option('--tls-key <file>', 'PEM private key for HTTPS')
    .option('--tls-self-signed', 'serve HTTPS with a self-signed certificate for localhost kept in the data dir')
    .action(async (opts: { host?: string; port?: number; tlsCert?: string; tlsKey?: string; tlsSelfSigned?: boolean }) => {
      const cfg = config();
      const logger = createLogger(cfg.logLevel);
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) throw new CliError('--tls-cert and --tls-key go together', 2);
      if (opts.tlsSelfSigned && (opts.tlsCert || opts.tlsKey)) throw new CliError('--tls-self-signed cannot be combined with --tls-cert/--tls-key', 2);
      let tls: TlsMaterial | undefined;
      if (opts.tlsSelfSigned) {
        const self = ensureSelfSigned(cfg.dataDir);
        tls = self;
        console.log(`TLS: self-signed certificate ${self.certFile}${self.created ? ' (new)' : ''}\nTLS certificate SHA-256 fingerprint: ${self.fingerprint}`);
      }
      if (opts.tlsCert && opts.tlsKey) {
        try {
          tls = { cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) };
        } catch (err) {
          throw new CliError(`cannot read TLS files: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, 2);
        }
      }
      if (tls) {
        try {
          tlsModule.createSecureContext({ cert: tls.cert, key: tls.key });
        } catch (err) {
          // OpenSSL's reason ("key values mismatch", "no start line") names no secret material.
          throw new CliError(`TLS certificate and key are unusable: ${(err as Error).message}`, 2);
        }
      }
      for (const file of cfg.generated) logger.warn(`generated a development secret at ${file} (mode 0600); configure your own for production`, { event: 'config.dev_secret_generated' });
      const running = await start(cfg, logger, { tls, host: opts.host, port: opts.port });
      if (running.bootstrapPassword) {
        console.log(`\nFirst admin created. Username: admin  Password: ${running.bootstrapPassword}\nThis password is shown once; change it after signing in (POST /api/v1/auth/password).\n`);
      }
      console.log(`provider-key-vault listening on ${running.url}`);
      if (running.metricsUrl) console.log(`metrics (Prometheus) on ${running.metricsUrl}`);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info('shutting down', { event: 'server.stopping', signal });
        running.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });

  program
    .command('migrate')
    .description('apply pending database migrations (required before serving on MySQL/MariaDB)')
    .action(async () => {
      const cfg = config();
      const db = await openDatabase(cfg.database);
      try {
        const ran = await db.migrate();
        console.log(ran.length ? `applied ${ran.length} migration(s): ${ran.join(', ')}` : 'schema is up to date');
      } finally {
        await db.close();
      }
    });

  const user = program.command('user').description('manage IAM users');
  user
    .command('create')
    .description('create a user (a random password is printed when --password-stdin is not given); they must change it at the first sign-in')
    .requiredOption('--username <username>', 'login name')
    .addOption(new Option('--role <role>', 'role').choices(ROLES as unknown as string[]).makeOptionMandatory())
    .option('--display-name <name>', 'display name')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (opts: { username: string; role: Role; displayName?: string; passwordStdin?: boolean }) => {
      const name = usernameSchema.safeParse(opts.username);
      if (!name.success) throw new CliError(`--username: ${name.error.issues[0].message}`, 2);
      const displayName = opts.displayName === undefined ? undefined : textOption(createUserBody.shape.displayName, opts.displayName, '--display-name');
      const { password, generated } = await passwordFrom(opts.passwordStdin);
      // The operator chose this password, not the user: it must be changed at the first sign-in.
      const created = await withContainer((c) => c.users.create(cliActor(null), { username: opts.username, password, role: opts.role, displayName, mustChangePassword: true }));
      console.log(`created ${created.role} ${created.username} (${created.id})`);
      if (generated) console.log(`password: ${password}\n(shown once)`);
    });
  user
    .command('reset-password')
    .description('set a new password (random, printed once, unless --password-stdin), to be changed at the next sign-in; the user’s sessions end')
    .requiredOption('--username <username>', 'login name')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (opts: { username: string; passwordStdin?: boolean }) => {
      const { password, generated } = await passwordFrom(opts.passwordStdin);
      await withContainer((c) => c.users.resetPassword(cliActor(null), opts.username, password));
      console.log(`password reset for ${opts.username}`);
      if (generated) console.log(`password: ${password}\n(shown once)`);
    });

  const token = program.command('token').description('manage API tokens');
  token
    .command('create')
    .description('mint an API token for a user (printed once) to bootstrap automation')
    .requiredOption('--username <username>', 'the user the token acts as')
    .requiredOption('--name <name>', 'what the token is for')
    .addOption(new Option('--scope <scope...>', 'one or more scopes').choices(SCOPES as unknown as string[]).makeOptionMandatory())
    .option('--expires-in-days <days>', 'lifetime, 1–365 (default 90)', (v) => {
      if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 365) throw new CliError('--expires-in-days: must be a whole number from 1 to 365', 2);
      return Number(v);
    })
    .action(async (opts: { username: string; name: string; scope: Scope[]; expiresInDays?: number }) => {
      const name = textOption(createTokenBody.shape.name, opts.name, '--name');
      const issued = await withContainer(async (c) => {
        const u = await c.users.findByUsername(opts.username);
        if (!u) throw new CliError(`no user named "${opts.username}"`, 1);
        return c.apiTokens.create(cliActor(null), { userId: u.id, name, scopes: opts.scope, expiresInDays: opts.expiresInDays });
      });
      console.error(`token ${issued.id} for ${opts.username}, scopes ${issued.scopes.join(' ')}, expires ${issued.expiresAt} (shown once):`);
      console.log(issued.token);
    });

  const virtualKey = program.command('virtual-key').description('gateway virtual keys: use a provider key through /gateway without seeing it');
  const whole = (flag: string, max: number) => (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) throw new CliError(`${flag}: must be a whole number from 1 to ${max}`, 2);
    return Number(v);
  };
  virtualKey
    .command('create')
    .description('make a virtual key for a provider key (printed once), with the rights of a reveal: as the key’s owner, or as an admin giving a reason')
    .requiredOption('--key-id <uuid>', 'the provider key it uses')
    .requiredOption('--name <name>', 'what it is for')
    .option('--models <model...>', 'only these models (default: any)')
    .option('--expires-in-days <days>', 'lifetime, 1–365 (default 90)', whole('--expires-in-days', 365))
    .option('--daily-request-limit <n>', 'calls per UTC day (default: no limit)', whole('--daily-request-limit', 1_000_000_000))
    .option('--daily-token-limit <n>', 'prompt + completion tokens per UTC day (default: no limit)', whole('--daily-token-limit', 1_000_000_000_000))
    .option('--username <username>', 'the user it acts as (default: the key’s owner)')
    .option('--reason <text>', 'why, when --username is not the key’s owner (admins only; audited)')
    .action(async (opts: { keyId: string; name: string; models?: string[]; expiresInDays?: number; dailyRequestLimit?: number; dailyTokenLimit?: number; username?: string; reason?: string }) => {
      if (!isUuid(opts.keyId)) throw new CliError('--key-id: must be a UUID', 2);
      // The same schema as POST /provider-keys/:id/virtual-keys, so both refuse the same values.
      const parsed = createVirtualKeyBody.safeParse({ name: opts.name, models: opts.models, expiresInDays: opts.expiresInDays, dailyRequestLimit: opts.dailyRequestLimit, dailyTokenLimit: opts.dailyTokenLimit, reason: opts.reason });
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const flag = String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
        throw new CliError(`--${flag}: ${issue.message}`, 2);
      }
      const { reason, ...input } = parsed.data;
      const { issued, username } = await withContainer(async (c) => {
        const keyId = opts.keyId.toLowerCase();
        const user = opts.username ? await c.users.findByUsername(opts.username) : await c.users.get(cliActor(null), (await c.providerKeys.get(cliActor(null), keyId)).ownerId);
        if (!user) throw new CliError(`no user named "${opts.username}"`, 1);
        if (user.status !== 'active') throw new CliError(`${user.username} is disabled: a virtual key acting as them would not work`, 1);
        return { issued: await c.virtualKeys.create(cliActor(user), keyId, { ...input, reason: reason || undefined }), username: user.username };
      });
      console.error(`virtual key ${issued.id} for key ${issued.keyId}, acting as ${username}, expires ${issued.expiresAt} (shown once):`);
      console.log(issued.virtualKey);
    });

  const keyring = program.command('keyring').description('master key operations');
  keyring
    .command('generate')
    .description('print a fresh random 32-byte master key, base64')
    .action(() => {
      console.log(crypto.randomBytes(32).toString('base64'));
    });
  keyring
    .command('status')
    .description('rows wrapped under each master key version (read-only: it also works when start-up refuses the keyring)')
    .action(async () => {
      const cfg = config();
      const keyring = new Keyring(cfg.masterKeys);
      // Only counts: no canary is checked or sealed and no system key created, so this answers exactly when an
      // operator needs it most (a version missing from the configuration).
      const db = await openMigrated(cfg);
      try {
        const rows = await new KeyringService(db, keyring).rowsByVersion();
        console.log(`active version: ${keyring.activeVersion}; configured: ${keyring.versions.join(', ')}`);
        console.log('version  provider_keys  system_keys  total');
        for (const r of rows) {
          const missing = keyring.has(r.version) ? '' : '  (not configured: put it back, after the active key)';
          console.log(`${String(r.version).padEnd(9)}${String(r.providerKeys).padEnd(15)}${String(r.systemKeys).padEnd(13)}${r.rows}${missing}`);
        }
        if (rows.length === 0) console.log('(nothing wrapped yet)');
      } finally {
        await db.close();
      }
    });

  keyring
    .command('rotate')
    .description('rewrap every data key and system key to the active (first) master key version; online and resumable')
    .option('--batch-size <n>', 'rows per transaction (default 1000)', (v) => {
      if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 10000) throw new CliError('--batch-size: must be a whole number from 1 to 10000', 2);
      return Number(v);
    })
    .action(async (opts: { batchSize?: number }) => {
      const result = await withContainer(async (c) => {
        const bar = process.stderr.isTTY ? new SingleBar({ format: 'rewrapping [{bar}] {percentage}% {value}/{total} rows, {eta}s left', stream: process.stderr }, Presets.shades_classic) : undefined;
        let started = false;
        try {
          return await c.rotation.run(cliActor(null), {
            batchSize: opts.batchSize,
            onProgress: ({ done, total }) => {
              if (!bar) return;
              if (!started) (bar.start(total, 0), (started = true));
              bar.update(done);
            },
          });
        } finally {
          bar?.stop();
        }
      });
      const rate = result.seconds > 0 ? Math.round(result.providerKeys / result.seconds) : result.providerKeys;
      if (result.failed.length > 0) {
        throw new CliError(
          `${result.failed.length} provider key(s) failed their integrity check and were left under their old master key version (the rest was rewrapped): ${result.failed.join(', ')}; restore them from a backup or delete them, then run again`,
          1,
        );
      }
      if (result.remaining > 0) {
        throw new CliError(`${result.remaining} row(s) are still under an old master key version (a server with an outdated PKV_MASTER_KEYS re-sealed them?); restart every server with the new keyring and run again`, 1);
      }
      console.log(
        `rotated to version ${result.toVersion}: ${result.providerKeys} data key(s) and ${result.systemKeys} system key(s) rewrapped, ${result.skipped} already moved, in ${result.seconds.toFixed(2)} s (${rate}/s)`,
      );
    });

  /** Exit code of a backup, verify or restore that cannot run on this database (MySQL/MariaDB): use its own tools. */
  const UNSUPPORTED = 4;
  const sqliteOnly = (c: Config): string => {
    if (c.database.kind !== 'sqlite') throw new CliError(MYSQL_REFUSAL, UNSUPPORTED);
    return c.database.path;
  };
  const printReport = (report: VerifyReport) => {
    for (const check of report.checks) console.log(`${check.ok ? 'ok  ' : 'FAIL'}  ${check.line}`);
  };

  const backup = program
    .command('backup')
    .description('copy the embedded SQLite database online and consistently to --out FILE (0600, atomic), with FILE.manifest.json beside it')
    .option('--out <file>', 'where the copy goes (its manifest: FILE.manifest.json)')
    .action(async (opts: { out?: string }) => {
      const cfg = config();
      const source = sqliteOnly(cfg);
      if (!opts.out) throw new CliError('--out FILE is required (or: pkv backup verify FILE)', 2);
      if (!fs.existsSync(source)) throw new CliError(`no database at ${source} (PKV_DATABASE_URL)`, 1);
      // Test-only pacing (docs/testing.md): slows the copy so a test can kill it mid-way; changes nothing copied.
      const pace = Number(process.env.PKV_BACKUP_TEST_PACE_MS ?? 0);
      const bar = process.stderr.isTTY ? new SingleBar({ format: 'copying [{bar}] {percentage}% {value}/{total} pages, {eta}s left', stream: process.stderr }, Presets.shades_classic) : undefined;
      let started = false;
      let manifest;
      try {
        manifest = await takeBackup(source, opts.out, new Keyring(cfg.masterKeys), {
          paceMs: Number.isFinite(pace) && pace > 0 ? Math.min(pace, 1000) : 0,
          onProgress: ({ done, total }) => {
            if (!bar) return;
            if (!started) (bar.start(total, 0), (started = true));
            bar.setTotal(total);
            bar.update(done);
          },
        });
      } catch (err) {
        const code = (err as { code?: string }).code;
        throw new CliError(`backup failed, nothing was written under ${opts.out}: ${code ?? (err as Error).message}`, 1);
      } finally {
        bar?.stop();
      }
      console.log(`backup written to ${opts.out} (${manifest.bytes} bytes, SHA-256 ${manifest.sha256})`);
      console.log(`manifest: ${opts.out}.manifest.json; audit head seq ${manifest.auditHead.seq}; master key versions in use: ${manifest.kekVersions.join(', ') || 'none'}`);
    });
  backup
    .command('verify <file>')
    .description('check a backup read-only with the configured keyring: file and SHA-256, schema, canaries, envelopes, audit chain; exit 0 only if all hold')
    .option('--all', 'open every provider key’s envelope (default: a random sample)')
    .action(async (file: string, opts: { all?: boolean }) => {
      const cfg = config();
      const report = await verifyBackup(file, new Keyring(cfg.masterKeys), quietLogger(cfg), { all: opts.all });
      printReport(report);
      if (!report.ok) throw new CliError(`backup verification FAILED: ${report.checks.filter((c) => !c.ok).length} check(s) failed`, 1);
    });

  program
    .command('restore <file>')
    .description('verify a backup, then put it in place of the SQLite database in an empty data dir (stop the server first); the next start audits it as vault.restore')
    .option('--force', 'restore over an existing database: its files are moved aside (NAME.before-restore-STAMP-RAND) after the copy checks, never deleted')
    .action(async (file: string, opts: { force?: boolean }) => {
      const cfg = config();
      const target = sqliteOnly(cfg);
      const occupied = occupiedBy(target, cfg.dataDir);
      if (occupied.length && !opts.force) {
        throw new CliError(`the target is not empty (${occupied.slice(0, 3).join(', ')}${occupied.length > 3 ? ', …' : ''}): restore into an empty data dir, or pass --force to move the database aside`, 1);
      }
      if (inUse(target)) throw new CliError(`the database ${target} is open in another process (a running server?): stop every server using it, then restore`, 1);
      const keyring = new Keyring(cfg.masterKeys);
      const report = await verifyBackup(file, keyring, quietLogger(cfg));
      printReport(report);
      if (!report.ok || !report.manifest) throw new CliError('the backup did not verify: nothing was restored', 1);
      const done = await installBackup(file, report.manifest, target, cfg.dataDir, keyring);
      for (const moved of done.movedAside) console.log(`moved aside: ${moved}`);
      console.log(`restored ${file} to ${target} (audit head seq ${done.head.seq}); the next start records vault.restore and runs the usual start-up checks`);
    });

  const audit = program.command('audit').description('the tamper-evident audit trail');
  audit
    .command('verify')
    .description('seal pending rows, then verify the whole chain; exits 1 when tampering is found')
    .option('--head-seq <n>', 'a chain head recorded earlier: its seq')
    .option('--head-hash <hex>', 'a chain head recorded earlier: its hash')
    .action(async (opts: { headSeq?: string; headHash?: string }) => {
      if ((opts.headSeq === undefined) !== (opts.headHash === undefined)) throw new CliError('--head-seq and --head-hash go together', 2);
      if (opts.headSeq !== undefined && (!/^\d+$/.test(opts.headSeq) || !/^[0-9a-f]{64}$/.test(opts.headHash ?? ''))) {
        throw new CliError('--head-seq must be a whole number and --head-hash 64 lowercase hex characters', 2);
      }
      const result = await withContainer(async (c) => {
        await c.audit.chain.sealPending();
        return c.audit.chain.verify(opts.headSeq ? { seq: Number(opts.headSeq), hash: opts.headHash! } : undefined);
      });
      console.log(JSON.stringify(result));
      if (!result.ok) throw new CliError(`audit trail verification FAILED at ${result.firstBadId ?? 'the tail'}: ${result.reason}`, 1);
    });
  audit
    .command('export')
    .description('stream the audit trail to stdout (or --out FILE); the export is itself audited')
    .addOption(new Option('--format <format>', 'output format').choices(['csv', 'ndjson']).makeOptionMandatory())
    .option('--from <iso>', 'events at or after this time')
    .option('--to <iso>', 'events before this time')
    .addOption(new Option('--action <action>', 'only this action').choices([...AUDIT_ACTIONS]))
    .addOption(new Option('--outcome <outcome>', 'only this outcome').choices([...AUDIT_OUTCOMES]))
    .option('--actor-id <uuid>', 'only events by this user')
    .option('--key-id <uuid>', 'only events about this provider key')
    .option('--project-id <uuid>', 'only events in this project')
    .option('--out <file>', 'write to this file (mode 0600) instead of stdout')
    .action(async (opts: { format: 'csv' | 'ndjson'; from?: string; to?: string; action?: string; outcome?: string; actorId?: string; keyId?: string; projectId?: string; out?: string }) => {
      // The same schema as GET /audit-events/export, so both refuse the same values.
      const parsed = exportAuditQuery.safeParse({ format: opts.format, from: opts.from, to: opts.to, action: opts.action, outcome: opts.outcome, actorId: opts.actorId, keyId: opts.keyId, projectId: opts.projectId });
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const flag = String(issue.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
        throw new CliError(`--${flag}: ${issue.message}`, 2);
      }
      const { format, ...filter } = parsed.data;
      let out: NodeJS.WritableStream = process.stdout;
      if (opts.out) {
        const fd = fs.openSync(opts.out, 'w', 0o600);
        fs.fchmodSync(fd, 0o600); // a file that already existed keeps its old mode on open: make it private before any row goes in
        out = fs.createWriteStream(opts.out, { fd });
      }
      // A reader that goes away (`pkv audit export … | head`) ends the export quietly; any other write error fails it.
      let closed = false;
      let failure: Error | undefined;
      out.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') closed = true;
        else failure = err;
      });
      let events = 0;
      await withContainer(async (c) => {
        for await (const chunk of await c.audit.openExport(cliActor(null), filter, format, (n) => (events += n))) {
          if (closed || failure) break;
          if (!out.write(chunk)) await Promise.race([once(out, 'drain'), once(out, 'error')]).catch(() => undefined);
        }
      });
      if (failure) throw new CliError(`cannot write the export: ${(failure as NodeJS.ErrnoException).code ?? failure.message}`, 1);
      if (opts.out) await new Promise<void>((resolve) => out.end(() => resolve()));
      if (opts.out) console.error(`wrote ${events} event(s) to ${opts.out}`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof ConfigError) {
      for (const p of err.problems) console.error(`pkv: configuration: ${p}`);
      return 2;
    }
    if (err instanceof CliError) {
      console.error(`pkv: ${err.message}`);
      return err.exitCode;
    }
    if (err instanceof KeyringMismatchError || err instanceof StartupError) {
      console.error(`pkv: ${err.message}`);
      return 3;
    }
    if (err instanceof AppError) {
      const cause = err.cause as { code?: string } | undefined;
      console.error(`pkv: ${err.message}${cause?.code ? ` (${cause.code})` : ''}`);
      return 1;
    }
    console.error(`pkv: unexpected error: ${(err as Error).message}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv).then((code) => {
    if (code !== 0) process.exit(code);
  });
}
