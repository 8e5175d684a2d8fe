// The production topology on one machine, as separate processes on loopback ports: a 3-node
// NATS JetStream cluster, PostgreSQL that only accepts TLS, the hexflow services (two of each),
// nginx with deploy/nginx/hexflow.conf in front over HTTPS, a test CA for all of it, and
// Socket.IO clients that watch imports through nginx. Used by topology.test.mjs.

import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import httpModule from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// ---------------------------------------------------------------------------------------------
// Programs

export function hexflowBinary() {
  if (process.env.HEXFLOW_BIN) return process.env.HEXFLOW_BIN;
  const ci = '/var/cache/hexflow/ci-target/debug/hexflow';
  const local = path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug', 'hexflow');
  return fs.existsSync(local) || !fs.existsSync(ci) ? local : ci;
}

/** The current nats-server (2.10+, clustering with JetStream) that scripts/setup.sh installs. */
export function natsServerBinary() {
  if (process.env.HEXFLOW_NATS_SERVER) return process.env.HEXFLOW_NATS_SERVER;
  const tools = process.env.HEXFLOW_TOOLS_DIR || path.join(os.homedir(), '.cache/hexflow/tools');
  const pointer = path.join(tools, 'nats-server-current');
  if (!fs.existsSync(pointer)) throw new Error(`${pointer} is missing: run scripts/setup.sh --browser (or set HEXFLOW_NATS_SERVER)`);
  return fs.readFileSync(pointer, 'utf8').trim();
}

const PG_BIN = process.env.HEXFLOW_PG_BIN || '/usr/lib/postgresql/15/bin';
const NGINX = process.env.HEXFLOW_NGINX || '/usr/sbin/nginx';

// ---------------------------------------------------------------------------------------------
// Small helpers

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `promise`, or `onTimeout()` after `ms`; the timer never outlives the race. */
export async function within(promise, ms, onTimeout) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => { try { resolve(onTimeout()); } catch (e) { reject(e); } }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check()` every `every` ms until it returns something truthy; throws after `ms`. */
export async function until(check, ms, what, every = 100) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
      if (e?.fatal) throw e;
    }
    await sleep(every);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last?.stack ?? JSON.stringify(last)})`);
}

/** An error that stops `until` at once (a process it waits on has died). */
export function fatal(message) {
  const e = new Error(message);
  e.fatal = true;
  return e;
}

const takenPorts = new Set();
/** A free loopback port, never the same twice in this process. */
export async function freePort() {
  for (;;) {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address();
    server.close();
    await once(server, 'close');
    if (!takenPorts.has(port)) {
      takenPorts.add(port);
      return port;
    }
  }
}

/** GET (or other method) over http(s); resolves {status, headers, body} and never throws on status. */
export function request(url, { ca, method = 'GET', headers = {}, body, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : (u.protocol === 'http:' ? httpModule : null);
    const req = mod.request(u, { method, headers, ca, timeout, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out after ${timeout} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs a command to completion; returns stdout, throws with stderr on failure. */
export function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000, ...opts });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.status ?? e.signal}): ${e.stderr || e.message}`);
  }
}

/** An HS256 JWT for `claims`, as an identity provider would issue it. */
export function jwt(secret, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const signed = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${signed}.${crypto.createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

// ---------------------------------------------------------------------------------------------
// Processes

const running = new Set();

/** A child process whose output goes to a log file; can be killed and started again as it was. */
export class Proc {
  constructor(name, cmd, args, { env = process.env, cwd = root, logDir, detached = false } = {}) {
    Object.assign(this, { name, cmd, args, env, cwd, detached });
    this.log = path.join(logDir, `${name}.log`);
    this.child = null;
    this.starts = 0;
    this.logOffset = 0;
  }

  start() {
    if (this.alive) throw new Error(`${this.name} is already running`);
    this.logOffset = fs.existsSync(this.log) ? fs.statSync(this.log).size : 0;
    const out = fs.openSync(this.log, 'a');
    fs.writeSync(out, `\n==== ${new Date().toISOString()} start #${++this.starts}: ${this.cmd} ${this.args.join(' ')}\n`);
    this.child = spawn(this.cmd, this.args, { env: this.env, cwd: this.cwd, stdio: ['ignore', out, out], detached: this.detached });
    fs.closeSync(out);
    const child = this.child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.once('error', (e) => fs.appendFileSync(this.log, `spawn error: ${e.stack}\n`));
    running.add(this);
    this.exited.then(() => running.delete(this));
    return this;
  }

  get alive() {
    return this.child != null && this.child.exitCode == null && this.child.signalCode == null;
  }

  get pid() {
    return this.child?.pid;
  }

  /** Sends `signal` (to the process group when detached) and waits for the exit. */
  async kill(signal = 'SIGKILL', waitMs = 10000) {
    if (!this.alive) return;
    try {
      if (this.detached) process.kill(-this.child.pid, signal);
      else this.child.kill(signal);
    } catch { /* already gone */ }
    const exited = await within(this.exited, waitMs, () => null);
    if (!exited && signal !== 'SIGKILL') return this.kill('SIGKILL', waitMs);
    return exited;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10000) {
    return this.kill('SIGTERM', graceMs);
  }

  /** The log written since the last start. */
  recentLog() {
    if (!fs.existsSync(this.log)) return '';
    const fd = fs.openSync(this.log, 'r');
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - this.logOffset));
    fs.readSync(fd, buf, 0, buf.length, this.logOffset);
    fs.closeSync(fd);
    return buf.toString('utf8');
  }
}

/** Kills every process started through `Proc` that still runs (SIGTERM, then SIGKILL). */
export async function killAll() {
  await Promise.all([...running].map((p) => p.kill('SIGTERM', 5000).catch(() => {})));
  for (const p of running) {
    try { p.child.kill('SIGKILL'); } catch { /* gone */ }
  }
}

// Last resort when the test process itself is torn down (an uncaught error, the runner's
// SIGTERM on a timeout, Ctrl-C): nothing started here outlives it.
function killAllNow() {
  for (const p of running) {
    try {
      if (p.detached) process.kill(-p.child.pid, 'SIGKILL');
      else p.child.kill('SIGKILL');
    } catch { /* gone */ }
  }
}
process.once('exit', killAllNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAllNow();
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
  });
}

// ---------------------------------------------------------------------------------------------
// Certificates: one CA, one server certificate for 127.0.0.1 and localhost used by every server.

export function makeCerts(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const f = (n) => path.join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2',
    '-subj', '/CN=hexflow topology test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(f('server.ext'), [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '',
  ].join('\n'));
  run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.pem'), '-days', '2', '-extfile', f('server.ext')]);
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), caPem: fs.readFileSync(f('ca.pem')) };
}

// ---------------------------------------------------------------------------------------------
// NATS: three JetStream nodes routed to each other.

export class NatsCluster {
  static async start(dir, logDir, size = 3) {
    const binary = natsServerBinary();
    const nodes = [];
    for (let i = 1; i <= size; i++) {
      nodes.push({ name: `nats-${i}`, port: await freePort(), clusterPort: await freePort(), monitorPort: await freePort(), storeDir: path.join(dir, `nats-${i}`) });
    }
    for (const node of nodes) {
      fs.mkdirSync(node.storeDir, { recursive: true });
      const routes = nodes.filter((n) => n !== node).map((n) => `nats://127.0.0.1:${n.clusterPort}`).join(',');
      node.proc = new Proc(node.name, binary, [
        '--name', node.name, '--addr', '127.0.0.1', '--port', String(node.port), '--http_port', String(node.monitorPort),
        '--jetstream', '--store_dir', node.storeDir,
        '--cluster_name', 'hexflow', '--cluster', `nats://127.0.0.1:${node.clusterPort}`, '--routes', routes,
      ], { logDir });
      node.proc.start();
    }
    const cluster = new NatsCluster(nodes);
    await cluster.waitHealthy(30000);
    return cluster;
  }

  constructor(nodes) {
    this.nodes = nodes;
  }

  /** NATS_URL for the services: every node, comma-separated. */
  get url() {
    return this.nodes.map((n) => `nats://127.0.0.1:${n.port}`).join(',');
  }

  node(name) {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no NATS node named ${name}`);
    return n;
  }

  async monitor(node, pathAndQuery) {
    const r = await request(`http://127.0.0.1:${node.monitorPort}${pathAndQuery}`, { timeout: 2000 });
    return { status: r.status, json: JSON.parse(r.body) };
  }

  /** Every running node answers /healthz ok (JetStream current) and the meta group has a leader. */
  async waitHealthy(ms) {
    await until(async () => {
      for (const node of this.nodes) {
        if (!node.proc.alive) throw fatal(`${node.name} exited; see ${node.proc.log}`);
        const h = await this.monitor(node, '/healthz');
        if (h.status !== 200) return false;
        const jsz = await this.monitor(node, '/jsz');
        if (!jsz.json.meta_cluster?.leader || jsz.json.meta_cluster.cluster_size !== this.nodes.length) return false;
      }
      return true;
    }, ms, 'the NATS cluster to be healthy');
  }

  /** The server name leading `stream`, asked of any live node. */
  async streamLeader(stream) {
    for (const node of this.nodes.filter((n) => n.proc.alive)) {
      try {
        const { json } = await this.monitor(node, '/jsz?accounts=true&streams=true');
        for (const account of json.account_details ?? []) {
          for (const s of account.stream_detail ?? []) {
            if (s.name === stream && s.cluster?.leader) return s.cluster.leader;
          }
        }
      } catch { /* try the next node */ }
    }
    return null;
  }

  /** The leader of every stream, as {stream: server name}, asked of any live node. */
  async leaders() {
    for (const node of this.nodes.filter((n) => n.proc.alive)) {
      try {
        const { json } = await this.monitor(node, '/jsz?accounts=true&streams=true');
        const out = {};
        for (const account of json.account_details ?? []) {
          for (const s of account.stream_detail ?? []) out[s.name] = s.cluster?.leader ?? null;
        }
        return out;
      } catch { /* try the next node */ }
    }
    return {};
  }

  /** Details of `stream` as a node sees it (cluster leader, replicas and their lag). */
  async streamInfo(node, stream) {
    const { json } = await this.monitor(node, '/jsz?accounts=true&streams=true&consumers=true&config=true');
    for (const account of json.account_details ?? []) {
      for (const s of account.stream_detail ?? []) if (s.name === stream) return s;
    }
    return null;
  }

  /**
   * Waits until `node` is back and current: its /healthz is ok (which fails while any of its
   * stream replicas is behind), and the leader of `stream` reports its replica current.
   */
  async waitCaughtUp(node, stream, ms) {
    await until(async () => {
      if (!node.proc.alive) throw fatal(`${node.name} exited; see ${node.proc.log}`);
      if ((await this.monitor(node, '/healthz')).status !== 200) return false;
      const leaderName = await this.streamLeader(stream);
      if (!leaderName) return false;
      if (leaderName === node.name) return true;
      const s = await this.streamInfo(this.node(leaderName), stream);
      const replica = (s?.cluster?.replicas ?? []).find((r) => r.name === node.name);
      return replica && replica.current && !replica.offline;
    }, ms, `${node.name} to catch up on ${stream}`);
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL that accepts TLS connections only (hostssl lines alone in pg_hba.conf).

export class Postgres {
  static async start(dir, logDir, certs) {
    const uid = Number(run('id', ['-u', 'postgres']).trim());
    const gid = Number(run('id', ['-g', 'postgres']).trim());
    const pgDir = path.join(dir, 'pg');
    const data = path.join(pgDir, 'data');
    fs.mkdirSync(pgDir, { recursive: true });
    fs.chownSync(pgDir, uid, gid);
    run('runuser', ['-u', 'postgres', '--', path.join(PG_BIN, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust',
      '-E', 'UTF8', '--locale=C', '--no-sync'], { cwd: pgDir });
    // The server's key must belong to the server's user and be readable by nobody else.
    const cert = path.join(pgDir, 'server.pem');
    const key = path.join(pgDir, 'server.key');
    fs.copyFileSync(certs.cert, cert);
    fs.copyFileSync(certs.key, key);
    for (const f of [cert, key]) fs.chownSync(f, uid, gid);
    fs.chmodSync(key, 0o600);
    fs.writeFileSync(path.join(data, 'pg_hba.conf'), [
      '# TLS only: no "local" and no "host" lines, so a plaintext connection is refused.',
      'hostssl all all 127.0.0.1/32 trust',
      '',
    ].join('\n'));
    const pg = new Postgres();
    pg.port = await freePort();
    pg.ca = certs.ca;
    pg.proc = new Proc('postgres', 'setpriv', [
      '--reuid', String(uid), '--regid', String(gid), '--init-groups',
      path.join(PG_BIN, 'postgres'), '-D', data,
      '-c', 'listen_addresses=127.0.0.1', '-c', `port=${pg.port}`, '-c', `unix_socket_directories=${pgDir}`,
      '-c', 'ssl=on', '-c', `ssl_cert_file=${cert}`, '-c', `ssl_key_file=${key}`, '-c', 'ssl_min_protocol_version=TLSv1.2',
      '-c', 'max_connections=200', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
      '-c', 'shared_buffers=256MB', '-c', 'max_wal_size=4GB', '-c', 'log_min_messages=warning',
    ], { logDir, cwd: pgDir, detached: true });
    pg.proc.start();
    await until(async () => {
      if (!pg.proc.alive) throw fatal(`postgres exited; see ${pg.proc.log}`);
      return pg.psql('postgres', 'SELECT 1').trim() === '1';
    }, 30000, 'PostgreSQL to accept TLS connections');
    return pg;
  }

  /** A libpq connection string that verifies the server against the test CA. */
  conninfo(db, sslmode = 'verify-full') {
    return `host=127.0.0.1 port=${this.port} user=postgres dbname=${db} sslmode=${sslmode} sslrootcert=${this.ca} connect_timeout=5`;
  }

  /** DATABASE_URL for the services. */
  url(db) {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}?sslmode=verify-full&sslrootcert=${encodeURIComponent(this.ca)}`;
  }

  /** Runs SQL through psql over verified TLS; returns unaligned, tuples-only output. */
  psql(db, sql, sslmode = 'verify-full') {
    return run(path.join(PG_BIN, 'psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-d', this.conninfo(db, sslmode), '-c', sql],
      { env: { ...process.env, PGSSLMODE: '', PGCONNECT_TIMEOUT: '5' } });
  }
}

// ---------------------------------------------------------------------------------------------
// nginx with the repository's deploy/nginx/hexflow.conf, verbatim.

export class Nginx {
  /**
   * Writes PREFIX/conf/nginx.conf (a minimal main file that includes the repository's
   * hexflow.conf) and the four small site files hexflow.conf includes from PREFIX/conf/hexflow/,
   * then starts nginx in the foreground.
   */
  static async start(dir, logDir, { certs, upload, realtime, httpsPort, httpPort }) {
    const prefix = path.join(dir, 'nginx');
    const conf = path.join(prefix, 'conf');
    const site = path.join(conf, 'hexflow');
    for (const d of [site, path.join(prefix, 'logs'), path.join(prefix, 'tmp')]) fs.mkdirSync(d, { recursive: true });
    const ng = new Nginx();
    ng.httpsPort = httpsPort ?? await freePort();
    ng.httpPort = httpPort ?? await freePort();
    ng.prefix = prefix;
    ng.ca = certs.ca;
    ng.caPem = certs.caPem;
    const servers = (addrs) => addrs.map((a) => `server ${a};`).join('\n') + '\n';
    fs.writeFileSync(path.join(site, 'upload-servers.conf'), servers(upload));
    fs.writeFileSync(path.join(site, 'realtime-servers.conf'), servers(realtime));
    fs.writeFileSync(path.join(site, 'https.conf'), [
      `listen 127.0.0.1:${ng.httpsPort} ssl;`,
      'server_name 127.0.0.1 localhost;',
      `ssl_certificate ${certs.cert};`,
      `ssl_certificate_key ${certs.key};`,
      '',
    ].join('\n'));
    fs.writeFileSync(path.join(site, 'http.conf'), [`listen 127.0.0.1:${ng.httpPort};`, 'server_name 127.0.0.1 localhost;', ''].join('\n'));
    const tmp = (n) => path.join(prefix, 'tmp', n);
    fs.writeFileSync(path.join(conf, 'nginx.conf'), [
      'daemon off;',
      'worker_processes 2;',
      `pid ${path.join(prefix, 'nginx.pid')};`,
      `error_log ${path.join(prefix, 'logs', 'error.log')} info;`,
      'events { worker_connections 4096; }',
      'http {',
      '  log_format upstream \'$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time upstream=$upstream_addr $upstream_status\';',
      `  access_log ${path.join(prefix, 'logs', 'access.log')} upstream;`,
      `  client_body_temp_path ${tmp('body')};`,
      `  proxy_temp_path ${tmp('proxy')};`,
      `  fastcgi_temp_path ${tmp('fastcgi')};`,
      `  uwsgi_temp_path ${tmp('uwsgi')};`,
      `  scgi_temp_path ${tmp('scgi')};`,
      `  include ${path.join(root, 'deploy/nginx/hexflow.conf')};`,
      '}',
      '',
    ].join('\n'));
    fs.chmodSync(prefix, 0o755);
    run(NGINX, ['-t', '-p', prefix, '-c', 'conf/nginx.conf']);
    ng.proc = new Proc('nginx', NGINX, ['-p', prefix, '-c', 'conf/nginx.conf'], { logDir });
    ng.proc.start();
    await until(async () => {
      if (!ng.proc.alive) throw fatal(`nginx exited; see ${ng.proc.log} and ${prefix}/logs/error.log`);
      const r = await request(`${ng.origin}/`, { ca: ng.caPem, timeout: 2000 });
      return r.status === 200;
    }, 20000, 'nginx to serve the page over HTTPS');
    return ng;
  }

  get origin() {
    return `https://127.0.0.1:${this.httpsPort}`;
  }

  get(pathAndQuery, headers = {}) {
    return request(`${this.origin}${pathAndQuery}`, { ca: this.caPem, headers });
  }

  errorLog() {
    const f = path.join(this.prefix, 'logs', 'error.log');
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '';
  }
}

// ---------------------------------------------------------------------------------------------
// hexflow services

export class Service {
  /**
   * `hexflow <kind>` with its public listener (when it has one) and its ops listener on free
   * ports, which stay the same across restarts.
   */
  static async create(kind, name, env, logDir) {
    const s = new Service();
    s.kind = kind;
    s.name = name;
    s.opsPort = await freePort();
    s.port = kind === 'import-worker' ? null : await freePort();
    const own = { HEXFLOW_OPS_LISTEN: `127.0.0.1:${s.opsPort}` };
    if (kind === 'upload-gateway') own.HEXFLOW_LISTEN = `127.0.0.1:${s.port}`;
    if (kind === 'realtime-gateway') own.HEXFLOW_REALTIME_LISTEN = `127.0.0.1:${s.port}`;
    const full = { ...process.env, ...env, ...own };
    delete full.RUST_LOG;
    s.proc = new Proc(name, hexflowBinary(), [kind], { env: full, logDir });
    return s;
  }

  get addr() {
    return `127.0.0.1:${this.port}`;
  }

  start() {
    this.proc.start();
    return this;
  }

  async readyz() {
    return request(`http://127.0.0.1:${this.opsPort}/readyz`, { timeout: 2000 });
  }

  /**
   * Waits for /readyz on the ops port. With `restarts`, a process that exits meanwhile is started
   * again (at most that many times), as an orchestrator would; `this.crashes` keeps why.
   */
  async waitReady(ms = 60000, { restarts = 0 } = {}) {
    this.crashes ??= [];
    await until(async () => {
      if (!this.proc.alive) {
        const lines = stripAnsi(this.proc.recentLog()).split('\n');
        const panic = lines.findIndex((l) => l.includes(' panicked at '));
        const why = lines.find((l) => l.startsWith('Error: '))
          ?? (panic >= 0 ? lines.slice(panic, panic + 2).join(' ') : tail(lines.join('\n'), 3));
        if (restarts-- <= 0) throw fatal(`${this.name} exited; see ${this.proc.log}:\n${why}`);
        this.crashes.push(why);
        this.proc.start();
        return false;
      }
      const r = await this.readyz();
      return r.status === 200;
    }, ms, `${this.name} /readyz on its ops port ${this.opsPort}`);
  }

  async metrics() {
    return (await request(`http://127.0.0.1:${this.opsPort}/metrics`, { timeout: 2000 })).body;
  }
}

export function stripAnsi(text) {
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}

export function tail(text, lines) {
  return text.split('\n').slice(-lines).join('\n');
}

// ---------------------------------------------------------------------------------------------
// The CLI

/**
 * `hexflow import FILE --server https://... --ca-cert CA` in the background. `queued` resolves
 * to the import id once the CLI prints it; `done` to {code, stdout, stderr} when it exits.
 */
export function cliImport(file, { server, ca, token, scanDate, logDir, name }) {
  const args = ['import', file, '--server', server, '--ca-cert', ca, '--scan-date', scanDate];
  if (token) args.push('--token', token);
  const env = { ...process.env };
  delete env.HEXFLOW_SERVER; delete env.HEXFLOW_TOKEN; delete env.HEXFLOW_CA_CERT;
  const child = spawn(hexflowBinary(), args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const log = fs.createWriteStream(path.join(logDir, `${name}.log`));
  let resolveQueued;
  let rejectQueued;
  const queued = new Promise((res, rej) => { resolveQueued = res; rejectQueued = rej; });
  child.stdout.on('data', (c) => { stdout += c; log.write(c); });
  child.stderr.on('data', (c) => {
    stderr += c;
    log.write(c);
    const m = /Queued as ([0-9a-f-]{36})/.exec(stderr);
    if (m) resolveQueued(m[1]);
  });
  const done = new Promise((resolve) => child.once('exit', (code, signal) => {
    log.end();
    rejectQueued(new Error(`hexflow import exited (${code ?? signal}) before queueing:\n${stderr}\n${stdout}`));
    resolve({ code, signal, stdout, stderr });
  }));
  const handle = { child, detached: false, kill: async () => { child.kill('SIGKILL'); } };
  running.add(handle);
  done.then(() => running.delete(handle));
  return { child, queued, done };
}

// ---------------------------------------------------------------------------------------------
// Socket.IO watchers

const TERMINAL = new Set(['progress-complete', 'progress-error', 'progress-cancelled']);
const PROGRESS = new Set(['progress-status', 'progress-update', ...TERMINAL]);

/**
 * A socket.io-client connected through nginx with one transport, that joins `sessionId` on
 * every (re)connect, as the browser page does, and keeps what a client shows: events whose
 * `seq` is above the last one shown (docs/events.md, "Ordering guarantees").
 */
export class Watcher {
  constructor(name, { origin, caPem, token, transport }) {
    this.name = name;
    this.raw = [];       // every event: {event, data, t}
    this.shown = [];     // progress events kept after the seq rule
    this.lastSeq = -1;
    this.joined = new Set();
    this.connects = [];
    this.errors = [];
    this.socket = io(origin, {
      transports: [transport],
      upgrade: false,
      ca: caPem,
      auth: { token },
      extraHeaders: { Origin: origin },
      reconnectionDelay: 100,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0,
      timeout: 5000,
      forceNew: true,
    });
    this.socket.on('connect', () => {
      this.connects.push({ t: Date.now(), transport: this.socket.io.engine.transport.name });
      this.record('connect', { id: this.socket.id });
      for (const id of this.joined) this.join(id).catch((e) => this.errors.push(String(e?.message ?? e)));
    });
    this.socket.on('connect_error', (err) => this.record('connect_error', { message: err.message }));
    this.socket.on('disconnect', (reason) => {
      this.record('disconnect', { reason });
      if (reason === 'io server disconnect') this.socket.connect();
    });
    this.socket.onAny((event, data) => this.onEvent(event, data));
  }

  record(event, data) {
    const e = { event, data, t: Date.now() };
    this.raw.push(e);
    return e;
  }

  onEvent(event, data) {
    const e = this.record(event, data);
    if (PROGRESS.has(event) && typeof data?.seq === 'number' && data.seq > this.lastSeq) {
      this.lastSeq = data.seq;
      this.shown.push(e);
    }
  }

  async connected(ms = 15000) {
    await until(() => this.socket.connected, ms, `${this.name} to connect`, 25);
  }

  /**
   * Joins the import's room, now if connected and again on every reconnect. Resolves with the
   * first successful ack; a disconnect while waiting, or UNAVAILABLE, is retried until `ms`.
   */
  async join(sessionId, ms = 30000) {
    this.joined.add(sessionId);
    return until(async () => {
      if (!this.socket.connected) return false;
      let answer;
      try {
        answer = await this.socket.timeout(5000).emitWithAck('join-progress', { sessionId });
      } catch (e) {
        this.record('ack:join-progress', { ok: false, error: { code: 'CLIENT', message: String(e?.message ?? e) } });
        return false;
      }
      this.record('ack:join-progress', answer);
      if (answer?.ok) return answer;
      if (answer?.error?.code === 'UNAVAILABLE') return false;
      throw fatal(`${this.name}: join-progress refused: ${JSON.stringify(answer)}`);
    }, ms, `${this.name} to join ${sessionId}`, 100);
  }

  /** The latest progress event shown. */
  get last() {
    return this.shown.at(-1)?.data ?? null;
  }

  /** Shown progress events received after `t`. */
  shownAfter(t) {
    return this.shown.filter((e) => e.t > t);
  }

  /** Terminal outcomes shown (after the seq rule): a status of completed, error or cancelled. */
  terminalsShown() {
    return this.shown.filter((e) => ['completed', 'error', 'cancelled'].includes(e.data?.status));
  }

  /** Raw terminal events (`progress-complete`, `-error`, `-cancelled`) as received. */
  terminalEvents() {
    return this.raw.filter((e) => TERMINAL.has(e.event));
  }

  close() {
    this.socket.disconnect();
    this.socket.io.engine?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Scan files

/**
 * Writes a Nessus-style export of `rows` data rows to `file`: the header and row shape of
 * tests/src/files.rs `write_nessus_file` (many hosts and plugins, multi-line quoted
 * descriptions and outputs, one row per CVE for some plugins).
 */
export function writeNessusFile(file, rows) {
  const fd = fs.openSync(file, 'w');
  let chunk = 'Plugin ID,CVE,CVSS,Risk,Host,Protocol,Port,Name,Synopsis,Description,Solution,See Also,Plugin Output\n';
  const filler = 'The remote host is affected by a vulnerability, which may allow an attacker to ""escalate"" privileges.\n';
  const risks = ['Low', 'Medium', 'High', 'Critical'];
  let written = 0;
  let bytes = 0;
  for (let i = 0; written < rows; i++) {
    const host = `10.${Math.floor(i / 65536) % 256}.${Math.floor(i / 256) % 256}.${(i % 256) % 250 + 1}`;
    const plugin = 10000 + ((i * 7919) % 3000);
    const cves = (plugin % 3) + 1;
    for (let c = 0; c < cves && written < rows; c++) {
      const port = (plugin % 1000) + 1;
      chunk += `${plugin},CVE-20${String(10 + c).padStart(2, '0')}-${String(plugin % 99991).padStart(5, '0')},${plugin % 10}.${plugin % 10},`
        + `${risks[plugin % 4]},${host},tcp,${port},"Plugin ${plugin} name, with comma","Synopsis of ${plugin}",`
        + `"${filler.repeat(3 + (plugin % 4))}","Apply the patch for ${plugin}.",https://example.com/${plugin},`
        + `"Output line one for ${host}\nPort ${port} is open\n${'x'.repeat(40 + (i % 200))}"\n`;
      written++;
      if (chunk.length > 1 << 20) { bytes += fs.writeSync(fd, chunk); chunk = ''; }
    }
  }
  bytes += fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  return { rows: written, bytes };
}
