"""Hamiltonian records <-> `sisl.Hamiltonian` (non-orthogonal), and TBtrans `.TSHS` files.

A record's pair (i, j, R) becomes the sisl elements between orbital mu of atom i in the
unit cell and orbital nu of atom j in the supercell image R, together with its partner
(j, i, -R) = block^T; the on-site blocks are the (i, i, 0) elements. sisl's Bloch sum in
its default "lattice" gauge, H(k) = sum_R exp(2 pi i k.R) H(R), is the record's, so
eigenvalues at any k agree. Orbitals keep the record's order (sisl's real spherical
harmonics order m = -l..l as GPAW does: p = y, z, x); each sisl orbital carries its
radial function's label as its tag. Units: eV, Å. Labels and provenance do not travel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.hamiltonian import HamiltonianRecord, block_coo, canonical_pair_mask

__all__ = ["record_to_sisl", "sisl_to_record", "write_tshs"]

GHOST_TAG = "ghost"


def _sisl_atom(species: SpeciesBasis, ghost: bool):
    import sisl

    orbitals = [
        sisl.AtomicOrbital(n=l + 1, l=l, m=m, R=rcut, tag=label)
        for l, rcut, label in zip(species.ls, species.rcuts, species.labels)
        for m in range(-l, l + 1)
    ]
    if ghost:
        return sisl.AtomGhost(species.number, orbitals, tag=GHOST_TAG)
    return sisl.Atom(species.number, orbitals)


def _geometry(record: HamiltonianRecord, nsc: np.ndarray):
    import sisl

    kinds = {}
    atoms = []
    for number, ghost in zip(record.numbers.tolist(), record.ghost.tolist()):
        key = (number, bool(ghost))
        if key not in kinds:
            kinds[key] = _sisl_atom(record.basis.for_number(number), bool(ghost))
        atoms.append(kinds[key])
    lattice = sisl.Lattice(record.cell, nsc=nsc)
    lattice.set_boundary_condition(
        [sisl.BoundaryCondition.PERIODIC if p else sisl.BoundaryCondition.UNKNOWN
         for p in record.pbc.astype(bool)])
    return sisl.Geometry(record.positions, atoms, lattice=lattice)


def record_to_sisl(record: HamiltonianRecord, spin: int = 0):
    """`sisl.Hamiltonian` (non-orthogonal, eV) with the record's H(R) of `spin` and S(R).

    Every stored image shift R becomes a supercell of sisl's lattice (nsc = 2 max|R| + 1).
    """
    if not record.has_hamiltonian:
        raise MLHError("the record is overlap-only: it has no Hamiltonian")
    if not 0 <= spin < record.n_spins:
        raise MLHError(f"spin {spin} outside 0..{record.n_spins - 1}")
    import sisl

    max_shift = np.abs(record.pair_shift).max(axis=0) if record.n_pairs else np.zeros(3, int)
    nsc = 2 * max_shift + 1
    geometry = _geometry(record, nsc)
    n = record.n_orbitals
    rows, cols, pair = record._pair_coo
    orow, ocol, _ = record._onsite_coo
    image = geometry.lattice.sc_index(record.pair_shift)
    partner = geometry.lattice.sc_index(-record.pair_shift)
    all_rows = np.concatenate([orow, rows, cols])
    all_cols = np.concatenate([ocol, cols + n * image[pair], rows + n * partner[pair]])
    shape = (n, n * geometry.n_s)

    def matrix(onsite, pairs):
        values = np.concatenate([onsite, pairs, pairs])
        return sp.csr_matrix((values, (all_rows, all_cols)), shape=shape)

    return sisl.Hamiltonian.fromsp(
        geometry, matrix(record.H_onsite[spin], record.H_pair[spin]),
        S=matrix(record.S_onsite, record.S_pair))


def _basis_of(geometry, name: str) -> tuple[Basis, np.ndarray, np.ndarray]:
    """Basis, atomic numbers and ghost flags of a sisl geometry's atoms."""
    species: dict[int, SpeciesBasis] = {}
    numbers, ghosts = [], []
    for atom in geometry.atoms:
        number, ls, rcuts, labels = abs(int(atom.Z)), [], [], []
        orbitals = list(atom.orbitals)
        position = 0
        while position < len(orbitals):
            orbital = orbitals[position]
            l = getattr(orbital, "l", None)
            if l is None:
                raise MLHError(f"atom Z={number}: orbital {orbital} has no angular momentum")
            ms = [getattr(o, "m", None) for o in orbitals[position:position + 2 * l + 1]]
            if ms != list(range(-l, l + 1)):
                raise MLHError(f"atom Z={number}: orbitals of l={l} are not in the order m = -l..l")
            ls.append(l)
            rcuts.append(float(orbital.R))
            labels.append(orbital.tag or f"l={l}")
            position += 2 * l + 1
        entry = SpeciesBasis(number, tuple(ls), tuple(rcuts), tuple(labels))
        if species.setdefault(number, entry) != entry:
            raise MLHError(f"atoms of Z={number} have different orbitals")
        numbers.append(number)
        ghosts.append(isinstance(atom, _ghost_class()) or atom.tag == GHOST_TAG)
    basis = Basis(name, tuple(species[z] for z in sorted(species)))
    return basis, np.array(numbers, dtype=np.int64), np.array(ghosts, dtype=bool)


def _ghost_class():
    import sisl

    return sisl.AtomGhost


def sisl_to_record(hamiltonian, basis_name: str = "sisl", tolerance: float = 0.0) -> HamiltonianRecord:
    """HamiltonianRecord (spin-paired or collinear, eV) from a non-orthogonal `sisl.Hamiltonian`.

    Pairs are the atom pairs and image shifts with any element of H or S above
    `tolerance` in magnitude; the lower triangle must mirror the upper (H(-R) = H(R)^T).
    """
    if hamiltonian.orthogonal:
        raise MLHError("the sisl Hamiltonian is orthogonal: it has no overlap S")
    spin = hamiltonian.spin
    if not (spin.is_unpolarized or spin.is_polarized):
        raise MLHError("only spin-unpolarised or collinear sisl Hamiltonians can become records")
    geometry = hamiltonian.geometry
    basis, numbers, ghost = _basis_of(geometry, basis_name)
    n = geometry.no
    n_spins = 1 if spin.is_unpolarized else 2
    matrices = [hamiltonian.tocsr(dim).tocoo() for dim in range(n_spins)]
    overlap = hamiltonian.tocsr(hamiltonian.S_idx)
    pattern = abs(overlap).tocsr()
    for m in matrices:
        pattern = pattern + abs(m.tocsr())
    pattern = pattern.tocoo()
    keep = pattern.data > tolerance
    rows, cols = pattern.row[keep], pattern.col[keep]
    atom_of_orbital = geometry.o2a(np.arange(n))
    shift = geometry.lattice.sc_off[cols // n].astype(np.int64)
    i, j = atom_of_orbital[rows], atom_of_orbital[cols % n]
    stored = canonical_pair_mask(i, j, shift)
    pairs = np.unique(np.column_stack([i, j, shift])[stored], axis=0)
    pair_i, pair_j, pair_shift = pairs[:, 0], pairs[:, 1], pairs[:, 2:]
    pbc = np.array([bc == 1 for bc in geometry.lattice.pbc]) | (geometry.lattice.nsc > 1)
    counts = basis.orbital_counts(numbers)

    def values(csr) -> tuple[np.ndarray, np.ndarray]:
        csr = csr.tocsr()
        prow, pcol, block = block_coo(pair_i, pair_j, counts)
        image = geometry.lattice.sc_index(pair_shift)
        pair_values = np.asarray(csr[prow, pcol + n * image[block]]).ravel()
        atoms = np.arange(len(numbers))
        orow, ocol, _ = block_coo(atoms, atoms, counts)
        onsite = np.asarray(csr[orow, ocol + n * geometry.lattice.sc_index([0, 0, 0])]).ravel()
        return pair_values, onsite

    s_pair, s_onsite = values(overlap)
    h = [values(m) for m in matrices]
    return HamiltonianRecord(
        numbers=numbers, positions=np.asarray(geometry.xyz, float), cell=np.asarray(geometry.cell, float),
        pbc=pbc, ghost=ghost, basis=basis, pair_i=pair_i, pair_j=pair_j, pair_shift=pair_shift,
        S_pair=s_pair, S_onsite=s_onsite,
        H_pair=np.stack([p for p, _ in h]), H_onsite=np.stack([o for _, o in h]),
        provenance={"source": "sisl", "sisl_version": _sisl_version()},
    )


def _sisl_version() -> str:
    import sisl

    return sisl.__version__


def write_tshs(record: HamiltonianRecord, path: str | os.PathLike, spin: int = 0) -> Path:
    """Write the record's H and S as a TBtrans/SIESTA `.TSHS` file (atomically); returns the path.

    The Fermi level stored is the record's label (0 eV when it has none).
    """
    path = Path(path)
    if path.suffix != ".TSHS":
        raise MLHError(f"{path}: a TBtrans Hamiltonian file must end in .TSHS")
    import sisl

    hamiltonian = record_to_sisl(record, spin)
    with atomic_output(path) as tmp:
        sisl.get_sile(tmp, mode="w").write_hamiltonian(
            hamiltonian, Ef=record.labels.fermi_level or 0.0)
    return path
