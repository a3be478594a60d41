#!/usr/bin/env bash
# The README's test command: install fastbp with its test extra (building the Cython
# extensions in place), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -e ".[test]"
python -m pytest
