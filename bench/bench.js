#!/usr/bin/env node
'use strict';
// npm run bench [-- --keys 100000 --duration 5 --rounds 3 --profile --only gateway]   (A/B of a change: --ab ../other-checkout)
// Starts the real server (pinned to core 0) on a fresh database, seeds N provider keys, drives it with autocannon
// from this process (pinned to core 1), measures the bare-HTTP and in-process baselines in the same run (baselines
// and product alternating, round by round; figures are medians over rounds), and writes bench/results/latest.json.
// The gateway points call a stand-in provider (bench/stand-in.js, core 1) directly, through a bare forwarding proxy
// and through the gateway. SQLite by default; MariaDB/MySQL when PKV_BENCH_MYSQL_URL is set.
require('reflect-metadata');
const { spawn, execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const autocannon = require('autocannon');
const { Command } = require('commander');
const { inprocess, cleanup } = require('./baseline');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const PKV = path.join(DIST, 'src/cli/pkv.js');
const pinned = os.cpus().length >= 2 && fs.existsSync('/usr/bin/taskset');

const opts = new Command('bench')
  .option('--keys <n>', 'provider keys to seed', (v) => Number(v), 10000)
  .option('--duration <s>', 'seconds per measured point', (v) => Number(v), 5)
  .option('--warmup <s>', 'seconds of warm-up before each point', (v) => Number(v), 1)
  .option('--rounds <n>', 'rounds, baselines and product alternating; each figure is the median over rounds', (v) => Number(v), 3)
  .option('--profile', 'run the server with --cpu-prof (profiles in bench/results/)')
  .option('--only <points>', 'run only these points: gateway (the stand-in direct, the bare proxy and the gateway)')
  .option('--ab <checkout>', 'A/B: alternate this build (A) with the build of another checkout (B, its dist/) on one database, reveal and list points (with --only gateway: the gateway points); reports B ÷ A')
  .parse(process.argv)
  .opts();
for (const [name, v] of Object.entries({ keys: opts.keys, duration: opts.duration, rounds: opts.rounds })) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench: --${name} must be a whole number ≥ 1`);
    process.exit(2);
  }
}
if (opts.only !== undefined && opts.only !== 'gateway') {
  console.error('bench: --only takes gateway');
  process.exit(2);
}
const wants = { vault: opts.only === undefined, gateway: true };

// The load generator runs on core 1, the servers on core 0 (shared/BENCH.md).
if (pinned && !process.env.PKV_BENCH_PINNED) {
  const child = spawn('taskset', ['-c', '1', process.execPath, __filename, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, PKV_BENCH_PINNED: '1' } });
  child.on('exit', (code) => process.exit(code ?? 1));
  return;
}

const log = (...a) => process.stderr.write(a.join(' ') + '\n');

async function freshDatabase() {
  const mysqlUrl = process.env.PKV_BENCH_MYSQL_URL;
  // Not under /tmp: the server runs with NODE_ENV=production, which refuses SQLite in a temp dir.
  fs.mkdirSync(path.join(__dirname, '.work'), { recursive: true });
  const dir = fs.mkdtempSync(path.join(__dirname, '.work', 'run-'));
  if (!mysqlUrl) return { kind: 'sqlite', url: `sqlite:${path.join(dir, 'vault.db')}`, dir, drop: async () => fs.rmSync(dir, { recursive: true, force: true }) };
  const mysql = require('mysql2/promise');
  const name = `pkv_bench_${crypto.randomBytes(4).toString('hex')}`;
  const c = await mysql.createConnection(mysqlUrl);
  await c.query(`CREATE DATABASE \`${name}\``);
  await c.end();
  const u = new URL(mysqlUrl);
  u.pathname = `/${name}`;
  return {
    kind: 'mysql',
    url: u.toString(),
    dir,
    drop: async () => {
      const c2 = await mysql.createConnection(mysqlUrl);
      await c2.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await c2.end();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Seeds users, projects and N sealed keys straight through the product's own envelope and SQL batches. */
async function seed(env, n) {
  const { loadConfig } = require(path.join(DIST, 'src/config'));
  const { openDatabase } = require(path.join(DIST, 'src/db/data-source'));
  const { buildContainer } = require(path.join(DIST, 'src/container'));
  const { createLogger } = require(path.join(DIST, 'src/logger'));
  const { cliActor } = require(path.join(DIST, 'src/modules/auth/actor'));
  const { hintFor } = require(path.join(DIST, 'src/modules/provider-keys/providers'));
  const { newId } = require(path.join(DIST, 'src/ids'));
  const config = loadConfig(env, { generateDevSecrets: false });
  const db = await openDatabase(config.database);
  await db.migrate();
  const c = await buildContainer(config, createLogger('error'), db);
  const actor = cliActor(null);
  const admin = await c.users.create(actor, { username: 'bench-admin', password: 'bench-admin-password', role: 'admin' });
  const owner = await c.users.create(actor, { username: 'bench-owner', password: 'bench-owner-password', role: 'member' });
  const projects = [];
  for (let i = 0; i < 10; i++) projects.push(await c.projects.create(actor, { name: `bench-project-${i}` }));
  const fpKey = await c.keyring.systemKey('fingerprint');
  const ids = [];
  const now = Date.now();
  const cols = ['id', 'name', 'provider', 'hint', 'status', 'owner_id', 'project_id', 'remark', 'created_by', 'created_at', 'updated_at', 'reveal_count', 'format_version', 'kek_version', 'wrapped_dek', 'dek_iv', 'dek_tag', 'secret_ciphertext', 'secret_iv', 'secret_tag', 'fingerprint'];
  for (let done = 0; done < n; ) {
    const size = Math.min(500, n - done);
    const values = [];
    for (let i = 0; i < size; i++) {
      const id = newId(now + done + i);
      const projectId = projects[(done + i) % projects.length].id;
      const secret = `sk-bench-${crypto.randomBytes(24).toString('base64url')}`;
      const s = c.envelope.seal({ keyId: id, ownerId: owner.id, projectId, provider: 'openai', baseUrl: null }, Buffer.from(secret));
      const fp = crypto.createHmac('sha256', fpKey).update(secret).digest('hex');
      values.push([id, `key ${done + i}`, 'openai', hintFor('openai', secret), 'active', owner.id, projectId, null, admin.id, now, now, 0, s.formatVersion, s.kekVersion, s.wrappedDek, s.dekIv, s.dekTag, s.secretCiphertext, s.secretIv, s.secretTag, fp]);
      ids.push(id);
    }
    const sql = `INSERT INTO provider_keys (${cols.join(', ')}) VALUES ${values.map(() => `(${cols.map(() => '?').join(', ')})`).join(', ')}`;
    await db.transaction((tx) => tx.query(sql, values.flat()));
    done += size;
  }
  await c.usage.stop();
  await db.close();
  return { ids, ownerId: owner.id, projectId: projects[0].id };
}

/** Every process started and not yet exited: a run that fails stops them on its way out. */
const running = new Set();
const stopAll = () => Promise.all([...running].map((child) => stop(child)));

function startProcess(args, env, readyPattern, core = '0') {
  const cmd = pinned ? 'taskset' : process.execPath;
  const argv = pinned ? ['-c', core, process.execPath, ...args] : args;
  const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`did not start: ${out}`)), 30000);
    const onData = (d) => {
      out += d.toString();
      const m = readyPattern.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.removeAllListeners('data');
        child.stdout.resume();
        child.stderr.resume();
        resolve({ child, url: m[1], pid: child.pid });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d) => (out += d.toString()));
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}

/** Resident (VmRSS) or peak resident (VmHWM) MB of the node process (under taskset the pid is node itself: taskset execs). */
function rssMb(pid, field = 'VmRSS') {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)[1]) / 1024;
}

/** Seconds the server is left idle before its RSS is read: it gives back the heap grown under load after 1 s idle. */
const SETTLE_SECONDS = 3;

function stop(child) {
  running.delete(child);
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.removeAllListeners('exit');
    child.on('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 15000).unref();
  });
}

/** autocannon's result, plus `latencies`: every 2xx answer's time in ms, unrounded (its own histogram counts whole ms). */
function load(url, connections, seconds, request) {
  return new Promise((resolve, reject) => {
    const latencies = [];
    const run = autocannon({ url, connections, duration: seconds, requests: [request], pipelining: 1 }, (err, r) => (err ? reject(err) : resolve({ ...r, latencies })));
    run.on('response', (_client, statusCode, _bytes, ms) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(ms);
    });
  });
}

/** The p-th percentile of unsorted samples, or undefined without any. */
function percentile(xs, p) {
  if (xs.length === 0) return undefined;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat in clock ticks. */
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
function cpuSeconds(pid) {
  // The command name (field 2) is in parentheses and may hold spaces: count fields from after it.
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND; // utime, stime: fields 14 and 15
}

/**
 * The MySQL/MariaDB server's pid when it runs on this machine (its CPU shares the two cores with the server and the
 * load generator, so what each request costs it counts too); undefined for SQLite or a remote database.
 */
function localDatabasePid() {
  const url = process.env.PKV_BENCH_MYSQL_URL;
  if (!url || !['127.0.0.1', 'localhost', '[::1]'].includes(new URL(url).hostname)) return undefined;
  for (const name of ['mariadbd', 'mysqld']) {
    try {
      const pid = Number(execFileSync('pgrep', ['-x', '-o', name]).toString().trim());
      if (pid > 0) return pid;
    } catch {
      /* not running under this name */
    }
  }
  return undefined;
}
const DB_PID = localDatabasePid();

/** CPU the database server spent (µs per request) while `fn` ran `requests(result)` requests; undefined without a local one. */
async function withDatabaseCpu(fn, requests) {
  const before = DB_PID ? cpuSeconds(DB_PID) : 0;
  const result = await fn();
  return { result, dbCpuUsPerRequest: DB_PID ? ((cpuSeconds(DB_PID) - before) * 1e6) / Math.max(1, requests(result)) : undefined };
}

/**
 * One measured point. With the server's pid it also reports the server's CPU per request and how busy its core was:
 * steadier than req/s on a shared machine, and it tells a CPU-bound point from one waiting on the database. With a
 * local MySQL/MariaDB server, that server's CPU per request too; with `standInPid` (the gateway points), the stand-in
 * provider's, which shares the load generator's core.
 */
async function point(name, url, connections, request, pid, standInPid) {
  if (opts.warmup > 0) await load(url, connections, opts.warmup, request);
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const standIn0 = standInPid ? cpuSeconds(standInPid) : 0;
  const t0 = process.hrtime.bigint();
  const { result: r, dbCpuUsPerRequest } = await withDatabaseCpu(() => load(url, connections, opts.duration, request), (res) => res.requests.total);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = pid ? cpuSeconds(pid) - cpu0 : undefined;
  const non2xx = r.non2xx + r.errors + r.timeouts;
  const p50 = percentile(r.latencies, 50) ?? r.latency.p50;
  const p99 = percentile(r.latencies, 99) ?? r.latency.p99;
  const row = { name, connections, rps: r.requests.average, p50, p99, requests: r.requests.total, non2xx };
  if (non2xx) row.statusCodes = Object.fromEntries(Object.entries(r.statusCodeStats).map(([code, v]) => [code, v.count]));
  if (cpu !== undefined) Object.assign(row, { cpuUsPerRequest: (cpu * 1e6) / Math.max(1, r.requests.total), serverBusy: cpu / wall });
  if (dbCpuUsPerRequest !== undefined) row.dbCpuUsPerRequest = dbCpuUsPerRequest;
  if (standInPid) row.standInCpuUsPerRequest = ((cpuSeconds(standInPid) - standIn0) * 1e6) / Math.max(1, r.requests.total);
  const cpuText =
    (cpu === undefined ? '' : `  cpu ${row.cpuUsPerRequest.toFixed(0).padStart(4)} µs/req, core ${(100 * row.serverBusy).toFixed(0).padStart(3)}% busy`) +
    (dbCpuUsPerRequest === undefined ? '' : `, db ${dbCpuUsPerRequest.toFixed(0).padStart(4)} µs/req`) +
    (row.standInCpuUsPerRequest === undefined ? '' : `, stand-in ${row.standInCpuUsPerRequest.toFixed(0).padStart(4)} µs/req`);
  log(`  ${name.padEnd(28)} c=${String(connections).padEnd(3)} ${row.rps.toFixed(0).padStart(6)} req/s  p50 ${p50.toFixed(2).padStart(6)} ms  p99 ${p99.toFixed(2).padStart(6)} ms${cpuText}${non2xx ? `  (${non2xx} non-2xx/errors! ${JSON.stringify(row.statusCodes)})` : ''}`);
  return row;
}

/** A list page's ids, field names and cursor (not the counters, which the reveal points change). */
const shapeOf = (page) => JSON.stringify({ ids: page.items.map((k) => k.id), fields: page.items.map((k) => Object.keys(k).join()), nextCursor: page.nextCursor });

const pick = (ids) => ids[(Math.random() * ids.length) | 0];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** A JSON call to the API; its JSON answer, or an error with its status. */
async function api(url, method, p, token, body) {
  const res = await fetch(`${url}/api/v1${p}`, { method, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body ? JSON.stringify(body) : undefined });
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Session tokens for the owner and an admin, and an API token of the owner's (they outlive a server restart). */
async function signIn(url) {
  const owner = (await api(url, 'POST', '/auth/login', undefined, { username: 'bench-owner', password: 'bench-owner-password' })).accessToken;
  const admin = (await api(url, 'POST', '/auth/login', undefined, { username: 'bench-admin', password: 'bench-admin-password' })).accessToken;
  const apiToken = (await api(url, 'POST', '/api-tokens', owner, { name: 'bench', scopes: ['provider-keys:reveal', 'provider-keys:read'] })).token;
  return { owner, admin, api: apiToken };
}

/** An admin pasting a fresh secret (a new key each time). */
function createRequest(adminToken, seeded) {
  return {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    setupRequest: (req) => ({ ...req, path: '/api/v1/provider-keys', body: JSON.stringify({ ownerId: seeded.ownerId, projectId: seeded.projectId, name: 'bench paste', provider: 'openai', secret: `sk-paste-${crypto.randomBytes(24).toString('base64url')}` }) }),
  };
}

// The gateway points: an OpenAI chat completion answered whole (JSON), or streamed (SSE) with usage in its last event.
const CHAT_PATH = '/v1/chat/completions';
const GATEWAY_CHAT_PATH = '/gateway/chat/completions'; // the key's baseUrl ends in /v1 (docs/gateway.md §3)
const MESSAGES = [{ role: 'user', content: 'Say hello.' }];
const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES });
const CHAT_STREAM_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true, stream_options: { include_usage: true } });
const chat = (p, credential, stream) => ({ method: 'POST', path: p, headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' }, body: stream ? CHAT_STREAM_BODY : CHAT_BODY });
/** Each stand-in answer reports these (bench/stand-in.js). */
const PROMPT_TOKENS = 9;

/** One call, checked: 200 and the stand-in's whole answer (a point that measures refusals would mean nothing). */
async function checkChat(url, req, stream) {
  const res = await fetch(url + req.path, { method: req.method, headers: req.headers, body: req.body });
  const text = await res.text();
  const whole = stream ? text.includes('"usage":{"prompt_tokens":9,') && text.endsWith('data: [DONE]\n\n') : text.includes('"usage":{"prompt_tokens":9,') && text.endsWith('}');
  if (res.status !== 200 || !whole) throw new Error(`${req.path} through ${url}: ${res.status} ${text.slice(0, 300)}`);
}

/**
 * The gateway points of one target (the stand-in itself, the bare proxy or the gateway): JSON at 1 and 16
 * connections, SSE at 16. Any non-2xx answer stops the run: the gateway's figures are only worth its successes.
 */
async function chatPoints(round, group, name, url, p, credential, pid, standInPid) {
  for (const stream of [false, true]) await checkChat(url, chat(p, credential, stream), stream);
  for (const [c, stream] of [[1, false], [16, false], [16, true]]) {
    const row = await point(`${name}${stream ? ' SSE' : ''}`, url, c, chat(p, credential, stream), pid, standInPid);
    if (row.non2xx) throw new Error(`${row.name} at ${c} connections: ${row.non2xx} non-2xx answers or errors ${JSON.stringify(row.statusCodes ?? {})}`);
    round.push({ group: stream ? `${group}-sse` : group, ...row });
  }
}

/**
 * The gateway's side of the stand-in: a provider key of provider openai whose baseUrl is the stand-in, made by the
 * admin for the owner, and a virtual key the owner makes through the API, without budgets (no daily limit to reach).
 */
async function gatewaySetup(url, tokens, seeded, standInUrl, standInKey) {
  const key = await api(url, 'POST', '/provider-keys', tokens.admin, { ownerId: seeded.ownerId, projectId: seeded.projectId, name: 'bench stand-in', provider: 'openai', secret: standInKey, baseUrl: `${standInUrl}/v1` });
  const vk = await api(url, 'POST', `/provider-keys/${key.id}/virtual-keys`, tokens.owner, { name: 'bench', expiresInDays: 1 });
  if (vk.dailyRequestLimit !== null || vk.dailyTokenLimit !== null) throw new Error('the bench virtual key must have no daily budget');
  return { keyId: key.id, virtualKey: vk.virtualKey };
}

/** What the gateway recorded for the stand-in's key (usage routes flush first), summed over the run's days. */
async function gatewayUsage(url, token, keyId) {
  const { items } = await api(url, 'GET', `/provider-keys/${keyId}/usage?granularity=day`, token);
  return items.reduce((t, b) => ({ requests: t.requests + b.requests, errors: t.errors + b.errors, promptTokens: t.promptTokens + b.promptTokens }), { requests: 0, errors: 0, promptTokens: 0 });
}

async function main() {
  if (!fs.existsSync(PKV)) throw new Error('dist/ is missing: run `npm run build` (npm run bench does it)');
  const tdb = await freshDatabase();
  const oldKey = crypto.randomBytes(32).toString('base64');
  const env = {
    ...process.env,
    NODE_ENV: 'production',
    PKV_DATABASE_URL: tdb.url,
    PKV_DATA_DIR: tdb.dir,
    PKV_MASTER_KEYS: `1:${oldKey}`,
    PKV_JWT_SECRET: crypto.randomBytes(48).toString('base64url'),
    PKV_JWT_TTL: '1h',
    PKV_REVEAL_RATE_LIMIT: '100000',
    // PKV_SCRYPT_COST stays at its default (17), as in production: at 14 the server's 16 MB scrypt buffer is small
    // enough for glibc to raise its malloc trim threshold to 32 MB for the life of the process (docs/performance.md).
    PKV_HOST: '127.0.0.1',
    PKV_PORT: '0',
    // The gateway's limits, stated rather than assumed: the stand-in answers at once and the bodies are small, so
    // none of them is ever reached (a timeout or a 413 would show as a failed request and stop the run).
    PKV_GATEWAY_CONNECT_TIMEOUT: '10s',
    PKV_GATEWAY_FIRST_BYTE_TIMEOUT: '60s',
    PKV_GATEWAY_IDLE_TIMEOUT: '60s',
    PKV_GATEWAY_BODY_LIMIT: '8m',
    // No background health checks: the seeded keys would all be due at once and each check fails at once here (no
    // provider reachable), a busy loop on the server's core and its database that no request asked for. It also kept
    // the server from stopping within the bench's 15 s (stop() waits for the run to finish), so --profile wrote nothing.
    PKV_HEALTH_SCHEDULER: 'off',
  };
  const results = { startedAt: new Date().toISOString(), database: tdb.kind, keys: opts.keys, durationSeconds: opts.duration, roundCount: opts.rounds, only: opts.only ?? null, pinned, machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version }, points: [] };
  let standIn;
  try {
    log(`seeding ${opts.keys} provider keys on ${tdb.kind} …`);
    const t0 = Date.now();
    const seeded = await seed(env, opts.keys);
    log(`  seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // The stand-in provider runs for the whole run on the load generator's core (1), the same for all three gateway
    // points: the server's core (0) then holds only the proxy or the gateway, so gateway ÷ bare proxy compares what
    // each does on a core of its own. A realistic key length: the gateway masks every 8-byte run of it in answers.
    const standInKey = `sk-proj-${crypto.randomBytes(117).toString('base64url')}`;
    const proxyKey = `bench-proxy-${crypto.randomBytes(24).toString('base64url')}`;
    const standInEnv = { ...process.env, PKV_BENCH_STANDIN_KEY: standInKey, PKV_BENCH_PROXY_KEY: proxyKey };
    standIn = await startProcess([path.join(__dirname, 'stand-in.js'), '0'], standInEnv, /stand-in listening on (http:\/\/\S+)/, '1');
    const prewarm = Math.max(3, opts.warmup * 2);
    await load(standIn.url, 16, prewarm, chat(CHAT_PATH, standInKey, false));

    const baseReq = { method: 'POST', setupRequest: (req) => ({ ...req, path: `/reveal/${pick(seeded.ids)}` }) };
    const serverArgs = [...(opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(__dirname, 'results')}`] : []), PKV, 'serve'];
    const rounds = [];
    let tokens;
    let bareShape;
    let gateway;
    for (let r = 1; r <= opts.rounds; r++) {
      // Baselines and product alternate, round by round, so that a slow spell of this shared machine falls on both.
      const round = [];
      rounds.push(round);
      log(`round ${r} of ${opts.rounds}: baselines`);
      if (wants.vault) {
        const base = await startProcess([path.join(__dirname, 'baseline.js'), 'serve', tdb.url, '0'], env, /baseline listening on (http:\/\/\S+)/);
        for (const c of [1, 16]) round.push({ group: 'baseline-http', ...(await point('bare HTTP + driver', base.url, c, baseReq, base.pid)) });
        const bareList = { method: 'GET', path: `/list/${seeded.projectId}` };
        if (r === 1) bareShape = shapeOf(await (await fetch(base.url + bareList.path)).json());
        round.push({ group: 'baseline-list', ...(await point('bare list 50', base.url, 16, bareList, base.pid)) });
        await stop(base.child);
        const { result: inproc, dbCpuUsPerRequest } = await withDatabaseCpu(() => inprocess(tdb.url, seeded.ids, opts.duration, tdb.kind === 'mysql' ? 16 : 1), (res) => res.requests);
        round.push({ group: 'baseline-inprocess', name: 'in-process driver', connections: tdb.kind === 'mysql' ? 16 : 1, rps: inproc.rps, p50: inproc.p50, p99: inproc.p99, requests: inproc.requests, non2xx: 0, ...(dbCpuUsPerRequest === undefined ? {} : { dbCpuUsPerRequest }) });
        log(`  in-process driver            ${inproc.rps.toFixed(0).padStart(6)} tx/s   p50 ${inproc.p50.toFixed(2)} ms  p99 ${inproc.p99.toFixed(2)} ms`);
        await cleanup(tdb.url);
      }
      await chatPoints(round, 'standin-direct', 'stand-in direct', standIn.url, CHAT_PATH, standInKey, standIn.pid);
      const proxy = await startProcess([path.join(__dirname, 'baseline.js'), 'proxy', standIn.url, '0'], standInEnv, /proxy listening on (http:\/\/\S+)/);
      await load(proxy.url, 16, prewarm, chat(CHAT_PATH, proxyKey, false));
      await chatPoints(round, 'bare-proxy', 'bare forwarding proxy', proxy.url, CHAT_PATH, proxyKey, proxy.pid, standIn.pid);
      await stop(proxy.child);

      log(`round ${r} of ${opts.rounds}: provider-key-vault`);
      const srv = await startProcess(serverArgs, env, /listening on (http:\/\/\S+)/);
      tokens ??= await signIn(srv.url);
      if (wants.vault) {
        const reveal = (token) => ({ method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}', setupRequest: (req) => ({ ...req, path: `/api/v1/provider-keys/${pick(seeded.ids)}/reveal` }) });
        // Warm the server (JIT, caches, WAL) before the first measured point: whichever point ran first used to pay for it.
        await load(srv.url, 16, prewarm, reveal(tokens.owner));
        for (const c of [1, 16]) round.push({ group: 'reveal-session', ...(await point('reveal (session)', srv.url, c, reveal(tokens.owner), srv.pid)) });
        for (const c of [1, 16]) round.push({ group: 'reveal-api-token', ...(await point('reveal (API token)', srv.url, c, reveal(tokens.api), srv.pid)) });
        const list = { method: 'GET', path: `/api/v1/provider-keys?projectId=${seeded.projectId}&limit=50`, headers: { authorization: `Bearer ${tokens.admin}` } };
        if (r === 1) {
          // The bare list must answer the same page (ids, fields, cursor) as the product, or its figure means nothing.
          const productShape = shapeOf(await (await fetch(srv.url + list.path, { headers: list.headers })).json());
          if (productShape !== bareShape) throw new Error('the bare list and the product list answer different pages');
        }
        round.push({ group: 'list', ...(await point(`list 50 of ${opts.keys}`, srv.url, 16, list, srv.pid)) });
        round.push({ group: 'create', ...(await point('create (paste)', srv.url, 16, createRequest(tokens.admin, seeded), srv.pid)) });
      }
      gateway ??= await gatewaySetup(srv.url, tokens, seeded, standIn.url, standInKey);
      await load(srv.url, 16, prewarm, chat(GATEWAY_CHAT_PATH, gateway.virtualKey, false));
      await chatPoints(round, 'gateway', 'gateway', srv.url, GATEWAY_CHAT_PATH, gateway.virtualKey, srv.pid, standIn.pid);
      if (r === opts.rounds) {
        // Every call the bench counted as answered must be in the gateway's usage, with its tokens: it did its whole job.
        const measured = rounds.flat().filter((p) => p.group.startsWith('gateway')).reduce((n, p) => n + p.requests, 0);
        const usage = await gatewayUsage(srv.url, tokens.owner, gateway.keyId);
        results.gatewayUsage = { measuredRequests: measured, ...usage };
        log(`  gateway usage recorded: ${usage.requests} calls (${usage.errors} ≥ 400, the calls cut off at the end of each load), ${usage.promptTokens} prompt tokens; ${measured} answers measured`);
        if (usage.requests < measured || usage.promptTokens < measured * PROMPT_TOKENS) throw new Error('the gateway recorded fewer calls or tokens than it answered');
        results.serverRssAtEndOfLoadMb = rssMb(srv.pid);
        await new Promise((resolve) => setTimeout(resolve, SETTLE_SECONDS * 1000));
        results.serverRssMb = rssMb(srv.pid);
        results.serverPeakRssMb = rssMb(srv.pid, 'VmHWM');
        // Where the resident memory is: anonymous (the heaps: V8's and malloc's), file-backed (code) and shared.
        results.serverRssSplitMb = { anon: rssMb(srv.pid, 'RssAnon'), file: rssMb(srv.pid, 'RssFile'), shmem: rssMb(srv.pid, 'RssShmem') };
        const split = results.serverRssSplitMb;
        log(`  server RSS: ${results.serverRssAtEndOfLoadMb.toFixed(0)} MB at the end of the load, ${results.serverRssMb.toFixed(0)} MB after ${SETTLE_SECONDS} s idle (peak ${results.serverPeakRssMb.toFixed(0)} MB; anonymous ${split.anon.toFixed(0)}, file ${split.file.toFixed(0)}, shared ${split.shmem.toFixed(0)})`);
      }
      await stop(srv.child);
    }
    results.rounds = rounds;
    const medianOf = (i, field) => median(rounds.map((round) => round[i][field]));
    // Each figure is the median over rounds; each ratio the median of the rounds' own ratios.
    results.points = rounds[0].map((p, i) => ({
      ...p,
      rps: medianOf(i, 'rps'),
      p50: medianOf(i, 'p50'),
      p99: medianOf(i, 'p99'),
      ...(p.cpuUsPerRequest === undefined ? {} : { cpuUsPerRequest: medianOf(i, 'cpuUsPerRequest'), serverBusy: medianOf(i, 'serverBusy') }),
      ...(p.dbCpuUsPerRequest === undefined ? {} : { dbCpuUsPerRequest: medianOf(i, 'dbCpuUsPerRequest') }),
      ...(p.standInCpuUsPerRequest === undefined ? {} : { standInCpuUsPerRequest: medianOf(i, 'standInCpuUsPerRequest') }),
      requests: rounds.reduce((n, round) => n + round[i].requests, 0),
      non2xx: rounds.reduce((n, round) => n + round[i].non2xx, 0),
    }));

    if (wants.vault) {
      log('keyring rotate');
      const newKey = crypto.randomBytes(32).toString('base64');
      const out = execFileSync(process.execPath, [PKV, 'keyring', 'rotate'], { env: { ...env, PKV_MASTER_KEYS: `2:${newKey},1:${oldKey}` } }).toString();
      const m = /(\d+) data key\(s\).* in ([\d.]+) s/.exec(out);
      results.rotate = { keys: Number(m[1]), seconds: Number(m[2]), keysPerSecond: Number(m[1]) / Number(m[2]) };
      log(`  ${out.trim()}`);
    }
  } finally {
    await stopAll();
    await tdb.drop().catch(() => undefined);
  }

  const find = (round, g, c) => round.find((p) => p.group === g && (c === undefined || p.connections === c));
  const rps = (round, g, c) => find(round, g, c).rps;
  const ratio = (f) => median(results.rounds.map(f));
  if (wants.vault) {
    results.ratios = {};
    for (const c of [1, 16]) {
      results.ratios[`c${c}`] = {
        revealSessionOverBareHttp: ratio((round) => rps(round, 'reveal-session', c) / rps(round, 'baseline-http', c)),
        revealApiTokenOverBareHttp: ratio((round) => rps(round, 'reveal-api-token', c) / rps(round, 'baseline-http', c)),
        revealSessionOverInProcess: ratio((round) => rps(round, 'reveal-session', c) / rps(round, 'baseline-inprocess')),
      };
    }
    results.ratios.list = ratio((round) => rps(round, 'list') / rps(round, 'baseline-list'));
    results.ratiosByRound = results.rounds.map((round) => rps(round, 'reveal-session', 16) / rps(round, 'baseline-http', 16));
  }
  // Gateway headlines: gateway ÷ bare proxy (req/s), and the p50 each adds over calling the stand-in directly.
  const gw = (suffix, c) => {
    const of = (round, g) => find(round, g + suffix, c);
    return {
      gatewayOverBareProxy: ratio((round) => of(round, 'gateway').rps / of(round, 'bare-proxy').rps),
      bareProxyOverDirect: ratio((round) => of(round, 'bare-proxy').rps / of(round, 'standin-direct').rps),
      gatewayAddedP50Ms: ratio((round) => of(round, 'gateway').p50 - of(round, 'standin-direct').p50),
      bareProxyAddedP50Ms: ratio((round) => of(round, 'bare-proxy').p50 - of(round, 'standin-direct').p50),
      gatewayOverBareProxyCpu: ratio((round) => of(round, 'gateway').cpuUsPerRequest / of(round, 'bare-proxy').cpuUsPerRequest),
    };
  };
  results.gateway = {
    goals: { gatewayOverBareProxyC16: 0.7, gatewayAddedP50Ms: 1 },
    c1: gw('', 1),
    c16: gw('', 16),
    sseC16: gw('-sse', 16),
    byRound: results.rounds.map((round) => ({
      gatewayOverBareProxyC16: rps(round, 'gateway', 16) / rps(round, 'bare-proxy', 16),
      gatewayAddedP50MsC1: find(round, 'gateway', 1).p50 - find(round, 'standin-direct', 1).p50,
      gatewayAddedP50MsC16: find(round, 'gateway', 16).p50 - find(round, 'standin-direct', 16).p50,
      sseGatewayOverBareProxyC16: rps(round, 'gateway-sse', 16) / rps(round, 'bare-proxy-sse', 16),
    })),
  };
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true });
  fs.writeFileSync(path.join(__dirname, 'results', 'latest.json'), JSON.stringify(results, null, 2) + '\n');

  console.log(`\nprovider-key-vault bench — ${results.database}, ${results.keys} keys, ${opts.duration} s per point, median of ${opts.rounds} round(s), ${pinned ? 'server core 0 / load and stand-in core 1' : 'unpinned'}${opts.only ? `, only ${opts.only}` : ''}`);
  console.log(`| point | conns | req/s | p50 ms | p99 ms | server CPU µs/req | server core busy |${DB_PID ? ' database CPU µs/req |' : ''} stand-in CPU µs/req |`);
  console.log(`|---|---|---|---|---|---|---|${DB_PID ? '---|' : ''}---|`);
  const cpuCells = (p) => (p.cpuUsPerRequest === undefined ? '| | ' : `| ${p.cpuUsPerRequest.toFixed(0)} | ${(100 * p.serverBusy).toFixed(0)}% `);
  const dbCell = (p) => (DB_PID ? `| ${p.dbCpuUsPerRequest === undefined ? '' : p.dbCpuUsPerRequest.toFixed(0)} ` : '');
  const standInCell = (p) => `| ${p.standInCpuUsPerRequest === undefined ? '' : p.standInCpuUsPerRequest.toFixed(0)} `;
  for (const p of results.points) console.log(`| ${p.name} | ${p.connections} | ${p.rps.toFixed(0)} | ${Number(p.p50).toFixed(2)} | ${Number(p.p99).toFixed(2)} ${cpuCells(p)}${dbCell(p)}${standInCell(p)}|`);
  if (wants.vault) {
    const r16 = results.ratios.c16;
    console.log(`\nheadline: reveal ÷ bare-HTTP baseline at 16 connections = ${r16.revealSessionOverBareHttp.toFixed(2)} (session), ${r16.revealApiTokenOverBareHttp.toFixed(2)} (API token); reveal ÷ in-process = ${r16.revealSessionOverInProcess.toFixed(2)}`);
    console.log(`  by round (session, 16 connections): ${results.ratiosByRound.map((x) => x.toFixed(2)).join(', ')}`);
    console.log(`at 1 connection: ${results.ratios.c1.revealSessionOverBareHttp.toFixed(2)} (session), ${results.ratios.c1.revealApiTokenOverBareHttp.toFixed(2)} (API token)`);
    console.log(`list ÷ bare list at 16 connections = ${results.ratios.list.toFixed(2)}`);
  }
  const g = results.gateway;
  const meets = (ok) => (ok ? 'meets the goal' : 'MISSES the goal');
  console.log(`\ngateway ÷ bare forwarding proxy at 16 connections = ${g.c16.gatewayOverBareProxy.toFixed(2)} (goal ≥ ${g.goals.gatewayOverBareProxyC16}: ${meets(g.c16.gatewayOverBareProxy >= g.goals.gatewayOverBareProxyC16)}); at 1 connection ${g.c1.gatewayOverBareProxy.toFixed(2)}; SSE at 16 ${g.sseC16.gatewayOverBareProxy.toFixed(2)}`);
  console.log(`  by round (16 connections): ${g.byRound.map((x) => x.gatewayOverBareProxyC16.toFixed(2)).join(', ')}; server CPU per call, gateway ÷ bare proxy: ${g.c16.gatewayOverBareProxyCpu.toFixed(2)}`);
  console.log(`gateway p50 over the stand-in called directly: +${g.c1.gatewayAddedP50Ms.toFixed(2)} ms at 1 connection, +${g.c16.gatewayAddedP50Ms.toFixed(2)} ms at 16 (goal ≤ ${g.goals.gatewayAddedP50Ms} ms: ${meets(Math.max(g.c1.gatewayAddedP50Ms, g.c16.gatewayAddedP50Ms) <= g.goals.gatewayAddedP50Ms)}); bare proxy +${g.c1.bareProxyAddedP50Ms.toFixed(2)} / +${g.c16.bareProxyAddedP50Ms.toFixed(2)} ms`);
  console.log(`  by round (1 / 16 connections): ${g.byRound.map((x) => `+${x.gatewayAddedP50MsC1.toFixed(2)} / +${x.gatewayAddedP50MsC16.toFixed(2)}`).join(', ')} ms`);
  if (results.rotate) console.log(`keyring rotate: ${results.rotate.keysPerSecond.toFixed(0)} data keys/s at ${results.keys} keys`);
  console.log(`server RSS ${results.serverRssMb.toFixed(0)} MB after ${SETTLE_SECONDS} s idle (${results.serverRssAtEndOfLoadMb.toFixed(0)} MB at the end of the load, peak ${results.serverPeakRssMb.toFixed(0)} MB)`);
  console.log('written: bench/results/latest.json');
}

/**
 * A/B of one change: this checkout's build (A) and another checkout's (B) serve the same seeded database in turn,
 * the order swapped every round, so a slow spell of the shared machine falls on both. Each ratio is the median of the
 * rounds' own B ÷ A. This is how an optimisation earns its place (shared/BENCH.md, Rules).
 */
async function abMain() {
  const pkvB = path.join(path.resolve(opts.ab), 'dist/src/cli/pkv.js');
  if (!fs.existsSync(PKV) || !fs.existsSync(pkvB)) throw new Error(`build both checkouts first: ${PKV}, ${pkvB}`);
  const tdb = await freshDatabase();
  const env = {
    ...process.env,
    NODE_ENV: 'production',
    PKV_DATABASE_URL: tdb.url,
    PKV_DATA_DIR: tdb.dir,
    PKV_MASTER_KEYS: `1:${crypto.randomBytes(32).toString('base64')}`,
    PKV_JWT_SECRET: crypto.randomBytes(48).toString('base64url'),
    PKV_JWT_TTL: '1h',
    PKV_REVEAL_RATE_LIMIT: '100000',
    PKV_HOST: '127.0.0.1',
    PKV_PORT: '0',
  };
  const byVariant = { A: [], B: [] };
  let standIn;
  try {
    log(`seeding ${opts.keys} provider keys on ${tdb.kind} …`);
    const seeded = await seed(env, opts.keys);
    let tokens;
    let gateway;
    const standInKey = `sk-proj-${crypto.randomBytes(117).toString('base64url')}`;
    if (opts.only === 'gateway') standIn = await startProcess([path.join(__dirname, 'stand-in.js'), '0'], { ...process.env, PKV_BENCH_STANDIN_KEY: standInKey }, /stand-in listening on (http:\/\/\S+)/, '1');
    for (let r = 1; r <= opts.rounds; r++) {
      for (const variant of r % 2 ? ['A', 'B'] : ['B', 'A']) {
        log(`round ${r} of ${opts.rounds}: ${variant}`);
        const srv = await startProcess([variant === 'A' ? PKV : pkvB, 'serve'], env, /listening on (http:\/\/\S+)/);
        tokens ??= await signIn(srv.url);
        if (standIn) {
          // The gateway points only: JSON at 1 and 16 connections, SSE at 16, against the same stand-in and virtual key.
          gateway ??= await gatewaySetup(srv.url, tokens, seeded, standIn.url, standInKey);
          await load(srv.url, 16, Math.max(3, opts.warmup * 2), chat(GATEWAY_CHAT_PATH, gateway.virtualKey, false));
          const round = [];
          await chatPoints(round, 'gateway', 'gateway', srv.url, GATEWAY_CHAT_PATH, gateway.virtualKey, srv.pid, standIn.pid);
          byVariant[variant].push(round);
          await stop(srv.child);
          continue;
        }
        const reveal = (token) => ({ method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}', setupRequest: (req) => ({ ...req, path: `/api/v1/provider-keys/${pick(seeded.ids)}/reveal` }) });
        const list = { method: 'GET', path: `/api/v1/provider-keys?projectId=${seeded.projectId}&limit=50`, headers: { authorization: `Bearer ${tokens.admin}` } };
        await load(srv.url, 16, Math.max(3, opts.warmup * 2), reveal(tokens.owner));
        const round = [];
        for (const c of [1, 16]) round.push(await point('reveal (session)', srv.url, c, reveal(tokens.owner), srv.pid));
        for (const c of [1, 16]) round.push(await point('reveal (API token)', srv.url, c, reveal(tokens.api), srv.pid));
        round.push(await point('list 50', srv.url, 16, list, srv.pid));
        round.push(await point('create (paste)', srv.url, 16, createRequest(tokens.admin, seeded), srv.pid));
        byVariant[variant].push(round);
        await stop(srv.child);
      }
    }
  } finally {
    await stopAll();
    await tdb.drop().catch(() => undefined);
  }
  console.log(`\nA/B — ${tdb.kind}, ${opts.keys} keys, ${opts.duration} s per point, ${opts.rounds} round(s); A = ${ROOT}, B = ${path.resolve(opts.ab)}`);
  console.log('| point | conns | A req/s | B req/s | B ÷ A (median of rounds) | A CPU µs/req | B CPU µs/req | B ÷ A CPU/req | by round (req/s; CPU) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  byVariant.A[0].forEach((p, i) => {
    const a = byVariant.A.map((round) => round[i]);
    const b = byVariant.B.map((round) => round[i]);
    const ratios = a.map((x, k) => b[k].rps / x.rps);
    const cpuRatios = a.map((x, k) => b[k].cpuUsPerRequest / x.cpuUsPerRequest);
    console.log(`| ${p.name} | ${p.connections} | ${median(a.map((x) => x.rps)).toFixed(0)} | ${median(b.map((x) => x.rps)).toFixed(0)} | ${median(ratios).toFixed(2)} | ${median(a.map((x) => x.cpuUsPerRequest)).toFixed(0)} | ${median(b.map((x) => x.cpuUsPerRequest)).toFixed(0)} | ${median(cpuRatios).toFixed(2)} | ${ratios.map((x) => x.toFixed(2)).join(', ')}; ${cpuRatios.map((x) => x.toFixed(2)).join(', ')} |`);
  });
}

(opts.ab ? abMain() : main()).catch((err) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
