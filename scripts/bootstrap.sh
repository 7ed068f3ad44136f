#!/usr/bin/env bash
# Set up everything tracewatch needs on a fresh machine: a virtualenv in .venv with the
# package installed editable, and (as root) trace-cmd, which the oracle tests compare against.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import tracewatch, numba, zstandard, pytest, hypothesis' 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
fi
# trace-cmd (the oracle tests compare against it) and linux-perf (perf's own scripts run in
# the perf-compatibility tests, and bench/handlers.py compares with `perf script`)
missing=""
command -v trace-cmd >/dev/null 2>&1 || missing="$missing trace-cmd"
[ -d /usr/lib/perf-core/scripts/python ] || missing="$missing linux-perf"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing$missing" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/dev/null \
            || echo "bootstrap: could not install$missing; the tests that need them will skip" >&2
    else
        echo "bootstrap: not root: cannot install$missing; the tests that need them will skip" >&2
    fi
fi
