"""The blockdrive client: talks to a blockdrive server over HTTP and sends only what changed.

- :mod:`.api`   the HTTP client (timeouts, retries with backoff, typed errors)
- :mod:`.sync`  push, pull and one-way sync over the block API (delta, resume, conflicts)
- :mod:`.cli`   the user's commands of the ``blockdrive`` CLI
- :mod:`.main`  the ``blockdrive`` command itself: logging, one-line errors, and the operator
  commands plugged in from the server when it is installed

It needs only requests, tqdm and pyfastcdc (the ``client`` extra) and, of ``storage``, the
dependency-free modules: ``storage.chunking`` (to cut blocks exactly as the server does),
``storage.wire`` (the block API's framing and limits), ``storage.logs`` and ``storage.errors``.
``tests/unit/client/test_layering.py`` holds it to that.
"""
