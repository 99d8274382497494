import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The built CLI: `npm test` builds first; run `npm run build` before running a file that spawns it alone. */
export const PKV_BIN = path.resolve(__dirname, '..', '..', 'dist', 'src', 'cli', 'pkv.js');

export type Env = Record<string, string | undefined>;

export function assertBuilt(): void {
  if (!fs.existsSync(PKV_BIN)) throw new Error(`${PKV_BIN} is missing: run \`npm run build\` first (npm test does)`);
}

/** Only what a child needs plus the environment given: it never sees jest's or the developer's PKV_* variables. */
function childEnv(env: Env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', LANG: 'C.UTF-8' };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

let emptyDir: string | undefined;

/** A working directory without a `.env`, so a command reads only the environment the test gives it. */
function defaultCwd(): string {
  emptyDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-cwd-'));
  return emptyDir;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface PkvResult extends Exit {
  stdout: string;
  stderr: string;
  /** Killed by the helper's deadline (timeoutMs), not by the test. */
  timedOut: boolean;
}

export interface PkvProcess {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** stdout and stderr interleaved as they arrived. */
  output(): string;
  /** The whole run (exit and output), once the process has exited. */
  exited: Promise<PkvResult>;
  /** SIGKILL (or the given signal) and wait for the exit; a no-op once it has exited. */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
  /** The signal (SIGTERM: a graceful stop) and wait; SIGKILL when it has not exited within graceMs. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<Exit>;
}

export interface SpawnOptions {
  /** Piped to the command and closed (an empty stdin when absent). */
  stdin?: string;
  /** Default: an empty temp dir (no stray `.env`). */
  cwd?: string;
  /** SIGKILLed after this long at the latest; default 60 s. */
  timeoutMs?: number;
  /** Node flags before the script, e.g. `--max-old-space-size=128`. */
  nodeArgs?: string[];
}

/** Every child this file started and that still runs: killAll() ends them, and so does this process's exit. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

/** Starts `node dist/src/cli/pkv.js ARGS`; both pipes are always drained (a full pipe would stall the child's logger). */
export function spawnPkv(args: string[], env: Env = {}, opts: SpawnOptions = {}): PkvProcess {
  assertBuilt();
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), PKV_BIN, ...args], { cwd: opts.cwd ?? defaultCwd(), env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let err = '';
  const both: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (d: string) => ((out += d), both.push(d)));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => ((err += d), both.push(d)));
  child.stdin!.on('error', () => undefined); // the command may exit before reading its stdin
  child.stdin!.end(opts.stdin ?? '');
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 60_000);
  const exited = new Promise<PkvResult>((resolve, reject) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout: out, stderr: err, timedOut });
    });
  });
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit> => {
    if (running(child)) child.kill(signal);
    const { code, signal: s } = await exited;
    return { code, signal: s };
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', graceMs = 15_000): Promise<Exit> => {
    const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
    try {
      return await kill(signal);
    } finally {
      clearTimeout(force);
    }
  };
  return { child, pid: child.pid!, stdout: () => out, stderr: () => err, output: () => both.join(''), exited, kill, stop };
}

/** Runs `pkv ARGS` to its end. With `killOnStdout`, a process that prints a match (say, it started listening) is killed at once. */
export async function runPkv(args: string[], env: Env = {}, opts: SpawnOptions & { killOnStdout?: RegExp } = {}): Promise<PkvResult> {
  const p = spawnPkv(args, env, opts);
  const re = opts.killOnStdout;
  if (re) {
    p.child.stdout!.on('data', () => {
      if (re.test(p.stdout())) p.child.kill('SIGKILL');
    });
  }
  return p.exited;
}

export interface ServingPkv extends PkvProcess {
  /** As printed: `http://127.0.0.1:PORT` (or https://). */
  url: string;
  /** From the `TLS certificate SHA-256 fingerprint:` line, when serving with --tls-self-signed. */
  fingerprint: string | undefined;
}

/** Everything the servers this file started wrote, kept after they exit: leak checks search it. */
const serverOutputs: Array<() => string> = [];

export function allServerOutput(): string {
  return serverOutputs.map((o) => o()).join('\n');
}

/**
 * `pkv serve ARGS` on 127.0.0.1 and an ephemeral port unless env says otherwise; resolves once it prints its URL,
 * rejects (with its output) if it exits first or does not listen within startTimeoutMs.
 */
export async function servePkv(env: Env, opts: Omit<SpawnOptions, 'stdin'> & { args?: string[]; startTimeoutMs?: number } = {}): Promise<ServingPkv> {
  const p = spawnPkv(['serve', ...(opts.args ?? [])], { PKV_HOST: '127.0.0.1', PKV_PORT: '0', ...env }, { ...opts, timeoutMs: opts.timeoutMs ?? 600_000 });
  serverOutputs.push(p.output);
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pkv serve did not listen within ${startTimeoutMs} ms`)), startTimeoutMs);
    const onData = () => {
      const m = /^provider-key-vault listening on (https?:\/\/\S+)$/m.exec(p.stdout());
      if (!m) return;
      clearTimeout(timer);
      p.child.stdout!.off('data', onData);
      resolve(m[1]);
    };
    p.child.stdout!.on('data', onData);
    void p.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`pkv serve exited before listening (code ${code}, signal ${signal})`));
    }, reject);
  }).catch(async (err: Error) => {
    await p.kill('SIGKILL');
    throw new Error(`${err.message}\n--- stdout ---\n${p.stdout().slice(-3000)}\n--- stderr ---\n${p.stderr().slice(-3000)}`);
  });
  const fingerprint = /TLS certificate SHA-256 fingerprint: ([0-9A-F:]+)/.exec(p.stdout())?.[1];
  return { ...p, url, fingerprint };
}

/** SIGKILLs every child this file started that still runs and waits for them (afterAll / afterEach). */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (!running(child)) return resolve();
          child.once('close', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
  if (emptyDir) fs.rmSync(emptyDir, { recursive: true, force: true });
  emptyDir = undefined;
}

/** The non-empty lines of a command's output. */
export const lines = (text: string): string[] => text.split(/\r?\n/).filter((l) => l.trim() !== '');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls check() until it returns something other than undefined or false; a check that throws is retried. Throws
 * after timeoutMs naming what was awaited (and the last error, if any).
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(opts.intervalMs ?? 100);
  }
}

/** Resident set size of a live process in bytes, from /proc/<pid>/status (Linux). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Samples a process's RSS every intervalMs until stopped; reports the peak. */
export function sampleRss(pid: number, intervalMs = 25): { stop(): { peak: number; samples: number } } {
  let peak = rssOf(pid);
  let samples = 1;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssOf(pid));
      samples++;
    } catch {
      /* the process ended: keep what was seen */
    }
  }, intervalMs);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      return { peak, samples };
    },
  };
}
