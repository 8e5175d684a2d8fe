// The history table and the findings view.

import { getJson } from './api.js';
import { el, formatDuration, formatNumber, formatTime } from './format.js';

export async function renderHistory(tbody) {
  const page = await getJson('/api/imports?limit=50');
  const rows = page.items.map((i) => el('tr', { 'data-session': i.sessionId },
    el('td', { 'data-label': 'File', text: i.filename }),
    el('td', { 'data-label': 'Status', text: i.status }),
    el('td', { 'data-label': 'Rows', text: formatNumber(i.summary?.rows ?? i.processedRows) }),
    el('td', { 'data-label': 'New', text: formatNumber(i.summary?.new) }),
    el('td', { 'data-label': 'Updated', text: formatNumber(i.summary?.updated) }),
    el('td', { 'data-label': 'Resolved', text: formatNumber(i.summary?.resolved) }),
    el('td', { 'data-label': 'Duration', text: formatDuration(i.durationMs) }),
    el('td', { 'data-label': 'Started', text: formatTime(i.createdAt) })));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: 8, class: 'muted', text: 'No imports yet.' })));
  tbody.replaceChildren(...rows);
}

export class FindingsView {
  constructor(root, moreButton, { state, severity, layout }) {
    this.root = root;
    this.more = moreButton;
    this.controls = { state, severity, layout };
    this.items = [];
    this.cursor = null;
    state.addEventListener('change', () => this.reload());
    severity.addEventListener('change', () => this.reload());
    layout.addEventListener('click', () => {
      const cards = root.dataset.layout !== 'cards';
      root.dataset.layout = cards ? 'cards' : 'table';
      layout.setAttribute('aria-pressed', String(cards));
      layout.textContent = cards ? 'Table' : 'Cards';
      this.render();
    });
    moreButton.addEventListener('click', () => this.load(true));
  }

  reload() {
    return this.load(false);
  }

  async load(append) {
    const params = new URLSearchParams({ state: this.controls.state.value, limit: '100' });
    if (this.controls.severity.value) params.set('severity', this.controls.severity.value);
    if (append && this.cursor) params.set('cursor', this.cursor);
    const page = await getJson(`/api/findings?${params}`);
    this.items = append ? [...this.items, ...page.items] : page.items;
    this.cursor = page.nextCursor;
    this.render();
  }

  render() {
    this.more.hidden = !this.cursor;
    if (!this.items.length) {
      this.root.replaceChildren(el('p', { class: 'muted', 'data-testid': 'no-findings', text: 'No findings match.' }));
      return;
    }
    if (this.root.dataset.layout === 'cards') {
      this.root.replaceChildren(el('div', { class: 'finding-cards' }, ...this.items.map((f) => el('div', { class: 'finding-card', 'data-testid': 'finding' },
        el('div', { class: `sev sev-${f.severity}`, text: f.severity }),
        el('div', { text: f.title }),
        el('div', { class: 'muted', text: `${f.asset}${f.port ? `:${f.port}/${f.protocol}` : ''} · ${f.state}` }),
        el('div', { class: 'muted', text: `first ${formatTime(f.firstSeen)} · last ${formatTime(f.lastSeen)}` }))))); 
      return;
    }
    const body = el('tbody', {}, ...this.items.map((f) => el('tr', { 'data-testid': 'finding' },
      el('td', { 'data-label': 'Severity', class: `sev sev-${f.severity}`, text: f.severity }),
      el('td', { 'data-label': 'Asset', text: `${f.asset}${f.port ? `:${f.port}/${f.protocol}` : ''}` }),
      el('td', { 'data-label': 'Check', text: f.title }),
      el('td', { 'data-label': 'CVEs', text: f.cves.join(', ') }),
      el('td', { 'data-label': 'First seen', text: formatTime(f.firstSeen) }),
      el('td', { 'data-label': 'Last seen', text: formatTime(f.lastSeen) }),
      el('td', { 'data-label': 'State', text: f.state }))));
    const head = el('thead', {}, el('tr', {}, ...['Severity', 'Asset', 'Check', 'CVEs', 'First seen', 'Last seen', 'State'].map((h) => el('th', { text: h }))));
    this.root.replaceChildren(el('div', { class: 'scroll' }, el('table', { class: 'table' }, head, body)));
  }
}
