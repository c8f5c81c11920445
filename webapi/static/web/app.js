// blockdrive web app: the little JavaScript the pages use. Loaded as a module on every page;
// each feature looks for its own elements and does nothing on pages without them.

/** The session's CSRF token: every script request that changes something sends it. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : '';
}

/** fetch() against our own JSON API with the session cookie and the CSRF header. */
export async function api(method, path, body) {
  const headers = { 'X-CSRF-Token': csrfToken(), 'Accept': 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) {
    const err = new Error((data && (data.detail || data.title)) || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}
