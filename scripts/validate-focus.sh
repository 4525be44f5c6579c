#!/bin/sh
# Check a `focus` export with the FinOps Foundation's focus-validator.
#
#   scripts/validate-focus.sh site_output/periods/last-30-days/exports/focus.csv
#
# The validator needs Python >= 3.12 and pyarrow < 21 (this project runs on 3.11), so it gets
# its own virtual environment; it then runs offline (--block-download). The test suite
# checks the FOCUS rules the report relies on itself (tests/test_site.py).
set -eu
file="${1:?usage: scripts/validate-focus.sh path/to/focus.csv}"
python="${FOCUS_PYTHON:-python3.12}"
command -v "$python" >/dev/null || { echo "needs $python (set FOCUS_PYTHON to a Python >= 3.12)" >&2; exit 2; }
venv=.focus-validator
[ -x "$venv/bin/focus-validator" ] || { "$python" -m venv "$venv" && "$venv/bin/pip" install --quiet focus-validator 'pyarrow<21'; }
exec "$venv/bin/focus-validator" --data-file "$file" --validate-version 1.2 --block-download
