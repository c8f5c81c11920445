"""What every page of the web app shares: who is signed in, the page response with its
security headers, form handling (CSRF, post/redirect/get, errors as messages) and sizes
and dates as people read them."""

from __future__ import annotations

import datetime as dt
import functools
from urllib.parse import urlsplit

from flask import Response, flash, g, redirect, render_template, request, url_for

from storage.errors import BlockdriveError

from ..auth import accounts
from ..errors import status_for
from ..session import check_csrf, csrf_token, session_digest

# Scripts, styles and images from this origin only; no inline script or style; forms post
# here only; frames only of our own sandboxed previews; never framed by another site.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; media-src 'self'; frame-src 'self'; form-action 'self'; "
       "frame-ancestors 'self'; base-uri 'none'")


def secure(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    return resp


def page(template: str, status: int = 200, **ctx) -> Response:
    """Render ``web/<template>`` with the signed-in user and the CSRF token in its context."""
    ctx.setdefault("user", getattr(g, "user", None))
    body = render_template(f"web/{template}", csrf=csrf_token(), **ctx)
    return secure(Response(body, status=status, mimetype="text/html"))


def signed_in_user():
    """The user of the browser's live session, or None."""
    digest = session_digest()
    user = accounts().session_user(digest) if digest else None
    g.user = user
    return user


def shows_errors(view):
    """A GET page whose refusal (a node the user may not see, a bad cursor) is an HTML page
    with the error's message and status, never the API's JSON or a 500."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except BlockdriveError as exc:
            return page("problem.html", status=status_for(exc), message=str(exc))
    return wrapped


def login_page(view):
    """A page for signed-in users only: without a session, back to the sign-in form, with
    the page asked for kept so the user arrives there after signing in. A refusal is shown
    as a page (``shows_errors``)."""
    view = shows_errors(view)

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if signed_in_user() is None:
            return redirect(url_for("web.home", next=request.full_path.rstrip("?")), 303)
        return view(*args, **kwargs)
    return wrapped


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site (never another host: an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default


def form_action(view):
    """A form's POST: signed in (else to the sign-in form), CSRF checked, then the view,
    which returns where to go next. A refused operation (any :class:`BlockdriveError`)
    becomes a message shown on the page the form came from; nothing else is lost."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if signed_in_user() is None:
            return redirect(url_for("web.home"), 303)
        check_csrf()
        back = safe_next(request.form.get("next"), url_for("web.home"))
        try:
            target = view(*args, **kwargs)
        except BlockdriveError as exc:
            flash(str(exc), "error")
            return redirect(back, 303)
        return redirect(safe_next(target, back) if isinstance(target, str) else back, 303)
    return wrapped


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def human_time(t: dt.datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M")


# The header's links, each shown once its page exists: (endpoint, label).
NAV = [("web.shared", "Shared with me"), ("web.trash", "Trash"), ("web.search", "Search"),
       ("web.account", "Account")]


def init_app(app) -> None:
    """Filters and the header's links for every page's template."""
    app.jinja_env.filters.update(size=human_size, when=human_time)

    @app.context_processor
    def _nav():
        return {"web_nav": [(e, label) for e, label in NAV if e in app.view_functions]}
