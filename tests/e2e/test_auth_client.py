"""The client's token commands against the real server: ``blockdrive tokens list|revoke`` and
``blockdrive logout``."""

from __future__ import annotations

import json
import os
import subprocess

from tests.e2e.conftest import BIN


def cli(env, *args, ok=(0,)):
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode in ok, out
    return out


def test_auth_client_tokens_list_revoke_and_logout(server, tmp_path):
    u = server.user()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "BLOCKDRIVE_PASSWORD": "password123"}
    env.pop("BLOCKDRIVE_URL", None)
    env.pop("BLOCKDRIVE_TOKEN", None)
    cli(env, "login", "--url", server.url, "--email", u.email)
    cred = tmp_path / "cfg/blockdrive/credentials.json"
    mine = json.loads(cred.read_text())["token"]
    items = json.loads(cli(env, "tokens", "list", "--json").stdout)["items"]
    assert [t["current"] for t in items] == [True, False]  # the login's (newest), then the CLI's
    assert mine not in cli(env, "tokens", "list").stdout
    text = cli(env, "tokens", "list").stdout
    assert "(this one)" in text and str(items[1]["id"]) in text
    # revoke the other one: the test user's own token stops working
    cli(env, "tokens", "revoke", str(items[1]["id"]))
    assert u.get("/api/v1/account").status_code == 401
    out = cli(env, "tokens", "revoke", str(items[1]["id"]), ok=(7,))
    assert "not found" in out.stderr
    # logout revokes the stored token on the server and removes the file
    cli(env, "logout")
    assert not cred.exists()
    assert server.anon().get("/api/v1/account", headers={"Authorization": f"Bearer {mine}"}).status_code == 401
    out = cli(env, "tokens", "list", ok=(6,))
    assert "not signed in" in out.stderr
