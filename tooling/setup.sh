#!/usr/bin/env bash
# Sourced by tooling/test.sh and tooling/demo.sh: installs system tools when missing
# (and we may), creates .venv, installs hn with its test extras, activates the venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# zstd and GNU tar read a decrypted backup without hn; graphviz draws trust graphs.
need=()
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e '.[test]'
# Byte-compile hn once, as a regular (non-editable) install does: every hn process the
# tests and the demo start then loads it instead of compiling it again, which matters
# where PYTHONDONTWRITEBYTECODE is set.
python -m compileall -q hn >/dev/null
