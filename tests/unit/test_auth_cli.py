"""``blockdrive user revoke-tokens``: an operator signs a user out everywhere."""

import os

import pytest

from storage.config import load_config
from storage.drive import Drive
from storage.errors import Unauthorized
from client.main import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith("BLOCKDRIVE_") and not k.startswith("BLOCKDRIVE_TEST_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("BLOCKDRIVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BLOCKDRIVE_SECURITY_SCRYPT_N", "1024")
    assert main(["init"]) == 0
    return tmp_path


def test_auth_user_revoke_tokens_signs_one_user_out_everywhere(home, capsys):
    main(["user", "create", "a@example.com", "--password", "longenough"])
    main(["user", "create", "b@example.com", "--password", "longenough"])
    capsys.readouterr()
    drive = Drive(load_config())
    a1 = drive.login("a@example.com", "longenough")
    b1 = drive.login("b@example.com", "longenough")
    assert main(["user", "revoke-tokens", "A@example.com"]) == 0
    assert "revoked 2 token(s)" in capsys.readouterr().out  # the CLI's and the sign-in's
    with pytest.raises(Unauthorized):
        drive.user_for_token(a1)
    assert drive.user_for_token(b1).email == "b@example.com"  # nobody else's
    assert main(["user", "revoke-tokens", "nobody@example.com"]) == 1
    drive.close()
