// One card per import (upload progress, then the import's live state), and the modal that
// follows the import the user opened. State changes are batched per animation frame; each card
// and the modal's detail is built once and then updated in place (see importview.js).

import { ImportView } from './importview.js';

const STORE_KEY = 'hexflow_imports';

export class Cards {
  constructor(container, modal, { onCancel }) {
    this.container = container;
    this.modal = modal;
    this.onCancel = onCancel;
    this.items = new Map(); // key -> {key, id, filename, upload, event, error, view}
    this.dirty = new Set();
    this.frame = null;
    this.openKey = null;
    this.modalView = null; // the detail of the import at openKey
    modal.querySelector('#modal-close').addEventListener('click', () => modal.close());
    modal.addEventListener('close', () => {
      this.openKey = null;
      this.modalView = null;
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
    if (key !== this.openKey) this.modalView = null;
    this.openKey = key;
    this.renderModal();
    if (!this.modal.open) this.modal.showModal();
  }

  renderCard(key) {
    const item = this.items.get(key);
    if (!item) return;
    if (!item.view) {
      item.view = new ImportView({ compact: true, onCancel: this.onCancel, onOpen: () => this.open(key) });
      item.view.root.dataset.key = key;
      this.container.prepend(item.view.root);
    }
    item.view.update(item);
  }

  renderModal() {
    const item = this.items.get(this.openKey);
    if (!item) return;
    if (!this.modalView) {
      const close = this.modal.querySelector('#modal-close');
      this.modalView = new ImportView({ compact: false, onCancel: this.onCancel, focusAfterCancel: close });
      this.modal.querySelector('#modal-content').replaceChildren(this.modalView.root);
    }
    const title = this.modal.querySelector('#modal-title');
    if (title.textContent !== item.filename) title.textContent = item.filename;
    this.modalView.update(item);
  }
}
