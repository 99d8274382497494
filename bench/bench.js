#!/usr/bin/env node
'use strict';
// npm run bench [-- --keys 100000 --duration 5 --rounds 3 --profile]
// Starts the real server (pinned to core 0) on a fresh database, seeds N provider keys, drives it with autocannon
// from this process (pinned to core 1), measures the bare-HTTP and in-process baselines in the same run (baselines
// and product alternating, round by round; figures are medians over rounds), and writes bench/results/latest.json.
// SQLite by default; MariaDB/MySQL when PKV_BENCH_MYSQL_URL is set.
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
  .parse(process.argv)
  .opts();
for (const [name, v] of Object.entries({ keys: opts.keys, duration: opts.duration, rounds: opts.rounds })) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`bench: --${name} must be a whole number ≥ 1`);
    process.exit(2);
  }
}

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
  const { openDatabase } = require(path.join(DIST, 'src/db/database'));
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
  const fpKey = await c.keyring.systemKey(db, 'fingerprint');
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
      const s = c.envelope.seal({ keyId: id, ownerId: owner.id, projectId }, Buffer.from(secret));
      const fp = crypto.createHmac('sha256', fpKey).update(secret).digest('hex');
      values.push([id, `key ${done + i}`, 'openai', hintFor('openai', secret), 'active', owner.id, projectId, null, admin.id, now, now, 0, 1, s.kekVersion, s.wrappedDek, s.dekIv, s.dekTag, s.secretCiphertext, s.secretIv, s.secretTag, fp]);
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

function startProcess(args, env, readyPattern) {
  const cmd = pinned ? 'taskset' : process.execPath;
  const argv = pinned ? ['-c', '0', process.execPath, ...args] : args;
  const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
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
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.removeAllListeners('exit');
    child.on('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 15000).unref();
  });
}

function load(url, connections, seconds, request) {
  return new Promise((resolve, reject) => {
    autocannon({ url, connections, duration: seconds, requests: [request], pipelining: 1 }, (err, r) => (err ? reject(err) : resolve(r)));
  });
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
 * local MySQL/MariaDB server, that server's CPU per request too.
 */
async function point(name, url, connections, request, pid) {
  if (opts.warmup > 0) await load(url, connections, opts.warmup, request);
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const t0 = process.hrtime.bigint();
  const { result: r, dbCpuUsPerRequest } = await withDatabaseCpu(() => load(url, connections, opts.duration, request), (res) => res.requests.total);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = pid ? cpuSeconds(pid) - cpu0 : undefined;
  const non2xx = r.non2xx + r.errors + r.timeouts;
  const row = { name, connections, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, requests: r.requests.total, non2xx };
  if (cpu !== undefined) Object.assign(row, { cpuUsPerRequest: (cpu * 1e6) / Math.max(1, r.requests.total), serverBusy: cpu / wall });
  if (dbCpuUsPerRequest !== undefined) row.dbCpuUsPerRequest = dbCpuUsPerRequest;
  const cpuText =
    (cpu === undefined ? '' : `  cpu ${row.cpuUsPerRequest.toFixed(0).padStart(4)} µs/req, core ${(100 * row.serverBusy).toFixed(0).padStart(3)}% busy`) +
    (dbCpuUsPerRequest === undefined ? '' : `, db ${dbCpuUsPerRequest.toFixed(0).padStart(4)} µs/req`);
  log(`  ${name.padEnd(28)} c=${String(connections).padEnd(3)} ${row.rps.toFixed(0).padStart(6)} req/s  p50 ${String(row.p50).padStart(4)} ms  p99 ${String(row.p99).padStart(4)} ms${cpuText}${non2xx ? `  (${non2xx} non-2xx/errors!)` : ''}`);
  return row;
}

/** A list page's ids, field names and cursor (not the counters, which the reveal points change). */
const shapeOf = (page) => JSON.stringify({ ids: page.items.map((k) => k.id), fields: page.items.map((k) => Object.keys(k).join()), nextCursor: page.nextCursor });

const pick = (ids) => ids[(Math.random() * ids.length) | 0];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Session tokens for the owner and an admin, and an API token of the owner's (they outlive a server restart). */
async function signIn(url) {
  const post = async (p, body, token) => {
    const res = await fetch(`${url}/api/v1${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  const owner = (await post('/auth/login', { username: 'bench-owner', password: 'bench-owner-password' })).accessToken;
  const admin = (await post('/auth/login', { username: 'bench-admin', password: 'bench-admin-password' })).accessToken;
  const api = (await post('/api-tokens', { name: 'bench', scopes: ['provider-keys:reveal', 'provider-keys:read'] }, owner)).token;
  return { owner, admin, api };
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
    PKV_SCRYPT_COST: '14',
    PKV_HOST: '127.0.0.1',
    PKV_PORT: '0',
  };
  const results = { startedAt: new Date().toISOString(), database: tdb.kind, keys: opts.keys, durationSeconds: opts.duration, roundCount: opts.rounds, pinned, machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version }, points: [] };
  try {
    log(`seeding ${opts.keys} provider keys on ${tdb.kind} …`);
    const t0 = Date.now();
    const seeded = await seed(env, opts.keys);
    log(`  seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const baseReq = { method: 'POST', setupRequest: (req) => ({ ...req, path: `/reveal/${pick(seeded.ids)}` }) };
    const serverArgs = [...(opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.join(__dirname, 'results')}`] : []), PKV, 'serve'];
    const rounds = [];
    let tokens;
    let bareShape;
    for (let r = 1; r <= opts.rounds; r++) {
      // Baselines and product alternate, round by round, so that a slow spell of this shared machine falls on both.
      const round = [];
      rounds.push(round);
      log(`round ${r} of ${opts.rounds}: baselines`);
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

      log(`round ${r} of ${opts.rounds}: provider-key-vault`);
      const srv = await startProcess(serverArgs, env, /listening on (http:\/\/\S+)/);
      tokens ??= await signIn(srv.url);
      const reveal = (token) => ({ method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}', setupRequest: (req) => ({ ...req, path: `/api/v1/provider-keys/${pick(seeded.ids)}/reveal` }) });
      // Warm the server (JIT, caches, WAL) before the first measured point: whichever point ran first used to pay for it.
      await load(srv.url, 16, Math.max(3, opts.warmup * 2), reveal(tokens.owner));
      for (const c of [1, 16]) round.push({ group: 'reveal-session', ...(await point('reveal (session)', srv.url, c, reveal(tokens.owner), srv.pid)) });
      for (const c of [1, 16]) round.push({ group: 'reveal-api-token', ...(await point('reveal (API token)', srv.url, c, reveal(tokens.api), srv.pid)) });
      const list = { method: 'GET', path: `/api/v1/provider-keys?projectId=${seeded.projectId}&limit=50`, headers: { authorization: `Bearer ${tokens.admin}` } };
      if (r === 1) {
        // The bare list must answer the same page (ids, fields, cursor) as the product, or its figure means nothing.
        const productShape = shapeOf(await (await fetch(srv.url + list.path, { headers: list.headers })).json());
        if (productShape !== bareShape) throw new Error('the bare list and the product list answer different pages');
      }
      round.push({ group: 'list', ...(await point(`list 50 of ${opts.keys}`, srv.url, 16, list, srv.pid)) });
      const create = {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens.admin}`, 'content-type': 'application/json' },
        setupRequest: (req) => ({ ...req, path: '/api/v1/provider-keys', body: JSON.stringify({ ownerId: seeded.ownerId, projectId: seeded.projectId, name: 'bench paste', provider: 'openai', secret: `sk-paste-${crypto.randomBytes(24).toString('base64url')}` }) }),
      };
      round.push({ group: 'create', ...(await point('create (paste)', srv.url, 16, create, srv.pid)) });
      if (r === opts.rounds) {
        results.serverRssAtEndOfLoadMb = rssMb(srv.pid);
        await new Promise((resolve) => setTimeout(resolve, SETTLE_SECONDS * 1000));
        results.serverRssMb = rssMb(srv.pid);
        results.serverPeakRssMb = rssMb(srv.pid, 'VmHWM');
        log(`  server RSS: ${results.serverRssAtEndOfLoadMb.toFixed(0)} MB at the end of the load, ${results.serverRssMb.toFixed(0)} MB after ${SETTLE_SECONDS} s idle (peak ${results.serverPeakRssMb.toFixed(0)} MB)`);
      }
      await stop(srv.child);
    }
    results.rounds = rounds;
    // Each figure is the median over rounds; each ratio the median of the rounds' own ratios.
    results.points = rounds[0].map((p, i) => ({
      ...p,
      rps: median(rounds.map((round) => round[i].rps)),
      p50: median(rounds.map((round) => round[i].p50)),
      p99: median(rounds.map((round) => round[i].p99)),
      ...(p.cpuUsPerRequest === undefined ? {} : { cpuUsPerRequest: median(rounds.map((round) => round[i].cpuUsPerRequest)), serverBusy: median(rounds.map((round) => round[i].serverBusy)) }),
      ...(p.dbCpuUsPerRequest === undefined ? {} : { dbCpuUsPerRequest: median(rounds.map((round) => round[i].dbCpuUsPerRequest)) }),
      requests: rounds.reduce((n, round) => n + round[i].requests, 0),
      non2xx: rounds.reduce((n, round) => n + round[i].non2xx, 0),
    }));

    log('keyring rotate');
    const newKey = crypto.randomBytes(32).toString('base64');
    const out = execFileSync(process.execPath, [PKV, 'keyring', 'rotate'], { env: { ...env, PKV_MASTER_KEYS: `2:${newKey},1:${oldKey}` } }).toString();
    const m = /(\d+) data key\(s\).* in ([\d.]+) s/.exec(out);
    results.rotate = { keys: Number(m[1]), seconds: Number(m[2]), keysPerSecond: Number(m[1]) / Number(m[2]) };
    log(`  ${out.trim()}`);
  } finally {
    await tdb.drop().catch(() => undefined);
  }

  const rps = (round, g, c) => round.find((p) => p.group === g && (c === undefined || p.connections === c)).rps;
  const ratio = (f) => median(results.rounds.map(f));
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
  fs.mkdirSync(path.join(__dirname, 'results'), { recursive: true });
  fs.writeFileSync(path.join(__dirname, 'results', 'latest.json'), JSON.stringify(results, null, 2) + '\n');

  const r16 = results.ratios.c16;
  console.log(`\nprovider-key-vault bench — ${results.database}, ${results.keys} keys, ${opts.duration} s per point, median of ${opts.rounds} round(s), ${pinned ? 'server core 0 / load core 1' : 'unpinned'}`);
  console.log(`| point | conns | req/s | p50 ms | p99 ms | server CPU µs/req | server core busy |${DB_PID ? ' database CPU µs/req |' : ''}`);
  console.log(`|---|---|---|---|---|---|---|${DB_PID ? '---|' : ''}`);
  const cpuCells = (p) => (p.cpuUsPerRequest === undefined ? '| | ' : `| ${p.cpuUsPerRequest.toFixed(0)} | ${(100 * p.serverBusy).toFixed(0)}% `);
  const dbCell = (p) => (DB_PID ? `| ${p.dbCpuUsPerRequest === undefined ? '' : p.dbCpuUsPerRequest.toFixed(0)} ` : '');
  for (const p of results.points) console.log(`| ${p.name} | ${p.connections} | ${p.rps.toFixed(0)} | ${Number(p.p50).toFixed(1)} | ${Number(p.p99).toFixed(1)} ${cpuCells(p)}${dbCell(p)}|`);
  console.log(`\nheadline: reveal ÷ bare-HTTP baseline at 16 connections = ${r16.revealSessionOverBareHttp.toFixed(2)} (session), ${r16.revealApiTokenOverBareHttp.toFixed(2)} (API token); reveal ÷ in-process = ${r16.revealSessionOverInProcess.toFixed(2)}`);
  console.log(`  by round (session, 16 connections): ${results.ratiosByRound.map((x) => x.toFixed(2)).join(', ')}`);
  console.log(`at 1 connection: ${results.ratios.c1.revealSessionOverBareHttp.toFixed(2)} (session), ${results.ratios.c1.revealApiTokenOverBareHttp.toFixed(2)} (API token)`);
  console.log(`list ÷ bare list at 16 connections = ${results.ratios.list.toFixed(2)}`);
  console.log(`keyring rotate: ${results.rotate.keysPerSecond.toFixed(0)} data keys/s at ${results.keys} keys; server RSS ${results.serverRssMb.toFixed(0)} MB after ${SETTLE_SECONDS} s idle (${results.serverRssAtEndOfLoadMb.toFixed(0)} MB at the end of the load, peak ${results.serverPeakRssMb.toFixed(0)} MB)`);
  console.log('written: bench/results/latest.json');
}

main().catch((err) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
