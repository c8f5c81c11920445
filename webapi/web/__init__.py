"""The web app: server-rendered pages (Jinja) for people in a browser, with a little
JavaScript where it helps (uploads over tus, drag-and-drop, selection), all served from
``/static`` and allowed by a Content-Security-Policy that permits no inline script.

Every page calls the same :class:`storage.drive.Drive` operations as the JSON API, as the
signed-in user, so permissions, quotas, versions and the trash are the API's. Forms post
back to the page routes with the session's CSRF token and are answered with a redirect
(post/redirect/get); a refused operation comes back as a message on the page it came from.

Modules: ``pages`` (the shared page machinery), ``signin`` (``/``, sign-in and sign-out);
each area of the app adds a module of routes to ``bp``.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__)

from . import signin  # noqa: E402,F401  (routes register on bp when imported)
from . import files, transfer, trash  # noqa: E402,F401
from . import sharing  # noqa: E402,F401
from . import search  # noqa: E402,F401
from . import account, preview  # noqa: E402,F401
