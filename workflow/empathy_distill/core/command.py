"""The one error convention of every ``python -m empathy_distill...`` entry point.

``run_cli`` parses the arguments, sets up logging and runs the command; a user-facing error
(EmpathyDistillError) becomes one line ``error: <message>`` on stderr and exit status 1, so a
rule's log ends with the message naming the file, row or key instead of a traceback. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .errors import EmpathyDistillError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_cli(
    parser: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` and call ``run(args)``: its status (0 when it returns None), or 1 on an
    EmpathyDistillError, reported as one ``error:`` line."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    args = parser.parse_args(argv)
    try:
        return run(args) or 0
    except EmpathyDistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run_subcommand(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """``run_cli`` for a parser whose subcommands set ``func`` (``set_defaults(func=...)``)."""
    return run_cli(parser, lambda args: args.func(args), argv)
