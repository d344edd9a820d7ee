"""The one exception family of mlh."""

__all__ = ["MLHError"]


class MLHError(Exception):
    """A problem with user input or data that mlh detected and can explain in one line."""
