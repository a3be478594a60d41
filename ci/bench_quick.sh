#!/usr/bin/env bash
# Quick benchmark run: asv check, then every benchmark once in the current environment.
# Fails when asv reports a problem or any benchmark errors (asv's own exit code stays 0 then).
set -euo pipefail
cd "$(dirname "$0")/.."
# the `bench` extra's tools; the package itself only when this tree's is not the one installed
# (after .ci/run's editable install, a second one would only compile the extensions again: ~2 min)
tree="$(pwd -P)"
if (cd / && python -c "import fastbp, pathlib, sys; sys.exit(str(pathlib.Path(fastbp.__file__).resolve().parents[1]) != sys.argv[1])" "$tree") 2>/dev/null; then
    (cd / && python -c 'from importlib.metadata import requires
print(*[r.split(";")[0] for r in requires("fastbp") if r.replace(" ", "").endswith("extra==\"bench\"")], sep="\n")') \
        | xargs python -m pip install
else
    python -m pip install -e ".[bench]"
fi
cd benchmarks
# PyTorch is installed (the test extra) but its contenders would triple this run: fastbp's only
export FASTBP_BENCH_NO_TORCH=1
asv machine --yes > /dev/null
asv check --python=same
log=$(mktemp)
# (recorded for this commit, so that the published dashboard below has data to draw)
asv run --quick --python=same --show-stderr --set-commit-hash "$(git rev-parse HEAD)" 2>&1 | tee "$log"
if grep -qE "(^|\s)failed$|Traceback \(most recent call last\)" "$log"; then
    echo "ci/bench_quick.sh: some benchmarks failed (see above)" >&2
    exit 1
fi
echo "ci/bench_quick.sh: every benchmark ran (or was skipped with its reason)"
# the dashboard as a reader opens it: published, offline, in headless Chromium, with the report
python publish_dashboard.py
python check_pages.py --site .asv/html --report ../docs/benchmarks
