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
if ! command -v trace-cmd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing trace-cmd (for the oracle tests)" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq trace-cmd) >/dev/null \
            || echo "bootstrap: could not install trace-cmd; the live oracle tests will skip" >&2
    else
        echo "bootstrap: trace-cmd not found and not root; the live oracle tests will skip" >&2
    fi
fi
