"""Helpers shared by the analysis modules: labelled variables and provenance attributes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from mlh import __version__ as mlh_version
from mlh.record.io import labelled_variable as variable

__all__ = ["provenance_attrs", "variable"]


def provenance_attrs(provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Dataset attributes naming mlh and the time of creation, plus `provenance_<key>` entries.

    `provenance` (e.g. the source record's provenance and file name) must hold str, int or
    float values, as NetCDF attributes do.
    """
    attrs: dict[str, Any] = {
        "creation_library": "mlh",
        "creation_library_version": mlh_version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    attrs.update({f"provenance_{key}": value for key, value in (provenance or {}).items()})
    return attrs
