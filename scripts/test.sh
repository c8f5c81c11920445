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

# The compose-file test needs a validator; Debian's docker-compose is one (no engine needed).
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null) \
    || echo "could not install docker-compose; the compose-file test will say so"
fi
stage tools

if [ "${BLOCKDRIVE_SKIP_SERVICES:-0}" = "1" ]; then
  echo "BLOCKDRIVE_SKIP_SERVICES=1: MariaDB, HDFS and S3 are not started; their tests will be SKIPPED"
else
  bash scripts/services.sh up || { echo "services failed to start; see var/services/logs" >&2; exit 1; }
fi
stage services-up

"$VENV/bin/python" -m pytest tests "$@"
rc=$?
stage tests
cat var/stages.txt
exit $rc
