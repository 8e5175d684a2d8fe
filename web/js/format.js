// Formatting helpers shared by the views. Everything here returns plain strings: the views set
// them with textContent, never as HTML.

/** `45s`, `1m 30s`, `61m 5s`. */
export function formatEta(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${s % 60}s`;
}

export function formatNumber(n) {
  return n == null ? '–' : Number(n).toLocaleString('en-US');
}

export function formatBytes(n) {
  if (n == null) return '–';
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export function formatDuration(ms) {
  return ms == null ? '–' : formatEta(ms / 1000);
}

export function formatTime(ms) {
  return ms ? new Date(ms).toLocaleString() : '–';
}

/** One CSV cell; cells that a spreadsheet would run as a formula are prefixed with `'`. */
export function csvCell(value) {
  let s = value == null ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Console logging, on when localStorage.hexflow_debug is "true". */
export function debug(...args) {
  try {
    if (localStorage.getItem('hexflow_debug') === 'true') console.debug('[hexflow]', ...args);
  } catch { /* storage unavailable */ }
}

/** Creates an element with text content and attributes (never innerHTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}
