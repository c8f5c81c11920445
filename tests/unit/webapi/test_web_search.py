"""Search in the JSON API (``GET /api/v1/search``) and on the web page ``/search``: what a
user may see and nothing else, clear 400s for bad queries, names always escaped."""

from __future__ import annotations

import io

from storage.sharing import Sharing
from tests.unit.webapi.web_support import sign_in


def token_of(d, email, password):
    return {"Authorization": f"Bearer {d.login(email, password)}"}


def seed(d, u):
    ann, bob = u["ann"], u["bob"]
    docs = d.mkdir(ann.id, ann.root_id, "Docs")
    report = d.put(ann.id, docs.id, "report-2024_final.pdf", io.BytesIO(b"12345")).node
    d.put(bob.id, bob.root_id, "report-bob.pdf", io.BytesIO(b"b"))
    return docs, report


def test_search_needs_a_signed_in_caller(web):
    app, _d, _u = web
    r = app.test_client().get("/api/v1/search?q=report")
    assert r.status_code == 401 and r.mimetype == "application/problem+json"


def test_search_answers_a_page_of_nodes_with_their_place(web):
    app, d, u = web
    docs, report = seed(d, u)
    r = app.test_client().get("/api/v1/search?q=final", headers=token_of(d, "ann@example.com", "password-ann"))
    assert r.status_code == 200
    body = r.get_json()
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert item["id"] == report.id and item["name"] == "report-2024_final.pdf" and item["kind"] == "file"
    assert item["size"] == 5 and item["parent_id"] == docs.id and item["updated_at"]
    assert item["path"] == "/Docs" and item["shared"] is False
    assert item["folders"] == [{"id": u["ann"].root_id, "name": ""}, {"id": docs.id, "name": "Docs"}]
    assert item["permissions"]["role"] == "owner"


def test_search_finds_what_is_shared_and_not_what_is_not(web):
    app, d, u = web
    docs, report = seed(d, u)
    bob = token_of(d, "bob@example.com", "password-bob")
    c = app.test_client()
    names = [i["name"] for i in c.get("/api/v1/search?q=report", headers=bob).get_json()["items"]]
    assert names == ["report-bob.pdf"]
    Sharing(d).grant(u["ann"].id, docs.id, "bob@example.com", "viewer")
    items = c.get("/api/v1/search?q=report", headers=bob).get_json()["items"]
    assert {i["name"] for i in items} == {"report-bob.pdf", "report-2024_final.pdf"}
    shared = next(i for i in items if i["id"] == report.id)
    assert shared["shared"] is True and shared["path"] == "Docs" and shared["permissions"]["role"] == "viewer"


def test_search_pages_with_its_cursor(web):
    app, d, u = web
    for i in range(5):
        d.put(u["bob"].id, u["bob"].root_id, f"memo {i}.txt", io.BytesIO(b"m"))
    bob, c = token_of(d, "bob@example.com", "password-bob"), app.test_client()
    first = c.get("/api/v1/search?q=memo&limit=3", headers=bob).get_json()
    second = c.get(f"/api/v1/search?q=memo&limit=3&cursor={first['next_cursor']}", headers=bob).get_json()
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) == 5 and second["next_cursor"] is None


def test_bad_queries_are_400_with_a_clear_message(web):
    app, d, _u = web
    bob, c = token_of(d, "bob@example.com", "password-bob"), app.test_client()
    for query, message in [("", "empty"), ("q=", "empty"), ("q=" + "x" * 201, "at most 200"),
                           ("q=%2A%2A", "letter or a digit"), ("q=a&limit=0", "limit"),
                           ("q=a&limit=101", "limit"), ("q=a&cursor=zzz", "cursor")]:
        r = c.get(f"/api/v1/search?{query}", headers=bob)
        assert r.status_code == 400, query
        assert message in r.get_json()["detail"], query


def test_fts_syntax_in_a_query_is_never_a_server_error(web):
    app, d, u = web
    seed(d, u)
    bob, c = token_of(d, "bob@example.com", "password-bob"), app.test_client()
    for q in ['"', "report*", "-report", "NEAR(report", "(report) OR 1", "name:report", "anc : 1", "'--", "\\"]:
        r = c.get("/api/v1/search", query_string={"q": q}, headers=bob)
        assert r.status_code in (200, 400), q
        assert all(i["name"] != "report-2024_final.pdf" for i in r.get_json().get("items", [])), q


def test_search_page_shows_results_linking_to_their_folder_and_escapes_names(web):
    app, d, u = web
    docs, report = seed(d, u)
    hostile = d.put(u["ann"].id, docs.id, "<img src=x onerror=alert(1)> report.txt", io.BytesIO(b"x")).node
    c = app.test_client()
    assert c.get("/search?q=report").status_code == 303  # signed out: to the sign-in form
    sign_in(c, "ann@example.com", "password-ann")
    home = c.get("/").get_data(as_text=True)
    assert 'href="/search"' in home  # the header's Search link
    r = c.get("/search", query_string={"q": "report"})
    assert r.status_code == 200 and "script-src 'self'" in r.headers["Content-Security-Policy"]
    body = r.get_data(as_text=True)
    assert f'data-id="{report.id}"' in body and f'data-id="{hostile.id}"' in body
    assert ">My files/Docs</a>" in body
    assert f'href="/f/{docs.id}"' in body and f'href="/preview/{report.id}"' in body
    assert "&lt;img src=x onerror=alert(1)&gt; report.txt" in body and "<img src=x" not in body
    assert "report-bob.pdf" not in body
    assert len(r.data) < 200_000


def test_search_page_without_a_query_is_the_form_and_a_bad_one_says_why(web):
    app, _d, _u = web
    c = app.test_client()
    sign_in(c, "bob@example.com", "password-bob")
    body = c.get("/search").get_data(as_text=True)
    assert 'name="q"' in body and 'role="search"' in body and "result" not in body
    r = c.get("/search", query_string={"q": "()*"})
    assert r.status_code == 400 and "letter or a digit" in r.get_data(as_text=True)
    r = c.get("/search", query_string={"q": "nothing-here"})
    assert r.status_code == 200 and "Nothing found" in r.get_data(as_text=True)
