"""Atomic file output (write to a temporary file beside the target, rename when complete)
and the checks every command runs on its output paths before any work starts."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlh.errors import MLHError

__all__ = ["LOCK_FILE", "atomic_folder", "atomic_output", "check_output_file", "check_output_folder", "output_lock"]

LOCK_FILE = ".mlh.lock"
"""Lock file of a folder a command is writing into (`output_lock`)."""


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to `path`, on any error delete it.

    The temporary file keeps the target's suffix so that writers choosing a format by
    extension (ASE, matplotlib) behave as for the target.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` (an existing
    folder included), on any error it is deleted and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp.", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_file(path: str | os.PathLike | None, option: str = "-o") -> None:
    """MLHError unless `path` can be written as a file (checked before any work starts).

    A missing file is fine if its nearest existing ancestor is a writable folder; an
    existing file is fine (it is replaced atomically). None means "not asked for".
    """
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise MLHError(f"{path}: is a folder, but {option} names a file to write")
    _check_writable(path, path.parent, option)


def check_output_folder(path: str | os.PathLike | None, option: str = "-o") -> None:
    """MLHError unless `path` is, or can be created as, a writable folder (checked before
    any work starts; nothing is created). None means "not asked for"."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MLHError(f"{path}: is a file, but {option} names a folder to write into")
    _check_writable(path, path, option)


def _check_writable(path: Path, folder: Path, option: str) -> None:
    """MLHError unless `folder`, or its nearest existing ancestor, is a folder that accepts
    new files (tried for real: permission bits say nothing for root or read-only mounts)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MLHError(f"{path}: {existing} is a file, not a folder ({option})")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mlh-write-check.", dir=existing)
    except OSError as err:
        raise MLHError(f"{path}: cannot write in {existing} ({err.strerror}; {option})") from None
    os.close(fd)
    os.unlink(probe)


@contextmanager
def output_lock(folder: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold FOLDER/.mlh.lock while `command` writes into `folder` (created if missing).

    A second run on the same folder gets MLHError at once instead of repeating the work
    and racing on the same files. The operating system releases the lock when the
    holder dies, even by SIGKILL, so a killed run never blocks its rerun. A folder this
    call created is removed again if nothing else was written into it.
    """
    from filelock import FileLock, Timeout

    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise MLHError(f"{folder}: another {command} is writing into this folder (it holds "
                       f"{path}); wait for it to finish or choose another folder") from None
    try:
        yield
    finally:
        lock.release()
        if created and {p.name for p in folder.iterdir()} <= {LOCK_FILE}:
            path.unlink(missing_ok=True)
            folder.rmdir()
