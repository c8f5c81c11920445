"""The client's name mapping through the real server: a tree synced from a Windows-like file
system (BLOCKDRIVE_WINDOWS_NAMES=1) lands under the server names its local names stand for,
and each file pulled back gets its local name again; names the server would refuse, or that
clash under case folding, are skipped and reported, and the rest of the run goes on."""

from __future__ import annotations

import json
import os
import unicodedata

from client.api import Api
from client.names import QUOTE, NameMap
from client.sync import Client, Index

from .test_client import cli, remote_tree

# local name on a Windows-like file system -> the name it stands for on the server
WINDOWS = {
    "a\uff1ab\uff1f.txt": "a:b?.txt",
    "CO\uff2e.txt": "CON.txt",
    "ends in dot\uff0e": "ends in dot.",
    f"full{QUOTE}\uff1awidth": "full\uff1awidth",
    "plain.txt": "plain.txt",
}


def _client(server, user, tmp_path, names: NameMap) -> Client:
    return Client(Api(server.url, user.token, retries=2, backoff=0.05, max_backoff=0.2),
                  Index(tmp_path / f"index-{names.windows}.sqlite"), names=names)


def test_windows_names_go_up_mapped_and_come_back(server, tmp_path):
    u = server.user()
    root = tmp_path / "win"
    (root / "dir\uff1cx\uff1e").mkdir(parents=True)
    for i, local in enumerate(WINDOWS):
        (root / local).write_bytes(f"file {i}".encode())
    (root / "dir\uff1cx\uff1e" / "AUX").write_bytes(b"inside")  # not a Windows name itself: skipped
    (root / "dir\uff1cx\uff1e" / "au\uff58.c").write_bytes(b"aux.c")
    env = {**os.environ, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token, "BLOCKDRIVE_WINDOWS_NAMES": "1",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    out = cli(env, "sync", str(root), "/w", "--json", ok=(1,))  # 1: a file was skipped
    report = json.loads(out.stdout)
    assert sorted(report["uploaded"]) == sorted([*WINDOWS.values(), "dir<x>/aux.c"])
    assert [(os.path.basename(s["path"]), "come back" in s["reason"]) for s in report["skipped"]] == [("AUX", True)]
    want = {"dir<x>": None, "dir<x>/aux.c": b"aux.c",
            **{remote: f"file {i}".encode() for i, remote in enumerate(WINDOWS.values())}}
    assert remote_tree(u, "/w") == want

    # pulled back file by file, each gets the local name it came from
    back = tmp_path / "back"
    back.mkdir()
    win = _client(server, u, tmp_path, NameMap(windows=True))
    for local, remote in WINDOWS.items():
        win.pull("/w/" + remote, str(back))
    assert sorted(p.name for p in back.iterdir()) == sorted(WINDOWS)
    assert all((back / local).read_bytes() == (root / local).read_bytes() for local in WINDOWS)
    # a second sync finds everything unchanged: the mapping is the same both ways
    again = json.loads(cli(env, "sync", str(root), "/w", "--json", ok=(1,)).stdout)
    assert again["uploaded"] == [] and again["deleted"] == [] and len(again["unchanged"]) == len(WINDOWS) + 1

    # without the mapping the same server names are local names as they are
    posix = _client(server, u, tmp_path, NameMap(windows=False))
    plain = tmp_path / "plain"
    plain.mkdir()
    posix.pull("/w/a:b?.txt", str(plain))
    assert [p.name for p in plain.iterdir()] == ["a:b?.txt"]


def test_names_the_server_refuses_or_merges_are_skipped_not_fatal(server, tmp_path):
    u = server.user()
    root = tmp_path / "posix"
    (root / "Photos").mkdir(parents=True)
    (root / "photos").mkdir()  # a case twin of a folder: skipped, with what is in it
    (root / "photos" / "inner.txt").write_bytes(b"never sent")
    (root / "back\\slash.txt").write_bytes(b"x")
    (root / "Report.txt").write_bytes(b"r1")
    (root / "report.TXT").write_bytes(b"r2")
    nfc, nfd = "caf\u00e9.txt", unicodedata.normalize("NFD", "caf\u00e9.txt")
    (root / nfd).write_bytes(b"decomposed")
    c = _client(server, u, tmp_path, NameMap(windows=False))
    _plan, stats = c.sync(str(root), "/p")
    skipped = {os.path.relpath(s["path"], root): s["reason"] for s in stats.skipped}
    assert set(skipped) == {"photos", "back\\slash.txt", "report.TXT"}
    assert "only in case" in skipped["photos"] and "not a valid name" in skipped["back\\slash.txt"]
    assert remote_tree(u, "/p") == {"Photos": None, "Report.txt": b"r1", nfc: b"decomposed"}
    # the decomposed local name is the composed server name: a second run changes nothing
    _plan, stats = c.sync(str(root), "/p")
    assert stats.uploaded == [] and stats.deleted == [] and sorted(stats.unchanged) == sorted(["Report.txt", nfc])
