"""Admin user management at every door: the JSON API (admins only, CSRF with a session), the
/admin/users pages (forms with CSRF, messages for refusals), the dashboard's "run now" (plan,
then the real run) and ``blockdrive user ...``."""

from __future__ import annotations

import json
import re

import pytest

from client.main import main
from storage.config import load_config
from storage.drive import Drive
from storage.errors import Unauthorized
from tests.unit.test_auth_cli import home  # noqa: F401  (fixture: a temp home, initialised)
from tests.unit.webapi.web_support import page_csrf, sign_in
from webapi.admin import runs

USERS = "/api/v1/admin/users"


def bearer(d, email, pw):
    return {"Authorization": f"Bearer {d.login(email, pw)}"}


def admin_client(app):
    c = app.test_client()
    assert sign_in(c, "ann@example.com", "password-ann").status_code == 303
    return c, page_csrf(c)


# ---- API --------------------------------------------------------------------------------------

def test_api_refuses_anonymous_and_non_admins(web):
    app, d, u = web
    c = app.test_client()
    assert c.get(USERS).status_code == 401
    bob = bearer(d, "bob@example.com", "password-bob")
    assert c.get(USERS, headers=bob).status_code == 403
    assert c.post(USERS, json={"email": "x@example.com"}, headers=bob).status_code == 403
    assert c.patch(f"{USERS}/{u['bob'].id}", json={"quota_bytes": 1}, headers=bob).status_code == 403
    assert c.delete(f"{USERS}/{u['ann'].id}", headers=bob).status_code == 403
    assert c.post(f"{USERS}/{u['ann'].id}/password", json={}, headers=bob).status_code == 403
    assert d.account(u["bob"].id).quota_bytes == d.config["quota"]["free_bytes"]


def test_api_list_search_create_show_patch_password_delete(web):
    app, d, u = web
    c = app.test_client()
    h = bearer(d, "ann@example.com", "password-ann")
    r = c.get(USERS, query_string={"q": "BOB"}, headers=h)
    assert r.status_code == 200 and [x["email"] for x in r.json["items"]] == ["bob@example.com"]
    assert r.json["next_cursor"] is None
    r = c.post(USERS, json={"email": "carol@example.com", "plan": "premium"}, headers=h)
    assert r.status_code == 201, r.json
    carol, pw = r.json["id"], r.json["password"]
    assert r.json["quota_bytes"] == d.config["quota"]["premium_bytes"]
    assert d.login("carol@example.com", pw)  # the generated password works
    assert c.post(USERS, json={"email": "carol@example.com", "password": "password-x"}, headers=h).status_code == 409
    assert c.post(USERS, json={"email": "dan@example.com", "quota_bytes": "lots"}, headers=h).status_code == 400

    r = c.patch(f"{USERS}/{carol}", json={"quota_bytes": 12345}, headers=h)
    assert r.status_code == 200 and r.json["quota_bytes"] == 12345
    assert d.account(carol).quota_bytes == 12345
    r = c.get(f"{USERS}/{carol}", headers=h)
    assert r.json["usage"]["current_bytes"] == 0 and r.json["status"] == "active"

    r = c.patch(f"{USERS}/{carol}", json={"disabled": True}, headers=h)
    assert r.json["status"] == "disabled" and r.json["token_count"] == 0
    with pytest.raises(Unauthorized):
        d.login("carol@example.com", pw)
    assert c.patch(f"{USERS}/{carol}", json={"disabled": False}, headers=h).json["status"] == "active"

    r = c.post(f"{USERS}/{carol}/password", json={"password": "carol-new-pw"}, headers=h)
    assert r.status_code == 200 and r.json == {}
    assert d.login("carol@example.com", "carol-new-pw")

    assert c.delete(f"{USERS}/{u['ann'].id}", headers=h).status_code == 403  # not oneself
    r = c.delete(f"{USERS}/{carol}", headers=h)
    assert r.status_code == 200 and r.json["status"] == "deleted"
    assert c.get(f"{USERS}/999999", headers=h).status_code == 404


def test_api_with_an_admin_session_needs_the_csrf_header(web):
    app, d, u = web
    c, csrf = admin_client(app)
    assert c.get(USERS).status_code == 200
    path = f"{USERS}/{u['bob'].id}"
    assert c.patch(path, json={"quota_bytes": 777}).status_code == 403
    assert d.account(u["bob"].id).quota_bytes != 777
    assert c.patch(path, json={"quota_bytes": 777}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert d.account(u["bob"].id).quota_bytes == 777


# ---- pages ------------------------------------------------------------------------------------

def test_pages_are_for_admins_only(web):
    app, _d, u = web
    anon = app.test_client()
    r = anon.get("/admin/users")
    assert r.status_code == 303 and "next=/admin/users" in r.headers["Location"]
    bob = app.test_client()
    sign_in(bob, "bob@example.com", "password-bob")
    assert bob.get("/admin/users").status_code == 303
    csrf = page_csrf(bob)
    r = bob.post(f"/admin/users/{u['ann'].id}/disable", data={"csrf": csrf})
    assert r.status_code == 303
    assert sign_in(app.test_client(), "ann@example.com", "password-ann").status_code == 303  # ann not disabled


def test_pages_list_create_set_quota_disable_with_csrf_and_escaping(web):
    app, d, u = web
    c, csrf = admin_client(app)
    page = c.get("/admin/users?q=bob")
    table = page.get_data(as_text=True).split('id="users"')[1].split("</table>")[0]
    assert page.status_code == 200 and "bob@example.com" in table and "ann@example.com" not in table
    assert "script" not in page.headers["Content-Security-Policy"].replace("default-src 'none'", "")
    assert "Users" in c.get("/admin").get_data(as_text=True)  # linked from the dashboard's header

    r = c.post("/admin/users", data={"email": "eve@example.com", "password": "eve-password", "plan": "free",
                                     "quota": "5G"})
    assert r.status_code == 403  # no CSRF token: refused, nothing created
    assert c.get(USERS, query_string={"q": "eve"}).json["items"] == []
    r = c.post("/admin/users", data={"csrf": csrf, "email": "eve@example.com", "password": "eve-password",
                                     "plan": "free", "quota": "5G"})
    assert r.status_code == 303
    eve = d.user_by_email("eve@example.com")
    assert r.headers["Location"].endswith(f"/admin/users/{eve.id}") and eve.quota_bytes == 5 * 10**9

    r = c.post(f"/admin/users/{eve.id}", data={"csrf": csrf, "plan": "free", "quota": "1Gi"})
    assert r.status_code == 303 and d.account(eve.id).quota_bytes == 2**30
    r = c.post(f"/admin/users/{eve.id}", data={"csrf": csrf, "plan": "free", "quota": "lots"})
    assert r.status_code == 303
    assert "not a size" in c.get(r.headers["Location"]).get_data(as_text=True)  # the refusal, shown

    r = c.post(f"/admin/users/{eve.id}/disable", data={"csrf": csrf})
    assert r.status_code == 303 and d.account(eve.id).disabled_at is not None
    r = c.post(f"/admin/users/{u['ann'].id}/disable", data={"csrf": csrf})
    assert "cannot disable your own account" in c.get(r.headers["Location"]).get_data(as_text=True)

    r = c.post(f"/admin/users/{eve.id}/password", data={"csrf": csrf})
    assert r.status_code == 200  # the generated password, shown once in this answer
    shown = re.search(r'id="generated-password">([^<]+)<', r.get_data(as_text=True)).group(1)
    c.post(f"/admin/users/{eve.id}/enable", data={"csrf": csrf})
    assert d.login("eve@example.com", shown)

    hostile = d.create_user("x<script>@example.com", "password-xx")[0]
    assert "x&lt;script&gt;@example.com" in c.get(f"/admin/users/{hostile.id}").get_data(as_text=True)

    r = c.post(f"/admin/users/{eve.id}/delete", data={"csrf": csrf})
    assert d.account(eve.id).deleted_at is None  # no confirmation ticked
    r = c.post(f"/admin/users/{eve.id}/delete", data={"csrf": csrf, "confirm": "on"})
    assert r.status_code == 303 and d.account(eve.id).deleted_at is not None


def test_run_now_shows_the_plan_then_starts_the_real_run(web, monkeypatch):
    app, _d, _u = web
    calls = []
    monkeypatch.setattr(runs, "plan", lambda cfg, name: calls.append(("plan", name)) or {
        "run_id": 7, "status": "ok", "stats": {"dry_run": True, "trash_purged": 0, "versions_thinned": 3}})
    monkeypatch.setattr(runs, "start", lambda cfg, name: calls.append(("start", name)) or 4242)
    c, csrf = admin_client(app)
    dash = c.get("/admin").get_data(as_text=True)
    assert 'action="/admin/jobs/gc/plan"' in dash and "Run now" in dash
    assert c.post("/admin/jobs/gc/plan", data={}).status_code == 403 and calls == []  # no CSRF token
    r = c.post("/admin/jobs/gc/plan", data={"csrf": csrf})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "Dry run #7" in body and "versions thinned" in body.lower()
    assert 'action="/admin/jobs/gc/run"' in body and calls == [("plan", "gc")]
    r = c.post("/admin/jobs/gc/run", data={"csrf": csrf})
    assert r.status_code == 303 and calls[-1] == ("start", "gc")
    assert "process 4242" in c.get(r.headers["Location"]).get_data(as_text=True)


def test_run_now_command_and_config_handover(web):
    app, _d, _u = web
    cfg = app.config["BLOCKDRIVE"]
    cmd = runs.command("gc", True)
    assert cmd[-5:] == ["run", "gc", "--json", "-q", "--dry-run"] and "--dry-run" not in runs.command("gc", False)
    import tomllib
    assert tomllib.loads(runs.config_toml(cfg)) == {k: dict(v) for k, v in cfg.items()}


# ---- CLI --------------------------------------------------------------------------------------

def test_cli_user_list_show_set_disable_enable_delete(home, capsys):  # noqa: F811
    main(["user", "create", "boss@example.com", "--password", "longenough", "--admin"])
    main(["user", "create", "worker@example.com", "--password", "longenough"])
    capsys.readouterr()
    assert main(["user", "list", "--query", "work", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["email"] for r in rows] == ["worker@example.com"]
    wid = rows[0]["id"]
    assert main(["user", "set", "worker@example.com", "--quota", "20G", "--plan", "premium"]) == 0
    capsys.readouterr()
    assert main(["user", "show", str(wid), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["plan"], shown["quota_bytes"]) == ("premium", 20 * 10**9)
    assert main(["user", "show", "worker@example.com"]) == 0
    assert "worker@example.com" in capsys.readouterr().out

    drive = Drive(load_config())
    assert main(["user", "disable", "worker@example.com"]) == 0
    with pytest.raises(Unauthorized):
        drive.login("worker@example.com", "longenough")
    assert main(["user", "enable", "worker@example.com"]) == 0
    assert drive.login("worker@example.com", "longenough")
    capsys.readouterr()
    assert main(["user", "disable", "boss@example.com"]) == 1  # the last admin
    assert "last admin" in capsys.readouterr().err
    assert main(["user", "set", "worker@example.com", "--admin"]) == 0
    assert main(["user", "set", "boss@example.com", "--no-admin"]) == 0
    assert not drive.user_by_email("boss@example.com").is_admin
    assert main(["user", "delete", "worker@example.com", "--yes"]) == 1  # now the last admin
    assert main(["user", "set", "boss@example.com", "--admin"]) == 0
    assert main(["user", "delete", "worker@example.com", "--yes"]) == 0
    assert drive.user_by_email("worker@example.com").deleted_at is not None
    capsys.readouterr()
    assert main(["user", "show", "nobody@example.com"]) == 1
    drive.close()
