"""The typer application shared by the command modules, and its error reporting."""

from __future__ import annotations

import functools

import typer

from mlh.errors import MLHError

__all__ = ["app", "reports_errors"]

app = typer.Typer(help="Machine-learned DFT Hamiltonians: reference data, training, inference.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def reports_errors(command):
    """Turn MLHError into one line on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MLHError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None

    return wrapper
