"""Compile the cuda backend's product kernels to PTX and SASS for a GPU architecture without a
GPU, and report what the compiler made of them: registers per thread, spills, shared-memory
loads (scalar or 16-byte vectors), FMAs per tile step.

Needs NVIDIA's compiler libraries, which PyPI ships as wheels (no driver, no GPU)::

    pip install --target /tmp/nv nvidia-cuda-nvcc nvidia-cuda-nvrtc
    CUDA_HOME=/tmp/nv/nvidia/cu13 PYTHONPATH=/tmp/nv python ci/cuda_ptx_report.py [--cc 9.0]

Numba compiles device functions for the current device's architecture; with no device there is
none, so this script tells Numba's dispatcher that the device is the ``--cc`` architecture.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0: H100/H200)")
    args = parser.parse_args(argv)
    cc = tuple(int(v) for v in args.cc.split("."))

    import numba.cuda.dispatcher as dispatcher
    from numba import cuda, types

    class _Device:
        compute_capability = cc

    dispatcher.get_current_device = lambda: _Device()  # no GPU here: compile for --cc
    from fastbp.backends.cuda import config, gemm

    ptxas = os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "ptxas")
    geometries = [config.DEFAULT.gemm32] + [config.GemmTiles(*t, pipelined=True) for t in (
        (128, 64, 8, 8, 4), (128, 128, 8, 8, 4), (128, 128, 8, 8, 8), (64, 128, 8, 4, 8), (64, 64, 8, 4, 4))]
    arr2, arr1 = types.Array(types.float32, 2, "C"), types.Array(types.float32, 1, "C")
    sig = (arr2, arr2, arr1, arr2, arr2, types.int64, types.int64, types.int64, types.float64, types.boolean,
           types.boolean)
    print(f"{'tiles (bm, bn, bk, tm, tn)':30s} {'form':6s} {'regs':>5s} {'spill':>6s} {'lds':>4s} {'lds.v4':>6s} "
          f"{'fma':>4s}")
    for tiles in geometries:
        for form, (ta, tb) in (("x@w", (False, False)), ("x.T@d", (True, False)), ("d@w.T", (False, True))):
            kernel = gemm.kernel(np.dtype(np.float32), tiles, ta, tb, 1)
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "k.ptx")
                with open(path, "w") as f:
                    f.write(ptx)
                report = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", path, "-o", path + ".cubin"],
                                        capture_output=True, text=True, check=True).stderr
            regs = re.search(r"Used (\d+) registers", report).group(1)
            spill = re.search(r"(\d+) bytes spill stores", report).group(1)
            name = f"{tiles.bm}, {tiles.bn}, {tiles.bk}, {tiles.tm}, {tiles.tn}" + (" pipelined" if tiles.pipelined else "")
            print(f"{name:30s} {form:6s} {regs:>5s} {spill:>6s} {len(re.findall(r'ld.shared.f32', ptx)):4d} "
                  f"{len(re.findall(r'ld.shared.v4.f32', ptx)):6d} {len(re.findall(r'fma.rn.f32', ptx)):4d}")


if __name__ == "__main__":
    main()
