#!/usr/bin/env bash
# `make bench` / `make bench-quick`: restic (the reference) from Debian's packages when it is
# missing, then the side-by-side suite (python -m bench). Arguments go to the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v restic >/dev/null; then
  echo "installing restic from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq restic >/dev/null
fi
exec "${VENV:-.venv}/bin/python" -m bench "$@"
