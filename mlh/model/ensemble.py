"""Committees of models: the mean of several trained models of one architecture.

Models trained alike (other seeds, other data) err partly independently, so the mean of
their predictions is closer to the reference than each (docs/predictor.md gives the
measured gain), and the members' spread says where they disagree. The mean of equivariant,
Hermitian, strictly local models is all three, and it is differentiable, so every route
that takes a model takes a committee.

On disk a committee is a folder with `ensemble.json` (format, member folders, their model
digests) and the member model folders under `members/`; `write_ensemble` copies the members
in and writes the folder atomically (this module). `Predictor.load` of such a folder returns
an `EnsemblePredictor` (mlh.model.predictor), whose kernel maps the network over the members
(mlh.model.kernel.EnsembleKernel). Committees predict; they are not trained (train the
members).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlh.errors import MLHError
from mlh.file_output import atomic_folder
from mlh.model.integrity import CHECKSUM_FILE, MODEL_FILES
from mlh.model.predictor import ENSEMBLE_FILE, ENSEMBLE_FORMAT, Predictor, is_ensemble, stack_members

__all__ = ["MEMBERS_FOLDER", "write_ensemble"]

MEMBERS_FOLDER = "members"


def write_ensemble(folder: Path, member_folders: list[Path]) -> str:
    """Write a committee folder of copies of the member models' files (atomically,
    replacing an existing one; not their extras such as a fitted Harris share, which
    belong to the committee's own folder); return its digest.

    Raises:
        MLHError: a member that does not load (named), members that differ (stack_members),
            or a member that is itself a committee.
    """
    folder = Path(folder)
    for path in member_folders:
        if is_ensemble(path):
            raise MLHError(f"{path}: a committee cannot be a member; give its members")
    members = [Predictor.load(Path(path)) for path in member_folders]
    committee = stack_members(members, str(folder))  # checks before anything is written
    with atomic_folder(folder) as tmp:
        entries = []
        for k, (path, member) in enumerate(zip(member_folders, members)):
            relative = f"{MEMBERS_FOLDER}/{k}"
            (tmp / relative).mkdir(parents=True)
            for name in (*MODEL_FILES, CHECKSUM_FILE):  # not a member's extras (its Harris share)
                if (Path(path) / name).exists():  # models saved before digests have no checksums
                    shutil.copy2(Path(path) / name, tmp / relative / name)
            entries.append({"folder": relative, "source": str(path), "digest": member.digest})
        (tmp / ENSEMBLE_FILE).write_text(json.dumps(
            {"format_version": ENSEMBLE_FORMAT, "members": entries}, indent=1))
    return committee.digest
