"""Kill the standalone job command, with a Spark JVM of its own, at named steps of gc, compact
and tier (SIGKILL from inside, via BLOCKDRIVE_CRASH_AT), then check the store: fsck is clean
and every committed file reads back with its SHA-256; finally a restarted run completes and the
same holds.

Every step is also killed, several times over, by the crash matrix
(tests/reliability/test_crash_matrix.py), whose job processes attach to one shared JVM. Here
each kill costs a JVM start, so the quick run kills each job at one step, the one after which
the most is at stake, and ``make soak`` (``BLOCKDRIVE_SOAK=1``) at every step."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobs.hooks import KILL_ENV, STEPS
from jobs.runner import run_job
from storage.fsck import fsck
from storage.jobruns import history
from storage.models import Pack
from tests.conftest import put_bytes, rand, read_all
from tests.reliability.figures import SOAK

ROOT = Path(__file__).resolve().parents[3]
# marked and not yet swept; merged packs in use, old ones retiring; cold copies in use
QUICK_STEP = {"gc": "gc:after_mark", "compact": "compact:after_switch", "tier": "tier:after_switch"}


def _toml(drive, tmp_path, cold: str = "") -> Path:
    cfg = drive.config
    url = drive.engine.url.render_as_string(hide_password=False)
    lines = ["[storage]", f'home = "{cfg["storage"]["home"]}"', f'cold_url = "{cold}"']
    lines += [f"{k} = {cfg['storage'][k]}" for k in ("chunk_min", "chunk_avg", "chunk_max")]
    lines += ["[database]", f'url = "{url}"', "[gc]", "grace_seconds = 0", "[jobs]"]
    lines += [f"{k} = {v}" for k, v in cfg["jobs"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    lines += ["tier_after_days = 0"]
    lines = [x for x in lines if not x.startswith("tier_after_days = 30")]
    p = tmp_path / "job.toml"
    seen, out = set(), []
    for x in lines:  # tier_after_days appears once
        k = x.split(" = ")[0]
        if k == "tier_after_days" and k in seen:
            continue
        seen.add(k)
        out.append(x)
    p.write_text("\n".join(out) + "\n")
    return p


def _kill_at(toml: Path, job: str, step: str) -> int:
    env = {**os.environ, "BLOCKDRIVE_CONFIG": str(toml), KILL_ENV: step,
           "PYTHONPATH": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    p = subprocess.run([sys.executable, "-m", "jobs", "run", job, "-q"], cwd=ROOT, env=env,
                       capture_output=True, timeout=300)
    return p.returncode


def _intact(drive, user, files):
    rep = fsck(drive, deep=True)
    assert rep.ok, [str(p) for p in rep.problems]
    for nid, data in files.items():
        assert hashlib.sha256(read_all(drive, user, nid)).digest() == hashlib.sha256(data).digest()


def _scenario(drive, make_user):
    u = make_user()
    files = {}
    for i in range(5):
        data = rand(60_000, 300 + i)
        files[put_bytes(drive, u, f"f{i}.bin", data).node.id] = data
    for nid in list(files)[:2]:
        drive.delete(u.id, nid)
        drive.purge(u.id, nid)
        files.pop(nid)
    return u, files


@pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)  # one engine is enough here
@pytest.mark.parametrize("job", ["gc", "compact", "tier"])
def test_kill_at_each_step_then_restart(drive, make_user, spark, tmp_path, job):
    u, files = _scenario(drive, make_user)
    cold = (tmp_path / "cold").as_uri() if job == "tier" else ""
    toml = _toml(drive, tmp_path, cold)
    cfg = drive.config
    if job != "gc":
        # Marks and sweeps first, so compact has dead records to drop.
        cfg0 = type(cfg)({**cfg, "gc": {"grace_seconds": 0}})
        run_job("gc", drive, spark, cfg0)
    if job == "tier":
        with drive.sm() as s, s.begin():
            s.execute(sa.update(Pack).values(sealed_at=sa.func.datetime("now", "-1 day")))
    for step in STEPS[job] if SOAK else [QUICK_STEP[job]]:
        rc = _kill_at(toml, job, step)
        assert rc == -9, f"{job} was not killed at {step} (exit {rc})"
        _intact(drive, u, files)
    assert [r["status"] for r in history(drive.sm, job=job)][:1] == ["running"]
    from storage.config import load_config
    final = load_config(toml, env={})
    from storage.drive import Drive
    d2 = Drive(final, engine=drive.engine)
    res = run_job(job, d2, spark, final)
    assert res.status == "ok"
    _intact(d2, u, files)
    if job == "tier":
        with drive.sm() as s:
            assert s.execute(sa.select(sa.func.count()).select_from(Pack).where(
                Pack.state == "sealed", Pack.url.startswith(cold))).scalar() > 0
