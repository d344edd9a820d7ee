"""A two-terminal device from Hamiltonian records: blocks along the transport axis and electrodes.

The device record's cell is cut open along `axis` (couplings that wrap around the cell
along it are dropped), its atoms are ordered by their coordinate x along the axis (Å,
measured normal to the other two cell vectors) and grouped into blocks so that every
coupling joins the same or neighbouring blocks: the first and last blocks are the
electrodes' principal layers (PL, whole electrode periods at least as long as the longest
coupling), the middle ones slabs at least that long. Each semi-infinite electrode is a
`sisl.Hamiltonian` of one PL with couplings to its two neighbouring PLs only, either cut from
the device's own ends (a device periodic along the axis and `electrode_cells` electrode
periods long: its first and last PLs hold the same atoms, and their coupling across the
periodic boundary is the PL coupling) or a periodic electrode record tiled to a PL. Transverse
directions keep their images (Bloch sums at transverse k). Units: eV, Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mlh.errors import MLHError
from mlh.io.sisl import record_to_sisl
from mlh.record.hamiltonian import HamiltonianRecord

__all__ = ["Electrode", "TwoTerminalDevice", "two_terminal_device"]

POSITION_TOLERANCE = 1e-3
"""Å: atoms closer than this are the same site (matching electrodes to the device's ends)."""


@dataclass(frozen=True)
class Electrode:
    """A semi-infinite electrode: one principal layer and where it sits in the device.

    Attributes:
        hamiltonian: `sisl.Hamiltonian` of the PL, three supercells along the axis.
        device_orbitals: (n,) device orbital of each PL orbital (PL order).
        semi_infinite: sisl's direction of the semi-infinite side, "-A" (left) or "+A" (right),
            with the axis letter.
    """

    hamiltonian: object
    device_orbitals: np.ndarray
    semi_infinite: str


@dataclass(frozen=True)
class TwoTerminalDevice:
    """A device cut open along `axis`, its blocks and its two electrodes.

    Attributes:
        hamiltonian: `sisl.Hamiltonian` of the device, one supercell along the axis.
        axis: the transport axis (cell vector index 0-2).
        blocks: orbital indices of each block, left to right; the first and last are the
            electrodes' principal layers.
        left, right: the electrodes.
        coupling_length: longest coupling along the axis (Å).
    """

    hamiltonian: object
    axis: int
    blocks: tuple[np.ndarray, ...]
    left: Electrode
    right: Electrode
    coupling_length: float


def _axis_coordinates(positions: np.ndarray, cell: np.ndarray, axis: int) -> np.ndarray:
    """Coordinate along the axis (Å, normal to the other cell vectors), wrapped to [~0, L)."""
    inverse = np.linalg.inv(cell)
    length = 1.0 / np.linalg.norm(inverse[:, axis])
    fraction = (positions @ inverse[:, axis]) % 1.0
    x = fraction * length
    x[x > length - POSITION_TOLERANCE] -= length
    return x


def _axis_length(cell: np.ndarray, axis: int) -> float:
    return 1.0 / np.linalg.norm(np.linalg.inv(cell)[:, axis])


def _coupling_length(record: HamiltonianRecord, axis: int) -> float:
    """Longest stored coupling measured along the axis (Å)."""
    if not record.n_pairs:
        return 0.0
    direction = np.linalg.inv(record.cell)[:, axis]
    return float(np.abs(record.pair_vectors @ direction).max() * _axis_length(record.cell, axis))


def _unwrap(record: HamiltonianRecord, axis: int) -> HamiltonianRecord:
    """The record with every atom moved by whole cell vectors a_axis to its coordinate in [~0, L).

    Positions wrapped by GPAW to x = L - epsilon belong to the device's start, not its end,
    and positions outside the cell are brought in. Moving atom i by -n_i a_axis changes the
    shift of pair (i, j, R) to R + (n_j - n_i) e_axis, which keeps every pair vector and every
    pair in its stored orientation.
    """
    length = _axis_length(record.cell, axis)
    x = _axis_coordinates(record.positions, record.cell, axis)
    raw = record.positions @ np.linalg.inv(record.cell)[:, axis] * length
    cells = np.rint((raw - x) / length).astype(np.int64)
    if not cells.any():
        return record
    import dataclasses

    step = np.zeros(3, dtype=np.int64)
    step[axis] = 1
    shift = record.pair_shift + np.outer(cells[record.pair_j] - cells[record.pair_i], step)
    return dataclasses.replace(record, positions=record.positions - np.outer(cells, record.cell[axis]),
                               pair_shift=shift)


def _match(reference: np.ndarray, numbers_ref: np.ndarray, other: np.ndarray, numbers_other: np.ndarray,
           transverse: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray | None:
    """Index into `other` of each `reference` site after a rigid translation, modulo the
    transverse lattice vectors (rows of `transverse`); None if no one-to-one match exists.

    If `translation` is None, every translation taking the first reference site onto a
    site of the same species is tried.
    """
    if len(reference) != len(other):
        return None
    if translation is None:
        first = int(np.argmin(reference @ np.ones(3)))
        candidates = [other[n] - reference[first] for n in np.flatnonzero(numbers_other == numbers_ref[first])]
    else:
        candidates = [translation]
    inverse = np.linalg.pinv(transverse) if len(transverse) else np.zeros((3, 0))
    for t in candidates:
        delta = other[None, :, :] - (reference[:, None, :] + t)
        if len(transverse):
            delta = delta - np.rint(delta @ inverse) @ transverse
        distance = np.linalg.norm(delta, axis=-1)
        index = np.argmin(distance, axis=1)
        if (distance[np.arange(len(reference)), index].max() < POSITION_TOLERANCE
                and len(set(index.tolist())) == len(index)
                and np.array_equal(numbers_other[index], numbers_ref)):
            return index
    return None


def _sub(matrix: sp.csr_matrix, orbitals: np.ndarray) -> sp.csr_matrix:
    """Square sub-matrix on `orbitals` (in their order)."""
    return matrix[orbitals][:, orbitals]


def _orbitals(offsets: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(offsets[a], offsets[a + 1]) for a in atoms]).astype(np.int64)


def _lattice_with_axis(lattice, axis: int, vector: np.ndarray, nsc_axis: int):
    cell = np.array(lattice.cell)
    cell[axis] = vector
    nsc = np.array(lattice.nsc)
    nsc[axis] = nsc_axis
    return lattice.__class__(cell, nsc=nsc)


def _principal_layer(periodic, axis: int, own: np.ndarray, left: np.ndarray, right: np.ndarray,
                     layer_vector: np.ndarray):
    """`sisl.Hamiltonian` of a PL cut from a device periodic along `axis`.

    `left` and `right` are the device's first and last PLs, atom k of one the translate of atom
    k of the other; `own` is one of them. The on-site part is `own`'s; the coupling to the next
    PL is the device's coupling across its periodic boundary, right -> left (image +1 along the
    axis), and to the previous PL left -> right (image -1).
    """
    import sisl

    geometry = periodic.geometry
    offsets = np.concatenate([[0], np.cumsum(geometry.orbitals)])
    own_orbitals, left_orbitals, right_orbitals = (_orbitals(offsets, a) for a in (own, left, right))
    lattice = _lattice_with_axis(geometry.lattice, axis, layer_vector, 3)
    sub = geometry.sub(own)
    layer = sisl.Geometry(sub.xyz, sub.atoms, lattice=lattice)
    no = geometry.no
    sources = {0: (own_orbitals, own_orbitals), 1: (right_orbitals, left_orbitals),
               -1: (left_orbitals, right_orbitals)}

    def blocks(matrix: sp.csr_matrix) -> sp.csr_matrix:
        parts = []
        for offset in lattice.sc_off:
            rows, cols = sources[int(offset[axis])]
            parts.append(matrix[rows][:, cols + no * geometry.lattice.sc_index(offset)])
        return sp.hstack(parts).tocsr()

    return sisl.Hamiltonian.fromsp(layer, blocks(periodic.tocsr(0)), S=blocks(periodic.tocsr(periodic.S_idx)))


def _partition(x: np.ndarray, left: np.ndarray, right: np.ndarray, coupling: float) -> list[np.ndarray]:
    """Atom blocks: `left`, slabs of the remaining atoms at least `coupling` long, `right`."""
    middle = np.setdiff1d(np.arange(len(x)), np.concatenate([left, right]))
    if not len(middle):
        return [left, right]
    start = x[left].max()
    span = x[right].min() - start
    n_slabs = max(1, int(span // max(coupling, 1e-9)))
    slab = np.minimum(((x[middle] - start) / (span / n_slabs)).astype(int), n_slabs - 1)
    return [left] + [middle[slab == s] for s in range(n_slabs) if np.any(slab == s)] + [right]


def _check_tridiagonal(pattern: sp.csr_matrix, blocks: list[np.ndarray], source: str) -> None:
    block_of = np.empty(pattern.shape[0], dtype=np.int64)
    for n, orbitals in enumerate(blocks):
        block_of[orbitals] = n
    coo = pattern.tocoo()
    if len(coo.row) and np.abs(block_of[coo.row] - block_of[coo.col]).max() > 1:
        raise MLHError(f"{source}: couplings reach past the neighbouring block: the device is too short "
                       "for its electrodes (it needs two principal layers plus the scattering region)")


def two_terminal_device(device: HamiltonianRecord, axis: int = 0, electrode: HamiltonianRecord | None = None,
                        electrode_cells: int | None = None, tolerance: float = 0.05,
                        device_name: str = "device", electrode_name: str = "electrode") -> TwoTerminalDevice:
    """Blocks and electrodes of the device record (see the module docstring).

    Give exactly one of `electrode` (a record periodic along `axis` with the device's
    transverse cell) and `electrode_cells` (the device is periodic along `axis` and that many
    electrode periods long; its first and last principal layers hold the same atoms, and
    their coupling across the periodic boundary is the electrodes' PL coupling). `tolerance` (eV; S dimensionless) bounds the
    difference between an electrode's in-layer H, S and the device's ends.

    Raises:
        MLHError: no H or spin-polarised H, a bad axis, an electrode that is not periodic along
            the axis, a transverse cell or end that does not match the device, a device too short.
    """
    if (electrode is None) == (electrode_cells is None):
        raise MLHError("give either an electrode record or the number of electrode cells in the device")
    if axis not in (0, 1, 2):
        raise MLHError(f"transport axis {axis} is not 0, 1 or 2")
    for name, record in ((device_name, device), (electrode_name, electrode)):
        if record is None:
            continue
        if not record.has_hamiltonian:
            raise MLHError(f"{name}: overlap-only record: it has no Hamiltonian")
        if record.n_spins != 1:
            raise MLHError(f"{name}: spin-polarised records are not supported by transport")
    if electrode is not None and not electrode.pbc[axis]:
        raise MLHError(f"{electrode_name}: the transport axis {axis} is not periodic in the electrode")
    transverse_axes = [a for a in range(3) if a != axis]
    if electrode is not None:
        difference = np.abs(electrode.cell[transverse_axes] - device.cell[transverse_axes]).max()
        if difference > POSITION_TOLERANCE or not np.array_equal(electrode.pbc[transverse_axes],
                                                                 device.pbc[transverse_axes]):
            raise MLHError(f"{electrode_name}: its transverse cell differs from the device's "
                           f"(by up to {difference:.3g} Å)")
    device = _unwrap(device, axis)
    coupling = _coupling_length(device, axis)
    if electrode is not None:
        electrode = _unwrap(electrode, axis)
        coupling = max(coupling, _coupling_length(electrode, axis))
        period = _axis_length(electrode.cell, axis)
    else:
        if electrode_cells < 2:
            raise MLHError("the device must be at least 2 electrode cells long")
        if not device.pbc[axis] or not np.any(device.pair_shift[:, axis] != 0):
            raise MLHError(f"{device_name}: electrodes from the device's ends need a device periodic along "
                           f"axis {axis} (its couplings across the boundary); give an electrode record instead")
        period = _axis_length(device.cell, axis) / electrode_cells
    layers = max(1, int(np.ceil(coupling / period - 1e-9)))
    x = _axis_coordinates(device.positions, device.cell, axis)
    order = np.argsort(x, kind="stable")
    transverse = device.cell[[a for a in transverse_axes if device.pbc[a]]]
    offsets = device.orbital_offsets
    periodic = record_to_sisl(device)
    sisl_device = periodic.copy()
    nsc = np.array(sisl_device.geometry.lattice.nsc)
    nsc[axis] = 1
    sisl_device.set_nsc(nsc)
    if electrode is not None:
        electrodes, ends = _record_electrodes(electrode, layers, axis, device, sisl_device, order, transverse,
                                              tolerance, device_name, electrode_name)
    else:
        per_period = int(np.sum(x < x[order[0]] + period - POSITION_TOLERANCE))
        per_layer = per_period * layers
        if 2 * per_layer > device.n_atoms:
            raise MLHError(f"{device_name}: shorter than two electrode principal layers "
                           f"({2 * per_layer} atoms of {device.n_atoms})")
        layer_vector = device.cell[axis] * layers / electrode_cells
        left, right = order[:per_layer], order[-per_layer:]
        index = _match(device.positions[left], device.numbers[left], device.positions[right],
                       device.numbers[right], transverse, translation=device.cell[axis] - layer_vector)
        if index is None:
            raise MLHError(f"{device_name}: its first and last {layers} x {period:.4f} Å do not hold the same "
                           "atoms; check --electrode-cells and that both ends are pristine")
        ends = {"left": left, "right": right[index]}
        electrodes = {side: Electrode(_principal_layer(periodic, axis, own, ends["left"], ends["right"],
                                                       layer_vector),
                                      _orbitals(offsets, own), ("-" if side == "left" else "+") + "ABC"[axis])
                      for side, own in ends.items()}

    atom_blocks = _partition(x, ends["left"], ends["right"], coupling)
    blocks = [_orbitals(offsets, atoms) for atoms in atom_blocks]
    blocks[0] = electrodes["left"].device_orbitals
    blocks[-1] = electrodes["right"].device_orbitals
    pattern = abs(sisl_device.Hk(format="csr")) + abs(sisl_device.Sk(format="csr"))
    _check_tridiagonal(pattern, blocks, device_name)
    return TwoTerminalDevice(sisl_device, axis, tuple(blocks), electrodes["left"], electrodes["right"], coupling)


def _record_electrodes(electrode: HamiltonianRecord, layers: int, axis: int, device: HamiltonianRecord,
                       sisl_device, order: np.ndarray, transverse: np.ndarray, tolerance: float,
                       device_name: str, electrode_name: str) -> tuple[dict, dict]:
    """Electrodes (both sides) from a periodic electrode record tiled to a PL, and the device's end atoms."""
    tiled = record_to_sisl(electrode).tile(layers, axis)
    nsc = np.array(tiled.geometry.lattice.nsc)
    before = tiled.nnz
    nsc[axis] = 3
    tiled.set_nsc(nsc)
    if tiled.nnz != before:
        raise MLHError(f"{electrode_name}: couplings reach past the neighbouring principal layer")
    per_layer = tiled.geometry.na
    if 2 * per_layer > device.n_atoms:
        raise MLHError(f"{device_name}: shorter than two electrode principal layers ({2 * per_layer} atoms)")
    lead_xyz, lead_numbers = tiled.geometry.xyz, np.abs(tiled.geometry.atoms.Z)
    electrodes, ends = {}, {}
    for side, atoms in (("left", order[:per_layer]), ("right", order[-per_layer:])):
        index = _match(lead_xyz, lead_numbers, device.positions[atoms], device.numbers[atoms], transverse)
        if index is None:
            raise MLHError(f"{electrode_name}: its atoms do not match the {side} end of {device_name}")
        ends[side] = atoms[index]
        device_orbitals = _orbitals(device.orbital_offsets, ends[side])
        _check_onsite(tiled, sisl_device, device_orbitals, axis, tolerance, f"{electrode_name} ({side})")
        electrodes[side] = Electrode(tiled, device_orbitals, ("-" if side == "left" else "+") + "ABC"[axis])
    return electrodes, ends


def _check_onsite(lead, device, device_orbitals: np.ndarray, axis: int, tolerance: float, what: str) -> None:
    """Raise MLHError if the PL's in-layer H or S at transverse Γ differs from the device's end."""
    layer = lead.copy()
    nsc = np.array(layer.geometry.lattice.nsc)
    nsc[axis] = 1
    layer.set_nsc(nsc)
    for name in ("H", "S"):
        ours = _sub((device.Hk if name == "H" else device.Sk)(format="csr"), device_orbitals)
        theirs = (layer.Hk if name == "H" else layer.Sk)(format="csr")
        difference = float(abs(ours - theirs).max())
        if difference > tolerance:
            raise MLHError(f"{what}: its in-layer {name} differs from the device's end by up to "
                           f"{difference:.3g}{' eV' if name == 'H' else ''} (tolerance {tolerance:g})")
