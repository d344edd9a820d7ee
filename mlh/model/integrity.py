"""Content digests of model folders: written whenever a model is saved, checked at load.

A model folder's `checksums.json` holds the SHA-256 of each of its files and the model
digest, the SHA-256 of those (name, file digest) lines. A changed byte in any file, even
one that leaves the file readable (a same-size change in `params.msgpack` gives
Hamiltonians of 1e12 eV), is found before the model is used. Folders written before
digests existed have no `checksums.json`: they load with a warning, and `mlh seal MODEL`
writes one for them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlh.errors import MLHError
from mlh.file_output import atomic_output

__all__ = ["CHECKSUM_FILE", "MODEL_FILES", "file_sha256", "folder_digest", "write_checksums", "verify_checksums"]

CHECKSUM_FILE = "checksums.json"
MODEL_FILES = ("model.json", "params.msgpack", "scale_shift.nc")
"""The files of a model folder that its digest covers (extras such as repulsion.json are not)."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _combined(hashes: dict[str, str]) -> str:
    lines = "".join(f"{name} {value}\n" for name, value in sorted(hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def folder_digest(folder: Path) -> str:
    """The model digest of the files as they are now (nothing checked)."""
    return _combined({name: file_sha256(Path(folder) / name) for name in MODEL_FILES})


def write_checksums(folder: Path) -> str:
    """Write FOLDER/checksums.json for the model files as they are; return the model digest."""
    folder = Path(folder)
    hashes = {name: file_sha256(folder / name) for name in MODEL_FILES}
    digest = _combined(hashes)
    with atomic_output(folder / CHECKSUM_FILE) as tmp:
        tmp.write_text(json.dumps({"algorithm": "sha256", "files": hashes, "digest": digest}, indent=1))
    return digest


def verify_checksums(folder: Path) -> str | None:
    """The model digest after checking every file against FOLDER/checksums.json; None if
    the folder has no checksums.json (a model older than digests).

    Raises:
        MLHError: naming the first missing or changed file, or an unreadable checksums.json.
    """
    folder = Path(folder)
    path = folder / CHECKSUM_FILE
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        hashes = {str(name): str(value) for name, value in stored["files"].items()}
        digest = str(stored["digest"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise MLHError(f"{path}: unreadable model checksums ({type(err).__name__}: {err})") from None
    if sorted(hashes) != sorted(MODEL_FILES) or _combined(hashes) != digest:
        raise MLHError(f"{path}: the checksums file itself was changed; restore the model folder")
    for name in MODEL_FILES:
        if not (folder / name).is_file():
            raise MLHError(f"{folder / name}: missing model file")
        if file_sha256(folder / name) != hashes[name]:
            raise MLHError(f"{folder / name}: content differs from its SHA-256 in {path} (corrupt or "
                           f"changed model file); restore the model folder or retrain")
    return digest
