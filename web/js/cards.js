// One card per import (upload progress, then the import's live state), and the modal that
// follows the import the user opened. State changes are batched per animation frame.

import { getJson } from './api.js';
import { csvCell, el, formatBytes, formatEta, formatNumber } from './format.js';

const TERMINAL = ['completed', 'error', 'cancelled'];
const STORE_KEY = 'hexflow_imports';

export class Cards {
  constructor(container, modal, { onCancel }) {
    this.container = container;
    this.modal = modal;
    this.onCancel = onCancel;
    this.items = new Map(); // key -> {id, filename, upload, event, error, node}
    this.dirty = new Set();
    this.frame = null;
    this.openKey = null;
    modal.querySelector('#modal-close').addEventListener('click', () => modal.close());
    modal.addEventListener('close', () => {
      this.openKey = null;
      modal.querySelector('#modal-content').replaceChildren();
    });
  }

  /** Imports remembered in localStorage (so a reloaded tab finds them again). */
  remembered() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY) || '[]'); } catch { return []; }
  }

  remember() {
    const list = [...this.items.values()].filter((i) => i.id).slice(-20).map((i) => ({ id: i.id, filename: i.filename }));
    try { localStorage.setItem(STORE_KEY, JSON.stringify(list)); } catch { /* storage unavailable */ }
  }

  /** A card for a file being uploaded; returns its key. */
  addUpload(file) {
    const key = `upload-${crypto.randomUUID()}`;
    this.items.set(key, { key, id: null, filename: file.name, upload: { loaded: 0, total: file.size }, event: null, error: null });
    this.touch(key);
    return key;
  }

  uploadProgress(key, loaded, total) {
    const item = this.items.get(key);
    if (!item) return;
    item.upload = { loaded, total };
    this.touch(key);
  }

  uploadFailed(key, error) {
    const item = this.items.get(key);
    if (!item) return;
    item.error = { code: error.code || 'UPLOAD_FAILED', message: error.message, recoverySuggestions: [] };
    item.upload = null;
    this.touch(key);
  }

  /** The upload was accepted: the card now follows import `id`. */
  uploaded(key, id) {
    const item = this.items.get(key);
    if (!item) return;
    item.id = id;
    item.upload = null;
    this.remember();
    this.touch(key);
  }

  /** A card for an import known only by id (after a reload). */
  addKnown(id, filename) {
    if (this.keyOf(id)) return;
    this.items.set(id, { key: id, id, filename, upload: null, event: null, error: null });
    this.touch(id);
  }

  keyOf(id) {
    for (const [key, item] of this.items) if (item.id === id) return key;
    return null;
  }

  /** Applies an event unless it is older than the one shown. Returns true when applied. */
  apply(event) {
    const key = this.keyOf(event.sessionId);
    if (!key) return false;
    const item = this.items.get(key);
    if (item.event && event.seq <= item.event.seq) return false;
    item.event = event;
    if (event.metadata?.filename) item.filename = event.metadata.filename;
    this.touch(key);
    return true;
  }

  touch(key) {
    this.dirty.add(key);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = null;
    for (const key of this.dirty) this.renderCard(key);
    if (this.openKey && this.dirty.has(this.openKey)) this.renderModal();
    this.dirty.clear();
  }

  open(key) {
    this.openKey = key;
    this.renderModal();
    if (!this.modal.open) this.modal.showModal();
  }

  renderCard(key) {
    const item = this.items.get(key);
    if (!item) return;
    const node = detail(item, { onCancel: this.onCancel, onOpen: () => this.open(key), compact: true });
    node.classList.add('card');
    node.dataset.key = key;
    if (item.node) item.node.replaceWith(node); else this.container.prepend(node);
    item.node = node;
  }

  renderModal() {
    const item = this.items.get(this.openKey);
    if (!item) return;
    this.modal.querySelector('#modal-title').textContent = item.filename;
    this.modal.querySelector('#modal-content').replaceChildren(detail(item, { onCancel: this.onCancel, compact: false }));
  }
}

function statusOf(item) {
  if (item.error && !item.event) return 'error';
  if (item.upload) return 'uploading';
  return item.event?.status || 'queued';
}

/** The view of one import: used by the card and by the modal. */
function detail(item, { onCancel, onOpen, compact }) {
  const e = item.event;
  const status = statusOf(item);
  const percent = item.upload
    ? (item.upload.total ? (100 * item.upload.loaded) / item.upload.total : 0)
    : (e?.progress ?? 0);
  const root = el('article', { 'data-status': status, 'data-testid': compact ? 'import-card' : 'import-detail', 'data-session': item.id || '' });
  const head = el('div', { class: 'card-head' },
    el('span', { class: 'card-title', text: item.filename }),
    el('span', { class: 'pill', 'data-status': status, 'data-testid': 'status', text: item.upload ? 'uploading' : status }));
  const bar = el('div', {
    class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
    'aria-valuenow': Math.round(percent), 'aria-label': `${item.filename} progress`,
  }, el('span'));
  bar.firstChild.style.width = `${Math.min(100, percent)}%`;
  const line = item.upload
    ? `Uploading ${formatBytes(item.upload.loaded)} of ${formatBytes(item.upload.total)} (${Math.floor(percent)}%)`
    : `${Math.floor(percent)}% · ${e?.phase ?? 'queued'}${e?.message ? ` · ${e.message}` : ''}`;
  const live = el('p', { class: 'message', role: 'status', 'aria-live': 'polite', 'data-testid': 'message', text: line });
  root.append(head, bar, live);
  if (e && !item.upload) {
    root.append(el('div', { class: 'stats' },
      el('span', { text: `Rows ${formatNumber(e.processedRows)}${e.totalRows != null ? ` / ${formatNumber(e.totalRows)}` : ''}` }),
      el('span', { text: `${formatNumber(Math.round(e.rowsPerSecond || 0))} rows/s` }),
      el('span', { 'data-testid': 'eta', text: `ETA ${TERMINAL.includes(e.status) ? '–' : formatEta(e.etaSeconds)}` }),
      e.attempt > 1 ? el('span', { text: `attempt ${e.attempt}` }) : null));
  }
  if (e?.summary) root.append(summary(item.id, e.summary, compact));
  const error = e?.error || item.error;
  if (error) root.append(errorBox(error));
  const actions = el('div', { class: 'actions' });
  if (item.id && e && !TERMINAL.includes(e.status)) {
    const cancel = el('button', { type: 'button', class: 'small danger', 'data-testid': 'cancel', text: 'Cancel' });
    cancel.addEventListener('click', () => {
      if (confirm(`Cancel the import of ${item.filename}? Nothing of it will be kept.`)) onCancel(item.id);
    });
    actions.append(cancel);
  }
  if (onOpen && item.id) {
    const open = el('button', { type: 'button', class: 'small secondary', text: 'Details' });
    open.addEventListener('click', onOpen);
    actions.append(open);
  }
  if (actions.childElementCount) root.append(actions);
  return root;
}

function summary(id, s, compact) {
  const box = el('div', { class: 'summary', 'data-testid': 'summary' });
  const cells = [['new', s.new], ['updated', s.updated], ['unchanged', s.unchanged], ['resolved', s.resolved],
    ['reopened', s.reopened], ['skipped', s.skippedDuplicates], ['invalid rows', s.validationErrors]];
  for (const [label, value] of cells) {
    box.append(el('div', { 'data-field': label }, el('b', { text: formatNumber(value) }), el('span', { text: label })));
  }
  const wrap = el('div', {}, box);
  if (!compact) wrap.append(el('p', { class: 'muted', text: `${formatNumber(s.rows)} rows in ${formatEta(s.durationMs / 1000)} (${formatNumber(Math.round(s.rowsPerSecond))} rows/s)` }));
  if (s.validationErrors > 0) {
    const download = el('button', { type: 'button', class: 'small secondary', 'data-testid': 'download-errors', text: 'Download invalid rows' });
    download.addEventListener('click', () => downloadErrors(id));
    wrap.append(el('div', { class: 'actions' }, download));
  }
  return wrap;
}

function errorBox(error) {
  const box = el('div', { class: 'error-box', role: 'alert', 'data-testid': 'error' },
    el('strong', { text: error.code || 'ERROR' }), document.createTextNode(' '), el('span', { text: error.message || '' }));
  const d = error.details;
  if (d && (d.line || d.column)) {
    box.append(el('div', { class: 'muted', text: `line ${d.line ?? '?'}${d.column ? `, column ${d.column}` : ''}${d.value != null ? `, value "${d.value}"` : ''}${d.expected ? `; expected ${d.expected}` : ''}` }));
  }
  if (error.recoverySuggestions?.length) {
    box.append(el('ul', {}, ...error.recoverySuggestions.map((s) => el('li', { text: s }))));
  }
  return box;
}

async function downloadErrors(id) {
  const body = await getJson(`/api/imports/${encodeURIComponent(id)}/errors`);
  const lines = [['line', 'column', 'value', 'problem', 'expected'].join(',')];
  for (const r of body.items) lines.push([r.line, r.column, r.value, r.message, r.expected].map(csvCell).join(','));
  const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'text/csv' }));
  const a = el('a', { href: url, download: `invalid-rows-${id}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
