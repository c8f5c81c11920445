"""The blockdrive client: talks to a blockdrive server over HTTP and sends only what changed.

- :mod:`.api`  the HTTP client (timeouts, retries with backoff, typed errors)
- :mod:`.sync` push, pull and one-way sync over the block API (delta, resume, conflicts)
- :mod:`.cli`  the client commands of the ``blockdrive`` CLI (see its docstring for the
  command names chosen beside the server-side admin commands)

It imports ``storage.chunking`` (to cut blocks exactly as the server does) and nothing of
the server's database layer.
"""
