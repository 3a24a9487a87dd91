#!/usr/bin/env bash
# Installs hn and everything its tests need into .venv, then runs ruff, mypy and the
# whole test suite. Extra arguments go to pytest (e.g. tooling/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools some tests use (zstd and GNU tar read a decrypted backup; graphviz draws
# trust graphs). Installed when missing and we may; the tests skip nothing because of it.
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

echo "== ruff"; ruff check hn tests tooling
echo "== mypy"; mypy hn
echo "== pytest"
set +e
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
