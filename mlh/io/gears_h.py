"""Read a GEARS H (gears_h) training snapshot directory into a HamiltonianRecord.

The snapshot layout is the one written by gears_h_tools
(`prepare_data.prepare_gpaw_slh_snapshot`) and read by gears_h
(`data/input_pipeline.snapshot_from_directory`):

    atoms.extxyz               the structure (ASE extxyz; energy/free_energy/forces if any)
    orbital_ells.json          {"Z": [l of each radial function, in basis order], ...}
                               (JSON object keys are the atomic numbers as strings)
    ijD.npz                    "ij": (P, 2) atom indices, "D": (P, 3) vectors
                               D = pos[j] + S @ cell - pos[i] (Å) of a full neighbour
                               list (matscipy "ijD"): both (i, j) and (j, i) are listed
    hblocks_off-diagonal.npz   "hblocks": one block per ij row, rows = orbitals of i,
                               columns = orbitals of j (a pickled object array)
    hblocks_on-diagonal.npz    "hblocks": one (n_i, n_i) block per atom (object array)
    H_MM_S_MM.npz              optional Γ matrices "H_MM" (eV) and "S_MM", each either a
                               dense array or a pickled scipy.sparse.csr_matrix; "H_MM" is
                               None for overlap-only snapshots (whose hblocks are S blocks)

Facts this reader relies on:

* Units: H in eV (GPAW's Hartree matrix is multiplied by ase.units.Ha before writing,
  ABACUS's Rydberg by ase.units.Rydberg), S dimensionless, lengths in Å. No
  conversion is needed. Values are usually float32 (`reference_dtype`); they are
  widened to float64 here.
* Blocks are slices of the dense Γ-point matrix: block (i, j) = H_MM[rows of i,
  cols of j]. A Γ block equals the real-space block H_ij(R) only when atom j has a
  single periodic image near atom i, which gears_h_tools asserts (`unique_pairs`).
  A pair listed with several images cannot be split and is refused here.
* Orbital order inside an atom: radial functions in the order of orbital_ells.json
  (GPAW's `setup.basis.bf_j`), m = -l..l in GPAW / e3x order, which is mlh's order.
* Snapshots hold no separate S blocks: S comes from the dense Γ matrix S_MM, which
  is valid for the same single-image reason. Without H_MM_S_MM.npz there is no S and
  the snapshot cannot become a record (the mlh schema requires S).
* gears_h_tools keeps only pairs within its neighbour-list cutoff whose H block has
  max |H| >= 1e-4 eV; pairs outside are absent (also from S). Where H_MM_S_MM.npz is
  present, provenance "gamma_S_residual_max" / "gamma_H_residual_max_eV" give the
  largest Γ matrix element the stored pairs do not reproduce.
* Only one spin channel (GPAW spin 0) and no basis cutoff radii are stored: the
  record has n_spins = 1 and rcuts = NaN (labels "unknown").
* ABACUS snapshots (marked by svecs_num_blocks.dat) are refused: their blocks are
  per-image H(R) with several images per pair, and gears_h_tools writes their
  S_MM from the neighbour-list shift vectors instead of the overlap, so S is lost.
* The old gears_h layout (a single hblocks.npz with the off-diagonal blocks, no
  on-site file) is read when H_MM_S_MM.npz supplies the on-site blocks.

The npz block files are pickled object arrays. They are read without
`allow_pickle=True`: a restricted unpickler accepts only numpy arrays, numpy
scalars/dtypes and scipy.sparse csr/csc/coo matrices, so a crafted file cannot run code.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mlh import __version__ as mlh_version
from mlh.errors import MLHError
from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.hamiltonian import HamiltonianRecord, Labels, canonical_pair_mask

__all__ = ["read_gears_h_snapshot"]

ATOMS_FILE = "atoms.extxyz"
ELLS_FILE = "orbital_ells.json"
IJD_FILE = "ijD.npz"
OFFDIAG_FILE = "hblocks_off-diagonal.npz"
ONDIAG_FILE = "hblocks_on-diagonal.npz"
LEGACY_BLOCKS_FILE = "hblocks.npz"
DENSE_FILE = "H_MM_S_MM.npz"
ABACUS_MARKER_FILE = "svecs_num_blocks.dat"
KNOWN_BLOCK_FILES = (OFFDIAG_FILE, ONDIAG_FILE, LEGACY_BLOCKS_FILE)

# |R - round(R)| allowed for the lattice shift recovered from D (reduced units).
SHIFT_TOLERANCE = 1e-4
# |D - (pos_j + R @ cell - pos_i)| allowed (Å); extxyz stores positions to 1e-8 Å.
VECTOR_TOLERANCE = 1e-3
# Blocks (i, j) and (j, i)^T present in the same snapshot must agree to this,
# relative to max(1, largest |value|) (float32 storage gives ~1e-7).
ORIENTATION_TOLERANCE = 1e-4


# ---------------------------------------------------------------- safe npz reading
def _numpy_core_attr(name: str) -> Any:
    core = getattr(np, "_core", None)
    if core is None:  # numpy < 2
        core = np.core
    return getattr(core.multiarray, name)


_SPARSE_CLASSES = {
    "csr_matrix": sp.csr_matrix, "csc_matrix": sp.csc_matrix, "coo_matrix": sp.coo_matrix,
    "csr_array": sp.csr_array, "csc_array": sp.csc_array, "coo_array": sp.coo_array,
}
_SPARSE_MODULES = {
    "scipy.sparse", "scipy.sparse._csr", "scipy.sparse._csc", "scipy.sparse._coo",
    "scipy.sparse.csr", "scipy.sparse.csc", "scipy.sparse.coo",
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and scipy sparse matrices, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
            "_reconstruct", "scalar",
        ):
            return _numpy_core_attr(name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return getattr(np.dtypes, name)
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return _SPARSE_CLASSES[name]
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return _checked_reconstructor
        if module in ("builtins", "__builtin__") and name == "object":
            return object
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _checked_reconstructor(cls: type, base: type, state: Any) -> Any:
    if cls not in _SPARSE_CLASSES.values() or base is not object:
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return object.__new__(cls)


def _read_object_member(zf: zipfile.ZipFile, member: str) -> np.ndarray:
    """Read a pickled (object dtype) .npy member with the restricted unpickler."""
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version} for an object array")
        value = _RestrictedUnpickler(fh).load()
    if not isinstance(value, np.ndarray):
        raise ValueError(f"pickled member holds a {type(value).__name__}, not an array")
    return value


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file; object arrays through the restricted unpickler."""
    if not path.is_file():
        raise MLHError(f"{path}: file is missing")
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                key = member[: -len(".npy")]
                try:
                    with zf.open(member) as fh:
                        arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
                except ValueError as err:
                    if "allow_pickle" not in str(err):
                        raise
                    arrays[key] = _read_object_member(zf, member)
    except MLHError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            AttributeError, TypeError, IndexError, KeyError) as err:
        raise MLHError(f"{path}: unreadable npz file ({type(err).__name__}: {err})") from None
    return arrays


def _require(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise MLHError(f"{path}: no array {key!r} (has {sorted(arrays)})")
    return arrays[key]


def _as_blocks(value: np.ndarray, path: Path) -> list[np.ndarray]:
    """The blocks of an "hblocks" array: object array of 2-D arrays, or a 3-D array."""
    if value.dtype != object and value.ndim == 3:
        items = list(value)
    elif value.dtype == object and value.ndim == 3:  # equal-shape blocks, stacked by numpy
        items = list(value)
    elif value.dtype == object and value.ndim == 1:
        items = list(value)
    elif value.size == 0 and value.ndim == 1:
        items = []
    else:
        raise MLHError(
            f"{path}: 'hblocks' has dtype {value.dtype} and shape {value.shape}; expected "
            "one 2-D block per entry"
        )
    blocks = []
    for index, item in enumerate(items):
        try:
            block = np.asarray(item, dtype=np.float64)
        except (TypeError, ValueError):
            raise MLHError(f"{path}: block {index} is not numeric") from None
        if block.ndim != 2:
            raise MLHError(f"{path}: block {index} has shape {block.shape}, expected 2-D")
        blocks.append(block)
    return blocks


def _as_matrix(value: np.ndarray, key: str, path: Path, n: int):
    """H_MM / S_MM as a dense float64 array or CSR matrix of shape (n, n); None if None."""
    if value.dtype == object and value.ndim == 0:
        value = value[()]
        if value is None:
            return None
    if sp.issparse(value):
        try:
            matrix = sp.csr_matrix(value)
            matrix.check_format(full_check=True)
        except ValueError as err:
            raise MLHError(f"{path}: {key} is an invalid sparse matrix ({err})") from None
        matrix = matrix.astype(np.float64)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        matrix = np.asarray(value, dtype=np.float64)
    else:
        raise MLHError(f"{path}: {key} is a {type(value).__name__}, not a matrix")
    if matrix.shape != (n, n):
        raise MLHError(
            f"{path}: {key} has shape {matrix.shape}, but orbital_ells.json gives {n} orbitals"
        )
    if not np.isfinite(matrix.data if sp.issparse(matrix) else matrix).all():
        raise MLHError(f"{path}: {key} contains NaN or infinite values")
    return matrix


def _sub(matrix, rows: slice, cols: slice) -> np.ndarray:
    block = matrix[rows, cols]
    return block.toarray() if sp.issparse(block) else np.array(block)


# ------------------------------------------------------------------- structure, basis
def _read_atoms(path: Path):
    from ase.io import read

    if not path.is_file():
        raise MLHError(f"{path}: file is missing")
    try:
        return read(path, format="extxyz")
    except Exception as err:  # ase raises many kinds
        raise MLHError(f"{path}: unreadable extxyz file ({type(err).__name__}: {err})") from None


def _read_basis(path: Path, numbers: np.ndarray) -> Basis:
    if not path.is_file():
        raise MLHError(f"{path}: file is missing")
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        ells = {int(z): [int(l) for l in ls] for z, ls in raw.items()}
        if any(
            not isinstance(l, int) or isinstance(l, bool) for ls in raw.values() for l in ls
        ):
            raise ValueError("angular momenta must be integers")
    except (OSError, ValueError, TypeError) as err:
        raise MLHError(
            f"{path}: expected {{\"Z\": [l, ...]}} ({type(err).__name__}: {err})"
        ) from None
    species = []
    for z in sorted({int(z) for z in numbers}):
        if z not in ells:
            raise MLHError(f"{path}: no angular momenta for Z={z}, which is in the structure")
        ls = tuple(ells[z])
        if not ls:
            raise MLHError(f"{path}: Z={z} has no basis functions")
        try:
            species.append(
                SpeciesBasis(
                    number=z, ls=ls, rcuts=(float("nan"),) * len(ls),
                    labels=("unknown",) * len(ls),
                )
            )
        except MLHError as err:
            raise MLHError(f"{path}: {err}") from None
    return Basis(name="gears_h:unknown", species=tuple(species))


def _labels(atoms) -> Labels:
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    energy = results.get("energy")
    free_energy = results.get("free_energy")
    forces = results.get("forces")
    return Labels(
        energy=None if energy is None else float(energy),
        free_energy=None if free_energy is None else float(free_energy),
        forces=None if forces is None else np.asarray(forces, dtype=float).reshape(-1, 3),
    )


# --------------------------------------------------------------------------- shifts
def _lattice_shifts(
    ij: np.ndarray, D: np.ndarray, positions: np.ndarray, cell: np.ndarray,
    pbc: np.ndarray, path: Path,
) -> np.ndarray:
    """Integer R with D = pos_j + R @ cell - pos_i; MLHError naming `path` otherwise."""
    delta = D - (positions[ij[:, 1]] - positions[ij[:, 0]])
    frac = np.zeros_like(delta)
    if pbc.any():
        lattice = cell[pbc]
        if np.linalg.matrix_rank(lattice) < len(lattice):
            raise MLHError(f"{path}: the cell is singular along the periodic directions")
        solution, *_ = np.linalg.lstsq(lattice.T, delta.T, rcond=None)
        frac[:, pbc] = solution.T
    shift = np.rint(frac)
    off_lattice = np.abs(frac - shift).max(axis=1, initial=0.0) > SHIFT_TOLERANCE
    residual = np.linalg.norm(delta - shift @ cell, axis=1) > VECTOR_TOLERANCE
    bad = np.flatnonzero(off_lattice | residual)
    if len(bad):
        k = int(bad[0])
        raise MLHError(
            f"{path}: row {k} (i={ij[k, 0]}, j={ij[k, 1]}) has D={D[k].tolist()}, which is "
            f"not pos_j - pos_i plus a lattice vector (reduced shift {frac[k].tolist()}; "
            f"{len(bad)} such rows)"
        )
    return shift.astype(np.int64)


# ---------------------------------------------------------------------------- reader
def _pair_block_file(directory: Path) -> Path:
    """The file holding the pair blocks (the new hblocks_offdiag or the legacy hblocks)."""
    present = {p.name for p in directory.glob("hblocks*.npz")}
    unknown = sorted(present - set(KNOWN_BLOCK_FILES))
    if unknown:
        raise MLHError(
            f"{directory / unknown[0]}: unrecognised block file; a gears_h snapshot has "
            f"{OFFDIAG_FILE} and {ONDIAG_FILE} (or the old {LEGACY_BLOCKS_FILE})"
        )
    if OFFDIAG_FILE in present and LEGACY_BLOCKS_FILE in present:
        raise MLHError(
            f"{directory}: both {OFFDIAG_FILE} and {LEGACY_BLOCKS_FILE} are present; "
            "which holds the pair blocks is ambiguous"
        )
    if OFFDIAG_FILE in present or LEGACY_BLOCKS_FILE not in present:
        return directory / OFFDIAG_FILE
    return directory / LEGACY_BLOCKS_FILE


def _read_pair_list(ijd_path: Path, n_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) atom indices ij and (P, 3) displacements D (Å) of the pair list, validated."""
    ijd = _load_npz(ijd_path)
    ij = np.asarray(_require(ijd, "ij", ijd_path))
    D = np.asarray(_require(ijd, "D", ijd_path))
    if ij.size == 0 and D.size == 0:
        ij, D = np.zeros((0, 2), dtype=np.int64), np.zeros((0, 3))
    if ij.ndim != 2 or ij.shape[1] != 2 or D.shape != (len(ij), 3):
        raise MLHError(
            f"{ijd_path}: ij has shape {ij.shape} and D {D.shape}; expected (P, 2), (P, 3)"
        )
    if not np.issubdtype(ij.dtype, np.number) or not np.issubdtype(D.dtype, np.number):
        raise MLHError(f"{ijd_path}: ij and D must be numeric")
    if np.any(ij != np.rint(ij)):
        raise MLHError(f"{ijd_path}: ij holds non-integer atom indices")
    ij = ij.astype(np.int64)
    D = D.astype(np.float64)
    if len(ij) and (ij.min() < 0 or ij.max() >= n_atoms):
        raise MLHError(f"{ijd_path}: atom indices outside 0..{n_atoms - 1}")
    if not np.isfinite(D).all():
        raise MLHError(f"{ijd_path}: D contains NaN or infinite values")
    return ij, D


def _read_pair_blocks(
    offdiag_path: Path, ij: np.ndarray, counts: np.ndarray, numbers: np.ndarray
) -> list[np.ndarray]:
    """The pair blocks (eV) of every row of ij, checked against the orbital counts."""
    offdiag = _as_blocks(_require(_load_npz(offdiag_path), "hblocks", offdiag_path), offdiag_path)
    if len(offdiag) != len(ij):
        raise MLHError(
            f"{offdiag_path}: {len(offdiag)} blocks but {IJD_FILE} lists {len(ij)} pairs"
        )
    for k, (block, (i, j)) in enumerate(zip(offdiag, ij)):
        if block.shape != (counts[i], counts[j]):
            raise MLHError(
                f"{offdiag_path}: block {k} of pair ({i}, {j}) has shape {block.shape}, but "
                f"{ELLS_FILE} gives ({counts[i]}, {counts[j]}) orbitals for Z=({numbers[i]}, "
                f"{numbers[j]})"
            )
        if not np.isfinite(block).all():
            raise MLHError(f"{offdiag_path}: block {k} contains NaN or infinite values")
    return offdiag


def _read_gamma_matrices(directory: Path, n_orbitals: int):
    """(H_MM or None, S_MM, overlap_only) from H_MM_S_MM.npz; MLHError without S."""
    dense_path = directory / DENSE_FILE
    H_MM = S_MM = None
    overlap_only = False
    if dense_path.exists():
        dense = _load_npz(dense_path)
        S_MM = _as_matrix(_require(dense, "S_MM", dense_path), "S_MM", dense_path, n_orbitals)
        if "H_MM" in dense:
            H_MM = _as_matrix(dense["H_MM"], "H_MM", dense_path, n_orbitals)
        overlap_only = H_MM is None
    if S_MM is None:
        raise MLHError(
            f"{directory}: no overlap matrix ({DENSE_FILE} with S_MM is missing); gears_h "
            "snapshots store no S blocks and mlh records require S"
        )
    return H_MM, S_MM, overlap_only


def _read_onsite_blocks(
    directory: Path, H_MM, counts: np.ndarray, numbers: np.ndarray, orbitals
) -> list[np.ndarray]:
    """On-site H blocks (eV) from hblocks_ondiag.npz, else from the Γ matrix H_MM."""
    ondiag_path = directory / ONDIAG_FILE
    n_atoms = len(numbers)
    if ondiag_path.exists():
        blocks = _as_blocks(_require(_load_npz(ondiag_path), "hblocks", ondiag_path), ondiag_path)
        if len(blocks) != n_atoms:
            raise MLHError(f"{ondiag_path}: {len(blocks)} blocks for {n_atoms} atoms")
        for a, block in enumerate(blocks):
            if block.shape != (counts[a], counts[a]):
                raise MLHError(
                    f"{ondiag_path}: block of atom {a} has shape {block.shape}, but "
                    f"{ELLS_FILE} gives {counts[a]} orbitals for Z={numbers[a]}"
                )
            if not np.isfinite(block).all():
                raise MLHError(f"{ondiag_path}: block of atom {a} contains NaN or infinite values")
        return blocks
    if H_MM is not None:
        return [_sub(H_MM, orbitals(a), orbitals(a)) for a in range(n_atoms)]
    raise MLHError(f"{ondiag_path}: file is missing")


def _canonical_pairs(ij: np.ndarray, shift: np.ndarray, offdiag: list[np.ndarray],
                     ijd_path: Path, offdiag_path: Path):
    """Each pair once in mlh's orientation: (order of (i, j) keys, their lattice images,
    their blocks, and the number of rows listed in both orientations)."""
    forward = canonical_pair_mask(ij[:, 0], ij[:, 1], shift)
    ci = np.where(forward, ij[:, 0], ij[:, 1])
    cj = np.where(forward, ij[:, 1], ij[:, 0])
    cR = np.where(forward[:, None], shift, -shift)

    selfpair = np.flatnonzero(ci == cj)
    if len(selfpair):
        k = int(selfpair[0])
        raise MLHError(
            f"{ijd_path}: row {k} pairs atom {ci[k]} with its own image R={cR[k].tolist()}; "
            "gears_h blocks are Γ sums, so self-image blocks cannot be separated"
        )

    images: dict[tuple[int, int], tuple[int, int, int]] = {}
    chosen: dict[tuple[int, int], int] = {}
    for k in range(len(ij)):
        atoms_key = (int(ci[k]), int(cj[k]))
        image = tuple(int(x) for x in cR[k])
        if atoms_key in images and images[atoms_key] != image:
            raise MLHError(
                f"{ijd_path}: atoms {atoms_key} are listed with several lattice images "
                f"(R={list(images[atoms_key])} and R={list(image)}); gears_h blocks are Γ "
                "sums over images and cannot be split per image"
            )
        images[atoms_key] = image
        if atoms_key not in chosen or (forward[k] and not forward[chosen[atoms_key]]):
            chosen[atoms_key] = k

    def canonical_block(k: int) -> np.ndarray:
        return offdiag[k] if forward[k] else offdiag[k].T

    n_both = 0
    for k in range(len(ij)):
        first = chosen[(int(ci[k]), int(cj[k]))]
        if first == k:
            continue
        n_both += 1
        a, b = canonical_block(first), canonical_block(k)
        scale = max(1.0, float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
        if np.abs(a - b).max(initial=0.0) > ORIENTATION_TOLERANCE * scale:
            raise MLHError(
                f"{offdiag_path}: blocks {first} and {k} of atoms ({ci[k]}, {cj[k]}) are "
                "not transposes of each other"
            )

    order = sorted(chosen, key=lambda key: (key[0], key[1], images[key]))
    return order, images, [canonical_block(chosen[key]) for key in order], n_both


def _concat(blocks: list[np.ndarray]) -> np.ndarray:
    """Blocks flattened and joined (row-major per block), or an empty array."""
    if not blocks:
        return np.zeros(0)
    return np.concatenate([b.ravel() for b in blocks])


def read_gears_h_snapshot(directory: Path | str) -> HamiltonianRecord:
    """Read a gears_h snapshot directory (see the module docstring) as a HamiltonianRecord.

    H blocks come from the hblocks files (eV); S blocks and on-site S from the Γ matrix
    S_MM of H_MM_S_MM.npz. Each pair is stored once in mlh's orientation (i < j), its
    lattice shift R recovered from D. Raises MLHError (naming the file) for missing or
    unreadable files, blocks inconsistent with orbital_ells.json, non-lattice D, pairs
    with several images, or a snapshot without S.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MLHError(f"{directory}: not a directory")
    if (directory / ABACUS_MARKER_FILE).exists():
        raise MLHError(
            f"{directory / ABACUS_MARKER_FILE}: an ABACUS snapshot (gears_h_tools "
            "prepare_abacus_gears_h_snapshot) is not supported: its H_MM_S_MM.npz S_MM is "
            "not the overlap matrix, so S cannot be recovered"
        )

    atoms = _read_atoms(directory / ATOMS_FILE)
    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    positions = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    n_atoms = len(numbers)

    basis = _read_basis(directory / ELLS_FILE, numbers)
    counts = basis.orbital_counts(numbers)
    offsets = np.concatenate([[0], np.cumsum(counts)])

    def orbitals(atom: int) -> slice:
        return slice(int(offsets[atom]), int(offsets[atom + 1]))

    offdiag_path = _pair_block_file(directory)
    ijd_path = directory / IJD_FILE
    ij, D = _read_pair_list(ijd_path, n_atoms)
    offdiag = _read_pair_blocks(offdiag_path, ij, counts, numbers)
    H_MM, S_MM, overlap_only = _read_gamma_matrices(directory, int(offsets[-1]))
    H_onsite_blocks = None if overlap_only else _read_onsite_blocks(
        directory, H_MM, counts, numbers, orbitals)

    shift = _lattice_shifts(ij, D, positions, cell, pbc, ijd_path)
    order, images, pair_blocks, n_both = _canonical_pairs(ij, shift, offdiag, ijd_path, offdiag_path)
    pair_i = np.array([key[0] for key in order], dtype=np.int64)
    pair_j = np.array([key[1] for key in order], dtype=np.int64)
    pair_shift = np.array([images[key] for key in order], dtype=np.int64).reshape(-1, 3)

    S_pair = _concat([_sub(S_MM, orbitals(i), orbitals(j)) for i, j in order])
    S_onsite = _concat([_sub(S_MM, orbitals(a), orbitals(a)) for a in range(n_atoms)])
    if overlap_only:
        H_pair = H_onsite = None
    else:
        H_pair = _concat(pair_blocks)[None, :]
        H_onsite = _concat(H_onsite_blocks)[None, :]

    files = sorted(p.name for p in directory.iterdir() if p.is_file())
    provenance: dict[str, Any] = {
        "code": "gears_h import",
        "source": str(directory),
        "files": ",".join(files),
        "h_source": "none (overlap-only snapshot)" if overlap_only else offdiag_path.name,
        "s_source": f"{DENSE_FILE}:S_MM (Γ blocks, one image per pair)",
        "gears_h_rows": len(ij),
        "gears_h_orientations": (
            "both" if n_both else ("one" if len(ij) else "none")
        ),
        "spin_channels_in_snapshot": 1,
        "basis_rcuts": "unknown (gears_h stores none)",
        "creation_library": "mlh",
        "creation_library_version": mlh_version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        record = HamiltonianRecord(
            numbers=numbers,
            positions=positions,
            cell=cell,
            pbc=pbc,
            ghost=np.zeros(n_atoms, dtype=bool),
            basis=basis,
            pair_i=pair_i,
            pair_j=pair_j,
            pair_shift=pair_shift,
            S_pair=S_pair,
            S_onsite=S_onsite,
            H_pair=H_pair,
            H_onsite=H_onsite,
            labels=_labels(atoms),
            provenance=provenance,
        )
    except MLHError as err:
        raise MLHError(f"{directory}: {err}") from None

    # How much of the Γ matrices the stored pairs do not reproduce: pairs filtered out by
    # gears_h_tools' block threshold, pairs beyond its cutoff, or additional images.
    record.provenance["gamma_S_residual_max"] = _residual(record.overlap_k(None), S_MM)
    if H_MM is not None and not overlap_only:
        record.provenance["gamma_H_residual_max_eV"] = _residual(record.hamiltonian_k(None), H_MM)
    return record


def _residual(ours: sp.csr_matrix, theirs) -> float:
    difference = ours - theirs
    if sp.issparse(difference):
        return float(abs(difference).max()) if difference.nnz else 0.0
    return float(np.abs(np.asarray(difference)).max(initial=0.0))
