#!/usr/bin/env bash
# Installs hn into .venv, then runs the demo federation: several real nodes on this
# machine, in temporary homes, ending in a summary table. Arguments go to `hn smoke m5`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tooling/setup.sh
. tooling/setup.sh
exec hn smoke m5 --narrate "$@"
