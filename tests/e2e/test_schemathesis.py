"""Fuzzing the served OpenAPI document with schemathesis, every check on, against the real
server on SQLite and on MariaDB.

``schemathesis run`` goes through all its phases: the coverage phase (boundary and invalid
values of every parameter, missing headers, undeclared methods), fuzzing (generated valid and
invalid requests) and the stateful phase, which follows the document's OpenAPI links (create
a folder -> list, rename, share, link, delete, restore it; upload -> download, versions;
create a tus upload -> HEAD, PATCH, DELETE it) on objects that exist. It runs as user A with
user B loaded as a peer, so ``object_level_authorization`` replays A's reads as B, and
``ignored_auth`` replays them without credentials and with bad ones.

Every response must be: not a 5xx, a documented status with a documented content type, body
and headers; valid requests accepted, invalid ones rejected (4xx), missing required headers
refused, undeclared methods 405, a deleted object gone, a created one available, and none of
A's objects readable by B or anonymously. The few failures that are not bugs are excused in
``schemathesis_hooks.py``, each with its reason; the excused count is recorded.

Quick (CI): a few examples per operation. ``make soak``: 100 per operation.
Reproduce one run: the command and seed are in the failure message; ``BLOCKDRIVE_FUZZ_SEED``
runs the test with that seed (the stateful phase also depends on the ids the server hands out).
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability import figures

ST = Path(sys.executable).parent / "schemathesis"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
EXAMPLES = figures.scale(5, 100)
STATEFUL = figures.scale(40, 300)  # scenarios of the stateful phase

# tus 1.0: a request without the Tus-Resumable header, or with a version the server does not
# speak, MUST be answered 412 Precondition Failed (the protocol, not a choice of ours).
TUS_412 = "412"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def write_config(tmp: Path, url: str, alice_token: str, bob_token: str) -> Path:
    """schemathesis.toml for one run: all checks, A and B as peers, the tus statuses."""
    auth = tmp / "auth.json"
    auth.write_text(json.dumps({"auth": [
        {"name": who, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {token}"}]}
        for who, token in (("alice", alice_token), ("bob", bob_token))]}))
    negative = ["400", "401", "403", "404", "405", "406", "409", "410", "413", "415", "416", "422", "428", "429"]
    lines = [
        f"base-url = {_toml(url)}",
        f"hooks = {_toml(str(HOOKS))}",
        "request-timeout = 60",
        "workers = 1",
        "[checks]",
        "enabled = true",
        # a refused request may also be 410 (a link or upload that is gone is refused before
        # the rest is read), 413 (body or quota too large) or 416 (a range past the end), all
        # documented; schemathesis' default list of rejections lacks them
        f"negative_data_rejection.expected-statuses = {_toml(negative)}",
        "[auth.wfc]",
        f"path = {_toml(str(auth))}",
        'user = "alice"',
        'peers = ["alice", "bob"]',
        # stateful scenarios are counted apart from examples per operation: enough in quick
        # runs to walk the links (create -> read, change, delete; tus create -> HEAD, PATCH, DELETE)
        "[phases.stateful]",
        "max-steps = 10",
        f"generation.max-examples = {STATEFUL}",
        "[[operations]]",
        'include-path-regex = "^/api/v1/uploads"',
        f"checks.negative_data_rejection.expected-statuses = {_toml(negative + [TUS_412])}",
        f"checks.missing_required_header.expected-statuses = {_toml(['400', '401', TUS_412])}",
        # tus Upload-Metadata is base64 pairs that must decode to a valid file name: generated
        # ones almost never do, so uploads would never exist for HEAD, PATCH and DELETE to act on
        "[[operations]]",
        'include-operation-id = "tusCreate"',
        f'parameters = {{ "Upload-Metadata" = {_toml("filename " + base64.b64encode(b"fuzz.bin").decode())} }}',
    ]
    cfg = tmp / "schemathesis.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def run_schemathesis(url: str, alice_token: str, bob_token: str, tmp: Path, examples: int,
                     seed: int | None = None) -> tuple[dict, str, list[str], list[dict]]:
    """One ``schemathesis run``: its JSON report, its output, the command line, and the
    failures the hooks excused."""
    seed = random.randrange(2**31) if seed is None else seed
    cfg = write_config(tmp, url, alice_token, bob_token)
    report = tmp / "report.json"
    cmd = [str(ST), "--config-file", str(cfg), "run", f"{url}/api/v1/openapi.json", "--checks", "all",
           "--max-examples", str(examples), "--seed", str(seed), "--no-color", "--report", "json",
           "--report-json-path", str(report), "--generation-database", "none"]
    excused = tmp / "excused.jsonl"
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=tmp,
                         env={**os.environ, "BLOCKDRIVE_FUZZ_EXCUSED": str(excused)})
    assert report.exists(), out.stdout[-5000:] + out.stderr[-5000:]
    excuses = [json.loads(line) for line in excused.read_text().splitlines()] if excused.exists() else []
    return json.loads(report.read_text()), out.stdout + out.stderr, cmd, excuses


def _admin(server) -> "object":
    from .conftest import Client
    email = f"fuzz-admin-{random.randrange(10**9)}@example.com"
    token = server.cli("user", "create", email, "--password", "password123", "--admin").strip().splitlines()[-1]
    c = Client(server.url, token)
    c.email = email
    c.account = c.get("/api/v1/account").json()
    c.id, c.root = c.account["id"], c.account["root_id"]
    return c


@pytest.mark.timeout(3600 if figures.SOAK else 600)
def test_every_operation_fuzzed_with_every_check(server, tmp_path, request):
    # A is an admin, so the admin operations are fuzzed past their 403 too; B is a plain user.
    alice, bob = _admin(server), server.user()
    for who in (alice, bob):  # something to find: a file with two versions, a folder, a link
        f = who.upload(who.root, "seed.txt", b"seed").json()
        who.upload(who.root, "seed.txt", b"seed 2")
        folder = who.mkdir(who.root, "docs")
        who.upload(folder["id"], "inner.txt", b"inner")
        who.post(f"/api/v1/nodes/{f['id']}/links", json={})

    seed = os.environ.get("BLOCKDRIVE_FUZZ_SEED")
    report, output, cmd, excuses = run_schemathesis(server.url, alice.token, bob.token, tmp_path, EXAMPLES,
                                                    int(seed) if seed else None)
    cases = report["test_cases"]["generated"]
    failures = {f["code"] + " " + f["title"]: f["count"] for f in report["failures"]}
    server_errors = sum(n for k, n in failures.items() if k.startswith("ST101") or "Server error" in k)
    schema_violations = sum(failures.values()) - server_errors
    errors = sum(e["count"] for e in report["errors"])
    detected = sum(failures.values()) + errors
    engine = request.node.callspec.params.get("server", "?")
    figures.record("API fuzzing", runs=cases, faults=cases, detected=detected, engine=engine,
                   operations=report["operations"]["tested"], examples=EXAMPLES,
                   server_errors=server_errors, schema_violations=schema_violations, errors=errors,
                   excused=len(excuses), seed=report["seed"])
    why = f"\n{' '.join(cmd)}\n{output[-20000:]}"
    assert report["operations"]["tested"] == report["operations"]["total"] >= 45, why
    assert report["stop_reason"] == "completed", why
    assert detected == 0, why
