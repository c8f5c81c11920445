"""Admin reports: ``/api/v1/admin/reports[/latest]`` (JSON, admin bearer token) and the
``/admin`` dashboard (server-rendered HTML with server-side SVG charts: no JavaScript, no
build step, nothing fetched from elsewhere, so it renders offline).

One module per concern:

- ``signin``: who is asking (bearer token or dashboard session), the session cookie, CSRF;
- ``api``: the JSON endpoints;
- ``pages``: the HTML pages (sign-in form, sign-out, dashboard);
- ``dashboard``: what the dashboard shows, figures formatted for people and its charts (pure);
- ``charts``: SVG line, bar and column charts with round axis ticks (pure: data in, SVG out);
- ``users``: user management, as JSON and as pages (:mod:`storage.useradmin`);
- ``runs``: the dashboard's "run now": a job's dry-run plan, then the real run.
"""

from __future__ import annotations

from flask import Flask

from . import api, pages, runs, signin, users


def init_app(app: Flask) -> None:
    """Give ``app`` the dashboard's signed session cookie and both admin blueprints."""
    signin.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(runs.bp)
