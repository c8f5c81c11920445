"""The dashboard's HTML pages: the sign-in form, sign-out, and ``/admin`` itself.

Every page is sent with a Content-Security-Policy that allows no script and nothing from
elsewhere, is never cached, and may not be framed. A bearer token works on ``/admin`` too.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, get_flashed_messages, redirect, render_template, request, url_for

from jobs.catalog import JOBS

from storage import jobruns, reports
from storage.clock import now

from ..util import drive
from .dashboard import page_context
from .signin import check_csrf, csrf_token, require_admin_api, session_admin, sign_in, sign_out

bp = Blueprint("admin", __name__)

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def html_page(body: str, status: int = 200) -> Response:
    """An HTML page of ours, with the headers above (no script, no cache, no framing)."""
    resp = Response(body, status=status, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def _login_page(error: str | None = None, note: str | None = None) -> Response:
    return html_page(render_template("admin_login.html", csrf=csrf_token(), error=error, note=note))


@bp.get("/admin/login")
def login_form():
    return _login_page()


@bp.post("/admin/login")
def login():
    check_csrf()
    if sign_in(request.form.get("token", "")) is None:
        # The form again (200, as form posts go), with no session.
        return _login_page(error="That token is not an admin's API token.")
    return redirect(url_for("admin.dashboard"), 303)


@bp.post("/admin/logout")
def logout():
    check_csrf()
    sign_out()
    return _login_page(note="Signed out.")


@bp.get("/admin")
def dashboard():
    if request.headers.get("Authorization"):
        user = require_admin_api()  # a bad token or a non-admin: the API's 401/403 problem
    else:
        user = session_admin()
        if user is None:
            return redirect(url_for("admin.login_form"), 303)
    sm = drive().sm
    days = current_app.config["BLOCKDRIVE"]["jobs"]["report_days"]

    def report(sessions):
        snap = reports.latest(sessions)
        return snap, reports.history(sessions, now() - dt.timedelta(days=days)) if snap else []
    # the reports only read, and may come from the replica once it has caught up
    snap, series = drive().replica_reads.run(report)
    runs = jobruns.history(sm, 200)
    last_runs = {r["job"]: r for r in reversed(runs)}
    return html_page(render_template("admin.html", user=user, csrf=csrf_token(), jobs=JOBS, last_runs=last_runs,
                                     messages=get_flashed_messages(with_categories=True),
                                     **page_context(snap, series)))
