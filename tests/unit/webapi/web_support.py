"""A Flask test client signed in to the web app the way a browser is: the sign-in form's
CSRF token read from the page, then the form posted. Shared by the web app's unit tests."""

from __future__ import annotations

import re

import pytest

from storage import clock
from storage.db import make_engine, migrate
from storage.drive import Drive
from tests.conftest import make_config
from webapi import create_app

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_of(page: bytes | str) -> str:
    text = page.decode() if isinstance(page, bytes) else page
    m = CSRF.search(text)
    assert m, "the page carries no CSRF token"
    return m.group(1)


def sign_in(client, email: str, password: str):
    """Sign ``client`` in through the form; returns the response to the POST."""
    token = csrf_of(client.get("/").data)
    return client.post("/", data={"email": email, "password": password, "csrf": token})


def page_csrf(client, path: str = "/") -> str:
    """The CSRF token of a signed-in client's session (read from any page)."""
    return csrf_of(client.get(path).data)


@pytest.fixture
def web(tmp_path):
    """(app, drive, users): an app on a fresh SQLite store, with ann (admin) and bob."""
    clock.reset()
    cfg = make_config(tmp_path)
    engine = make_engine(cfg.database_url)
    migrate(engine)
    d = Drive(cfg, engine=engine)
    app = create_app(cfg, drive=d)
    ann, _ = d.create_user("ann@example.com", "password-ann", admin=True)
    bob, _ = d.create_user("bob@example.com", "password-bob")
    yield app, d, {"ann": ann, "bob": bob}
    d.close()
