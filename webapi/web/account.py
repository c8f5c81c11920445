"""The account page (``/account``): what the quota holds, split as ``Drive.usage`` splits it
(current files, old versions, trash, pending uploads), the plan, the password, and the
user's API tokens and app passwords.

A password change revokes every token and session of the user, this browser's too; the
browser is then given a fresh session, so the person who changed it stays signed in here
and nowhere else. A new token needs the password again (the same throttled check as a
sign-in: a session left open on a shared computer must not mint long-lived credentials),
and is shown once, in the answer to the form's POST.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import flash, g, redirect, request, url_for

from storage.errors import BlockdriveError, InvalidInput

from ..auth import accounts, client_address
from ..session import SESSION_HOURS, check_csrf, start
from ..util import drive
from . import bp
from .pages import form_action, login_page, page

BAR_WIDTH = 1000  # the quota bar's SVG width in user units
MIN_WIDTH = 4  # the least width of a part that holds anything


@dataclass(frozen=True)
class Segment:
    """One part of the quota bar: its label, bytes, CSS class, and place on the bar."""

    label: str
    bytes: int
    css: str
    x: float = 0.0
    width: float = 0.0


def quota_segments(usage) -> tuple[list[Segment], int]:
    """The bar's segments laid end to end on :data:`BAR_WIDTH`, and the bytes still free.
    A part that holds anything is at least :data:`MIN_WIDTH` wide, so that it shows; over
    quota (a plan lowered under what is stored), the bar is scaled to what is held."""
    parts = [("Current files", usage.current, "current"), ("Old versions", usage.old_versions, "old"),
             ("Trash", usage.trash, "trash"), ("Uploads in progress", usage.pending, "pending")]
    held = sum(b for _l, b, _c in parts)
    scale = BAR_WIDTH / max(usage.quota, held, 1)
    widths = [max(n * scale, MIN_WIDTH) if n > 0 else 0.0 for _l, n, _c in parts]
    shrink = min(1.0, BAR_WIDTH / max(sum(widths), 1))
    x, out = 0.0, []
    for (label, n, css), width in zip(parts, widths):
        out.append(Segment(label, n, css, round(x, 2), round(width * shrink, 2)))
        x += width * shrink
    return out, max(usage.quota - held, 0)


@bp.get("/account")
@login_page
def account():
    return account_page()


def account_page(new_token: dict | None = None):
    """The account page; ``new_token`` (name and secret) is shown once, in this answer only."""
    usage = drive().usage(g.user.id)
    segments, free = quota_segments(usage)
    tokens = accounts().tokens(g.user.id)
    return page("account.html", usage=usage, segments=segments, free=free, bar_width=BAR_WIDTH,
                api_tokens=[t for t in tokens if t.kind != "session"],
                sessions=[t for t in tokens if t.kind == "session"],
                new_token=new_token)


@bp.post("/account/password")
@form_action
def change_password():
    new = request.form.get("new_password", "")
    if new != request.form.get("repeat_password", ""):
        raise InvalidInput("the new password and its repetition differ")
    n = accounts().change_password(g.user.id, request.form.get("old_password", ""), new, client_address(), None)
    start(accounts().open_session(g.user.id, None, SESSION_HOURS))
    flash(f"Password changed. {max(n - 1, 0)} other sessions and tokens were signed out; "
          "this browser stays signed in with a new session.", "ok")
    return url_for("web.account")


@bp.post("/account/tokens")
@login_page
def create_token():
    """A new token, shown in the answer to this POST itself (not after a redirect), so the
    secret never waits in a cookie or travels in a URL."""
    check_csrf()
    name = request.form.get("name", "").strip()[:100] or "app password"
    try:
        token = accounts().login(g.user.email, request.form.get("password", ""), client_address(), name)
    except BlockdriveError as exc:
        flash(str(exc), "error")
        return redirect(url_for("web.account"), 303)
    return account_page({"name": name, "token": token})


@bp.post("/account/tokens/<id:token_id>/revoke")
@form_action
def revoke_token(token_id):
    accounts().revoke(g.user.id, token_id)
    flash("Revoked: whatever used it is signed out.", "ok")
    return url_for("web.account")
