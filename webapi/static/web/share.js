// Sharing pages: copy a new link's address; file-drop uploads with a progress bar.
// Without JavaScript both still work: the address is in a read-only input, and the drop
// form posts as a normal multipart form.

function setupCopy() {
  for (const button of document.querySelectorAll('[data-copy]')) {
    const input = document.getElementById(button.dataset.copy);
    const status = document.querySelector('[data-copy-status]');
    if (!input) continue;
    button.hidden = false;
    input.addEventListener('focus', () => input.select());
    button.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(input.value);
        if (status) status.textContent = 'Copied.';
      } catch (err) {
        // No clipboard (an insecure origin or a refused permission): select it for Ctrl+C.
        input.focus();
        input.select();
        if (status) status.textContent = 'Press Ctrl+C (or long-press) to copy the selected address.';
      }
    });
  }
}

function setupDrop() {
  const form = document.getElementById('drop-form');
  const bar = document.getElementById('drop-progress');
  const status = document.getElementById('drop-status');
  if (!form || !bar || !window.FormData) return;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open('POST', form.action);
    xhr.setRequestHeader('Accept', 'text/html');
    bar.hidden = false;
    bar.value = 0;
    status.textContent = 'Sending…';
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener('load', () => {
      // The form's answer is the page to show next (after its redirect, or an error page).
      if (xhr.status < 400 && xhr.responseURL && xhr.responseURL !== form.action) {
        window.location.assign(xhr.responseURL);
        return;
      }
      const page = new DOMParser().parseFromString(xhr.responseText, 'text/html');
      const why = page.querySelector('#drop-error, #link-reason, #link-error');
      status.textContent = why ? why.textContent : `Not sent (HTTP ${xhr.status}).`;
      bar.hidden = true;
    });
    xhr.addEventListener('error', () => {
      status.textContent = 'The connection failed; nothing more was sent. Try again.';
      bar.hidden = true;
    });
    xhr.send(new FormData(form));
  });
}

setupCopy();
setupDrop();
