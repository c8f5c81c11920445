"""The ``blockdrive`` command, run in-process against a temp home."""

import json
import os

import pytest

from tests.conftest import rand
from client.main import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith("BLOCKDRIVE_") and not k.startswith("BLOCKDRIVE_TEST_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("BLOCKDRIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BLOCKDRIVE_SECURITY_SCRYPT_N", "1024")
    monkeypatch.setenv("BLOCKDRIVE_STORAGE_CHUNK_MIN", "16384")
    monkeypatch.setenv("BLOCKDRIVE_STORAGE_CHUNK_AVG", "65536")
    monkeypatch.setenv("BLOCKDRIVE_STORAGE_CHUNK_MAX", "262144")
    assert main(["init"]) == 0
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_create_prints_token_last(home, capsys):
    code, out, _ = run(capsys, "user", "create", "Ann@Example.com", "--password", "longenough")
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("bd_") and len(token) >= 40
    code, _, err = run(capsys, "user", "create", "ann@example.com", "--password", "longenough")
    assert code == 1 and "exists" in err


def test_put_get_ls_fsck_round_trip(home, capsys):
    run(capsys, "user", "create", "a@example.com", "--password", "longenough")
    src = home / "in.bin"
    data = rand(500_000, 1)
    src.write_bytes(data)
    code, out, _ = run(capsys, "put", str(src), "/docs/in.bin", "--user", "a@example.com", "--json")
    assert code == 0
    put = json.loads(out)
    assert put["size"] == len(data) and put["created"] is True
    code, out, _ = run(capsys, "put", str(src), "/docs/", "--user", "a@example.com", "--json")
    assert json.loads(out)["created"] is False and json.loads(out)["new_bytes"] == 0
    code, out, _ = run(capsys, "ls", "/docs", "--user", "a@example.com", "--json")
    assert [(e["name"], e["size"]) for e in json.loads(out)] == [("in.bin", len(data))]
    dest = home / "out.bin"
    assert run(capsys, "get", "/docs/in.bin", str(dest), "--user", "a@example.com")[0] == 0
    assert dest.read_bytes() == data
    assert not list(home.glob(".*blockdrive-tmp"))
    code, out, _ = run(capsys, "fsck")
    assert code == 0 and "fsck: clean" in out


def test_fsck_finds_corruption(home, capsys):
    run(capsys, "user", "create", "a@example.com", "--password", "longenough")
    src = home / "in.bin"
    src.write_bytes(rand(200_000, 2))
    run(capsys, "put", str(src), "/x.bin", "--user", "a@example.com")
    pack = next((home / "home" / "packs").rglob("*.pack"))
    raw = bytearray(pack.read_bytes())
    raw[100] ^= 0xFF
    pack.write_bytes(bytes(raw))
    code, out, _ = run(capsys, "fsck")
    assert code == 3
    assert "PROBLEM corrupt-block" in out and pack.name in out


def test_get_of_corrupt_file_leaves_no_partial_file(home, capsys):
    run(capsys, "user", "create", "a@example.com", "--password", "longenough")
    src = home / "in.bin"
    src.write_bytes(rand(400_000, 3))
    run(capsys, "put", str(src), "/x.bin", "--user", "a@example.com")
    pack = next((home / "home" / "packs").rglob("*.pack"))
    raw = bytearray(pack.read_bytes())
    raw[-2000] ^= 0xFF  # in the last records: the download fails midway
    pack.write_bytes(bytes(raw))
    dest = home / "out.bin"
    code, _, err = run(capsys, "get", "/x.bin", str(dest), "--user", "a@example.com")
    assert code == 1 and "CRC32C" in err or "integrity" in err.lower() or "footer" in err
    assert not dest.exists() and not list(home.glob(".*blockdrive-tmp"))


def test_errors_are_clear_not_tracebacks(home, capsys, monkeypatch):
    code, _, err = run(capsys, "put", str(home / "missing"), "/x", "--user", "nobody@example.com")
    assert code == 1 and "blockdrive: error:" in err
    code, _, err = run(capsys, "ls", "/", "--user", "nobody@example.com")
    assert code == 1 and "no user" in err
    monkeypatch.setenv("BLOCKDRIVE_STORAGE_URL", "ftp://somewhere/packs")
    code, _, err = run(capsys, "init")
    assert code == 1 and "unknown storage scheme 'ftp'" in err
    monkeypatch.setenv("BLOCKDRIVE_STORAGE_URL", "webhdfs://127.0.0.1:9/packs")
    monkeypatch.setenv("BLOCKDRIVE_STORAGE_TIMEOUT_SECONDS", "2")
    code, _, err = run(capsys, "init")
    assert code == 1 and "unavailable" in err and "Traceback" not in err
    monkeypatch.delenv("BLOCKDRIVE_STORAGE_URL")
    monkeypatch.setenv("BLOCKDRIVE_DATABASE_URL", "mysql+pymysql://u:secretpw@127.0.0.1:9/db")
    code, _, err = run(capsys, "init")
    assert code == 1 and "cannot reach the database" in err and "secretpw" not in err
    monkeypatch.setenv("BLOCKDRIVE_DATABASE_URL", "postgres://x/y")
    code, _, err = run(capsys, "ls", "/", "--user", "a@example.com")
    assert code == 1 and "unsupported database" in err


def test_uninitialised_database_says_run_init(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BLOCKDRIVE_HOME", str(tmp_path / "fresh"))
    code, _, err = run(capsys, "ls", "/", "--user", "a@example.com")
    assert code == 1 and "blockdrive init" in err


def test_config_show_masks_secrets(home, capsys, monkeypatch):
    monkeypatch.setenv("BLOCKDRIVE_DATABASE_URL", "mysql+pymysql://bd:hunter2@db/blockdrive")
    code, out, _ = run(capsys, "config", "show", "--json")
    assert code == 0 and "hunter2" not in out
    assert json.loads(out)["effective"]["database_url"] == "mysql+pymysql://bd:***@db/blockdrive"
