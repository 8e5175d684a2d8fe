// The view of one import (a card in the list, or the detail in the modal), built once and then
// updated in place. Progress arrives about ten times a second; rebuilding the view on each event
// lost clicks held across an update (the press and the release landed on different buttons),
// dropped keyboard focus and made screen readers announce every tick. So every node here keeps
// its identity for the life of the view: updates change text, attributes and the bar's width
// (a CSSOM property, which the page's CSP allows, unlike a style attribute), and the status
// region speaks only when the phase or the outcome changes.

import { getJson } from './api.js';
import { csvCell, el, formatBytes, formatEta, formatNumber } from './format.js';

const TERMINAL = ['completed', 'error', 'cancelled'];
const PHASE_TEXT = { queued: 'queued', parsing: 'reading the file', loading: 'loading rows', processing: 'merging findings', finalizing: 'finishing' };

export class ImportView {
  /**
   * `compact`: the card (with a Details button calling `onOpen`) rather than the modal's detail.
   * `onCancel(id)` runs once the person has confirmed. `focusAfterCancel`: where focus goes when
   * the focused Cancel button disappears because the import ended (the card's Details button
   * by default), so that it does not fall back to the page's start.
   */
  constructor({ compact, onCancel, onOpen = null, focusAfterCancel = null }) {
    this.item = null;
    this.compact = compact;
    this.shown = {}; // what was last written, for the parts that are rebuilt or announced
    this.title = el('span', { class: 'card-title' });
    this.pill = el('span', { class: 'pill', 'data-testid': 'status' });
    this.fill = el('span');
    this.bar = el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0 }, this.fill);
    this.line = el('p', { class: 'message', 'data-testid': 'message' });
    this.status = el('p', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true', 'data-testid': 'announcement' });
    this.rows = el('span');
    this.rate = el('span');
    this.eta = el('span', { 'data-testid': 'eta' });
    this.attempt = el('span', { hidden: true });
    this.stats = el('div', { class: 'stats', hidden: true }, this.rows, this.rate, this.eta, this.attempt);
    this.summary = el('div', { hidden: true });
    this.error = el('div', { hidden: true });
    this.cancel = el('button', { type: 'button', class: 'small danger', 'data-testid': 'cancel', text: 'Cancel', hidden: true });
    this.cancel.addEventListener('click', () => {
      const { id, filename } = this.item;
      if (confirm(`Cancel the import of ${filename}? Nothing of it will be kept.`)) onCancel(id);
    });
    this.details = onOpen ? el('button', { type: 'button', class: 'small secondary', text: 'Details', hidden: true }) : null;
    this.details?.addEventListener('click', onOpen);
    this.focusAfterCancel = focusAfterCancel || this.details;
    this.actions = el('div', { class: 'actions', hidden: true }, this.cancel, this.details);
    this.root = el('article', { class: compact ? 'card' : null, 'data-testid': compact ? 'import-card' : 'import-detail' },
      el('div', { class: 'card-head' }, this.title, this.pill),
      this.bar, this.line, this.status, this.stats, this.summary, this.error, this.actions);
  }

  /** Shows `item` ({id, filename, upload, event, error}). */
  update(item) {
    this.item = item;
    const e = item.event;
    const status = statusOf(item);
    const percent = item.upload
      ? (item.upload.total ? (100 * item.upload.loaded) / item.upload.total : 0)
      : (e?.progress ?? 0);
    setAttr(this.root, 'data-status', status);
    setAttr(this.root, 'data-session', item.id || '');
    setText(this.title, item.filename);
    setText(this.pill, status);
    setAttr(this.pill, 'data-status', status);
    setAttr(this.bar, 'aria-valuenow', Math.round(percent));
    setAttr(this.bar, 'aria-label', `${item.filename} progress`);
    const width = `${Math.min(100, percent)}%`;
    if (this.shown.width !== width) this.fill.style.width = this.shown.width = width;
    setText(this.line, item.upload
      ? `Uploading ${formatBytes(item.upload.loaded)} of ${formatBytes(item.upload.total)} (${Math.floor(percent)}%)`
      : `${Math.floor(percent)}% · ${e?.phase ?? 'queued'}${e?.message ? ` · ${e.message}` : ''}`);
    this.updateStats(e && !item.upload ? e : null);
    this.rebuild('summary', e?.summary, (s) => summary(item.id, s, this.compact));
    this.rebuild('error', e?.error || item.error, errorBox);
    this.updateActions(item);
    setText(this.status, announcement(item, status));
  }

  updateStats(e) {
    this.stats.hidden = !e;
    if (!e) return;
    setText(this.rows, `Rows ${formatNumber(e.processedRows)}${e.totalRows != null ? ` / ${formatNumber(e.totalRows)}` : ''}`);
    setText(this.rate, `${formatNumber(Math.round(e.rowsPerSecond || 0))} rows/s`);
    setText(this.eta, `ETA ${TERMINAL.includes(e.status) ? '–' : formatEta(e.etaSeconds)}`);
    this.attempt.hidden = !(e.attempt > 1);
    setText(this.attempt, `attempt ${e.attempt}`);
  }

  /** Rebuilds the part `name` only when its data changed (a summary or an error arrives once). */
  rebuild(name, data, build) {
    const key = data ? JSON.stringify(data) : '';
    if (this.shown[name] === key) return;
    this.shown[name] = key;
    this[name].replaceChildren(...(data ? [build(data)] : []));
    this[name].hidden = !data;
  }

  updateActions(item) {
    const cancellable = Boolean(item.id && item.event && !TERMINAL.includes(item.event.status));
    if (this.details) this.details.hidden = !item.id;
    if (!cancellable && !this.cancel.hidden && document.activeElement === this.cancel) {
      this.cancel.hidden = true;
      this.focusAfterCancel?.focus();
    }
    this.cancel.hidden = !cancellable;
    this.actions.hidden = this.cancel.hidden && (this.details?.hidden ?? true);
  }
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setAttr(node, name, value) {
  const text = String(value);
  if (node.getAttribute(name) !== text) node.setAttribute(name, text);
}

function statusOf(item) {
  if (item.error && !item.event) return 'error';
  if (item.upload) return 'uploading';
  return item.event?.status || 'queued';
}

/** What the status region says: it changes with the phase and the outcome, never with a tick. */
function announcement(item, status) {
  const name = item.filename;
  const e = item.event;
  switch (status) {
    case 'uploading': return `${name}: uploading`;
    case 'completed': return `${name}: import completed, ${formatNumber(e.summary?.new)} new, ${formatNumber(e.summary?.resolved)} resolved`;
    case 'cancelled': return `${name}: import cancelled`;
    case 'error': {
      const error = e?.error || item.error;
      return `${name}: ${e ? 'import' : 'upload'} failed${error?.message ? `: ${error.message}` : ''}`;
    }
    default: return `${name}: ${PHASE_TEXT[e?.phase] ?? e?.phase ?? 'queued'}`;
  }
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

// No role="alert" here: the status region already says that the import failed, once.
function errorBox(error) {
  const box = el('div', { class: 'error-box', 'data-testid': 'error' },
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
