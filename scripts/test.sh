#!/usr/bin/env bash
# The whole test suite: start the real services (MariaDB, HDFS, S3), then every test.
# Prints how long each stage took. With CI=true a test whose service is down fails; only
# BLOCKDRIVE_SKIP_SERVICES=1 turns those tests into skips (and says so).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
stage_start=$(date +%s)
stage() {  # stage NAME -- prints the time since the previous stage
  local now; now=$(date +%s)
  printf '== stage %-14s %4ds\n' "$1" $((now - stage_start)) | tee -a var/stages.txt
  stage_start=$now
}
mkdir -p var && : > var/stages.txt

# Tools some tests drive, from Debian's packages: a compose-file validator (Debian's
# docker-compose; no engine needed), Chromium and its driver for the browser tests (dashboard, web app), and the
# WebDAV clients of tests/e2e/test_dav_*.py (litmus, rclone, nextcloudcmd, cadaver, davfs2), and HAProxy
# for the rehearsal's load balancer (tests/rehearsal/test_api.py).
need=()
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || need+=(docker-compose)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v litmus >/dev/null || need+=(litmus)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)  # Spark standalone (tests/rehearsal/test_spark.py)
command -v rclone >/dev/null || need+=(rclone)
command -v nextcloudcmd >/dev/null || need+=(nextcloud-desktop-cmd)
command -v cadaver >/dev/null || need+=(cadaver)
[ -x /usr/sbin/mount.davfs ] || need+=(davfs2)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian's packages"
  (apt-get -o DPkg::Lock::Timeout=300 update -qq &&
   DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}" >/dev/null) \
    || echo "could not install ${need[*]}; the tests that need them will say so"
fi
stage tools

if [ "${BLOCKDRIVE_SKIP_SERVICES:-0}" = "1" ]; then
  echo "BLOCKDRIVE_SKIP_SERVICES=1: MariaDB, HDFS and S3 are not started; their tests will be SKIPPED"
else
  bash scripts/services.sh up || { echo "services failed to start; see var/services/logs" >&2; exit 1; }
fi
stage services-up

# With arguments (a file, -k, -x ...) one pytest run does what they ask. Without, two runs:
#  1. unit, integration and e2e on BLOCKDRIVE_TEST_WORKERS processes (pytest-xdist; default: one per
#     core). These tests share only the services: each process has its own MariaDB database
#     (tests/conftest.py), every server and browser takes a free port, every store a tmp dir.
#  2. reliability and rehearsal, one test at a time: they kill processes, count what they did and
#     start clusters of their own, and their figures table is printed by the run that made it.
if [ $# -gt 0 ]; then
  "$VENV/bin/python" -m pytest tests --durations=40 "$@"
  rc=$?
  stage tests
else
  workers=${BLOCKDRIVE_TEST_WORKERS:-$(nproc 2>/dev/null || echo 2)}
  "$VENV/bin/python" -m pytest tests --ignore=tests/reliability --ignore=tests/rehearsal \
    -n "$workers" --dist worksteal --durations=40
  rc=$?
  stage tests-parallel
  "$VENV/bin/python" -m pytest tests/reliability tests/rehearsal --durations=20
  rc2=$?
  [ $rc -ne 0 ] || rc=$rc2
  stage tests-serial
fi
cat var/stages.txt
exit $rc
