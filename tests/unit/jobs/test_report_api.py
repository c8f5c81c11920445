"""The report through the API and the CLI: the JSON endpoint and ``blockdrive report`` agree
with each other and with the known-by-construction store; the API's traffic records reach
the report exactly (on SQLite and MariaDB)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
import sqlalchemy as sa

from storage import clock
from storage.models import TrafficDaily
from tests.unit.jobs.test_report import MiB, known  # noqa: F401  (fixture)
from webapi import create_app
from webapi.cli import main


def _admin(drive):
    _user, token = drive.create_user("root@example.com", "password123", admin=True)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def cli_env(drive, monkeypatch):
    """The CLI's environment pointed at the test drive's database and home."""
    for k in ("BLOCKDRIVE_CONFIG", "BLOCKDRIVE_DATABASE_URL", "BLOCKDRIVE_HOME", "BLOCKDRIVE_STORAGE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("BLOCKDRIVE_HOME", str(drive.config.home))
    monkeypatch.setenv("BLOCKDRIVE_DATABASE_URL", drive.engine.url.render_as_string(hide_password=False))


def test_json_endpoint_and_cli_agree_with_the_construction(drive, known, run, cli_env, capsys):  # noqa: F811
    headers = _admin(drive)
    run("report")
    app = create_app(drive.config, drive=drive)
    api = app.test_client().get("/api/v1/admin/reports/latest", headers=headers).get_json()
    assert main(["report", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli == api
    h = api["headline"]
    assert (h["users"], h["logical_bytes"], h["unique_raw_bytes"], h["stored_bytes"]) == (
        4, 42 * MiB, known["unique_raw"], known["stored"])  # the admin is the 4th user, with nothing stored
    assert h["dedup_ratio"] == 42 * MiB / known["unique_raw"]
    # The table shows the same exact figures.
    assert main(["report"]) == 0
    table = capsys.readouterr().out
    for key, label in (("logical_bytes", "logical bytes (current versions)"), ("stored_bytes", "stored bytes"),
                       ("unique_raw_bytes", "unique raw bytes"), ("garbage_bytes", "garbage pending")):
        line = next(x for x in table.splitlines() if x.startswith(label))
        assert f"{h[key]:,d} B" in line, (key, line)
    assert f"{h['dedup_ratio']:.4f}" in table and "b@example.com" in table


def test_cli_without_a_report_says_how_to_make_one(drive, cli_env, capsys):
    assert main(["report"]) == 1
    assert "jobs run report" in capsys.readouterr().err


def test_api_traffic_reaches_the_report(drive, run):
    headers = _admin(drive)
    app = create_app(drive.config, drive=drive)
    c = app.test_client()
    _user, token = drive.create_user("t@example.com", "password123")
    auth = {"Authorization": f"Bearer {token}"}
    root = drive.user_by_email("t@example.com").root_id
    body = bytes(range(256)) * 1000                                             # 256,000 bytes
    r = c.put(f"/api/v1/nodes/{root}/children/a.bin", data=body, headers=auth)  # upload 1
    assert r.status_code == 201
    nid = r.get_json()["id"]
    assert c.get(f"/api/v1/nodes/{nid}/content", headers=auth).status_code == 200                     # 256,000 out
    assert c.get(f"/api/v1/nodes/{nid}/content", headers={**auth, "Range": "bytes=0-99"}).status_code == 206  # 100
    etag = hashlib.sha256(body).hexdigest()
    assert c.get(f"/api/v1/nodes/{nid}/content", headers={**auth, "If-None-Match": f'"{etag}"'}).status_code == 304
    assert c.head(f"/api/v1/nodes/{nid}/content", headers=auth).status_code == 200                    # not counted
    assert c.get("/api/v1/nodes/999999/content", headers=auth).status_code == 404                     # not counted
    # tus: create, then two PATCHes; the second completes upload 2.
    tus = {**auth, "Tus-Resumable": "1.0.0"}
    meta = "filename " + base64.b64encode(b"t.bin").decode()
    r = c.post("/api/v1/uploads", headers={**tus, "Upload-Length": "3000", "Upload-Metadata": meta})
    assert r.status_code == 201
    loc = r.headers["Location"].split("localhost", 1)[-1]
    ct = {"Content-Type": "application/offset+octet-stream"}
    assert c.patch(loc, data=b"x" * 1000, headers={**tus, **ct, "Upload-Offset": "0"}).status_code == 204
    assert c.patch(loc, data=b"y" * 2000, headers={**tus, **ct, "Upload-Offset": "1000"}).status_code == 204
    # Block API: one block sent, then committed as upload 3.
    blk = b"z" * 5000
    h = hashlib.sha256(blk).hexdigest()
    assert c.put(f"/api/v1/blocks/{h}", data=blk, headers=auth).status_code == 201
    r = c.post(f"/api/v1/nodes/{root}/children/z.bin/commit", headers=auth,
               json={"blocks": [h], "size": 5000, "sha256": h})
    assert r.status_code == 201, r.get_data(as_text=True)
    # A public link download is charged to the link's owner.
    link = c.post(f"/api/v1/nodes/{nid}/links", headers=auth, json={}).get_json()
    assert c.get(f"/s/{link['token']}/content").status_code == 200                                   # 256,000 out

    uid = drive.user_by_email("t@example.com").id
    with drive.sm() as s:
        rows = [(r.user_id, r.uploads, r.downloads, r.bytes_in, r.bytes_out) for r in s.execute(sa.select(TrafficDaily)).scalars()]
    assert rows == [(uid, 3, 3, 256_000 + 3000 + 5000, 256_000 + 100 + 256_000)]
    run("report")
    api = c.get("/api/v1/admin/reports/latest", headers=headers).get_json()
    hl = api["headline"]
    assert (hl["uploads"], hl["downloads"], hl["bytes_in"], hl["bytes_out"]) == (3, 3, 264_000, 512_100)
    today = clock.now().date().isoformat()
    assert api["traffic"] == [{"day": today, "uploads": 3, "downloads": 3, "bytes_in": 264_000, "bytes_out": 512_100}]


def test_traffic_rows_are_per_day_and_user_and_add_up(drive):
    from storage.traffic import daily, record
    d1, d2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    for _ in range(3):
        assert record(drive.engine, 1, uploads=1, bytes_in=10, day=d1)
    assert record(drive.engine, 2, downloads=2, bytes_out=7, day=d1)
    assert record(drive.engine, 1, downloads=1, bytes_out=5, day=d2)
    assert daily(drive.engine) == [
        {"day": "2026-01-01", "uploads": 3, "downloads": 2, "bytes_in": 30, "bytes_out": 7},
        {"day": "2026-01-02", "uploads": 0, "downloads": 1, "bytes_in": 0, "bytes_out": 5}]
    assert daily(drive.engine, since=d2)[0]["day"] == "2026-01-02"
