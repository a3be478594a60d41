"""The ``fastbp`` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastbp", description="fast, exact backpropagation kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print backends (and why any is unavailable), versions, threads and BLAS")
    warm = sub.add_parser("warmup", help="run every kernel once (compiles and caches the numba kernels)")
    warm.add_argument("--backend", default=None, help="backend to warm up (default: the automatic choice)")
    args = parser.parse_args(argv)
    if args.command == "info":
        from . import show_config

        show_config()
    elif args.command == "warmup":
        import time

        t0 = time.perf_counter()
        from ._backend import selected_name
        from ._warmup import run_every_kernel

        t_import = time.perf_counter() - t0
        seconds = run_every_kernel(args.backend)
        print(f"backend {selected_name(args.backend)}: import {t_import:.2f} s, every kernel once {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
