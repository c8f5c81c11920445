"""Admin reports: ``/api/v1/admin/reports[/latest]`` (JSON, admin bearer token) and the
``/admin`` dashboard (server-rendered HTML with server-side SVG charts: no JavaScript, no
build step, nothing fetched from elsewhere, so it renders offline).

Dashboard login: the admin pastes an API token into ``/admin/login``; the POST carries a CSRF
token bound to the session and opens a server-side session (a row in ``api_tokens`` of kind
``session``, expiring after ``SESSION_HOURS``). The signed cookie (HttpOnly, SameSite=Strict,
Secure behind HTTPS) names that row only; every request re-checks it and ``users.is_admin``.
Signing out deletes the row, so a copied cookie dies with it; so does revoking the pasted
token, logging it out, or changing the password. A bearer token works on ``/admin`` too.
Non-admins get 403.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from flask import (Blueprint, Response, current_app, g, jsonify, redirect, render_template, request, session,
                   url_for)
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup, escape

from storage import reports
from storage.clock import now
from storage.errors import Forbidden, InvalidInput, NotFound

from .auth import accounts, current_user, served_over_https
from .util import drive, parse_uint

bp = Blueprint("admin", __name__)

SESSION_HOURS = 12
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


# ---- secret key -------------------------------------------------------------------------------

def secret_key(cfg) -> str:
    """``server.secret_key``, or one generated once into ``<home>/secret_key`` (0600) and
    shared by every worker on this host. Behind a load balancer set it in the config."""
    if cfg["server"]["secret_key"]:
        return cfg["server"]["secret_key"]
    path = Path(cfg.home) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:  # first worker to get here writes it; the others read it
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
            fh.flush()
            os.fsync(fh.fileno())
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        import time
        time.sleep(0.01)  # another worker created it a moment ago and is writing
    raise RuntimeError(f"{path} is empty")


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure per request: whether the client came over HTTPS
    is known only from the request (a trusted proxy's X-Forwarded-Proto) or the config."""

    def get_cookie_secure(self, app) -> bool:
        return served_over_https()


def init_app(app) -> None:
    app.secret_key = secret_key(app.config["BLOCKDRIVE"])
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_NAME="blockdrive_admin", SESSION_COOKIE_PATH="/admin")
    app.session_interface = _SessionInterface()
    app.register_blueprint(bp)


# ---- who is asking ---------------------------------------------------------------------------

def _session_digest() -> bytes | None:
    try:
        return bytes.fromhex(session.get("sid") or "") or None
    except (TypeError, ValueError):
        return None


def _admin_from_session():
    digest = _session_digest()
    user = accounts().session_user(digest) if digest else None
    return user if user is not None and user.is_admin else None


def require_admin_api():
    user = current_user()
    if not user.is_admin:
        raise Forbidden("admin only")
    g.user = user


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    sent, want = request.form.get("csrf", ""), session.get("csrf", "")
    if not want or not hmac.compare_digest(sent, want):
        raise Forbidden("missing or wrong CSRF token; reload the form")


def _html(body: str, status: int = 200) -> Response:
    resp = Response(body, status=status, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


# ---- JSON ------------------------------------------------------------------------------------

@bp.get("/api/v1/admin/reports/latest")
def latest():
    require_admin_api()
    snap = reports.latest(drive().sm)
    if snap is None:
        raise NotFound("no report yet: run `blockdrive jobs run report`")
    return jsonify(snap)


def _since_arg():
    raw = request.args.get("since")
    if not raw:
        return None
    try:
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("since must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T06:00:00Z") from None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


@bp.get("/api/v1/admin/reports")
def history():
    require_admin_api()
    limit = parse_uint(request.args.get("limit", "1000"), 10000)
    if not limit:
        raise InvalidInput("limit must be an integer in [1, 10000]")
    return jsonify(items=reports.history(drive().sm, _since_arg(), limit))


# ---- dashboard -------------------------------------------------------------------------------

@bp.get("/admin/login")
def login_form():
    return _html(render_template("admin_login.html", csrf=_csrf(), error=None))


@bp.post("/admin/login")
def login():
    _check_csrf()
    token = request.form.get("token", "").strip()
    digest = hashlib.sha256(token.encode()).digest()
    user = reports.admin_for_token_hash(drive().sm, digest) if token else None
    if user is None:
        # The form again (200, as form posts go), with no session.
        return _html(render_template("admin_login.html", csrf=_csrf(),
                                     error="That token is not an admin's API token."))
    _, token_id = accounts().authenticate(token)
    sid = accounts().open_session(user.id, token_id, SESSION_HOURS)
    session.clear()
    session.update(sid=sid.hex(), csrf=secrets.token_urlsafe(32))
    return redirect(url_for("admin.dashboard"), 303)


@bp.post("/admin/logout")
def logout():
    _check_csrf()
    digest = _session_digest()
    if digest:
        accounts().close_session(digest)
    session.clear()
    return _html(render_template("admin_login.html", csrf=_csrf(), error=None, note="Signed out."))


@bp.get("/admin")
def dashboard():
    if request.headers.get("Authorization"):
        require_admin_api()  # a bad token or a non-admin: the API's 401/403 problem
        user = g.user
    else:
        user = _admin_from_session()
        if user is None:
            return redirect(url_for("admin.login_form"), 303)
    sm = drive().sm
    snap = reports.latest(sm)
    days = current_app.config["BLOCKDRIVE"]["jobs"]["report_days"]
    series = reports.history(sm, now() - dt.timedelta(days=days)) if snap else []
    return _html(render_template("admin.html", user=user, snap=snap, h=snap["headline"] if snap else {},
                                 charts=charts(snap, series) if snap else {}, csrf=_csrf(), fmt_bytes=fmt_bytes,
                                 fmt_ratio=fmt_ratio))


# ---- formatting and charts (server-side SVG) -------------------------------------------------

def fmt_bytes(n) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PiB"


def fmt_ratio(r) -> str:
    return "–" if r is None else f"{r:.2f}×"


COLORS = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04"]


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    import math
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def _legend(series, width: int, right: int) -> str:
    """Swatches on the title's row, right-aligned, so they never cover the plot."""
    out, x = [], width - right
    for k, (name, _vals) in reversed(list(enumerate(series))):
        x -= 24 + 7 * len(name)
        c = COLORS[k % len(COLORS)]
        out.append(f'<rect x="{x}" y="7" width="10" height="10" fill="{c}"/>'
                   f'<text x="{x + 14}" y="16" class="ax">{escape(name)}</text>')
    return "".join(out)


def line_chart(title: str, labels: list[str], series: list[tuple[str, list[float]]], fmt=str,
               width: int = 560, height: int = 220, min_top: float = 0) -> Markup:
    """A line chart of ``series`` (name, values) over ``labels``; one point draws as a dot."""
    left, right, top, bottom = 72, 40, 28, 34
    w, h = width - left - right, height - top - bottom
    top_v = _nice_max(max([min_top, *(v for _, vals in series for v in vals if v is not None)]))
    n = len(labels)
    def x(i):
        return left + (w * i / (n - 1) if n > 1 else w / 2)

    def y(v):
        return top + h - h * (v / top_v)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text x="4" y="16" class="t">{escape(title)}</text>', _legend(series, width, right)]
    for i in range(5):
        v = top_v * i / 4
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" class="ax" text-anchor="end">{escape(fmt(v))}</text>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        out.append(f'<text x="{x(i):.1f}" y="{top + h + 16}" class="ax" text-anchor="middle">{escape(labels[i])}</text>')
    for k, (name, vals) in enumerate(series):
        c = COLORS[k % len(COLORS)]
        pts = [(x(i), y(v)) for i, v in enumerate(vals) if v is not None]
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                       + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
        for a, b in pts:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{c}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(title: str, items: list[tuple[str, float]], fmt=str, width: int = 560, color: str = COLORS[0]) -> Markup:
    """Horizontal bars, one per (label, value)."""
    left, right, row = 170, 90, 24
    height = 30 + row * max(len(items), 1)
    w = width - left - right
    top_v = max((v for _, v in items), default=0) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text x="4" y="16" class="t">{escape(title)}</text>']
    if not items:
        out.append('<text x="4" y="44" class="ax">nothing yet</text>')
    for i, (label, v) in enumerate(items):
        yy = 26 + i * row
        bw = w * v / top_v
        short = label if len(label) <= 26 else label[:25] + "…"
        out.append(f'<text x="{left - 6}" y="{yy + 14}" class="ax" text-anchor="end">{escape(short)}</text>'
                   f'<rect x="{left}" y="{yy + 2}" width="{max(bw, 1):.1f}" height="{row - 8}" fill="{color}"/>'
                   f'<text x="{left + bw + 6:.1f}" y="{yy + 14}" class="ax">{escape(fmt(v))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def column_chart(title: str, labels: list[str], series: list[tuple[str, list[float]]], fmt=str,
                 width: int = 560, height: int = 220) -> Markup:
    """Grouped vertical bars: one group per label, one bar per series."""
    left, right, top, bottom = 60, 12, 28, 34
    w, h = width - left - right, height - top - bottom
    # Counts: a top that is a multiple of 4, so the 4 gridlines fall on whole numbers.
    top_v = max(4, -(-max((v for _, vals in series for v in vals), default=0) // 4) * 4)
    n, k = max(len(labels), 1), max(len(series), 1)
    gw = w / n
    bw = max(min(gw * 0.8 / k, 40), 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<text x="4" y="16" class="t">{escape(title)}</text>', _legend(series, width, right)]
    for i in range(5):
        v = top_v * i / 4
        yy = top + h - h * v / top_v
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" class="ax" text-anchor="end">{escape(fmt(v))}</text>')
    step = max(1, n // 8)
    for i, lab in enumerate(labels):
        cx = left + gw * i + gw / 2
        if i % step == 0:
            out.append(f'<text x="{cx:.1f}" y="{top + h + 16}" class="ax" text-anchor="middle">{escape(lab)}</text>')
        for j, (_name, vals) in enumerate(series):
            bh = h * vals[i] / top_v
            bx = cx - bw * k / 2 + j * bw
            out.append(f'<rect x="{bx:.1f}" y="{top + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                       f'fill="{COLORS[j % len(COLORS)]}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def charts(snap: dict, series: list[dict]) -> dict[str, Markup]:
    labels = [s["taken_at"][5:16].replace("T", " ") for s in series]
    hs = [s["headline"] for s in series]
    tiers = snap["tiers"]
    out = {
        "bytes": line_chart("Logical vs unique vs stored bytes", labels, [
            ("logical", [x["logical_bytes"] for x in hs]), ("unique raw", [x["unique_raw_bytes"] for x in hs]),
            ("stored", [x["stored_bytes"] for x in hs])], fmt_bytes),
        "ratios": line_chart("Dedup and compression ratios", labels, [
            ("dedup", [x["dedup_ratio"] for x in hs]), ("compression", [x["compression_ratio"] for x in hs])],
            lambda v: f"{v:.2f}×"),
        "tiers": bar_chart("Pack bytes per tier", [(f"{t['tier']} ({t['packs']} packs)", t["pack_bytes"]) for t in tiers],
                           fmt_bytes, color=COLORS[2]),
        "tier_trend": line_chart("Pack bytes per tier over time", labels, [
            (name, [next((t["pack_bytes"] for t in s["tiers"] if t["tier"] == name), 0) for s in series])
            for name in sorted({t["tier"] for s in series for t in s["tiers"]})], fmt_bytes),
        "users": bar_chart("Top users by logical bytes", [(u["email"], u["logical_bytes"]) for u in snap["top_users"][:10]],
                           fmt_bytes, color=COLORS[3]),
        "traffic": column_chart("Uploads and downloads per day", [d["day"][5:] for d in snap["traffic"]], [
            ("uploads", [d["uploads"] for d in snap["traffic"]]), ("downloads", [d["downloads"] for d in snap["traffic"]])],
            lambda v: f"{v:.0f}"),
        "jobs": bar_chart("Job run time, last run of each job (s)", [
            (j["job"], float(j["seconds"] or 0)) for j in _last_per_job(snap["jobs"])], lambda v: f"{v:.1f}s",
            color=COLORS[1]),
        "garbage": line_chart("Garbage pending", labels, [("garbage", [x["garbage_bytes"] for x in hs])], fmt_bytes,
                              min_top=1024),
    }
    return out


def _last_per_job(runs: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for r in runs:  # newest first
        seen.setdefault(r["job"], r)
    return sorted(seen.values(), key=lambda r: r["job"])
