"""blockdrive's HTTP face: a Flask app factory with one blueprint per resource."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from storage.config import Config, load_config

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: Config | Mapping | None = None, drive=None) -> Flask:
    """Build the app. ``config`` is a loaded :class:`Config` or a nested mapping of overrides
    (tests); ``drive`` an existing :class:`storage.drive.Drive` to serve. No migrations and
    no network I/O happen here: ``blockdrive init`` prepares the database."""
    # Flask is imported here, not at the top: the blockdrive CLI imports this package, and
    # its commands (the sync client's above all) need no web framework at start-up.
    from flask import Flask

    from storage.drive import Drive
    from storage.ratelimit import Limiter
    from storage.sharing import Sharing
    from storage.uploads import Uploads

    from . import (account, batch, blocks, changes, errors, health, metrics, nextcloud, nodes, openapi, public,
                   search, shares, tokens, tus)

    if not isinstance(config, Config):
        config = load_config(overrides=config)
    app = Flask(__name__)
    app.config["BLOCKDRIVE"] = config
    srv = config["server"]
    # JSON bodies are small; the upload views raise this limit for their own request.
    app.config["MAX_CONTENT_LENGTH"] = srv["max_json_bytes"]
    app.json.sort_keys = False
    from .util import IdConverter, Sha256Converter
    app.url_map.converters.update(id=IdConverter, hash=Sha256Converter)
    d = drive or Drive(config)
    limiter = Limiter(d.sm, srv["auth_max_failures"], srv["auth_window_seconds"])
    app.extensions.update(drive=d, limiter=limiter, sharing=Sharing(d, limiter), uploads=Uploads(d))
    errors.register(app)
    from .dav.app import DavMount
    from .edge import BodyGuard
    app.wsgi_app = BodyGuard(DavMount(app, app.wsgi_app))
    metrics.instrument(app)
    for mod in (health, metrics, account, tokens, nodes, shares, public, tus, blocks, batch, openapi, nextcloud,
                search, changes):
        app.register_blueprint(mod.bp)
    from . import admin  # admin reports and dashboard (its session needs the app's secret key)
    admin.init_app(app)
    from . import web  # the web app's pages, on the same session as the dashboard
    from .web.pages import init_app as init_pages
    app.register_blueprint(web.bp)
    init_pages(app)

    @app.after_request
    def _security_headers(resp):
        from flask import request
        if resp.status_code >= 400 and (request.content_length or request.headers.get("Transfer-Encoding")):
            # The body may be partly unread (a refused upload): a connection reused after it
            # would parse the leftover bytes as the next request.
            resp.headers["Connection"] = "close"
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp
    return app
