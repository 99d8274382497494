#!/usr/bin/env node
import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import tlsModule from 'node:tls';
import { once } from 'node:events';
import { Command, CommanderError, Option } from 'commander';
import { Presets, SingleBar } from 'cli-progress';
import { ConfigError, loadConfig, Config } from '../config';
import { createLogger, Logger } from '../logger';
import { openDatabase } from '../db/database';
import { buildContainer, Container } from '../container';
import { openMigrated, start, StartupError, TlsMaterial } from '../main';
import { trimWhenIdle } from '../idle-trim';
import { Keyring, KeyringMismatchError } from '../crypto/keyring';
import { ensureSelfSigned } from '../crypto/self-signed';
import { AppError } from '../errors';
import { cliActor, SCOPES, Scope } from '../modules/auth/actor';
import { ROLES, Role } from '../modules/users/user.entity';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from '../modules/audit/audit-event.entity';
import { exportAuditQuery } from '../modules/audit/audit.schemas';
import { password as passwordSchema, username as usernameSchema } from '../modules/users/users.schemas';

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
  const winston = require('winston') as typeof import('winston');
  return createLogger(c.logLevel === 'debug' ? 'debug' : 'warn', [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug'] })]);
}

/** Opens the database and services for a one-shot command, runs fn, and closes everything. */
async function withContainer<T>(fn: (c: Container) => Promise<T>): Promise<T> {
  const cfg = config();
  const db = await openMigrated(cfg);
  try {
    const c = await buildContainer(cfg, quietLogger(cfg), db);
    try {
      return await fn(c);
    } finally {
      await c.usage.stop();
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
      const mb = (bytes: number) => Math.round(bytes / 2 ** 20);
      const trim = trimWhenIdle(running.server, {
        onTrim: (t) => logger.debug('gave back the heap grown under load', { event: 'server.heap_trimmed', heapBeforeMb: mb(t.heapBefore), heapAfterMb: mb(t.heapAfter), pauseMs: Math.round(t.pauseMs) }),
      });
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info('shutting down', { event: 'server.stopping', signal });
        trim.stop();
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
    .description('create a user (a random password is printed when --password-stdin is not given)')
    .requiredOption('--username <username>', 'login name')
    .addOption(new Option('--role <role>', 'role').choices(ROLES as unknown as string[]).makeOptionMandatory())
    .option('--display-name <name>', 'display name')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (opts: { username: string; role: Role; displayName?: string; passwordStdin?: boolean }) => {
      const name = usernameSchema.safeParse(opts.username);
      if (!name.success) throw new CliError(`--username: ${name.error.issues[0].message}`, 2);
      const { password, generated } = await passwordFrom(opts.passwordStdin);
      const created = await withContainer((c) => c.users.create(cliActor(null), { username: opts.username, password, role: opts.role, displayName: opts.displayName }));
      console.log(`created ${created.role} ${created.username} (${created.id})`);
      if (generated) console.log(`password: ${password}\n(shown once)`);
    });
  user
    .command('reset-password')
    .description('set a new password (random, printed once, unless --password-stdin); the user’s sessions end')
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
      const issued = await withContainer(async (c) => {
        const u = await c.users.findByUsername(opts.username);
        if (!u) throw new CliError(`no user named "${opts.username}"`, 1);
        return c.apiTokens.create(cliActor(null), { userId: u.id, name: opts.name, scopes: opts.scope, expiresInDays: opts.expiresInDays });
      });
      console.error(`token ${issued.id} for ${opts.username}, scopes ${issued.scopes.join(' ')}, expires ${issued.expiresAt} (shown once):`);
      console.log(issued.token);
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
        const rows = await keyring.rowsByVersion(db);
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
