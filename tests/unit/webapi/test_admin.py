"""The admin API and dashboard without Spark: snapshots saved directly, then read back over
HTTP; who may see them; the login form's CSRF check; the SVG charts and their round ticks;
dry runs marked in the job history."""

from __future__ import annotations

import math
import re

import pytest

from storage import clock, reports
from storage.config import load_config
from storage.drive import Drive
from storage.db import make_engine, migrate
from tests.conftest import make_config
from webapi import create_app
from webapi.admin.charts import bar_chart, column_chart, line_chart, nice_ticks
from webapi.admin.dashboard import byte_unit, fmt_bytes, job_label

HEAD = {"users": 2, "files": 3, "logical_bytes": 3 * 2**20, "trash_bytes": 0, "logical_bytes_all_versions": 4 * 2**20,
        "used_bytes": 3 * 2**20, "unique_blocks": 5, "unique_raw_bytes": 2**20, "stored_bytes": 2**19,
        "dedup_ratio": 3.0, "dedup_ratio_all_versions": 4.0, "compression_ratio": 2.0, "packs": 2,
        "pack_bytes": 600_000, "pinned_blocks": 0, "pinned_bytes": 0, "garbage_blocks": 1,
        "garbage_block_bytes": 100, "garbage_unindexed_bytes": 0, "garbage_retiring_bytes": 0, "garbage_bytes": 204,
        "garbage_rewrite_ready_bytes": 0, "small_packs": 1, "uploads": 4, "downloads": 2, "bytes_in": 10,
        "bytes_out": 20, "job_runs": 1, "job_runs_failed": 0}
TIERS = [{"tier": "local", "packs": 2, "pack_bytes": 600_000, "stored_bytes": 2**19, "retiring_packs": 0,
          "retiring_bytes": 0}]
USERS = [{"user_id": 7, "email": "<b>big</b>@example.com", "files": 2, "logical_bytes": 2 * 2**20, "trash_bytes": 0,
          "all_versions_bytes": 3 * 2**20, "used_bytes": 2 * 2**20, "quota_bytes": 10 * 2**20}]


@pytest.fixture
def env(tmp_path):
    clock.reset()
    cfg = make_config(tmp_path)
    engine = make_engine(cfg.database_url)
    migrate(engine)
    d = Drive(cfg, engine=engine)
    app = create_app(cfg, drive=d)
    admin, admin_token = d.create_user("root@example.com", "password123", admin=True)
    user, user_token = d.create_user("joe@example.com", "password123")
    yield app, d, admin_token, user_token
    d.close()


def save(d, **head):
    return reports.save_snapshot(d.sm, {**HEAD, **head}, USERS, TIERS,
                                 {"traffic": [{"day": "2026-01-01", "uploads": 4, "downloads": 2, "bytes_in": 10,
                                               "bytes_out": 20}],
                                  "jobs": [{"id": 1, "job": "gc", "status": "ok", "started_at": "2026-01-01T02:00:00Z",
                                            "seconds": 1.5, "rows": 3, "bytes_freed": 99, "dry_run": False}]})


def bearer(t):
    return {"Authorization": f"Bearer {t}"}


def test_reports_api_is_admin_only_and_404_before_the_first_report(env):
    app, d, admin, user = env
    c = app.test_client()
    assert c.get("/api/v1/admin/reports/latest").status_code == 401
    assert c.get("/api/v1/admin/reports/latest", headers=bearer(user)).status_code == 403
    assert c.get("/api/v1/admin/reports", headers=bearer(user)).status_code == 403
    r = c.get("/api/v1/admin/reports/latest", headers=bearer(admin))
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert c.get("/api/v1/admin/reports", headers=bearer(admin)).get_json() == {"items": []}


def test_latest_and_since(env):
    app, d, admin, _ = env
    c = app.test_client()
    first = save(d, logical_bytes=1)
    clock.advance(86400)
    t1 = clock.now()
    second = save(d)
    r = c.get("/api/v1/admin/reports/latest", headers=bearer(admin)).get_json()
    assert r["id"] == second and r["headline"] == HEAD and r["tiers"] == TIERS
    assert r["top_users"] == [{"rank": 1, **USERS[0]}] and r["jobs"][0]["bytes_freed"] == 99
    items = c.get("/api/v1/admin/reports", headers=bearer(admin)).get_json()["items"]
    assert [(i["id"], i["headline"]["logical_bytes"]) for i in items] == [(first, 1), (second, HEAD["logical_bytes"])]
    since = c.get(f"/api/v1/admin/reports?since={t1.isoformat()}Z", headers=bearer(admin)).get_json()["items"]
    assert [i["id"] for i in since] == [second]
    assert c.get("/api/v1/admin/reports?since=yesterday", headers=bearer(admin)).status_code == 400
    assert c.get("/api/v1/admin/reports?limit=0", headers=bearer(admin)).status_code == 400
    clock.reset()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]


def test_dashboard_login_with_csrf_and_admin_token(env):
    app, d, admin, user = env
    save(d)
    c = app.test_client()
    r = c.get("/admin")
    assert r.status_code == 303 and r.headers["Location"].endswith("/admin/login")
    form = c.get("/admin/login")
    assert form.status_code == 200 and "default-src 'none'" in form.headers["Content-Security-Policy"]
    token = _csrf(form.get_data(as_text=True))
    # No CSRF token, a wrong one, or a non-admin's token: no session.
    assert c.post("/admin/login", data={"token": admin}).status_code == 403
    assert c.post("/admin/login", data={"token": admin, "csrf": token + "x"}).status_code == 403
    r = c.post("/admin/login", data={"token": user, "csrf": token})
    assert r.status_code == 200 and "not an admin" in r.get_data(as_text=True) and "Set-Cookie" not in r.headers
    assert c.get("/admin").status_code == 303
    r = c.post("/admin/login", data={"token": admin, "csrf": token})
    assert r.status_code == 303 and r.headers["Location"].endswith("/admin")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and admin not in cookie
    page = c.get("/admin")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'id="logical">3.00 MiB<' in html and 'id="dedup">3.00×<' in html and 'id="compression">2.00×<' in html
    assert html.count("<svg") == 8
    assert "&lt;b&gt;big&lt;/b&gt;@example.com" in html and "<b>big</b>" not in html  # escaped, in tables and SVG
    # Logout needs the page's CSRF token too.
    assert c.post("/admin/logout", data={}).status_code == 403
    assert c.post("/admin/logout", data={"csrf": _csrf(html)}).status_code == 200
    assert c.get("/admin").status_code == 303


def test_dashboard_with_a_bearer_token_and_a_revoked_session(env):
    app, d, admin, user = env
    c = app.test_client()
    assert c.get("/admin", headers=bearer(user)).status_code == 403
    assert c.get("/admin", headers=bearer("bd_nope")).status_code == 401
    r = c.get("/admin", headers=bearer(admin))
    assert r.status_code == 200 and "No report yet" in r.get_data(as_text=True)
    # A session outlives neither its token nor the admin flag.
    c2 = app.test_client()
    c2.post("/admin/login", data={"token": admin, "csrf": _csrf(c2.get("/admin/login").get_data(as_text=True))})
    assert c2.get("/admin").status_code == 200
    import sqlalchemy as sa
    from storage.models import User
    with d.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.email == "root@example.com").values(is_admin=False))
    assert c2.get("/admin").status_code == 303


def test_secret_key_is_generated_once_and_kept(tmp_path):
    cfg = make_config(tmp_path)
    a = create_app(cfg, drive=Drive(cfg))
    b = create_app(cfg, drive=Drive(cfg))
    assert a.secret_key == b.secret_key and len(a.secret_key) >= 32
    key_file = cfg.home / "secret_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    cfg2 = load_config(env={}, overrides={"storage": {"home": str(tmp_path / "h2")},
                                          "server": {"secret_key": "configured-secret"}})
    assert create_app(cfg2, drive=Drive(cfg2)).secret_key == "configured-secret"


def test_svg_charts():
    svg = str(line_chart("t", ["a", "b", "c"], [("x", [0, 5, 10]), ("y", [1, None, 2])], str))
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and svg.count("<circle") == 5
    bars = str(bar_chart("b", [("one", 10), ("<two>", 5)], str))
    assert bars.count("<rect") == 2 and "&lt;two&gt;" in bars
    # The longer bar is twice the shorter.
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)"', bars)]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert (fmt_bytes(0), fmt_bytes(1536), fmt_bytes(3 * 2**30)) == ("0 B", "1.50 KiB", "3.00 GiB")


@pytest.mark.parametrize(("top", "kw", "ticks"), [
    (10, {}, [0, 2, 4, 6, 8, 10]),                      # 10 in five steps of 2
    (11, {}, [0, 5, 10, 15]),                           # just past 10: the step grows to 5, not 2.5
    (3.0, {}, [0, 1, 2, 3]),
    (0.3, {}, [0, 0.1, 0.2, 0.3]),                      # 0.1 × 3 reaches 0.3 despite float noise
    (0.73, {}, [0, 0.2, 0.4, 0.6, 0.8]),
    (1234, {}, [0, 500, 1000, 1500]),
    (7, {"min_step": 1}, [0, 2, 4, 6, 8]),
    (0.5, {"min_step": 1}, [0, 1]),                     # counts: never a tick between whole numbers
    (0, {}, [0, 0.2, 0.4, 0.6, 0.8, 1]),                # no data: an axis up to 1
    (99, {"max_intervals": 10}, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
])
def test_nice_ticks_are_1_2_or_5_times_a_power_of_ten(top, kw, ticks):
    got = nice_ticks(top, **kw)
    assert got == ticks
    mantissa = got[1] / 10 ** math.floor(math.log10(got[1]))
    assert round(mantissa, 9) in (1, 2, 5)


def test_nice_ticks_reach_the_top_in_at_most_the_intervals_asked():
    for top in (0.007, 0.9, 1, 1.01, 4.5, 19, 20, 21, 250, 999, 1001, 3.3e9):
        ticks = nice_ticks(top)
        assert ticks[0] == 0 and ticks[-1] >= top and ticks[-2] < top and len(ticks) - 1 <= 5
    with pytest.raises(ValueError):
        nice_ticks(float("inf"))


def _axis_labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end">([^<]*)</text>', svg)


def test_chart_axes_are_labelled_at_round_ticks():
    assert _axis_labels(line_chart("t", ["a", "b"], [("x", [0, 7])], lambda v: f"{v:g}")) == ["0", "2", "4", "6", "8"]
    # Counts start at a top of 4 and tick at whole numbers.
    cols = column_chart("c", ["d1"], [("up", [3]), ("down", [1])], lambda v: f"{v:.0f}", min_top=4, min_step=1)
    assert _axis_labels(cols) == ["0", "1", "2", "3", "4"] and cols.count("<rect") == 2 + 2  # bars + legend
    # Byte axes are labelled in one unit, at round multiples of it.
    assert byte_unit(0) == (1, "B") and byte_unit(1023) == (1, "B") and byte_unit(11 * 2**20) == (2**20, "MiB")


def test_dashboard_byte_axis_and_dry_runs(env):
    app, d, admin, _ = env
    reports.save_snapshot(d.sm, {**HEAD, "logical_bytes": 11 * 2**20}, USERS, TIERS, {
        "traffic": [], "jobs": [
            {"id": 2, "job": "gc", "status": "ok", "started_at": "2026-01-02T02:00:00Z", "seconds": 2.0, "rows": 3,
             "bytes_freed": 4242, "dry_run": True},
            {"id": 1, "job": "gc", "status": "ok", "started_at": "2026-01-01T02:00:00Z", "seconds": 1.5, "rows": 3,
             "bytes_freed": 99, "dry_run": False}]})
    html = app.test_client().get("/admin", headers=bearer(admin)).get_data(as_text=True)
    bytes_chart = html[html.index('aria-label="Logical vs unique vs stored bytes"'):]
    bytes_chart = bytes_chart[:bytes_chart.index("</svg>")]
    assert _axis_labels(bytes_chart) == ["0 MiB", "5 MiB", "10 MiB", "15 MiB"]
    # The newest gc run was a dry run: the history and the run-time chart say so.
    rows = re.findall(r"<tr[^>]*>.*?</tr>", html[html.index('id="jobs"'):], re.S)
    assert '<tr class="dry"><td>2</td><td>gc (dry run)</td>' in rows[1] and "would free 4242" in rows[1]
    assert rows[2].startswith("<tr><td>1</td><td>gc</td>") and ">99<" in rows[2]
    assert ">gc (dry run)</text>" in html
    assert (job_label({"job": "gc", "dry_run": True}), job_label({"job": "gc"})) == ("gc (dry run)", "gc")
