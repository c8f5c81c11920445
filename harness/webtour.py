"""A tour of the web app's main pages on a real server with a little data in it: who signs in,
what each page's path is. The accessibility test (``tests/e2e/test_web_a11y.py``) checks every
stop with axe-core, and ``tools/screenshots.py`` photographs every stop at a desktop and a
phone's width for ``docs/screens/``."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass


@dataclass
class Stop:
    name: str  # also the screenshot's file name
    path: str
    who: str | None  # the email to sign in as; None for an anonymous visitor
    title: str  # what the page is, for docs


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain PNG of one colour, with a lighter diagonal band (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        for x in range(width):
            band = abs(x - y * width // height) < width // 8
            rows += bytes(min(255, c + 90) for c in rgb) if band else bytes(rgb)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


def seed(server) -> dict:
    """Two people and their files: ada (an admin) with folders, a photo, notes, versions, a
    file in the trash, a folder shared with bob and a password link; returns the ids."""
    ada = server.user("ada@example.com", admin=True)
    bob = server.user("bob@example.com")
    ids: dict = {"ada": ada, "bob": bob}
    photos, reports = ada.mkdir(ada.root, "Photos"), ada.mkdir(ada.root, "Reports")
    ids["photos"], ids["reports"] = photos["id"], reports["id"]
    ids["photo"] = ada.upload(photos["id"], "harbour.png", png(320, 200, (30, 90, 160))).json()["id"]
    ada.upload(photos["id"], "forest.png", png(320, 200, (40, 120, 60)))
    for i, text in enumerate(("Draft.", "Second draft.", "Final text of the quarterly notes.\n")):
        r = ada.upload(reports["id"], "notes.md", text.encode())
        ids["notes"] = r.json()["id"]
    ada.upload(reports["id"], "budget-2026.csv", b"month,amount\njan,100\nfeb,120\n")
    ada.upload(ada.root, "readme.txt", b"Welcome to blockdrive.\n")
    old = ada.upload(ada.root, "old-plan.txt", b"an old plan\n").json()["id"]
    ada.delete(f"/api/v1/nodes/{old}")
    ada.post(f"/api/v1/nodes/{reports['id']}/shares", json={"email": bob.email, "role": "editor"})
    link = ada.post(f"/api/v1/nodes/{photos['id']}/links", json={"role": "viewer", "password": "open sesame"})
    ids["link"] = link.json().get("token") or link.json().get("url", "").rsplit("/", 1)[-1]
    return ids


def stops(ids: dict) -> list[Stop]:
    ada, bob = ids["ada"].email, ids["bob"].email
    return [
        Stop("signin", "/", None, "Sign-in"),
        Stop("files", "/", ada, "Your files"),
        Stop("folder", f"/f/{ids['photos']}", ada, "A folder"),
        Stop("preview", f"/preview/{ids['photo']}", ada, "A file's page with its preview"),
        Stop("versions", f"/versions/{ids['notes']}", ada, "Versions of a file"),
        Stop("share", f"/share/{ids['reports']}", ada, "Sharing a folder"),
        Stop("trash", "/trash", ada, "Trash"),
        Stop("search", "/search?q=notes", ada, "Search"),
        Stop("account", "/account", ada, "Account: quota, password, app passwords"),
        Stop("shared", "/shared", bob, "Shared with me"),
        Stop("link", f"/s/{ids['link']}", None, "A password link, opened by anyone"),
        Stop("admin-users", "/admin/users", ada, "Admin: users"),
    ]
