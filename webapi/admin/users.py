"""Admin user management over HTTP: the JSON API under ``/api/v1/admin/users`` (an admin's
bearer token, or an admin's browser session with its CSRF header) and the ``/admin/users``
pages (an admin's session; plain forms with the session's CSRF token, no script).

Both are thin: they parse, call :class:`storage.useradmin.UserAdmin` and show the result.
The acting admin is passed along, so nobody disables or deletes their own account.
"""

from __future__ import annotations

import functools
from typing import Annotated

from flask import (Blueprint, Response, flash, g, get_flashed_messages, jsonify, redirect, render_template,
                   request, url_for)
from pydantic import WithJsonSchema

from storage.errors import BlockdriveError, InvalidInput
from storage.useradmin import PLANS, UserAdmin, new_password

from ..schemas import Body, Email, Size, parse
from ..util import drive
from ..web.pages import safe_next
from .dashboard import fmt_bytes
from .pages import html_page
from .signin import check_csrf, csrf_token, require_admin_api, session_admin

bp = Blueprint("admin_users", __name__)

Plan = Annotated[str | None, WithJsonSchema({"enum": list(PLANS)})]
Flag = Annotated[bool | None, WithJsonSchema({"type": "boolean"})]
Password = Annotated[str | None, WithJsonSchema({"type": "string", "minLength": 8})]


class NewUser(Body):
    """An account to create; without ``password`` one is generated and returned once."""
    email: Email
    password: Password = None
    plan: Plan = None
    quota_bytes: Size = None
    is_admin: Flag = None


class UserPatch(Body):
    plan: Plan = None
    quota_bytes: Size = None
    is_admin: Flag = None
    disabled: Flag = None


class PasswordReset(Body):
    """The new password; without it one is generated and returned once."""
    password: Password = None


MODELS = (NewUser, UserPatch, PasswordReset)


def users() -> UserAdmin:
    return UserAdmin(drive())


# ---- JSON API ------------------------------------------------------------------------------

@bp.get("/api/v1/admin/users")
def api_list():
    require_admin_api()
    items, cursor = users().list(request.args.get("q", ""), request.args.get("cursor") or None)
    return jsonify(items=[u.as_dict() for u in items], next_cursor=cursor)


@bp.post("/api/v1/admin/users")
def api_create():
    require_admin_api()
    body = parse(NewUser)
    password = body.password or new_password()
    user = users().create(body.email or "", password, body.plan or "free", body.quota_bytes, bool(body.is_admin))
    out = user.as_dict()
    if not body.password:
        out["password"] = password
    return jsonify(out), 201


@bp.get("/api/v1/admin/users/<id:user_id>")
def api_show(user_id: int):
    require_admin_api()
    return jsonify(users().show(user_id).as_dict())


@bp.patch("/api/v1/admin/users/<id:user_id>")
def api_update(user_id: int):
    admin = require_admin_api()
    body = parse(UserPatch)
    ua = users()
    if body.disabled is True:
        ua.disable(user_id, acting_id=admin.id)
    ua.update(user_id, plan=body.plan, quota_bytes=body.quota_bytes, is_admin=body.is_admin)
    if body.disabled is False:
        ua.enable(user_id)
    return jsonify(ua.show(user_id).as_dict())


@bp.delete("/api/v1/admin/users/<id:user_id>")
def api_delete(user_id: int):
    admin = require_admin_api()
    trashed = users().delete(user_id, acting_id=admin.id)
    return jsonify({**users().show(user_id).as_dict(), "trashed": trashed})


@bp.post("/api/v1/admin/users/<id:user_id>/password")
def api_password(user_id: int):
    require_admin_api()
    generated = users().reset_password(user_id, parse(PasswordReset).password)
    return jsonify({"password": generated} if generated else {}), 200


# ---- pages ---------------------------------------------------------------------------------

def admin_html(template: str, status: int = 200, **ctx) -> Response:
    """An admin page: ``template`` with the admin, the CSRF token and the flashed messages."""
    return html_page(render_template(template, user=g.user, csrf=csrf_token(), fmt_bytes=fmt_bytes,
                                     plans=PLANS, messages=get_flashed_messages(with_categories=True), **ctx),
                     status)


def _admin_or_none():
    """The session's admin, or a response for anyone else (sign-in for nobody, 403 for a
    signed-in user who is not an admin)."""
    admin = session_admin()
    if admin is not None:
        g.user = admin
        return admin, None
    if request.method == "GET":
        return None, redirect(url_for("web.home", next=request.full_path.rstrip("?")), 303)
    return None, redirect(url_for("web.home"), 303)


def admin_page(view):
    """A GET page for admins signed in with a session."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        admin, refused = _admin_or_none()
        return refused or view(*args, **kwargs)
    return wrapped


def admin_form(view):
    """An admin form's POST: session and CSRF checked, then the view, which returns where to
    go next (or a page of its own). A refused operation becomes a message on the page the
    form came from."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        admin, refused = _admin_or_none()
        if refused:
            return refused
        check_csrf()
        back = safe_next(request.form.get("next"), url_for("admin_users.users_page"))
        try:
            target = view(admin, *args, **kwargs)
        except BlockdriveError as exc:
            flash(str(exc), "error")
            return redirect(back, 303)
        if isinstance(target, Response):
            return target
        return redirect(safe_next(target, back), 303)
    return wrapped


@bp.get("/admin/users")
@admin_page
def users_page():
    q = request.args.get("q", "")
    try:
        items, cursor = users().list(q, request.args.get("cursor") or None)
    except BlockdriveError as exc:
        flash(str(exc), "error")
        items, cursor = [], None
    return admin_html("admin_users.html", items=items, q=q, next_cursor=cursor)


@bp.post("/admin/users")
@admin_form
def create_form(admin):
    f = request.form
    quota = f.get("quota", "").strip() or None
    given = f.get("password", "")
    password = given or new_password()
    user = users().create(f.get("email", ""), password, f.get("plan", "free"), quota, f.get("is_admin") == "on")
    if not given:
        # Shown in this answer only: a generated password must not travel in a cookie or a URL.
        return admin_html("admin_user.html", d=users().show(user.id), password=password)
    flash(f"Created {user.email}.", "note")
    return url_for("admin_users.user_page", user_id=user.id)


@bp.get("/admin/users/<id:user_id>")
@admin_page
def user_page(user_id: int):
    return admin_html("admin_user.html", d=users().show(user_id), password=None)


def _here(user_id: int) -> str:
    return url_for("admin_users.user_page", user_id=user_id)


@bp.post("/admin/users/<id:user_id>")
@admin_form
def update_form(admin, user_id: int):
    f = request.form
    quota = f.get("quota", "").strip() or None
    plan = f.get("plan") or None
    current = users().show(user_id).user
    users().update(user_id, plan=None if plan == current.plan else plan, quota_bytes=quota,
                   is_admin=f.get("is_admin") == "on")
    flash("Saved.", "note")
    return _here(user_id)


@bp.post("/admin/users/<id:user_id>/disable")
@admin_form
def disable_form(admin, user_id: int):
    n = users().disable(user_id, acting_id=admin.id)
    flash(f"Disabled; {n} token(s) and session(s) revoked.", "note")
    return _here(user_id)


@bp.post("/admin/users/<id:user_id>/enable")
@admin_form
def enable_form(admin, user_id: int):
    users().enable(user_id)
    flash("Enabled.", "note")
    return _here(user_id)


@bp.post("/admin/users/<id:user_id>/password")
@admin_form
def password_form(admin, user_id: int):
    generated = users().reset_password(user_id, request.form.get("password") or None)
    if generated:
        return admin_html("admin_user.html", d=users().show(user_id), password=generated)
    flash("Password set; the user's sessions and tokens were revoked.", "note")
    return _here(user_id)


@bp.post("/admin/users/<id:user_id>/delete")
@admin_form
def delete_form(admin, user_id: int):
    if request.form.get("confirm") != "on":
        raise InvalidInput("tick the box to confirm the deletion")
    n = users().delete(user_id, acting_id=admin.id)
    flash(f"Deleted: {n} item(s) moved to the account's trash; gc removes the account after the trash "
          "retention.", "note")
    return _here(user_id)
