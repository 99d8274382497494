import 'reflect-metadata';
import { spawn, ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import type { Express } from 'express';
import { loadConfig, Config } from '../../src/config';
import { openDatabase, Database } from '../../src/db/database';
import { buildContainer, Container } from '../../src/container';
import { createApp } from '../../src/app';
import { CaptureTransport, createLogger } from '../../src/logger';

/** The built CLI: `npm test` builds first; run `npm run build` before running these files alone. */
export const PKV_BIN = path.resolve(__dirname, '..', '..', 'dist', 'src', 'cli', 'pkv.js');

export type Env = Record<string, string | undefined>;

export interface PkvResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const live = new Set<ChildProcess>();
let emptyDir: string | undefined;

export function assertBuilt(): void {
  if (!fs.existsSync(PKV_BIN)) throw new Error(`${PKV_BIN} is missing: run \`npm run build\` first`);
}

/** Only what the test passes, plus PATH: the child never sees jest's or the developer's PKV_* variables. */
function childEnv(env: Env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

/** A working directory without a `.env`, so the CLI reads only the environment the test gives it. */
function defaultCwd(): string {
  emptyDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-cli-cwd-'));
  return emptyDir;
}

function spawnPkv(args: string[], env: Env, cwd?: string): ChildProcess {
  assertBuilt();
  const child = spawn(process.execPath, [PKV_BIN, ...args], { cwd: cwd ?? defaultCwd(), env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  child.once('close', () => live.delete(child));
  return child;
}

/** Runs `pkv ARGS` to completion (SIGKILLed after timeoutMs, default 30 s); stdin, when given, is piped and closed. */
export function runPkv(args: string[], env: Env = {}, stdin?: string, opts: { timeoutMs?: number; cwd?: string } = {}): Promise<PkvResult> {
  const child = spawnPkv(args, env, opts.cwd);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin!.on('error', () => undefined); // the command may exit before reading its stdin
  child.stdin!.end(stdin ?? '');
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 30_000);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

export interface ServeProcess {
  child: ChildProcess;
  /** http://127.0.0.1:PORT, parsed from the `provider-key-vault listening on …` line. */
  url: string;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends the signal and waits for the exit; SIGKILL when it has not exited within timeoutMs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `pkv serve` on 127.0.0.1 and an ephemeral port and resolves once it listens; rejects (with its output) if it exits or hangs first. */
export function startServe(env: Env, opts: { args?: string[]; timeoutMs?: number; cwd?: string } = {}): Promise<ServeProcess> {
  const child = spawnPkv(['serve', ...(opts.args ?? [])], { PKV_HOST: '127.0.0.1', PKV_PORT: '0', ...env }, opts.cwd);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin!.end();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`pkv serve ${why}\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`));
    };
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const timer = setTimeout(() => fail(`did not listen within ${timeoutMs} ms`), timeoutMs);
    const onData = () => {
      const m = /^provider-key-vault listening on (https?:\/\/\S+)$/m.exec(stdout);
      if (!m) return;
      cleanup();
      resolve({ child, url: m[1], stdout: () => stdout, stderr: () => stderr, exited, stop });
    };
    const onClose = (code: number | null, signal: NodeJS.Signals | null) => fail(`exited before listening (code ${code}, signal ${signal})`);
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('close', onClose);
    };
    child.stdout!.on('data', onData);
    child.once('close', onClose);
  });
}

/** Kills every child still running (SIGKILL) and waits for them: call from afterAll/afterEach. */
export async function killAll(): Promise<void> {
  const waits = [...live].map(
    (child) =>
      new Promise<void>((resolve) => {
        child.once('close', () => resolve());
        child.kill('SIGKILL');
      }),
  );
  await Promise.all(waits);
  if (emptyDir) fs.rmSync(emptyDir, { recursive: true, force: true });
  emptyDir = undefined;
}

/** Lines of a command's output, without the trailing empty one. */
export const lines = (text: string): string[] => text.split('\n').filter((l) => l.trim() !== '');

/** The real app in this process, on the database a spawned command also uses. */
export interface InProcessVault {
  config: Config;
  db: Database;
  container: Container;
  app: Express;
  capture: CaptureTransport;
  http(): ReturnType<typeof request>;
  /** POST /auth/login; returns the response so a test can assert a refusal too. */
  login(username: string, password: string): Promise<request.Response>;
  close(): Promise<void>;
}

export async function openVault(env: Env, opts: { migrate?: boolean } = {}): Promise<InProcessVault> {
  const config = loadConfig(env, { generateDevSecrets: false });
  const db = await openDatabase(config.database);
  try {
    if (opts.migrate !== false) await db.migrate();
    const capture = new CaptureTransport();
    const container = await buildContainer(config, createLogger('debug', [capture]), db);
    const app = createApp(container);
    const http = () => request(app);
    return {
      config,
      db,
      container,
      app,
      capture,
      http,
      login: (username, password) => http().post('/api/v1/auth/login').send({ username, password }),
      close: async () => {
        await container.usage.stop();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
