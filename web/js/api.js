// HTTP calls to the upload gateway. The token (multi-user mode) rides on every call.

const TOKEN_KEY = 'hexflow_token';

export function token() {
  try { return localStorage.getItem(TOKEN_KEY) || null; } catch { return null; }
}

export function setToken(value) {
  try {
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage unavailable */ }
}

/** An error answer of the API: `{error:{code,message}}` with its status. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code || `HTTP_${status}`;
    this.body = body;
  }
}

function headers() {
  const t = token();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

export async function getJson(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function postJson(path) {
  const response = await fetch(path, { method: 'POST', headers: headers() });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/**
 * Uploads one file with XHR, for its upload progress. Resolves with the 202 body; rejects with
 * an ApiError (refused) or an Error (network).
 */
export function uploadFile(file, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) if (v) form.append(k, v);
    form.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/imports');
    const t = token();
    if (t) xhr.setRequestHeader('Authorization', `Bearer ${t}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 202) resolve(body); else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new Error('the upload failed: the server could not be reached'));
    xhr.send(form);
  });
}
