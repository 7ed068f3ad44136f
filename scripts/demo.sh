#!/usr/bin/env bash
# Set up (scripts/bootstrap.sh) and run tracewatch's main job: a Python script watching the live
# kernel's syscall stream while a small command runs, then the same script over a recorded file.
# Without root or tracefs, only the recorded part runs.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1
TW=.venv/bin/tracewatch
if [ "$(id -u)" = 0 ] && { [ -w /sys/kernel/tracing ] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null; }; then
    echo "== live: syscalls per command while 'ls -lR /usr/share/doc' runs"
    $TW run examples/syscall_count.py -- sh -c 'ls -lR /usr/share/doc > /dev/null' || exit 1
else
    echo "== live tracing needs root and tracefs: skipping the live part"
fi
echo "== recorded: the same script over examples/sample.dat (captured with 'tracewatch record')"
$TW run examples/syscall_count.py -i examples/sample.dat || exit 1
echo "== the first lines of 'tracewatch report examples/sample.dat' (what 'trace-cmd report' prints)"
$TW report examples/sample.dat | head -8
