// Live progress: Socket.IO with exponential reconnection (1 s doubling, 5 attempts), then
// polling GET /api/imports/{id} every 2 s, and back to the socket when it returns. Every event
// goes through `onEvent`; the views drop anything older than what they show (by seq).

import { io } from '/vendor/socket.io-client/socket.io.esm.min.js';
import { getJson, postJson, token } from './api.js';
import { debug } from './format.js';

const EVENTS = ['progress-status', 'progress-update', 'progress-complete', 'progress-error', 'progress-cancelled'];
const POLL_MS = 2000;
const SOCKET_RETRY_MS = 10000;

export class Live {
  constructor({ onEvent, onState, onDataUpdated, onUnauthorized }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onDataUpdated = onDataUpdated;
    this.onUnauthorized = onUnauthorized;
    this.watched = new Map(); // id -> terminal?
    this.pollTimer = null;
    this.retryTimer = null;
    const forced = new URLSearchParams(location.search).get('transport');
    this.transports = forced === 'polling' ? ['polling'] : ['polling', 'websocket'];
  }

  start() {
    const t = token();
    this.socket = io({
      transports: this.transports,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 16000,
      randomizationFactor: 0,
      reconnectionAttempts: 5,
      auth: t ? { token: t } : {},
    });
    this.setState('connecting');
    this.socket.on('connect', () => {
      debug('socket connected', this.socket.io.engine?.transport?.name);
      clearTimeout(this.retryTimer);
      this.stopPolling();
      this.setState('connected');
      for (const id of this.watched.keys()) this.join(id);
    });
    this.socket.on('disconnect', (reason) => {
      debug('socket disconnected', reason);
      if (reason === 'io client disconnect') return;
      this.setState('reconnecting');
      if (reason === 'io server disconnect') this.socket.connect();
    });
    this.socket.on('connect_error', (err) => {
      debug('connect error', err?.message);
      if (/unauthori[sz]ed|token/i.test(err?.message || '')) this.onUnauthorized?.();
      if (this.state !== 'polling') this.setState('reconnecting');
    });
    this.socket.io.on('reconnect_failed', () => this.fallBackToPolling());
    for (const name of EVENTS) this.socket.on(name, (data) => { debug(name, data); this.deliver(data); });
    this.socket.on('data-updated', (data) => this.onDataUpdated?.(data));
  }

  setState(state) {
    this.state = state;
    this.onState(state);
  }

  fallBackToPolling() {
    debug('socket gave up; polling');
    this.setState('polling');
    this.startPolling();
    // Keep trying the socket now and then; `connect` stops the polling.
    this.retryTimer = setTimeout(() => this.retrySocket(), SOCKET_RETRY_MS);
  }

  retrySocket() {
    if (this.socket.connected) return;
    this.socket.connect();
    this.socket.once('connect_error', () => { this.retryTimer = setTimeout(() => this.retrySocket(), SOCKET_RETRY_MS); });
  }

  deliver(event) {
    if (!event?.sessionId) return;
    if (['completed', 'error', 'cancelled'].includes(event.status) && this.watched.has(event.sessionId)) {
      this.watched.set(event.sessionId, true);
    }
    this.onEvent(event);
  }

  watch(id) {
    if (!this.watched.has(id)) this.watched.set(id, false);
    if (this.socket?.connected) this.join(id);
    else if (this.state === 'polling') this.pollOnce(id);
  }

  join(id) {
    this.socket.timeout(5000).emit('join-progress', { sessionId: id }, (err, answer) => {
      if (err) { debug('join timed out', id); this.pollOnce(id); return; }
      if (answer?.ok && answer.snapshot) this.deliver(answer.snapshot);
      else if (answer?.ok) this.pollOnce(id); // the snapshot expired: the API rebuilds it from the database
      else if (answer && !answer.ok) {
        debug('join refused', id, answer.error);
        if (answer.error?.code === 'SESSION_NOT_FOUND') this.pollOnce(id);
      }
    });
  }

  async cancel(id) {
    if (this.socket?.connected) {
      const answer = await this.socket.timeout(5000).emitWithAck('cancel-import', { sessionId: id }).catch(() => null);
      if (answer?.ok) return;
      if (answer && !answer.ok) throw new Error(answer.error?.message || 'cancel refused');
    }
    await postJson(`/api/imports/${encodeURIComponent(id)}/cancel`);
  }

  startPolling() {
    if (this.pollTimer) return;
    const tick = async () => {
      for (const [id, done] of this.watched) if (!done) await this.pollOnce(id);
    };
    tick();
    this.pollTimer = setInterval(tick, POLL_MS);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  async pollOnce(id) {
    try {
      this.deliver(await getJson(`/api/imports/${encodeURIComponent(id)}`));
    } catch (err) {
      debug('poll failed', id, err.message);
      if (err.status === 401) this.onUnauthorized?.();
    }
  }
}
