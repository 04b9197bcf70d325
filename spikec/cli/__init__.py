"""The ``spikec`` command line: a thin layer over the Python API, one module per verb.

    spikec show    CKPT [model options]                 # traced IR as a table
    spikec compile CKPT --target TARGET -o OUT [model options]
    spikec run     ARTIFACT --input X.npy
    spikec verify  CKPT [model options] --input X.npy [--target TARGET]
    spikec report  CKPT [model options] --input X.npy -o DIR

Errors in the user's input (files, shapes, unsupported modules) print one line and exit with
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from spikec import __version__
from spikec.errors import SpikecError

from . import compile as compile_verb
from . import report as report_verb
from . import run as run_verb
from . import show as show_verb
from . import verify as verify_verb

EXIT_USAGE = 2
VERBS = (show_verb, compile_verb, run_verb, verify_verb, report_verb)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spikec",
                                     description="Compile trained PyTorch spiking transformers to neuromorphic targets.")
    parser.add_argument("--version", action="version", version=f"spikec {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except SpikecError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["EXIT_USAGE", "build_parser", "main"]
