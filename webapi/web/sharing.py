"""Sharing in the web app: a node's share page (people and links), "Shared with me", and
the pages a public link shows in a browser (a file, a folder's listing, a password form, a
file-drop form, or why the link no longer works).

Link pages are for anonymous visitors: no header, no account, ``Referrer-Policy:
no-referrer``. A right link password is never kept: the browser session keeps the link's
*unlock key* (:meth:`storage.sharing.Sharing.link_unlock`) under a digest of the token, so
the downloads that follow (``/s/<token>/content``) need no header. A file-drop page lists
only what this browser sent through it, under the names it sent, never the folder.
"""

from __future__ import annotations

import hashlib
import re

from flask import flash, g, redirect, request, session, url_for

from storage.errors import BlockdriveError, Gone, InvalidInput, NotFound, QuotaExceeded, RateLimited, Unauthorized
from storage.states import LINK_ROLES, SHARE_ROLES, LinkRole

from .. import traffic
from ..nodes import upload_limit
from ..session import check_csrf
from ..util import drive, int_arg, sharing
from . import bp
from .pages import form_action, login_page, page

DAY = 86400
MAX_DAYS = 3650
MAX_REMEMBERED = 20  # links a browser session keeps unlocked (the cookie stays small)
MAX_RECEIVED = 50  # names a file-drop page lists as received


# ---- the owner's pages ------------------------------------------------------------------------

@bp.get("/share/<id:node_id>")
@login_page
def share(node_id):
    return share_page(node_id)


def share_page(node_id: int, new_link: dict | None = None):
    """A node's share page; ``new_link`` (its role and URL) is shown once, in this answer only."""
    user = g.user
    node = drive().get(user.id, node_id)
    return page("share.html", node=node, shares=sharing().list_shares(user.id, node_id),
                links=sharing().list_links(user.id, node_id), new_link=new_link,
                share_roles=SHARE_ROLES, link_roles=LINK_ROLES)


def _share_url(node_id: int) -> str:
    return url_for("web.share", node_id=node_id)


@bp.post("/share/<id:node_id>/people")
@form_action
def share_grant(node_id):
    sharing().grant(g.user.id, node_id, request.form.get("email", ""), request.form.get("role", ""))
    return _share_url(node_id)


@bp.post("/share/<id:node_id>/people/<id:user_id>/revoke")
@form_action
def share_revoke(node_id, user_id):
    sharing().revoke(g.user.id, node_id, user_id)
    return _share_url(node_id)


@bp.post("/share/<id:node_id>/invitations/<id:invitation_id>/revoke")
@form_action
def share_revoke_invitation(node_id, invitation_id):
    sharing().revoke_invitation(g.user.id, node_id, invitation_id)
    return _share_url(node_id)


def _days(raw: str | None) -> int | None:
    """The form's "expires in (days)": empty for never, else 1 to 3650."""
    raw = (raw or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= MAX_DAYS:
        raise InvalidInput(f"a link expires after 1 to {MAX_DAYS} days (or leave it empty for never)")
    return int(raw)


@bp.post("/share/<id:node_id>/links")
@login_page
def share_link_create(node_id):
    """A new link, shown in the answer to this POST itself (not after a redirect), so its token
    never waits in a cookie or travels in a URL; a refused one is a message on the share page."""
    check_csrf()
    try:
        days = _days(request.form.get("expires_days"))
        link, token = sharing().create_link(g.user.id, node_id, request.form.get("role", LinkRole.VIEWER),
                                            days * DAY if days else None, request.form.get("password") or None)
    except BlockdriveError as exc:
        flash(str(exc), "error")
        return redirect(_share_url(node_id), 303)
    return share_page(node_id, {"role": link.role, "url": url_for("public.link_meta", token=token, _external=True)})


@bp.post("/share/<id:node_id>/links/<id:link_id>/revoke")
@form_action
def share_link_revoke(node_id, link_id):
    sharing().revoke_link(g.user.id, node_id, link_id)
    return _share_url(node_id)


@bp.get("/shared")
@login_page
def shared():
    return page("shared.html", items=sharing().shared_with_me(g.user.id))


# ---- public link pages ------------------------------------------------------------------------

def wants_html() -> bool:
    """A browser asking for a page: it prefers HTML to JSON (API clients send ``*/*`` or
    ``application/json`` and keep getting JSON)."""
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _link_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def remembered_unlock(token: str) -> str | None:
    """The unlock key this browser session holds for the link, if any."""
    keys = session.get("link_keys")
    return keys.get(_link_key(token)) if isinstance(keys, dict) else None


def _remember(name: str, token: str, value, limit: int) -> None:
    kept = dict(session.get(name) or {})
    kept.pop(_link_key(token), None)
    kept[_link_key(token)] = value
    session[name] = dict(list(kept.items())[-limit:])


def _received(token: str) -> list[dict]:
    got = session.get("link_received")
    return got.get(_link_key(token), []) if isinstance(got, dict) else []


def _link_response(template: str, status: int = 200, **ctx):
    resp = page(template, status=status, user=None, **ctx)
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Vary"] = "Accept"
    return resp


def _refusal(token: str, exc: BlockdriveError):
    """The page for a link that cannot be opened now, or None if ``exc`` is no such reason."""
    if isinstance(exc, NotFound):
        return _link_response("link_gone.html", 404, reason="This link does not exist, or no longer does.")
    if isinstance(exc, Gone):
        return _link_response("link_gone.html", 410, reason=f"Sorry: {exc}.")
    if isinstance(exc, Unauthorized):
        # A form to fill in, answered 200 as the sign-in form is (a 401 needs an HTTP
        # challenge a browser would act on); a wrong password is the 401.
        return _link_response("link_password.html", 200, token=token, error=None)
    return None


def link_page(token: str):
    """``GET /s/<token>`` for a browser: the file, the folder (``?node_id=`` below it), the
    file-drop form, the password form, or why the link cannot be opened."""
    unlock = remembered_unlock(token)
    node_id = int_arg("node_id", None, 1)
    try:
        link = sharing().link_info(token, None, unlock)
        if link.role == LinkRole.UPLOADER:
            return _link_response("link_drop.html", token=token, link=link, received=_received(token))
        _link, node = sharing().link_get(token, None, node_id, unlock=unlock)
        items, cursor = [], None
        if node.kind == "folder":
            items, cursor = sharing().link_children(token, None, node.id, unlock=unlock, limit=200,
                                                    cursor=request.args.get("cursor"))
    except (NotFound, Gone, Unauthorized) as exc:
        return _refusal(token, exc)
    template = "link_folder.html" if node.kind == "folder" else "link_file.html"
    return _link_response(template, token=token, link=link, node=node, items=items, next_cursor=cursor,
                          below=node_id is not None and node_id != link.node_id)


@bp.post("/s/<token>")
def link_password(token):
    """The password form's answer: a right password unlocks the link for this browser."""
    check_csrf()
    password = request.form.get("password", "")
    try:
        key = sharing().link_unlock(token, password)
    except Unauthorized:
        error = "Wrong password." if password else "Enter the link's password."
        return _link_response("link_password.html", 401, token=token, error=error)
    except RateLimited as exc:
        wait = exc.details.get("retry_after", 60)
        return _link_response("link_password.html", 429, token=token,
                              error=f"Too many wrong passwords; try again in {wait} seconds.")
    except (NotFound, Gone) as exc:
        return _refusal(token, exc)
    _remember("link_keys", token, key, MAX_REMEMBERED)
    return redirect(url_for("public.link_meta", token=token), 303)


@bp.post("/s/<token>/drop")
def link_drop_form(token):
    """The file-drop form (multipart, ``files``): each file added through the link; the
    page then lists what this browser sent."""
    request.max_content_length = upload_limit()
    check_csrf()
    unlock = remembered_unlock(token)
    got = list(_received(token))
    error, status = None, 400
    try:
        for f in request.files.getlist("files"):
            if not f.filename:
                continue
            res = sharing().link_put(token, None, f.filename, f.stream, unlock=unlock)
            traffic.uploaded(res.node.owner_id, res.node.size or 0)
            got.append({"name": f.filename, "size": res.node.size})
    except (NotFound, Gone, Unauthorized) as exc:
        return _refusal(token, exc)
    except QuotaExceeded:
        error, status = "The folder's owner has no room left for this file; it was not received.", 413
    except BlockdriveError as exc:
        error = str(exc)
    _remember("link_received", token, got[-MAX_RECEIVED:], MAX_REMEMBERED)
    if error:
        return _link_response("link_drop.html", status, token=token, received=got, error=error)
    return redirect(url_for("public.link_meta", token=token), 303)
