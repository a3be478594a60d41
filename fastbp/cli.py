"""The ``fastbp`` command."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastbp", description="fast, exact backpropagation kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print backends (and why any is unavailable), versions, threads and BLAS")
    args = parser.parse_args(argv)
    if args.command == "info":
        from . import show_config

        show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
