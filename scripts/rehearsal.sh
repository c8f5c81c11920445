#!/usr/bin/env bash
# `make rehearsal` / `make rehearsal-quick`: the scale-out rehearsal (docs/scale.md). Installs what
# it needs that is missing (HAProxy from Debian; MariaDB's binaries and the MiniDFS launcher through
# scripts/services.sh build, which starts nothing), then runs `python -m rehearsal "$@"`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
  echo "installing haproxy from Debian's packages"
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq haproxy >/dev/null
fi
bash scripts/services.sh build
exec "$VENV/bin/python" -m rehearsal "$@"
