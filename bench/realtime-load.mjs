// The load client of `bench realtime` (bench/src/realtime.rs): opens socket.io-client connections
// (websocket transport, one Engine.IO connection each) to the realtime gateway, joins each to one
// progress room, and records every event it receives.
//
// Options (argv):
//   --url <url>              the gateway (http://127.0.0.1:<port>)
//   --sessions-file <path>   a JSON array of {id, token}; client i joins sessions[i % length].id,
//                            sending token (if not null) as the handshake's auth: {token}
//   --first <i> --count <n>  the clients this process runs: i .. i+n-1 (global numbering)
//   --concurrency <n>        connections being opened (and joined) at once (default 200)
//   --out <path>             where `finish` writes the records
//
// Protocol with the bench, one JSON object per line on stdout:
//   {type:"ready", connected, joined, failed, errors, connectMs}   every client has connected and
//                                                                  joined (or failed to)
//   {type:"terminal", clients}                                     every joined client has its
//                                                                  terminal event (printed once)
//   {type:"done", records, ...}                                    after `finish`: records written
// Commands on stdin, one per line: `start` (the publishing begins: reset the event-loop delay
// histogram), `finish` (close every socket, write the records, print `done`, exit).
//
// A record is one CSV line per received event: client,kind,sessionIndex,seq,recv,timestamp,sent
//   kind     0 progress-status, 1 progress-update, 2 progress-complete, 3 progress-error,
//            4 progress-cancelled
//   recv     performance.timeOrigin + performance.now() when the handler ran (ms since the epoch)
//   sent     the bench's sub-millisecond send time, from the event's message ("bench <ms>"), or -1

import { readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function say(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

const url = option('url', 'http://127.0.0.1:8991');
const sessions = JSON.parse(readFileSync(option('sessions-file', ''), 'utf8'));
const first = Number(option('first', '0'));
const count = Number(option('count', '1'));
const concurrency = Number(option('concurrency', '200'));
const out = option('out', '/tmp/realtime-load.csv');

const sessionIndex = new Map(sessions.map((s, i) => [s.id, i]));
const KINDS = {
  'progress-status': 0,
  'progress-update': 1,
  'progress-complete': 2,
  'progress-error': 3,
  'progress-cancelled': 4,
};

// Records, column by column (cheaper than one object per event).
const rClient = [];
const rKind = [];
const rSession = [];
const rSeq = [];
const rRecv = [];
const rTs = [];
const rSent = [];
const otherEvents = {};
const disconnects = {};
const errors = {};
let joined = 0;
let failed = 0;
let terminals = 0;
let terminalSaid = false;
let readySaid = false;

const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

const sockets = [];

function countError(key) {
  errors[key] = (errors[key] ?? 0) + 1;
}

function maybeTerminal() {
  if (readySaid && !terminalSaid && terminals >= joined) {
    terminalSaid = true;
    say({ type: 'terminal', clients: terminals });
  }
}

function openClient(client) {
  const { id: sessionId, token } = sessions[client % sessions.length];
  return new Promise((resolve) => {
    const socket = io(url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      auth: token ? { token } : {},
      timeout: 30000,
    });
    sockets.push(socket);
    let gotTerminal = false;
    let settled = false;
    const settle = (ok, why) => {
      if (settled) return;
      settled = true;
      if (ok) joined += 1;
      else {
        failed += 1;
        countError(why);
      }
      resolve();
    };
    socket.onAny((event, data) => {
      const recv = performance.timeOrigin + performance.now();
      const kind = KINDS[event];
      if (kind === undefined) {
        otherEvents[event] = (otherEvents[event] ?? 0) + 1;
        return;
      }
      const message = typeof data?.message === 'string' ? data.message : '';
      const sent = message.startsWith('bench ') ? Number(message.slice(6)) : -1;
      rClient.push(client);
      rKind.push(kind);
      rSession.push(sessionIndex.get(data?.sessionId) ?? -1);
      rSeq.push(data?.seq ?? -1);
      rRecv.push(recv);
      rTs.push(data?.timestamp ?? -1);
      rSent.push(Number.isFinite(sent) ? sent : -1);
      if (kind >= 2 && !gotTerminal) {
        gotTerminal = true;
        terminals += 1;
        maybeTerminal();
      }
    });
    socket.on('connect', async () => {
      try {
        const answer = await socket.timeout(30000).emitWithAck('join-progress', { sessionId });
        if (answer?.ok) settle(true);
        else settle(false, `join:${answer?.error?.code ?? 'unknown'}`);
      } catch (err) {
        settle(false, `join:${String(err?.message ?? err)}`);
      }
    });
    socket.on('connect_error', (err) => settle(false, `connect_error:${err?.message ?? err}`));
    socket.on('disconnect', (reason) => {
      disconnects[reason] = (disconnects[reason] ?? 0) + 1;
      settle(false, `disconnect:${reason}`);
    });
  });
}

async function openAll() {
  const started = performance.now();
  let next = first;
  const end = first + count;
  const lanes = [];
  for (let lane = 0; lane < Math.min(concurrency, count); lane += 1) {
    lanes.push((async () => {
      while (next < end) {
        const client = next;
        next += 1;
        await openClient(client);
      }
    })());
  }
  await Promise.all(lanes);
  readySaid = true;
  say({
    type: 'ready',
    connected: sockets.filter((s) => s.connected).length,
    joined,
    failed,
    errors,
    connectMs: performance.now() - started,
  });
  maybeTerminal();
}

function finish() {
  for (const socket of sockets) socket.disconnect();
  const lines = [];
  for (let i = 0; i < rClient.length; i += 1) {
    lines.push(`${rClient[i]},${rKind[i]},${rSession[i]},${rSeq[i]},${rRecv[i].toFixed(3)},${rTs[i]},${rSent[i]}`);
  }
  writeFileSync(out, lines.length ? `${lines.join('\n')}\n` : '');
  loopDelay.disable();
  const ms = (ns) => ns / 1e6;
  say({
    type: 'done',
    records: rClient.length,
    terminals,
    disconnects,
    otherEvents,
    loopDelayP50Ms: ms(loopDelay.percentile(50)),
    loopDelayP99Ms: ms(loopDelay.percentile(99)),
    loopDelayMaxMs: ms(loopDelay.max),
  });
  process.exit(0);
}

const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  switch (line.trim()) {
    case 'start':
      loopDelay.reset();
      break;
    case 'finish':
      finish();
      break;
    default:
      break;
  }
});
// The bench gone: nothing left to report to.
commands.on('close', () => process.exit(1));

openAll();
