#!/usr/bin/env bash
# Quick benchmark run: asv check, then every benchmark once in the current environment.
# Fails when asv reports a problem or any benchmark errors (asv's own exit code stays 0 then).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -e ".[bench]"
cd benchmarks
asv machine --yes > /dev/null
asv check --python=same
log=$(mktemp)
asv run --quick --python=same --show-stderr 2>&1 | tee "$log"
if grep -qE "(^|\s)failed$|Traceback \(most recent call last\)" "$log"; then
    echo "ci/bench_quick.sh: some benchmarks failed (see above)" >&2
    exit 1
fi
echo "ci/bench_quick.sh: every benchmark ran (or was skipped with its reason)"
