#!/usr/bin/env bash
# Installs hn and everything its tests need into .venv, then runs ruff, mypy and the
# whole test suite. Extra arguments go to pytest (e.g. tooling/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tooling/setup.sh
. tooling/setup.sh

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
