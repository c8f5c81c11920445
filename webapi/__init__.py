"""blockdrive's HTTP face: a Flask app factory with one blueprint per resource."""

from __future__ import annotations

from typing import Mapping

from flask import Flask

from storage.config import Config, load_config


def create_app(config: Config | Mapping | None = None, drive=None) -> Flask:
    """Build the app. ``config`` is a loaded :class:`Config` or a nested mapping of overrides
    (tests); ``drive`` an existing :class:`storage.drive.Drive` to serve. No migrations and
    no network I/O happen here: ``blockdrive init`` prepares the database."""
    from storage.drive import Drive

    from . import account, errors, health

    if not isinstance(config, Config):
        config = load_config(overrides=config)
    app = Flask(__name__)
    app.config["BLOCKDRIVE"] = config
    app.config["MAX_CONTENT_LENGTH"] = None
    app.extensions["drive"] = drive or Drive(config)
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(account.bp)
    return app
