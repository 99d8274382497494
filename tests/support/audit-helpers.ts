import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from './test-app';

/** The built CLI: `npm test` builds first; a bare `npx jest` needs `npm run build` after src changes. */
export const PKV_BIN = path.resolve(__dirname, '../../dist/src/cli/pkv.js');

export function assertBuilt(): void {
  if (!fs.existsSync(PKV_BIN)) throw new Error(`${PKV_BIN} is missing: run \`npm run build\` before these tests`);
}

/** Only what a child needs: PATH plus the test's PKV_* environment (no inherited PKV_TEST_* or .env surprises). */
export function childEnv(env: Record<string, string | undefined>, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' };
  for (const [k, v] of Object.entries({ ...env, ...extra })) if (v !== undefined) out[k] = v;
  return out;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Kills every child this helper started that is still running (for afterAll). */
export async function killAllChildren(): Promise<void> {
  await Promise.all([...live].map((child) => stopChild(child, 'SIGKILL', 5000)));
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (!exited(child)) {
    const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await done;
    clearTimeout(timer);
  }
  return { code: child.exitCode, signal: child.signalCode };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `pkv <args>` to completion in cwd (default: the test's data dir), killed after timeoutMs. */
export async function runPkv(args: string[], env: Record<string, string | undefined>, opts: { timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  assertBuilt();
  const child = track(spawn(process.execPath, [PKV_BIN, ...args], { cwd: opts.cwd ?? env.PKV_DATA_DIR, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const [code, signal] = (await new Promise((resolve) => child.once('close', (c, s) => resolve([c, s])))) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  if (timedOut) throw new Error(`pkv ${args.join(' ')} did not finish within ${timeoutMs} ms\nstderr: ${stderr}`);
  return { code, signal, stdout, stderr };
}

export interface SpawnedServer {
  url: string;
  pid: number;
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** SIGTERM (graceful: seals pending rows, closes the pool), SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns `pkv serve` on 127.0.0.1 with an ephemeral port and waits for its listening line. */
export async function spawnServer(env: Record<string, string | undefined>, opts: { startTimeoutMs?: number; extraEnv?: Record<string, string> } = {}): Promise<SpawnedServer> {
  assertBuilt();
  const child = track(
    spawn(process.execPath, [PKV_BIN, 'serve'], {
      cwd: env.PKV_DATA_DIR,
      env: childEnv(env, { PKV_PORT: '0', PKV_HOST: '127.0.0.1', ...opts.extraEnv }),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  // Always drain both pipes: a full pipe would block the server's logger.
  const out: string[] = [];
  const err: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (c: string) => out.push(c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => err.push(c));
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`pkv serve did not start within ${timeoutMs} ms`)), timeoutMs);
      const onData = () => {
        const m = /provider-key-vault listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out.join(''));
        if (m) {
          clearTimeout(timer);
          child.stdout!.off('data', onData);
          resolve(m[1]);
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`pkv serve exited early (${code ?? signal})`));
      });
    });
    return {
      url,
      pid: child.pid!,
      child,
      stdout: () => out.join(''),
      stderr: () => err.join(''),
      stop: (graceMs = 15_000) => stopChild(child, 'SIGTERM', graceMs),
    };
  } catch (e) {
    await stopChild(child, 'SIGKILL', 5000);
    throw new Error(`${(e as Error).message}\nstdout: ${out.join('').slice(-2000)}\nstderr: ${err.join('').slice(-2000)}`);
  }
}

/** Resident set size of a live process, from /proc (Linux). */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
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

/** Polls until check() returns a value other than undefined, or throws after timeoutMs naming what was awaited. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, opts: { timeoutMs: number; intervalMs?: number }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/** Runs task(i) for i < count with at most `concurrency` in flight; stops starting new ones after the deadline. */
export async function boundedLoop(count: number, concurrency: number, deadline: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      const i = next++;
      await task(i);
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done;
}

/** A JSON request to a spawned server over real HTTP. */
export async function httpJson(
  base: string,
  method: string,
  route: string,
  opts: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/api/v1${route}`, {
    method,
    headers: { ...(opts.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...opts.headers },
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export const AUDIT_COLUMNS = [
  'id', 'seq', 'chain_hash', 'row_mac', 'at', 'action', 'outcome', 'actor_id', 'actor_username', 'actor_role', 'via', 'api_token_id',
  'key_id', 'project_id', 'owner_id', 'ip', 'user_agent', 'request_id', 'reason', 'detail',
] as const;
export type AuditColumn = (typeof AUDIT_COLUMNS)[number];
export type RawAuditRow = Record<AuditColumn, string | number | null>;

/** Writes audit rows straight through SQL, `batch` rows per INSERT (bypassing the product, as an attacker or a bulk load would). */
export async function insertAuditRows(ctx: TestContext, rows: RawAuditRow[], batch = 500): Promise<void> {
  const cols = AUDIT_COLUMNS.map((c) => `\`${c}\``).join(', ');
  const one = `(${AUDIT_COLUMNS.map(() => '?').join(', ')})`;
  for (let i = 0; i < rows.length; i += batch * 10) {
    const slice = rows.slice(i, i + batch * 10);
    await ctx.db.transaction(async (tx) => {
      for (let j = 0; j < slice.length; j += batch) {
        const part = slice.slice(j, j + batch);
        await tx.query(`INSERT INTO audit_events (${cols}) VALUES ${part.map(() => one).join(', ')}`, part.flatMap((r) => AUDIT_COLUMNS.map((c) => r[c])));
      }
    });
  }
}

/** Runs one statement in its own transaction (tampering done "with database access alone"). */
export function sql(ctx: TestContext, statement: string, params: unknown[] = []): Promise<any> {
  return ctx.db.transaction((tx) => tx.query(statement, params));
}

/** Sealed rows in chain order: {id, seq, chainHash}. */
export async function sealedRows(ctx: TestContext): Promise<Array<{ id: string; seq: number; chainHash: string }>> {
  const rows: Array<{ id: string; seq: string | number; chain_hash: string }> = await ctx.db.read((m) =>
    m.query('SELECT id, seq, chain_hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq'),
  );
  return rows.map((r) => ({ id: r.id, seq: Number(r.seq), chainHash: r.chain_hash }));
}

export async function countRows(ctx: TestContext, where = '1=1', params: unknown[] = []): Promise<number> {
  const [row] = await ctx.db.read((m) => m.query(`SELECT COUNT(*) AS n FROM audit_events WHERE ${where}`, params));
  return Number(row.n);
}
