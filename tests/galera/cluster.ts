import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';

/**
 * A MariaDB Galera cluster on 127.0.0.1 from Debian's packages (mariadb-server, galera-4, rsync), for the cluster
 * test: its own ports (SQL 3311…, group communication 4571/4581/4591 with IST and SST on the next two ports), data
 * under one temp dir, the first node bootstrapping the cluster and the others joining it by rsync SST. mariadbd is
 * started by root but runs as Debian's `mysql` user: as root, rsync SST's daemon drops to `nobody` and cannot write
 * the joiner's data dir.
 */

export const GALERA_PROVIDER = '/usr/lib/galera/libgalera_smm.so';
const MARIADBD = '/usr/sbin/mariadbd';
const SQL_BASE = 3310;
const GCOMM_BASE = 4561;

export interface GaleraNode {
  index: number;
  sqlPort: number;
  gcommPort: number;
  /** mysql:// URL of a database on this node. */
  url(database: string): string;
  running(): boolean;
  /** SIGKILL: the node disappears as in a crash (no clean leave). */
  kill(): Promise<void>;
  /** Starts the node again (joins the running cluster; IST when its gcache covers the gap, else SST). */
  start(): Promise<void>;
  /** wsrep_local_state_comment, or undefined when the node does not answer. */
  state(): Promise<string | undefined>;
  log(): string;
}

export interface GaleraCluster {
  dir: string;
  nodes: GaleraNode[];
  /** Resolves once every listed node is Synced (each running), or throws after timeoutMs. */
  waitSynced(nodes?: GaleraNode[], timeoutMs?: number): Promise<void>;
  /** A query on one node (a fresh connection), with causal reads so it sees every write committed in the cluster. */
  query<T = Array<Record<string, unknown>>>(node: GaleraNode, sql: string, params?: unknown[], database?: string): Promise<T>;
  stop(): Promise<void>;
}

/** Why this machine cannot run the cluster, or undefined when it can. */
export function missingPrerequisites(): string | undefined {
  if (process.getuid?.() !== 0) return 'the Galera cluster test runs as root (it starts mariadbd as the mysql user)';
  for (const f of [MARIADBD, GALERA_PROVIDER, '/usr/bin/rsync', '/usr/bin/mariadb-install-db', '/usr/bin/wsrep_sst_rsync']) {
    if (!fs.existsSync(f)) return `${f} is missing: apt-get install -y mariadb-server galera-4 rsync`;
  }
  try {
    execFileSync('id', ['mysql'], { stdio: 'ignore' });
  } catch {
    return 'the mysql user is missing (it comes with mariadb-server)';
  }
  return undefined;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export async function startGaleraCluster(size = 3, opts: { log?: (line: string) => void } = {}): Promise<GaleraCluster> {
  const say = opts.log ?? (() => undefined);
  const ports = Array.from({ length: size }, (_, i) => [SQL_BASE + i + 1, GCOMM_BASE + 10 * (i + 1), GCOMM_BASE + 10 * (i + 1) + 1, GCOMM_BASE + 10 * (i + 1) + 2]).flat();
  for (const p of ports) if (!(await portFree(p))) throw new Error(`port ${p} on 127.0.0.1 is taken: is another Galera test cluster still running?`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-galera-'));
  const gcomm = Array.from({ length: size }, (_, i) => `127.0.0.1:${GCOMM_BASE + 10 * (i + 1)}`).join(',');
  const nodes: GaleraNode[] = [];
  const procs: Array<ChildProcess | undefined> = [];

  for (let i = 1; i <= size; i++) {
    const home = path.join(dir, `n${i}`);
    const data = path.join(home, 'data');
    fs.mkdirSync(data, { recursive: true });
    const g = GCOMM_BASE + 10 * i;
    const cnf = path.join(home, 'my.cnf');
    fs.writeFileSync(
      cnf,
      [
        '[mysqld]',
        `datadir=${data}`,
        `socket=${home}/mysqld.sock`,
        `pid-file=${home}/mysqld.pid`,
        `log-error=${home}/error.log`,
        `port=${SQL_BASE + i}`,
        'bind-address=127.0.0.1',
        'user=mysql',
        'skip-log-bin',
        // What Galera needs: row-based replication, InnoDB, interleaved auto-increment locks.
        'binlog_format=ROW',
        'default_storage_engine=InnoDB',
        'innodb_autoinc_lock_mode=2',
        'innodb_buffer_pool_size=64M',
        'innodb_log_file_size=32M',
        'max_connections=300',
        'character_set_server=utf8mb4',
        'collation_server=utf8mb4_unicode_ci',
        'wsrep_on=ON',
        `wsrep_provider=${GALERA_PROVIDER}`,
        'wsrep_cluster_name=pkv_galera_test',
        `wsrep_cluster_address=gcomm://${gcomm}`,
        `wsrep_node_address=127.0.0.1:${g}`,
        `wsrep_node_name=n${i}`,
        `wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:${g};ist.recv_addr=127.0.0.1:${g + 1};gcache.size=256M"`,
        'wsrep_sst_method=rsync',
        `wsrep_sst_receive_address=127.0.0.1:${g + 2}`,
        '',
      ].join('\n'),
    );
    const node: GaleraNode = {
      index: i,
      sqlPort: SQL_BASE + i,
      gcommPort: g,
      url: (database) => `mysql://root@127.0.0.1:${SQL_BASE + i}/${database}`,
      running: () => {
        const p = procs[i - 1];
        return !!p && p.exitCode === null && p.signalCode === null;
      },
      kill: async () => {
        const p = procs[i - 1];
        if (!p || p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise((resolve) => p.once('exit', resolve));
        p.kill('SIGKILL');
        await exited;
      },
      start: async () => spawnNode(i, false),
      state: async () => {
        try {
          const c = await mysql.createConnection({ host: '127.0.0.1', port: SQL_BASE + i, user: 'root', connectTimeout: 1000 });
          try {
            const [rows] = await c.query("SHOW STATUS LIKE 'wsrep_local_state_comment'");
            return (rows as Array<{ Value: string }>)[0]?.Value;
          } finally {
            await c.end().catch(() => undefined);
          }
        } catch {
          return undefined;
        }
      },
      log: () => {
        try {
          return fs.readFileSync(path.join(home, 'error.log'), 'utf8');
        } catch {
          return '';
        }
      },
    };
    nodes.push(node);
  }

  function spawnNode(i: number, bootstrap: boolean): void {
    const home = path.join(dir, `n${i}`);
    const args = [`--defaults-file=${path.join(home, 'my.cnf')}`, ...(bootstrap ? ['--wsrep-new-cluster'] : [])];
    const p = spawn(MARIADBD, args, { stdio: 'ignore', cwd: home });
    live.add(p);
    p.once('exit', () => live.delete(p));
    procs[i - 1] = p;
  }

  const waitSynced = async (which = nodes, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all(which.map((n) => n.state()));
      if (states.every((s) => s === 'Synced')) return;
      const dead = which.find((n) => !n.running());
      if (dead) throw new Error(`galera node n${dead.index} exited while joining:\n${dead.log().split('\n').filter((l) => /ERROR|WSREP_SST/.test(l)).slice(-20).join('\n')}`);
      if (Date.now() > deadline) throw new Error(`galera nodes not synced after ${timeoutMs} ms: ${states.join(', ')}`);
      await sleep(200);
    }
  };

  const stop = async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    // mariadbd runs as mysql: it must reach its files under the temp dir.
    fs.chmodSync(dir, 0o755);
    execFileSync('chown', ['-R', 'mysql:mysql', dir]);
    const started = Date.now();
    execFileSync('mariadb-install-db', [`--defaults-file=${path.join(dir, 'n1', 'my.cnf')}`, '--auth-root-authentication-method=normal', '--skip-test-db'], { stdio: 'pipe' });
    spawnNode(1, true);
    await waitSynced([nodes[0]]);
    say(`galera: n1 bootstrapped in ${Date.now() - started} ms`);
    // One joiner at a time: two SSTs asked for at once can leave one joiner waiting for a donor.
    for (const n of nodes.slice(1)) {
      const t = Date.now();
      spawnNode(n.index, false);
      await waitSynced([n]);
      say(`galera: n${n.index} joined by SST in ${Date.now() - t} ms`);
    }
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  const query = async <T>(node: GaleraNode, sql: string, params: unknown[] = [], database?: string): Promise<T> => {
    const c = await mysql.createConnection({ host: '127.0.0.1', port: node.sqlPort, user: 'root', database, supportBigNumbers: true });
    try {
      await c.query('SET SESSION wsrep_sync_wait = 1');
      const [rows] = await c.query(sql, params);
      return rows as T;
    } finally {
      await c.end().catch(() => undefined);
    }
  };

  return { dir, nodes, waitSynced, query, stop };
}
