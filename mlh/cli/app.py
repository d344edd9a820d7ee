"""The typer applications' common parts: error reporting, the batch policy, help width.

Batch policy of every command taking several inputs: the good inputs are finished,
each bad one is listed as one line `error: SOURCE: problem` on stderr, the summary says
how many were done, skipped and failed, and the exit code is 1 if any failed. Problems
with the options or the output paths stop the command before any work.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Sequence

import typer

from mlh.errors import MLHError, MLHWarning

__all__ = ["Application", "app", "reports_errors", "report_failures", "HELP_WIDTH"]

HELP_WIDTH = 120
"""Columns of help text written to a pipe or file (rich assumes 80 and cuts option names)."""


class Application(typer.Typer):
    """typer.Typer whose help keeps option names whole without a terminal."""

    def __init__(self, **kwargs):
        super().__init__(no_args_is_help=True, pretty_exceptions_enable=False, **kwargs)

    def __call__(self, *args, **kwargs):
        from typer import rich_utils

        if rich_utils.MAX_WIDTH is None and not sys.stdout.isatty():
            rich_utils.MAX_WIDTH = HELP_WIDTH  # set by the entry point only, never on import
        return super().__call__(*args, **kwargs)


app = Application(help="Machine-learned DFT Hamiltonians: reference data, training, inference.")


def reports_errors(command):
    """Turn MLHError into one line `error: ...` on stderr and exit code 1, and each
    MLHWarning into one line `warning: ...` on stderr."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():  # restores showwarning afterwards
            warnings.showwarning = _show_warning
            try:
                return command(*args, **kwargs)
            except MLHError as err:
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(1) from None

    return wrapper


_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, MLHWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def report_failures(problems: Sequence[str]) -> None:
    """The batch policy's end: one `error: SOURCE: problem` line per bad input on stderr
    (each problem names its input), then exit code 1 if there was any. Call it after the
    summary line."""
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
