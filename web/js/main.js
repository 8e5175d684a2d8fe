// The page: wires the upload area, the import cards, live progress, history and findings.

import { ApiError, getJson, setToken, token, uploadFile } from './api.js';
import { Cards } from './cards.js';
import { debug } from './format.js';
import { Live } from './live.js';
import { FindingsView, renderHistory } from './views.js';

const $ = (id) => document.getElementById(id);
const STATE_TEXT = { connecting: 'Connecting…', connected: 'Live', reconnecting: 'Reconnecting…', polling: 'Polling (live updates unavailable)' };

async function start() {
  try {
    await getJson('/api/imports?limit=1');
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showLogin(token() ? 'The token was refused.' : '');
    throw err;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  runApp();
}

function showLogin(message) {
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('login-form').onsubmit = (e) => {
    e.preventDefault();
    setToken($('token').value.trim());
    location.reload();
  };
}

function runApp() {
  const conn = $('conn');
  const findings = new FindingsView($('findings'), $('findings-more'), { state: $('f-state'), severity: $('f-severity'), layout: $('f-layout') });
  const refreshHistory = () => renderHistory($('history').querySelector('tbody')).catch((e) => debug('history', e));
  const refreshFindings = () => findings.reload().catch((e) => debug('findings', e));
  let refreshTimer = null;
  const refreshSoon = () => { clearTimeout(refreshTimer); refreshTimer = setTimeout(() => { refreshHistory(); refreshFindings(); }, 300); };

  const cards = new Cards($('cards'), $('modal'), {
    onCancel: (id) => live.cancel(id).catch((err) => alert(`Cancel failed: ${err.message}`)),
  });
  const live = new Live({
    onEvent: (event) => {
      if (cards.apply(event) && ['completed', 'error', 'cancelled'].includes(event.status)) refreshSoon();
    },
    onState: (state) => { conn.dataset.state = state; conn.textContent = STATE_TEXT[state] || state; },
    onDataUpdated: () => refreshSoon(),
    onUnauthorized: () => showLogin('The token was refused.'),
  });
  live.start();
  window.hexflow = { live, cards };

  for (const { id, filename } of cards.remembered()) {
    cards.addKnown(id, filename);
    live.watch(id);
  }

  const upload = async (file) => {
    const key = cards.addUpload(file);
    // A session id of our own, sent before the file, lets a large import start while it uploads
    // (randomUUID exists on HTTPS and localhost pages; elsewhere the server picks the id).
    const fields = { sessionId: globalThis.crypto?.randomUUID?.(), format: $('format').value, scanDate: $('scan-date').value };
    try {
      const answer = await uploadFile(file, fields, (loaded, total) => cards.uploadProgress(key, loaded, total));
      cards.uploaded(key, answer.sessionId);
      live.watch(answer.sessionId);
    } catch (err) {
      cards.uploadFailed(key, err);
    }
  };
  const uploadAll = (files) => { for (const file of files) upload(file); };

  const input = $('files');
  input.addEventListener('change', () => { uploadAll([...input.files]); input.value = ''; });
  const drop = $('drop');
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); uploadAll([...e.dataTransfer.files]); });
  $('history-refresh').addEventListener('click', refreshHistory);

  refreshHistory();
  refreshFindings();
}

start().catch((err) => {
  document.body.append(Object.assign(document.createElement('p'), { className: 'error-text', textContent: `hexflow could not start: ${err.message}` }));
});
