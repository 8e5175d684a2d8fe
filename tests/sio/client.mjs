// A socket.io-client v4 driven by the integration tests (tests/src/sio.rs).
//
// Options (argv): --url <url>[,<url>...]   the gateways; each reconnect attempt moves to the next
//                                          one, as a load balancer would send it elsewhere
//                 --transports polling,websocket (default: both, polling first then upgrade)
//                 --token <jwt>            sent as the handshake's auth: {token}
//                 --session <id>           join-progress this import on connect
// Every event received is printed to stdout as one JSON line {event, data, t} (t = ms since the
// epoch). Connection events are printed too (connect, connect_error, disconnect,
// reconnect_attempt), and each command's ack as `ack:<event>`.
// Commands on stdin, one per line: `join <id>`, `leave <id>`, `cancel <id>`,
// `emit <event> <json>`, `drop` (cut the transport, as a network failure would), `exit`.
// Joined imports are joined again after every reconnect, as the browser page does.

import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function print(event, data) {
  process.stdout.write(`${JSON.stringify({ event, data: data ?? null, t: Date.now() })}\n`);
}

const urls = option('url', 'http://127.0.0.1:8991').split(',');
const transports = option('transports', 'polling,websocket').split(',');
const token = option('token', '');
const joined = new Set();
const initial = option('session', '');
if (initial) joined.add(initial);

let current = 0;
const socket = io(urls[current], {
  transports,
  upgrade: transports.length > 1,
  auth: token ? { token } : {},
  reconnectionDelay: 100,
  reconnectionDelayMax: 1000,
  randomizationFactor: 0,
  timeout: 5000,
});

async function request(event, payload) {
  try {
    const reply = await socket.timeout(10000).emitWithAck(event, payload);
    print(`ack:${event}`, reply);
  } catch (err) {
    print(`ack:${event}`, { ok: false, error: { code: 'CLIENT_TIMEOUT', message: String(err?.message ?? err) } });
  }
}

socket.on('connect', () => {
  print('connect', { id: socket.id, url: urls[current], transport: socket.io.engine.transport.name });
  socket.io.engine.once('upgrade', (transport) => print('upgrade', { transport: transport.name }));
  for (const id of joined) request('join-progress', { sessionId: id });
});
socket.on('connect_error', (err) => print('connect_error', { message: err.message, data: err.data ?? null }));
socket.on('disconnect', (reason) => {
  print('disconnect', { reason });
  // A server-side disconnect is not retried by the client on its own.
  if (reason === 'io server disconnect') socket.connect();
});
socket.io.on('reconnect_attempt', (attempt) => {
  current = (current + 1) % urls.length;
  socket.io.uri = urls[current];
  print('reconnect_attempt', { attempt, url: urls[current] });
});
socket.onAny((event, data) => print(event, data));

const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  const [command, arg, ...rest] = line.trim().split(' ');
  switch (command) {
    case 'join':
      joined.add(arg);
      if (socket.connected) request('join-progress', { sessionId: arg });
      break;
    case 'leave':
      joined.delete(arg);
      request('leave-progress', { sessionId: arg });
      break;
    case 'cancel':
      request('cancel-import', { sessionId: arg });
      break;
    case 'emit': {
      const raw = rest.join(' ');
      let payload = raw;
      try { payload = JSON.parse(raw); } catch { /* sent as a string on purpose */ }
      request(arg, payload);
      break;
    }
    case 'drop':
      socket.io.engine.close();
      break;
    case 'exit':
      socket.disconnect();
      process.exit(0);
      break;
    default:
      print('unknown_command', { line });
  }
});
commands.on('close', () => { socket.disconnect(); process.exit(0); });
print('started', { urls, transports });
