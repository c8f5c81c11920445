"""The ``blockdrive`` command's own behaviour: grouped help, one-line errors, ``--log-level``."""

import os

import pytest

from client.main import extra_missing, main


@pytest.fixture
def bad_home(tmp_path, monkeypatch):
    """A BLOCKDRIVE_HOME that cannot be created (its parent is a file)."""
    for k in list(os.environ):
        if k.startswith("BLOCKDRIVE_") and not k.startswith("BLOCKDRIVE_TEST_"):
            monkeypatch.delenv(k)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("BLOCKDRIVE_HOME", str(tmp_path / "file" / "home"))


def test_an_expected_failure_is_one_line_and_exit_1(bad_home, capsys):
    assert main(["init"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("blockdrive: error: ") and "file" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_traceback_is_logged_at_debug_level(bad_home, capsys):
    assert main(["--log-level", "debug", "init"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "NotADirectoryError" in err
    assert err.rstrip().splitlines()[-1].startswith("blockdrive: error: ")


def test_help_groups_user_and_operator_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    user, _, operator = out.partition("\noperator commands (")
    assert "user commands" in user and operator
    for name in ("login", "push", "pull", "sync", "remote", "share", "link", "account", "trash"):
        assert f"\n  {name} " in user, name
    for name in ("init", "serve", "user", "put", "get", "ls", "mkdir", "fsck", "config", "jobs", "scheduler",
                 "report"):
        assert f"\n  {name} " in operator, name
    assert "--log-level" in out and "--config" in out


def test_an_unknown_log_level_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--log-level", "loud", "account"])
    assert exc.value.code == 2


class _Dist:
    requires = ["requests>=2.31", 'Flask>=3.0,<4; extra == "server"', 'prometheus_client>=0.20; extra == "server"',
                'no-such-package-bd>=1; extra == "other"']


class _EntryPoint:
    def __init__(self, extras):
        self.dist, self.extras = _Dist(), extras


def test_an_operator_entry_point_is_offered_only_when_its_extra_is_installed():
    assert extra_missing(_EntryPoint(["server"])) is None  # Flask and prometheus_client are installed here
    assert extra_missing(_EntryPoint(["other"])) == "no-such-package-bd"
    assert extra_missing(_EntryPoint([])) is None
