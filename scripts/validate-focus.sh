#!/bin/sh
# Check a `focus` export with the FinOps Foundation's focus-validator (FOCUS 1.2): see scripts/validate_focus.py.
#
#   scripts/validate-focus.sh site_output/periods/2026-11/exports/focus.csv [--junit report.xml]
set -eu
here=$(dirname "$0")
python="$here/../.venv/bin/python"
[ -x "$python" ] || python=python3
exec "$python" "$here/validate_focus.py" "$@"
