"""``/``: the sign-in form, or, signed in, the user's root folder; sign-out."""

from __future__ import annotations

from flask import redirect, request, url_for

from storage.errors import RateLimited, Unauthorized

from ..auth import accounts, client_address
from ..admin.signin import sign_out
from ..session import SESSION_HOURS, check_csrf, start
from . import bp, files
from .pages import page, safe_next, signed_in_user


def _form(error: str | None = None, status: int = 200, note: str | None = None):
    return page("signin.html", status=status, error=error, note=note,
                next=safe_next(request.values.get("next"), ""), email=request.form.get("email", ""))


@bp.get("/")
def home():
    user = signed_in_user()
    if user is None:
        return _form()
    return files.folder_page(user, user.root_id)


@bp.post("/")
@bp.post("/login")
def login():
    check_csrf()
    try:
        _user, digest = accounts().sign_in(request.form.get("email", ""), request.form.get("password", ""),
                                          client_address(), SESSION_HOURS)
    except Unauthorized:
        return _form("Wrong email or password.", 401)
    except RateLimited as exc:
        wait = exc.details.get("retry_after", 60)
        return _form(f"Too many failed sign-ins; try again in {wait} seconds.", 429)
    start(digest)
    return redirect(safe_next(request.form.get("next"), url_for("web.home")), 303)


@bp.post("/logout")
def logout():
    check_csrf()
    sign_out()
    return _form(note="Signed out.")
