// The production topology, on this machine, as separate processes: a 3-node NATS JetStream
// cluster, PostgreSQL that only accepts TLS, two of each hexflow service, nginx with the
// repository's deploy/nginx/hexflow.conf in front over HTTPS. Imports are uploaded with
// `hexflow import --server https://... --ca-cert` and watched through nginx by a websocket-only
// and a polling-only Socket.IO client; one infrastructure fault is injected in the middle of each
// import, and each must still complete exactly once, with the same findings as a clean run.
//
//   tests/topology/run.sh            (finds the binaries, then node --test tests/topology/)
//
// Settings: HEXFLOW_BIN, HEXFLOW_NATS_SERVER, HEXFLOW_TOPOLOGY_ROWS (rows of the generated scan),
// TEST_KEEP=1 (keep the scratch directory: logs, certificates, data).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  Nginx, NatsCluster, Postgres, Service, Watcher, cliImport, fatal, freePort, hexflowBinary, jwt, killAll, makeCerts, request,
  run, stripAnsi, tail, until, within, writeNessusFile,
} from './lib.mjs';

const ROWS = Number(process.env.HEXFLOW_TOPOLOGY_ROWS || 400000);
const SCAN_DATE = '2026-01-15';
const JOBS_STREAM = 'HEXFLOW_JOBS';
const SECRET = crypto.randomBytes(32).toString('hex');
// Redelivery of a job whose worker died comes after this much silence (the default is 30 s).
const ACK_WAIT_SECS = 10;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hexflow-topology-'));
fs.chmodSync(dir, 0o755); // PostgreSQL runs as the postgres user and must enter it
const logs = path.join(dir, 'logs');
fs.mkdirSync(logs);

const env = {};
let certs;
let nats;
let pg;
let ng;
let scan;
const uploads = [];
const realtimes = [];
const workers = [];
const watchers = [];     // every Socket.IO client of every import, checked again at the end
const finished = [];     // {tenant, id} of every import that completed
const timings = [];      // one row per fault and client
let reference;           // the clean run's findings: {count, md5}
let failures = 0;

/** Runs `fn`, counting a failure so `after` knows to print the logs. */
function guarded(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      failures++;
      throw e;
    }
  };
}

const services = () => [...uploads, ...realtimes, ...workers];

before(guarded(async () => {
  const bin = hexflowBinary();
  assert.ok(fs.existsSync(bin), `${bin} is missing: build it (cargo build -p hexflow) or set HEXFLOW_BIN`);
  const started = Date.now();
  certs = makeCerts(path.join(dir, 'certs'));
  scan = { file: path.join(dir, 'nessus-scan.csv') };
  Object.assign(scan, writeNessusFile(scan.file, ROWS));
  [nats, pg] = await Promise.all([NatsCluster.start(dir, logs), Postgres.start(dir, logs, certs)]);
  pg.psql('postgres', 'CREATE DATABASE hexflow');
  const httpsPort = await freePort();
  const httpPort = await freePort();
  Object.assign(env, {
    NATS_URL: nats.url.split(',').join(', '),
    HEXFLOW_NATS_REPLICAS: '3',
    DATABASE_URL: pg.url('hexflow'),
    HEXFLOW_AUTH_SECRET: SECRET,
    HEXFLOW_CORS_ORIGINS: `https://127.0.0.1:${httpsPort}`,
    HEXFLOW_WORKER_ACK_WAIT_SECS: String(ACK_WAIT_SECS),
    // The sweep that finishes what a crash left behind (terminal events, upload removal) runs
    // every 5 s instead of every minute, so the last test need not wait long for it.
    HEXFLOW_WORKER_SWEEP_SECS: '5',
    HEXFLOW_LOG_FORMAT: 'human',
    NO_COLOR: '1',
  });
  const migrate = run(bin, ['migrate'], { env: { ...process.env, DATABASE_URL: env.DATABASE_URL } });
  assert.match(migrate, /migrations applied/);
  for (let i = 1; i <= 2; i++) {
    uploads.push(await Service.create('upload-gateway', `upload-gateway-${i}`, env, logs));
    realtimes.push(await Service.create('realtime-gateway', `realtime-gateway-${i}`, env, logs));
    workers.push(await Service.create('import-worker', `import-worker-${i}`, env, logs));
  }
  // All at once, as an orchestrator starts them: each reconciles the streams (3 replicas). One
  // that exits during start-up is started again, as the orchestrator would; it is reported.
  for (const s of services()) s.start();
  await Promise.all(services().map((s) => s.waitReady(90000, { restarts: 2 })));
  const crashed = services().filter((s) => s.crashes.length);
  if (crashed.length) {
    console.log(`# WARNING: ${crashed.length} of ${services().length} services exited during start-up and were started again:`);
    for (const s of crashed) console.log(`#   ${s.name}: ${s.crashes.join(' | ')}`);
  }
  ng = await Nginx.start(dir, logs, {
    certs, httpsPort, httpPort, upload: uploads.map((s) => s.addr), realtime: realtimes.map((s) => s.addr),
  });
  console.log(`# topology up in ${((Date.now() - started) / 1000).toFixed(1)} s: NATS ${nats.url}, PostgreSQL 127.0.0.1:${pg.port} (TLS only), nginx ${ng.origin}; scan ${scan.rows} rows, ${(scan.bytes / 2 ** 20).toFixed(0)} MiB; scratch ${dir}`);
}), { timeout: 180000 });

after(async () => {
  for (const w of watchers) w.close();
  if (timings.length) {
    console.log('# seconds from the fault to the next progress event each client saw');
    console.table(timings);
  }
  await killAll();
  if (failures > 0) {
    console.log(`# logs in ${logs} (and nginx's in ${path.join(dir, 'nginx/logs')}):`);
    for (const f of fs.readdirSync(logs).sort()) {
      const text = stripAnsi(fs.readFileSync(path.join(logs, f), 'utf8')).split('\n').filter((l) => !/^\s+(\d+: |at )/.test(l)).join('\n');
      console.log(`\n## ${f} (last 80 lines)\n${tail(text, 80)}`);
    }
    if (ng) console.log(`\n## nginx error.log (last 40 lines)\n${tail(ng.errorLog(), 40)}`);
    if (!process.env.TEST_KEEP) {
      // Keep the logs (and certificates, configurations); drop the gigabytes of data.
      for (const f of fs.readdirSync(dir)) {
        if (/^(nats-\d+|nessus-scan\.csv)$/.test(f)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
      }
      fs.rmSync(path.join(dir, 'pg', 'data'), { recursive: true, force: true });
    }
  } else if (!process.env.TEST_KEEP) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------

/** A user of a tenant of their own, so each import's findings can be compared with the clean run's. */
function tokenFor(tenant) {
  return jwt(SECRET, { sub: `user-${tenant}`, tenant, exp: Math.floor(Date.now() / 1000) + 3600 });
}

/** Count and checksum of a tenant's findings: natural key and state columns, tenant left out. */
function findings(tenant) {
  const [count, md5] = pg.psql('hexflow', `
    SELECT count(*) || ' ' || md5(coalesce(string_agg(r, E'\\n' ORDER BY r), ''))
    FROM (SELECT concat_ws('|', scanner, asset, check_id, port, protocol, array_to_string(cves, ','), severity, cvss, vpr,
                           md5(output), state, first_seen, last_seen, resolved_at) AS r
          FROM vulnerabilities WHERE tenant = '${tenant}') s`).trim().split(' ');
  return { count: Number(count), md5 };
}

function importRow(id) {
  const [status, attempts, summary, error] = pg.psql('hexflow', `SELECT status, attempts, coalesce(summary::text, 'null'), coalesce(error::text, 'null') FROM imports WHERE id = '${id}'`).trim().split('|');
  return { status, attempts: Number(attempts), summary: JSON.parse(summary), error: JSON.parse(error) };
}

/** The client shows the import loading or processing, at least `progress` % done. */
const busy = (w, progress) => ['loading', 'processing'].includes(w.last?.phase) && w.last.progress >= progress;

/**
 * Imports the scan as `tenant` through nginx with the CLI, watched by a websocket-only and a
 * polling-only client; `fault()` runs once both clients have shown the import loading or
 * processing and at least `atProgress` % done. Returns what happened.
 */
async function watchedImport(tenant, fault, { atProgress = 0 } = {}) {
  const token = tokenFor(tenant);
  const cli = cliImport(scan.file, { server: ng.origin, ca: certs.ca, token, scanDate: SCAN_DATE, logDir: logs, name: `cli-${tenant}` });
  const started = Date.now();
  const id = await within(cli.queued, 120000, () => { throw new Error('the CLI did not queue the upload within 120 s'); });
  const uploaded = Date.now();
  const clients = ['websocket', 'polling'].map((transport) =>
    new Watcher(`${tenant}/${transport}`, { origin: ng.origin, caPem: certs.caPem, token, transport }));
  watchers.push(...clients);
  let faultAt = null;
  try {
    await Promise.all(clients.map(async (w) => { await w.connected(); await w.join(id); }));
    for (const w of clients) {
      assert.equal(w.connects[0].transport, w.name.split('/')[1], `${w.name} connected with its one transport`);
    }
    let before = null;
    let faultInfo = null;
    if (fault) {
      await until(() => {
        const ended = clients.flatMap((w) => w.terminalsShown());
        if (ended.length) throw fatal(`import ${id} ended before the fault: ${JSON.stringify(ended[0].data.error ?? ended[0].data.status)}`);
        return clients.every((w) => busy(w, atProgress));
      }, 120000, `both clients to show ${id} loading or processing, ${atProgress}% done`, 20);
      before = clients.map((w) => ({ phase: w.last.phase, progress: w.last.progress }));
      faultAt = Date.now();
      faultInfo = await fault(id, clients);
    }
    const result = await within(cli.done, 180000, () => ({ code: 'timeout' }));
    assert.equal(result.code, 0, `hexflow import exited ${result.code ?? result.signal}:\n${result.stderr.split('\r').at(-1)}\n${result.stdout}`);
    assert.match(result.stdout, /^completed: /m);
    await until(() => clients.every((w) => w.terminalsShown().length > 0), 30000, `both clients to show ${id} ended`, 20);
    const ended = Date.now();
    // A re-join answered after the terminal event: everything the gateway sends this socket for
    // the import up to now (the snapshot and the terminal event, again) has arrived.
    for (const w of clients) await w.join(id);
    if (fault) {
      // "Next event": the first one the client shows that was published after the fault (its
      // `timestamp`, set by the worker on this same machine), i.e. progress seen again; events
      // published just before the fault still arrive a little later (the gateway's throttle).
      // "First delivery": the first one shown after the fault at all (a snapshot on rejoin).
      const secs = (t) => +((t - faultAt) / 1000).toFixed(2);
      for (const [i, w] of clients.entries()) {
        const after = w.shownAfter(faultAt);
        const next = after.find((e) => e.data.timestamp >= faultAt);
        timings.push({
          fault: faultInfo?.label ?? tenant,
          client: w.name.split('/')[1],
          'at fault': `${before[i].phase} ${before[i].progress.toFixed(0)}%`,
          'next event (s)': next ? secs(next.t) : null,
          'next event': next ? `${next.data.phase} ${next.data.progress.toFixed(0)}% attempt ${next.data.attempt}` : null,
          'first delivery (s)': after[0] ? secs(after[0].t) : null,
          reconnects: w.connects.filter((c) => c.t > faultAt).length,
          'to the end (s)': +((ended - faultAt) / 1000).toFixed(1),
        });
      }
    }
    finished.push({ tenant, id });
    return { id, clients, cli: result, row: importRow(id), uploadSecs: (uploaded - started) / 1000, secs: (ended - started) / 1000, faultAt, faultInfo };
  } finally {
    const record = { id, faultAt, clients: clients.map((w) => ({ name: w.name, connects: w.connects, errors: w.errors, events: w.raw })) };
    fs.writeFileSync(path.join(logs, `events-${tenant}.json`), JSON.stringify(record, null, 1));
  }
}

/** The checks every import must pass: completed once, seen ended once, findings as the clean run's. */
function assertCompletedOnce(tenant, { id, clients, row }) {
  assert.equal(row.status, 'completed', `import ${id} ended ${row.status}: ${JSON.stringify(row.error)}`);
  for (const w of clients) {
    const shown = w.terminalsShown();
    assert.equal(shown.length, 1, `${w.name}: one terminal event shown, got ${JSON.stringify(shown.map((e) => [e.event, e.data.seq, e.data.status]))}`);
    assert.equal(shown[0].data.status, 'completed', `${w.name}: the terminal event shown`);
    const raw = w.terminalEvents();
    assert.ok(raw.length >= 1, `${w.name}: got no progress-complete`);
    assert.deepEqual([...new Set(raw.map((e) => e.event))], ['progress-complete'], `${w.name}: terminal events ${raw.map((e) => e.event)}`);
    assert.equal(new Set(raw.map((e) => e.data.seq)).size, 1, `${w.name}: progress-complete with different seqs ${raw.map((e) => e.data.seq)}`);
    const afterEnd = w.raw.filter((e) => e.event.startsWith('progress-') && e.data?.seq > shown[0].data.seq);
    assert.deepEqual(afterEnd, [], `${w.name}: events after the terminal one`);
  }
  // No second worker finished it too (a job redelivered while the first attempt still ran).
  const completions = workers.flatMap((w) => stripAnsi(fs.readFileSync(w.proc.log, 'utf8')).split('\n'))
    .filter((l) => l.includes(id) && / import completed /.test(l));
  assert.ok(completions.length <= 1, `import ${id} completed by more than one attempt:\n${completions.join('\n')}`);
  if (reference) {
    assert.deepEqual(findings(tenant), reference, `tenant ${tenant}: findings differ from the clean run's`);
  }
}

async function waitAllReady() {
  await Promise.all(services().map((s) => s.waitReady(60000)));
  await nats.waitHealthy(60000);
}

// ---------------------------------------------------------------------------------------------

describe('production topology', () => {
  test('the front door: TLS only, no ops endpoints, ops ports answer apart', guarded(async () => {
    const redirect = await request(`http://127.0.0.1:${ng.httpPort}/api/imports?limit=1`);
    assert.equal(redirect.status, 301);
    assert.equal(redirect.headers.location, 'https://127.0.0.1/api/imports?limit=1');
    const page = await ng.get('/');
    assert.equal(page.status, 200);
    assert.ok(page.headers['strict-transport-security'], 'HSTS header');
    for (const p of ['/healthz', '/readyz', '/metrics', '/metrics/', '/readyz?x=1']) {
      assert.equal((await ng.get(p)).status, 404, `${p} through nginx`);
    }
    for (const s of [...uploads, ...realtimes]) {
      for (const p of ['/healthz', '/readyz', '/metrics']) {
        assert.equal((await request(`http://${s.addr}${p}`)).status, 404, `${s.name} public port ${p}`);
      }
    }
    for (const s of services()) {
      assert.equal((await request(`http://127.0.0.1:${s.opsPort}/healthz`)).status, 200, `${s.name} ops /healthz`);
      assert.match((await s.metrics()), /^# (HELP|TYPE) /m, `${s.name} ops /metrics`);
    }
    // The gateways' CORS allow-list holds the nginx origin, and nginx passes Origin through.
    const handshake = '/socket.io/?EIO=4&transport=polling';
    const allowed = await ng.get(handshake, { origin: ng.origin });
    assert.equal(allowed.status, 200, allowed.body);
    assert.equal(allowed.headers['access-control-allow-origin'], ng.origin);
    const foreign = await ng.get(handshake, { origin: 'https://elsewhere.example' });
    assert.equal(foreign.headers['access-control-allow-origin'], undefined, 'a foreign origin is not allowed');
    const history = await ng.get('/api/imports?limit=1', { authorization: `Bearer ${tokenFor('nobody')}` });
    assert.equal(history.status, 200, history.body);
    assert.equal((await ng.get('/api/imports?limit=1')).status, 401, 'no token');
    // Every stream is replicated on the three nodes.
    for (const stream of [JOBS_STREAM, 'HEXFLOW_PROGRESS', 'HEXFLOW_CANCEL', 'OBJ_hexflow_uploads']) {
      const info = await nats.streamInfo(nats.nodes[0], stream);
      assert.equal(info?.config?.num_replicas, 3, `${stream}: ${JSON.stringify(info?.config ?? info)}`);
      assert.equal((info.cluster?.replicas ?? []).length, 2, `${stream} has two followers: ${JSON.stringify(info.cluster)}`);
    }
  }));

  test('a clean import', guarded(async () => {
    const r = await watchedImport('clean', null);
    assertCompletedOnce('clean', r);
    reference = findings('clean');
    assert.ok(reference.count > 0, 'the clean run wrote findings');
    assert.equal(reference.count, r.row.summary.new, 'every finding is new in a tenant of its own');
    console.log(`# clean import: upload ${r.uploadSecs.toFixed(1)} s, whole import ${r.secs.toFixed(1)} s, ${reference.count} findings`);
  }), { timeout: 240000 });

  test('(a) the NATS node leading HEXFLOW_JOBS is killed and restarted', guarded(async () => {
    const r = await watchedImport('nats-leader', async () => {
      const leader = await until(() => nats.streamLeader(JOBS_STREAM), 10000, `the leader of ${JOBS_STREAM}`);
      const led = Object.entries(await nats.leaders()).filter(([, l]) => l === leader).map(([name]) => name.replace(/^HEXFLOW_/, ''));
      const node = nats.node(leader);
      await node.proc.kill('SIGKILL');
      // A new leader among the two left, then the node comes back with its store and catches up.
      const next = await until(async () => { const l = await nats.streamLeader(JOBS_STREAM); return l && l !== leader && l; }, 30000, 'a new leader');
      node.proc.start();
      return { label: `(a) NATS ${leader} killed (led ${led.join(', ')})`, node };
    }, { atProgress: 20 });
    assertCompletedOnce('nats-leader', r);
    await nats.waitCaughtUp(r.faultInfo.node, JOBS_STREAM, 60000);
    await waitAllReady();
  }), { timeout: 300000 });

  test('(b) the worker holding the job is killed', guarded(async () => {
    const r = await watchedImport('worker', async (id) => {
      const holder = workers.find((w) => w.proc.recentLog().includes(id));
      assert.ok(holder, `no worker logged import ${id}`);
      await holder.proc.kill('SIGKILL');
      holder.start();
      return { label: `(b) ${holder.name} (holding the job) killed`, holder };
    }, { atProgress: 35 });
    assertCompletedOnce('worker', r);
    assert.ok(r.row.attempts >= 2, `the import ran again after the kill (attempts ${r.row.attempts})`);
    await waitAllReady();
  }), { timeout: 300000 });

  test('(c) the realtime gateway the clients are on is killed', guarded(async () => {
    const r = await watchedImport('realtime', async (id, clients) => {
      // The gateway that logged both clients' socket ids (stickiness puts them on one), else
      // the one whose metrics count sockets.
      let holder = realtimes.find((g) => clients.every((w) => g.proc.recentLog().includes(w.socket.id)));
      if (!holder) {
        const counts = await Promise.all(realtimes.map(async (g) => Number(/^hexflow_realtime_sockets(?:\{[^}]*\})? (\d+)/m.exec(await g.metrics())?.[1] ?? 0)));
        holder = realtimes[counts.findIndex((c) => c > 0)];
      }
      assert.ok(holder, 'no realtime gateway holds the clients');
      await holder.proc.kill('SIGKILL');
      return { label: `(c) ${holder.name} (clients on it) killed`, holder };
    }, { atProgress: 15 });
    assertCompletedOnce('realtime', r);
    // The killed gateway stays down until the import has ended: every reconnect went to the other.
    for (const w of r.clients) {
      assert.ok(w.connects.some((c) => c.t > r.faultAt), `${w.name} reconnected through nginx`);
      const rejoined = w.raw.find((e) => e.t > r.faultAt && e.event === 'ack:join-progress' && e.data.ok);
      assert.ok(rejoined?.data.snapshot, `${w.name} joined again after the reconnect and got a snapshot`);
      assert.ok(w.raw.some((e) => e.t > r.faultAt && e.event === 'progress-status'), `${w.name} got progress-status after the reconnect`);
    }
    r.faultInfo.holder.start();
    await waitAllReady();
  }), { timeout: 300000 });

  test('(d) an upload gateway is restarted', guarded(async () => {
    const r = await watchedImport('upload', async (id) => {
      const gateway = uploads.find((g) => g.proc.recentLog().includes(id)) ?? uploads[0];
      await gateway.proc.stop(30000);
      gateway.start();
      await gateway.waitReady(60000);
      return { label: `(d) ${gateway.name} restarted`, gateway };
    }, { atProgress: 15 });
    assertCompletedOnce('upload', r);
    await waitAllReady();
  }), { timeout: 300000 });

  test('every import stayed completed, with one terminal event per client', guarded(async () => {
    for (const { id } of finished) assert.equal(importRow(id).status, 'completed', id);
    for (const w of watchers) {
      const shown = w.terminalsShown();
      assert.equal(shown.length, 1, `${w.name}: ${shown.length} terminal events shown by the end`);
      const terminals = [...new Set(w.terminalEvents().map((e) => `${e.event} ${e.data.seq}`))];
      assert.equal(terminals.length, 1, `${w.name}: terminal events by the end: ${terminals}`);
    }
    assert.equal(finished.length, 5);
  }));

  test('no upload is left in the object store', guarded(async () => {
    // Each import's file (313 MiB, three copies) is removed once it ended, by the worker that
    // ended it or by the sweep; only uploads in flight may stay.
    const stream = 'OBJ_hexflow_uploads';
    let last;
    await until(async () => {
      const leader = await nats.streamLeader(stream);
      last = leader && (await nats.streamInfo(nats.node(leader), stream))?.state;
      return last && last.bytes < 1 << 20;
    }, 60000, `${stream} to be emptied (last state: ${JSON.stringify(last)})`, 500);
  }), { timeout: 90000 });
});
