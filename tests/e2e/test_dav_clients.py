"""WebDAV at ``/dav/`` through real clients: every litmus suite, and a cadaver session driven
command by command with the server's state checked through the JSON API in between.

rclone and davfs2 have modules of their own (test_dav_rclone.py, test_dav_davfs2.py); the
protocol itself, sign-in included, is tested request by request in test_dav.py."""

from __future__ import annotations

import os
import re
import select
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from .dav_support import dav_fixture, require_tool  # noqa: F401  (the dav fixture)

# ---- litmus ----

LITMUS_SUITES = ["basic", "copymove", "props", "locks", "http"]
# " 9. delete_fragment....... WARNING: ..." / "    ...................... pass (with 1 warning)"
_LITMUS_TEST = re.compile(r"^\s*(\d+)\.\s(\S+?)\.*(?:\s+(.*))?$")
_LITMUS_CONTINUED = re.compile(r"^\s+\.{3,}\s+(.*)$")
_LITMUS_SUMMARY = re.compile(r"summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")


@dataclass
class LitmusTest:
    number: int
    name: str
    result: str = ""  # pass, FAIL (...), SKIPPED, or empty when litmus stopped before its answer
    warnings: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.result == "pass" and not self.warnings


@dataclass
class LitmusRun:
    tests: list[LitmusTest]
    summary: tuple[int, int, int] | None  # (run, passed, failed) from litmus's own summary line

    def problems(self) -> list[str]:
        """One line for each test that did not pass cleanly, or for an output that does not
        add up."""
        out = [f"{t.number}. {t.name}: {t.result or 'no result'}" + "".join(f" / WARNING: {w}" for w in t.warnings)
               for t in self.tests if not t.clean]
        if self.summary is None:
            out.append("litmus printed no summary line (it stopped early)")
        else:
            run, passed, failed = self.summary
            ours = sum(t.result == "pass" for t in self.tests)
            if (passed, failed) != (ours, sum(t.result.startswith("FAIL") for t in self.tests)) or run == 0:
                out.append(f"litmus's summary {self.summary} does not match the {len(self.tests)} results read")
        return out


def parse_litmus(output: str) -> LitmusRun:
    """litmus's report: each test's result (the progress line and the result line are
    separated by carriage returns; a warning is printed before its test's result)."""
    tests: dict[int, LitmusTest] = {}
    current: LitmusTest | None = None
    summary = None
    for line in re.split(r"\r\n|\r|\n", output):
        if m := _LITMUS_SUMMARY.search(line):
            summary = (int(m[2]), int(m[3]), int(m[4]))
            continue
        rest = None
        if m := _LITMUS_TEST.match(line):
            current = tests.setdefault(int(m[1]), LitmusTest(int(m[1]), m[2]))
            rest = m[3]
        elif (m := _LITMUS_CONTINUED.match(line)) and current is not None:
            rest = m[1]
        if not rest or current is None:
            continue
        if rest.startswith("WARNING:"):
            current.warnings.append(rest[len("WARNING:"):].strip())
        else:
            current.result = re.sub(r"\s*\(with \d+ warnings?\)$", "", rest.strip())
    return LitmusRun(sorted(tests.values(), key=lambda t: t.number), summary)


def test_litmus_output_is_read_test_by_test():
    sample = ("-> running `basic':\n\r 0. init..................\r 0. init.................. pass\n"
              "\r 3. put_get...............\r 3. put_get............... FAIL (PUT of `/dav/litmus/res' failed)\n"
              "\r 7. delete................\r 7. delete................ SKIPPED\n"
              "\r 9. delete_fragment.......\r 9. delete_fragment....... WARNING: DELETE removed collection\n"
              "    ...................... pass (with 1 warning)\n"
              "\r18. cond_put_corrupt_token\r18. cond_put_corrupt_token pass\n"
              "<- summary for `basic': of 4 tests run: 3 passed, 1 failed. 75.0%\n")
    run = parse_litmus(sample)
    assert [(t.number, t.name, t.result) for t in run.tests] == [
        (0, "init", "pass"), (3, "put_get", "FAIL (PUT of `/dav/litmus/res' failed)"), (7, "delete", "SKIPPED"),
        (9, "delete_fragment", "pass"), (18, "cond_put_corrupt_token", "pass")]
    assert run.tests[3].warnings == ["DELETE removed collection"]
    assert run.problems() == ["3. put_get: FAIL (PUT of `/dav/litmus/res' failed)", "7. delete: SKIPPED",
                              "9. delete_fragment: pass / WARNING: DELETE removed collection"]
    assert parse_litmus(sample.replace("3 passed, 1 failed", "4 passed, 0 failed")).problems()[-1].startswith(
        "litmus's summary")
    assert parse_litmus("-> running `basic':\n 0. init.......").problems() == [
        "0. init: no result", "litmus printed no summary line (it stopped early)"]


@pytest.mark.parametrize("suite", LITMUS_SUITES)
def test_litmus_suite_passes_every_test_without_warnings(dav, suite, tmp_path):
    litmus = require_tool("litmus")
    # each suite in a folder of its own, so what one leaves behind cannot fail the next
    dav.api.mkdir(dav.api.root, f"litmus-{suite}")
    # litmus writes debug.log (every request and answer) into its working folder
    out = subprocess.run([litmus, f"{dav.url}litmus-{suite}/", dav.email, dav.password], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "TESTS": suite}, timeout=600)
    problems = parse_litmus(out.stdout).problems()
    assert not problems and out.returncode == 0, (
        f"litmus {suite} (exit {out.returncode}):\n" + "\n".join(problems)
        + f"\n{out.stderr}\nrequests and answers: {tmp_path / 'debug.log'}")


# ---- cadaver ----

_CADAVER_PROMPT = re.compile(r"(?:^|\n)dav:[^\n]*> $")


class Cadaver:
    """cadaver driven one command at a time over pipes: it answers each command and prints
    its prompt before reading the next, so the test can look at the server in between.
    Credentials come from ``HOME/.netrc``."""

    def __init__(self, url: str, home: Path):
        self.proc = subprocess.Popen([require_tool("cadaver"), url], cwd=home, env={**os.environ, "HOME": str(home)},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.transcript = self._answer()

    def _answer(self, limit: float = 120) -> str:
        """Everything up to the next prompt; the limit only keeps a stuck client from hanging
        the run."""
        buf = b""
        while not _CADAVER_PROMPT.search(buf.decode("utf-8", "replace")):
            ready, _, _ = select.select([self.proc.stdout], [], [], limit)
            data = os.read(self.proc.stdout.fileno(), 65536) if ready else b""
            if not data:
                self.proc.kill()
                raise AssertionError(f"cadaver gave no prompt (exit {self.proc.poll()}):\n{buf.decode()}")
            buf += data
        text = buf.decode("utf-8", "replace")
        return text[:_CADAVER_PROMPT.search(text).start()]

    def __call__(self, command: str, expect: str = "succeeded.") -> str:
        """Run ``command``; its answer, which must contain ``expect``."""
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._answer()
        self.transcript += f"\n> {answer}"
        # cadaver echoes a command read from a pipe
        answer = answer[len(command):].lstrip("\n") if answer.startswith(command) else answer
        assert expect in answer and "failed" not in answer.lower(), f"{command!r} answered:\n{answer}"
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_cadaver_session_mkcol_put_get_move_copy_props_locks_delete(dav, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    host = requests.utils.urlparse(dav.url).hostname
    (home / ".netrc").write_text(f"machine {host}\nlogin {dav.email}\npassword {dav.password}\n")
    (home / ".netrc").chmod(0o600)
    data, other = os.urandom(300_000), b"written while locked\n"
    (home / "up.bin").write_bytes(data)
    (home / "other.txt").write_bytes(other)
    cad = Cadaver(dav.url, home)
    try:
        cad("mkcol cad")
        assert dav.node("/cad")["kind"] == "folder"
        cad("cd cad", expect="")
        cad("put up.bin a.bin")
        assert dav.content("/cad/a.bin") == data
        listing = cad("ls")
        assert re.search(rf"\ba\.bin\s+{len(data)}\b", listing), listing
        cad("get a.bin got.bin")
        assert (home / "got.bin").read_bytes() == data
        cad("propset a.bin color blue")
        moved_id = dav.node("/cad/a.bin")["id"]
        cad("move a.bin b.bin")
        assert dav.node("/cad/a.bin") is None
        assert dav.node("/cad/b.bin")["id"] == moved_id  # a move keeps the node, and with it its properties
        assert "Value of color is: blue" in cad("propget b.bin color", expect="Value of color")
        cad("copy b.bin c.bin")
        copy = dav.node("/cad/c.bin")
        assert copy["id"] != moved_id and dav.content("/cad/c.bin") == data

        cad("lock c.bin")
        assert "Lock token <" in cad("discover c.bin", expect="exclusive")
        plain = requests.put(dav.url + "cad/c.bin", data=b"no lock token", auth=(dav.email, dav.password), timeout=60)
        assert plain.status_code == 423, plain.status_code  # locked, and the writer does not hold the token
        assert dav.content("/cad/c.bin") == data
        cad("put other.txt c.bin")  # cadaver holds the token and sends it
        assert dav.content("/cad/c.bin") == other
        versions = dav.api.get(f"/api/v1/nodes/{copy['id']}/versions").json()["items"]
        assert len(versions) == 2  # the overwrite made a second version
        cad("unlock c.bin")
        assert "Lock token" not in cad("discover c.bin", expect="")
        cad("delete c.bin")
        assert dav.node("/cad/c.bin") is None
        listing = cad("ls")
        assert "b.bin" in listing and "c.bin" not in listing
    finally:
        cad.close()
    assert "failed" not in cad.transcript.lower(), cad.transcript
    trash = dav.api.get("/api/v1/trash").json()["items"]
    assert copy["id"] in [n["id"] for n in trash]  # DELETE moves to the trash
