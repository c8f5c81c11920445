"""What the WebDAV client tests share: a real server with one user signed in by an app
password (the ``dav`` fixture), the server's tree as the JSON API sees it, a local folder's
tree in the same shape, and the rule for a missing client program (it fails in CI, skips
elsewhere).

Trees are compared as ``{relative path: sha256 hex of a file, or None for a folder}``, so a
wrong byte, a missing or extra file, and a file where a folder should be all show up as a
difference between two dicts."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from harness.server import Client, Server

from .conftest import ENGINES, served
from .conftest import require_tool as conftest_require_tool

# Debian's package for each client program the tests drive (scripts/test.sh installs them)
PACKAGES = {"litmus": "litmus", "rclone": "rclone", "cadaver": "cadaver", "mount.davfs": "davfs2",
            "nextcloudcmd": "nextcloud-desktop-cmd"}


def require_tool(command: str) -> str:
    """The path of a client program (:func:`tests.e2e.conftest.require_tool`: it fails under
    CI=true, where scripts/test.sh installs it, and is skipped elsewhere)."""
    return conftest_require_tool((command,), f"Debian: apt-get install -y {PACKAGES.get(command, command)}")


def local_tree(root: Path) -> dict[str, str | None]:
    """A local folder as ``{relative path: sha256 or None for a folder}``."""
    tree: dict[str, str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for d in dirnames:
            tree[(rel / d).as_posix()] = None
        for f in filenames:
            tree[(rel / f).as_posix()] = hashlib.sha256((Path(dirpath) / f).read_bytes()).hexdigest()
    return tree


class DavAccount:
    """One user of a running server as a WebDAV client sees it (``url``, ``email`` and an
    app ``password``), with the JSON API (``api``) to check what the server really holds."""

    def __init__(self, server: Server, api: Client, password: str):
        self.server, self.api, self.email, self.password = server, api, api.email, password
        self.url = f"{server.url}/dav/"
        # the Nextcloud clients' address of the same root folder
        self.nextcloud_url = f"{server.url}/remote.php/dav/files/{quote(self.email)}/"

    @classmethod
    def create(cls, server: Server) -> DavAccount:
        """A new user and an app password of theirs named ``webdav`` (an API token, created
        by signing in as a person would)."""
        api = server.user()
        r = requests.post(server.url + "/api/v1/auth/tokens", timeout=60,
                          json={"email": api.email, "password": "password123", "name": "webdav"})
        assert r.status_code == 201, r.text
        return cls(server, api, r.json()["token"])

    def node(self, path: str) -> dict | None:
        """The node at ``path`` (from the user's root, ``/a/b``) as the JSON API answers it,
        or None when there is none."""
        r = self.api.get("/api/v1/resolve", params={"path": path})
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        return r.json()

    def content(self, path: str) -> bytes:
        node = self.node(path)
        assert node is not None and node["kind"] == "file", (path, node)
        r = self.api.get(f"/api/v1/nodes/{node['id']}/content")
        assert r.status_code == 200, r.text
        return r.content

    def tree(self, path: str) -> dict[str, str | None]:
        """The folder at ``path`` and everything below it, in :func:`local_tree`'s shape
        (a file's sha256 is its etag in the JSON API)."""
        top = self.node(path)
        assert top is not None and top["kind"] == "folder", (path, top)
        tree: dict[str, str | None] = {}
        todo = [(top["id"], "")]
        while todo:
            folder, prefix = todo.pop()
            cursor = None
            while True:
                params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                r = self.api.get(f"/api/v1/nodes/{folder}/children", params=params)
                assert r.status_code == 200, r.text
                for n in r.json()["items"]:
                    rel = prefix + n["name"]
                    if n["kind"] == "folder":
                        tree[rel] = None
                        todo.append((n["id"], rel + "/"))
                    else:
                        tree[rel] = n["etag"]
                cursor = r.json()["next_cursor"]
                if not cursor:
                    break
        return tree


@contextlib.contextmanager
def dav_account(request, tmp_path_factory):
    """A real server on the fixture's engine and a :class:`DavAccount` on it."""
    with served(request, tmp_path_factory, name="dav") as srv:
        yield DavAccount.create(srv)


@pytest.fixture(name="dav", scope="module", params=ENGINES)
def dav_fixture(request, tmp_path_factory):
    """A :class:`DavAccount` on a server of this test module's own, on each engine."""
    with dav_account(request, tmp_path_factory) as account:
        yield account
