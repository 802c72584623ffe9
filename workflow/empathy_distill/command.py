"""Shared entry point of the subcommand CLIs (``python -m empathy_distill.data`` ...).

A user-facing error (EmpathyDistillError) becomes one logged line and exit status 1, so a rule's
log ends with the message naming the file, row or key instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging

from .errors import EmpathyDistillError

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def run_subcommand(
    parser: argparse.ArgumentParser, argv: list[str] | None, log: logging.Logger
) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``func``; 0 on success, 1 on error."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except EmpathyDistillError as exc:
        log.error("%s", exc)
        return 1
    return 0
