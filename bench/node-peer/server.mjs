// The Node.js peer of `bench realtime --peer node` (bench/src/realtime.rs): a plain socket.io 4
// server fed from NATS, doing what hexflow's realtime gateway does for the benchmark's clients, so
// both can be measured under the same load.
//
// - Reads every progress event from the HEXFLOW_PROGRESS stream (`hexflow.progress.>`) through a
//   JetStream ordered consumer that starts at the stream's end (live fan-out only; the client
//   library re-creates it after a reconnect, resuming after the last stream sequence it handled).
// - Rooms `progress-<id>`; `join-progress {sessionId}` answers `{ok, sessionId, snapshot}` and
//   first shows the socket the newest value (`progress-status`, plus the terminal event if the
//   import has ended), read from the stream's last message of the subject.
// - Per room: at most one `progress-update` per interval, latest value wins, the last value is sent
//   when the interval ends (trailing), terminal events (`progress-complete|error|cancelled`) go out
//   at once, drop the held update and end the room; a `seq` at or below what the room was sent is
//   dropped. A joiner's snapshot counts as sent to it: older room emits skip it.
// - `heartbeat` to every socket each period, and `data-updated` to the tenant room (every socket
//   is the open-mode `anonymous` of tenant `default`) at most once a second after completions.
// - `leave-progress` and `cancel-import` answer as the gateway does (cancel publishes the request).
//
// No authentication and no PostgreSQL: the benchmark runs hexflow in open mode, where every socket
// may watch every import.
//
// Options (argv): --port <n> (0 picks one), --nats <url>, --min-interval-ms <n> (default 100),
// --heartbeat-secs <n> (default 30). Prints `{"type":"ready","port":<n>}` on stdout when it serves.

import { createServer } from 'node:http';
import { connect, DeliverPolicy, JSONCodec } from 'nats';
import { Server } from 'socket.io';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const STREAM = 'HEXFLOW_PROGRESS';
const PREFIX = 'hexflow.progress';
const TERMINAL = { completed: 'progress-complete', error: 'progress-error', cancelled: 'progress-cancelled' };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ANNOUNCE_MS = 1000;

const port = Number(option('port', '0'));
const natsUrl = option('nats', 'nats://127.0.0.1:4222');
const interval = Number(option('min-interval-ms', '100'));
const heartbeatMs = Number(option('heartbeat-secs', '30')) * 1000;

const codec = JSONCodec();
const nc = await connect({ servers: natsUrl, name: 'hexflow-bench-node-peer', maxReconnectAttempts: -1 });
const js = nc.jetstream();
const jsm = await nc.jetstreamManager();

const http = createServer();
const io = new Server(http, { transports: ['websocket', 'polling'], serveClient: false });

/** Per-session room state: throttle, the sockets catching up after their snapshot. */
class Room {
  constructor(id) {
    this.name = `progress-${id}`;
    this.lastSeq = null;
    this.lastUpdateAt = null;
    this.pending = null;
    this.timer = null;
    this.ended = false;
    /** socket id -> seq of the snapshot it was shown (room emits at or below it skip it). */
    this.catchingUp = new Map();
    this.lastEmitted = null;
  }

  /** Offers the next event of the session to the room. */
  offer(event) {
    const newest = Math.max(this.pending?.seq ?? -1, this.lastSeq ?? -1);
    if (this.ended || event.seq <= newest) return;
    const terminal = TERMINAL[event.status];
    if (terminal) {
      this.pending = null;
      clearTimeout(this.timer);
      this.timer = null;
      this.ended = true;
      this.lastSeq = event.seq;
      this.emit(terminal, event);
      if (event.status === 'completed') announce();
      return;
    }
    const now = performance.now();
    const due = this.lastUpdateAt === null ? now : this.lastUpdateAt + interval;
    if (now < due) {
      this.pending = event;
      this.timer ??= setTimeout(() => this.flush(), due - now);
      return;
    }
    this.pending = null;
    this.sent(event);
  }

  /** Sends the held update when its interval has ended. */
  flush() {
    this.timer = null;
    const event = this.pending;
    if (!event || this.ended) return;
    this.pending = null;
    this.sent(event);
  }

  sent(event) {
    this.lastSeq = event.seq;
    this.lastUpdateAt = performance.now();
    this.emit('progress-update', event);
  }

  emit(name, event) {
    // The last event sent, for joiners whose snapshot read raced it.
    this.lastEmitted = event;
    let target = io.to(this.name);
    for (const [sid, seen] of this.catchingUp) {
      if (event.seq <= seen) target = target.except(sid);
      else this.catchingUp.delete(sid);
    }
    target.emit(name, event);
  }
}

/** Live rooms by session id. */
const rooms = new Map();

function roomOf(id) {
  let room = rooms.get(id);
  if (!room) {
    room = new Room(id);
    rooms.set(id, room);
  }
  return room;
}

let announcePending = false;
let announceLast = 0;
function announce() {
  if (announcePending) return;
  announcePending = true;
  const wait = Math.max(0, announceLast + ANNOUNCE_MS - performance.now());
  setTimeout(() => {
    announcePending = false;
    announceLast = performance.now();
    io.to('tenant-default').emit('data-updated', { tenant: 'default', at: Date.now() });
  }, wait);
}

async function snapshot(id) {
  try {
    const message = await jsm.streams.getMessage(STREAM, { last_by_subj: `${PREFIX}.${id}` });
    return codec.decode(message.data);
  } catch (err) {
    if (String(err?.message ?? err).includes('no message found')) return null;
    throw err;
  }
}

function ok(extra) {
  return { ok: true, ...extra };
}

function refused(code, message) {
  return { ok: false, error: { code, message } };
}

function sessionIdOf(data) {
  const id = data?.sessionId;
  return typeof id === 'string' && UUID.test(id) ? id.toLowerCase() : null;
}

io.on('connection', (socket) => {
  socket.join('tenant-default');
  socket.on('join-progress', async (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const id = sessionIdOf(data);
    if (!id) return reply(refused('INVALID_REQUEST', 'expected {sessionId: "<import id, a UUID>"}'));
    let shown;
    try {
      shown = await snapshot(id);
    } catch (err) {
      return reply(refused('UNAVAILABLE', `reading the progress snapshot: ${err?.message ?? err}`));
    }
    // From here to the join nothing else runs: no room emit slips in between.
    const room = roomOf(id);
    if (room.lastEmitted && (!shown || room.lastEmitted.seq > shown.seq)) shown = room.lastEmitted;
    if (shown) {
      socket.emit('progress-status', shown);
      if (TERMINAL[shown.status]) socket.emit(TERMINAL[shown.status], shown);
      if (room.lastSeq === null || shown.seq > room.lastSeq) room.catchingUp.set(socket.id, shown.seq);
    }
    socket.join(room.name);
    reply(ok({ sessionId: id, snapshot: shown ?? null }));
  });
  socket.on('leave-progress', (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const id = sessionIdOf(data);
    if (!id) return reply(refused('INVALID_REQUEST', 'expected {sessionId: "<import id, a UUID>"}'));
    socket.leave(`progress-${id}`);
    rooms.get(id)?.catchingUp.delete(socket.id);
    reply(ok({ sessionId: id }));
  });
  socket.on('cancel-import', (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const id = sessionIdOf(data);
    if (!id) return reply(refused('INVALID_REQUEST', 'expected {sessionId: "<import id, a UUID>"}'));
    nc.publish(`hexflow.cancel.${id}`, codec.encode({ importId: id, requestedBy: 'anonymous' }));
    reply(ok({ sessionId: id, status: 'cancelling' }));
  });
  socket.on('disconnect', () => {
    for (const name of socket.rooms) {
      if (name.startsWith('progress-')) rooms.get(name.slice('progress-'.length))?.catchingUp.delete(socket.id);
    }
  });
});

setInterval(() => {
  io.emit('heartbeat', { serverTime: Date.now(), activeSessions: rooms.size });
}, heartbeatMs).unref();

async function consume() {
  // One subject as a string: nats-server 2.9 knows only the single `filter_subject`.
  const consumer = await js.consumers.get(STREAM, {
    filterSubjects: `${PREFIX}.>`,
    deliver_policy: DeliverPolicy.New,
  });
  const messages = await consumer.consume();
  for await (const message of messages) {
    let event;
    try {
      event = codec.decode(message.data);
    } catch {
      continue;
    }
    const id = message.subject.slice(PREFIX.length + 1);
    // Only rooms with a local socket are tracked; the rest is the stream's business.
    if (io.sockets.adapter.rooms.has(`progress-${id}`)) roomOf(id).offer(event);
  }
}

consume().catch((err) => {
  process.stderr.write(`the progress consumer failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});

http.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ type: 'ready', port: http.address().port })}\n`);
});

process.on('SIGTERM', () => {
  io.close();
  nc.drain().finally(() => process.exit(0));
});
