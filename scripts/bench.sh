#!/usr/bin/env bash
# `make bench` / `make bench-quick`: restic and rclone (the references) from Debian's packages when
# they are missing, then the side-by-side suite (python -m bench). Arguments go to the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
for tool in restic rclone; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  echo "installing$missing from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  # shellcheck disable=SC2086 # one word per package
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq $missing >/dev/null
fi
exec "${VENV:-.venv}/bin/python" -m bench "$@"
