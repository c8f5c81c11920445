// Uploads on a folder page: files from the picker, a folder from the folder picker, or
// files and folders dropped onto the listing. Each file goes over tus (/api/v1/uploads, with
// the vendored tus-js-client loaded before this module) with the session's CSRF header and
// its own progress bar. A dropped connection is retried (retryDelays); after a reload, adding
// the same file again resumes it (tus keeps each upload's URL in localStorage under a
// fingerprint of folder, path, size and date). The queue itself (names, sizes, folder) is
// kept in localStorage too, so unfinished entries are listed after a reload or a sign-out.
import { api, csrfToken } from './app.js';

const section = document.getElementById('upload');
const QUEUE_KEY = 'blockdrive.upload-queue';
const ENDPOINT = '/api/v1/uploads';
const DEFAULT_CHUNK = 8 * 1024 * 1024;

function loadQueue() {
  try {
    const q = JSON.parse(localStorage.getItem(QUEUE_KEY));
    return Array.isArray(q) ? q : [];
  } catch {
    return [];
  }
}

function saveQueue(queue) {
  localStorage.setItem(QUEUE_KEY, JSON.stringify(queue));
}

function remember(entry) {
  saveQueue([...loadQueue().filter((e) => e.key !== entry.key), entry]);
}

function forget(key) {
  saveQueue(loadQueue().filter((e) => e.key !== key));
}

function formatSize(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function statusOf(err) {
  return err && err.originalResponse ? err.originalResponse.getStatus() : null;
}

function detailOf(err) {
  try {
    const body = JSON.parse(err.originalResponse.getBody());
    return body.detail || body.title || null;
  } catch {
    return null;
  }
}

/** A row of the queue: name, a pause/resume button, a progress bar and a status line. */
function makeRow(name, size, key) {
  const list = document.getElementById('upload-queue');
  for (const old of list.querySelectorAll('li')) {
    if (old.dataset.key === key) old.remove();
  }
  const li = document.createElement('li');
  li.dataset.key = key;
  const label = document.createElement('span');
  label.className = 'q-name';
  label.textContent = `${name} (${formatSize(size)})`;
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'q-pause';
  button.textContent = 'Pause';
  button.hidden = true;
  const bar = document.createElement('progress');
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute('aria-label', `Upload of ${name}`);
  const status = document.createElement('span');
  status.className = 'q-status';
  status.textContent = 'Waiting';
  li.append(label, button, bar, status);
  list.append(li);
  return { li, button, bar, status };
}

function say(row, text, kind) {
  row.status.textContent = text;
  row.status.className = `q-status${kind ? ` ${kind}` : ''}`;
}

function signedOut() {
  const note = document.getElementById('upload-signed-out');
  const link = document.getElementById('upload-signin');
  link.href = `/?next=${encodeURIComponent(location.pathname + location.search)}`;
  note.hidden = false;
}

/** Upload one file into folder ``parentId``; resolves to true once it is stored. */
function sendFile(file, parentId, path, row) {
  const key = row.li.dataset.key;
  remember({ key, name: path, size: file.size, parent: parentId, folder: location.pathname });
  return new Promise((resolve) => {
    let firstProgress = null;
    const upload = new window.tus.Upload(file, {
      endpoint: ENDPOINT,
      chunkSize: Number(section.dataset.chunkSize) || DEFAULT_CHUNK,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      headers: { 'X-CSRF-Token': csrfToken() },
      metadata: { filename: file.name, parent_id: String(parentId) },
      fingerprint: async (f) => ['blockdrive', parentId, path, f.size, f.lastModified].join('|'),
      removeFingerprintOnSuccess: true,
      // a refusal (signed out, over quota, a bad name) stays one however often it is asked
      onShouldRetry: (err) => {
        const status = statusOf(err);
        return status === null || status === 409 || status === 423 || status >= 500;
      },
      onProgress: (sent, total) => {
        if (firstProgress === null) {
          firstProgress = sent;
          row.li.dataset.firstProgress = String(sent);
        }
        row.bar.value = total ? Math.floor((sent * 100) / total) : 100;
        say(row, `${formatSize(sent)} of ${formatSize(total)}`);
      },
      onSuccess: () => {
        forget(key);
        row.bar.value = 100;
        row.button.hidden = true;
        row.li.dataset.state = 'done';
        say(row, 'Uploaded', 'good');
        resolve(true);
      },
      onError: (err) => {
        row.button.hidden = true;
        row.li.dataset.state = 'failed';
        if (statusOf(err) === 401) {
          signedOut();
          say(row, 'Signed out — sign in again and add the file to resume', 'bad');
        } else {
          // refused for good: nothing is kept on the server or in the queue
          forget(key);
          upload.abort(true).catch(() => {});
          say(row, detailOf(err) || err.message, 'bad');
        }
        resolve(false);
      },
    });
    row.button.hidden = false;
    row.button.addEventListener('click', () => {
      if (row.li.dataset.state === 'paused') {
        row.li.dataset.state = 'uploading';
        row.button.textContent = 'Pause';
        upload.start();
      } else {
        row.li.dataset.state = 'paused';
        row.button.textContent = 'Resume';
        say(row, 'Paused');
        upload.abort();
      }
    });
    row.li.dataset.state = 'uploading';
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0]);
        row.li.dataset.resumed = 'yes';
        say(row, 'Resuming');
      } else {
        say(row, 'Starting');
      }
      upload.start();
    });
  });
}

/** The id of folder ``name`` in ``parentId``, made if missing (found if it already exists). */
async function folderIn(parentId, name) {
  try {
    return (await api('POST', `/api/v1/nodes/${parentId}/children`, { name })).id;
  } catch (err) {
    if (err.status !== 409) throw err;
  }
  let cursor = null;
  do {
    const q = `limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await api('GET', `/api/v1/nodes/${parentId}/children?${q}`);
    const hit = page.items.find((n) => n.name === name && n.kind === 'folder');
    if (hit) return hit.id;
    cursor = page.next_cursor;
  } while (cursor);
  throw new Error(`${name} is a file here, not a folder`);
}

/** Upload ``items`` ({file, path}; path with "/" below this folder): every folder they need
 * is made first, then the files go one after another. */
async function enqueue(items) {
  const parentId = Number(section.dataset.parentId);
  const rows = items.map(({ file, path }) => makeRow(path, file.size, ['up', parentId, path, file.size, file.lastModified].join('|')));
  const folders = new Map();
  const targets = [];
  for (const [i, { path }] of items.entries()) {
    let target = parentId;
    try {
      const dirs = path.split('/').slice(0, -1);
      for (let d = 0; d < dirs.length; d += 1) {
        const at = dirs.slice(0, d + 1).join('/');
        if (!folders.has(at)) folders.set(at, await folderIn(target, dirs[d]));
        target = folders.get(at);
      }
    } catch (err) {
      if (err.status === 401) signedOut();
      say(rows[i], err.message, 'bad');
      target = null;
    }
    targets.push(target);
  }
  let ok = targets.every((t) => t !== null);
  for (const [i, { file, path }] of items.entries()) {
    if (targets[i] !== null) ok = (await sendFile(file, targets[i], path, rows[i])) && ok;
  }
  if (ok) location.reload();
}

/** Files (with their paths) below dropped entries, folders walked. */
async function dropped(dataTransfer) {
  const entries = Array.from(dataTransfer.items || [])
    .map((item) => (item.kind === 'file' ? [item.webkitGetAsEntry && item.webkitGetAsEntry(), item.getAsFile()] : null))
    .filter(Boolean);
  if (!entries.length) return Array.from(dataTransfer.files).map((file) => ({ file, path: file.name }));
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((ok, bad) => entry.file(ok, bad));
      out.push({ file, path: prefix + file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const [entry, file] of entries) {
    if (entry) await walk(entry, '');
    else if (file) out.push({ file, path: file.name });
  }
  return out;
}

/** Unfinished entries from an earlier page: shown with a note to add the file again. */
function showUnfinished() {
  for (const entry of loadQueue()) {
    const row = makeRow(entry.name, entry.size, entry.key);
    row.li.dataset.state = 'unfinished';
    const here = entry.folder === location.pathname;
    say(row, here ? 'Unfinished — add the file again to resume it'
      : `Unfinished (in ${entry.folder || 'another folder'}) — add the file again there to resume it`, 'bad');
  }
}

if (section && window.tus) {
  showUnfinished();
  const files = document.getElementById('pick-files');
  const folder = document.getElementById('pick-folder');
  files.addEventListener('change', () => {
    const items = Array.from(files.files).map((file) => ({ file, path: file.name }));
    files.value = '';
    enqueue(items);
  });
  folder.addEventListener('change', () => {
    const items = Array.from(folder.files).map((file) => ({ file, path: file.webkitRelativePath || file.name }));
    folder.value = '';
    enqueue(items);
  });
  const zone = document.getElementById('drop-zone');
  // a file dropped beside the listing must not make the browser leave the page for it
  for (const type of ['dragover', 'drop']) document.addEventListener(type, (ev) => ev.preventDefault());
  zone.addEventListener('dragover', (ev) => { ev.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('over');
    dropped(ev.dataTransfer).then(enqueue);
  });
}
