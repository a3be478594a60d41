#!/usr/bin/env bash
# Record the asv suite for each of the last N commits (default 20), so that the dashboard's graphs
# have lines, then publish the dashboard. Each commit is built and installed in an environment of
# its own (asv.conf.json); commits already recorded on this machine are skipped. Extra arguments
# go to `asv run` (for example -b "bench_training" for some benchmarks only, or --quick).
#     cd benchmarks && bash record_history.sh [N] [asv run arguments...]
set -euo pipefail
cd "$(dirname "$0")"
n="${1:-20}"
shift || true
asv machine --yes > /dev/null
# (the first N commits of the branch, newest first; asv runs each once)
asv run --skip-existing-commits "$@" "HEAD~${n}..HEAD"
python publish_dashboard.py
