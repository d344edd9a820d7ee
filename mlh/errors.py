"""The one exception family of mlh, and its warning."""

__all__ = ["MLHError", "MLHWarning"]


class MLHError(Exception):
    """A problem with user input or data that mlh detected and can explain in one line."""


class MLHWarning(UserWarning):
    """Something mlh can do but cannot vouch for, said in one line (the CLIs print it as
    `warning: ...`)."""
