"""Tests of mlh.io.gears_h: gears_h snapshots written here, read back as records.

`write_gears_h_snapshot` below reproduces the files of gears_h_tools'
prepare_gpaw_slh_snapshot (same names, keys, dtypes and pickled object arrays) from
a synthetic HamiltonianRecord whose pairs all have a single image, so the Γ blocks the
snapshot stores equal the record's real-space blocks. No GPAW calculation is run.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.neighborlist import neighbor_list

from mlh.errors import MLHError
from mlh.io.gears_h import read_gears_h_snapshot
from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.hamiltonian import HamiltonianRecord, Labels, canonical_pair_mask

# ------------------------------------------------------------------ synthetic records
LS = {1: (0, 0, 1), 8: (0, 0, 1, 1, 2), 14: (0, 0, 1, 1, 2)}  # dzp-like shells


def _basis(numbers) -> Basis:
    return Basis(
        name="synthetic",
        species=tuple(
            SpeciesBasis(z, LS[z], (4.0,) * len(LS[z]), ("x",) * len(LS[z]))
            for z in sorted(set(int(n) for n in numbers))
        ),
    )


def _random_record(atoms: Atoms, cutoff: float, seed: int) -> HamiltonianRecord:
    """Record with random blocks for every canonical pair within `cutoff` (one image each)."""
    rng = np.random.default_rng(seed)
    basis = _basis(atoms.numbers)
    counts = basis.orbital_counts(atoms.numbers)
    i, j, S = neighbor_list("ijS", atoms, cutoff)
    keep = canonical_pair_mask(i, j, S)
    i, j, S = i[keep], j[keep], S[keep]
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    i, j, S = i[order], j[order], S[order]
    n_pair = int(np.sum(counts[i] * counts[j]))

    def onsite(scale: float, diag: float) -> np.ndarray:
        blocks = []
        for n in counts:
            a = scale * rng.normal(size=(n, n))
            blocks.append((a + a.T + diag * np.eye(n)).ravel())
        return np.concatenate(blocks)

    return HamiltonianRecord(
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=atoms.cell.array.copy(),
        pbc=atoms.pbc.copy(),
        ghost=np.zeros(len(atoms), bool),
        basis=basis,
        pair_i=i.astype(np.int64),
        pair_j=j.astype(np.int64),
        pair_shift=S.astype(np.int64),
        S_pair=0.1 * rng.normal(size=n_pair),
        S_onsite=onsite(0.02, 1.0),
        H_pair=rng.normal(size=(1, n_pair)),
        H_onsite=onsite(1.0, -5.0)[None, :],
    )


def water() -> Atoms:
    atoms = Atoms(
        "OH2",
        positions=[[5.0, 5.0, 5.1], [5.76, 5.0, 4.52], [4.24, 5.0, 4.52]],
        cell=[10.0, 10.5, 11.0],
        pbc=False,
    )
    atoms.calc = SinglePointCalculator(
        atoms, energy=-14.25, free_energy=-14.3, forces=np.arange(9.0).reshape(3, 3) / 10
    )
    return atoms


def silicon_oxide_cell(pbc=(True, True, True)) -> Atoms:
    """A small triclinic cell with atoms near the faces, so pairs cross cell boundaries."""
    return Atoms(
        "Si2O3",
        positions=[[0.2, 0.3, 0.4], [3.1, 3.2, 2.9], [5.9, 0.6, 0.5], [1.5, 5.8, 3.4],
                   [4.4, 2.0, 5.7]],
        cell=[[6.3, 0.0, 0.0], [0.4, 6.2, 0.0], [0.3, -0.2, 6.4]],
        pbc=pbc,
    )


# ------------------------------------------------------ gears_h_tools-style writer
def write_gears_h_snapshot(
    directory: Path,
    record: HamiltonianRecord,
    *,
    cutoff: float,
    reference_dtype=np.float32,
    reference_arraytype: str = "sparse",
    block_write_threshold: float = 1e-4,
    overlap_only: bool = False,
    atoms: Atoms | None = None,
) -> tuple[np.ndarray | None, np.ndarray]:
    """Write `record` as gears_h_tools' prepare_gpaw_slh_snapshot would; return (H_MM, S_MM).

    H_MM, S_MM are the Γ matrices of the record (GPAW's wfs_qs[0][0] matrices), cast to
    `reference_dtype`; ij/D come from a full ijD neighbour list (ASE's has matscipy's
    semantics, D = pos_j + S @ cell - pos_i); blocks are slices of the Γ matrix,
    filtered by the infinity norm.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if atoms is None:
        atoms = Atoms(record.numbers, positions=record.positions, cell=record.cell,
                      pbc=record.pbc)
    with open(directory / "atoms.extxyz", mode="w") as fd:
        write(fd, atoms, format="extxyz")

    i, j, D = neighbor_list("ijD", atoms, cutoff)
    ij = np.column_stack([i, j]).astype(int)
    for atom in range(len(atoms)):  # unique_pairs=True
        neighbours = ij[ij[:, 0] == atom, 1]
        assert len(set(neighbours)) == len(neighbours)

    H_MM = None if overlap_only else record.hamiltonian_k(None).toarray().astype(reference_dtype)
    S_MM = record.overlap_k(None).toarray().astype(reference_dtype)
    if reference_arraytype == "sparse":
        np.savez(
            directory / "H_MM_S_MM",
            **{"H_MM": sp.csr_matrix(H_MM) if H_MM is not None else None,
               "S_MM": sp.csr_matrix(S_MM)},
        )
    else:
        np.savez(directory / "H_MM_S_MM", **{"H_MM": H_MM, "S_MM": S_MM})

    ls_dict = {int(s.number): list(s.ls) for s in record.basis.species}
    sizes = np.array([sum(2 * np.array(ls_dict[n]) + 1) for n in atoms.numbers])
    starts = np.concatenate([[0], np.cumsum(sizes[:-1])])
    matrix = S_MM if overlap_only else H_MM

    def block(a: int, b: int) -> np.ndarray:
        return matrix[starts[a]:starts[a] + sizes[a], starts[b]:starts[b] + sizes[b]]

    ii_array = np.array([block(a, a) for a in range(len(atoms))], dtype=object)
    f_ij, f_D, hlist = [], [], []
    for (a, b), d in zip(ij, D, strict=True):
        blk = block(a, b)
        if np.max(np.abs(blk)) >= block_write_threshold:
            f_ij.append((a, b))
            f_D.append(d)
            hlist.append(blk)
    np.savez(directory / "hblocks_on-diagonal.npz", hblocks=ii_array, allow_pickle=True)
    np.savez(directory / "ijD.npz", ij=np.array(f_ij), D=np.array(f_D))
    np.savez(directory / "hblocks_off-diagonal.npz", hblocks=np.array(hlist, dtype=object),
             allow_pickle=True)
    with open(directory / "orbital_ells.json", mode="w") as fd:
        json.dump(ls_dict, fd)
    return H_MM, S_MM


# --------------------------------------------------------------------------- helpers
def _object_array(blocks: list[np.ndarray]) -> np.ndarray:
    """A 1-D object array of blocks (np.array would stack equal-shape blocks)."""
    out = np.empty(len(blocks), dtype=object)
    for index, block in enumerate(blocks):
        out[index] = block
    return out


def _blocks(record: HamiltonianRecord, values: np.ndarray) -> dict:
    return {
        (int(record.pair_i[p]), int(record.pair_j[p]), tuple(int(x) for x in record.pair_shift[p])):
            record.pair_block(values, p)
        for p in range(record.n_pairs)
    }


def _assert_same_record(got: HamiltonianRecord, want: HamiltonianRecord, rtol: float) -> None:
    np.testing.assert_array_equal(got.numbers, want.numbers)
    np.testing.assert_allclose(got.positions, want.positions, atol=1e-7)
    np.testing.assert_allclose(got.cell, want.cell, atol=1e-7)
    np.testing.assert_array_equal(got.pbc, want.pbc)
    assert [s.ls for s in got.basis.species] == [s.ls for s in want.basis.species]
    got_S, want_S = _blocks(got, got.S_pair), _blocks(want, want.S_pair)
    assert got_S.keys() == want_S.keys()
    for key in want_S:
        np.testing.assert_allclose(got_S[key], want_S[key], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(got.S_onsite, want.S_onsite, rtol=rtol, atol=rtol)
    if want.has_hamiltonian and got.has_hamiltonian:
        got_H, want_H = _blocks(got, got.H_pair[0]), _blocks(want, want.H_pair[0])
        assert got_H.keys() == want_H.keys()
        for key in want_H:
            np.testing.assert_allclose(got_H[key], want_H[key], rtol=rtol, atol=rtol)
        np.testing.assert_allclose(got.H_onsite, want.H_onsite, rtol=rtol, atol=rtol)


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("arraytype", ["sparse", "dense"])
def test_water_round_trip_exact_in_float64(tmp_path, arraytype):
    atoms = water()
    record = _random_record(atoms, cutoff=3.0, seed=1)
    H_MM, S_MM = write_gears_h_snapshot(
        tmp_path, record, cutoff=3.0, reference_dtype=np.float64,
        reference_arraytype=arraytype, atoms=atoms,
    )
    got = read_gears_h_snapshot(tmp_path)

    _assert_same_record(got, record, rtol=0.0)
    assert got.n_pairs == 3 and not got.pair_shift.any()
    np.testing.assert_array_equal(got.hamiltonian_k(None).toarray(), H_MM)
    np.testing.assert_array_equal(got.overlap_k(None).toarray(), S_MM)
    assert got.n_spins == 1
    assert got.labels.energy == pytest.approx(-14.25)
    assert got.labels.free_energy == pytest.approx(-14.3)
    np.testing.assert_allclose(got.labels.forces, np.arange(9.0).reshape(3, 3) / 10)
    assert got.basis.name == "gears_h:unknown"
    assert all(np.isnan(s.rcuts).all() and set(s.labels) == {"unknown"}
               for s in got.basis.species)
    assert got.provenance["code"] == "gears_h import"
    assert got.provenance["source"] == str(tmp_path)
    assert got.provenance["gears_h_orientations"] == "both"
    assert got.provenance["gamma_H_residual_max_eV"] == 0.0
    assert got.provenance["gamma_S_residual_max"] == 0.0


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False)])
def test_periodic_cell_shifts_and_orientation(tmp_path, pbc):
    atoms = silicon_oxide_cell(pbc)
    cutoff = 2.9  # below half the shortest lattice vector: one image per pair
    record = _random_record(atoms, cutoff=cutoff, seed=2)
    assert record.pair_shift.any(), "the fixture must exercise non-zero lattice shifts"
    H_MM, S_MM = write_gears_h_snapshot(tmp_path, record, cutoff=cutoff)  # float32, sparse
    got = read_gears_h_snapshot(tmp_path)

    _assert_same_record(got, record, rtol=1e-6)
    np.testing.assert_array_equal(got.pair_shift[got.pair_i == got.pair_j], np.zeros((0, 3)))
    assert set(map(tuple, got.pair_shift)) == set(map(tuple, record.pair_shift))
    # dense Γ matrices are exactly the float32 ones that were written
    np.testing.assert_array_equal(got.hamiltonian_k(None).toarray(), H_MM.astype(float))
    np.testing.assert_array_equal(got.overlap_k(None).toarray(), S_MM.astype(float))
    # Bloch sums at k != 0 agree with the original record (single images)
    k = np.array([0.25, -0.1, 0.0])
    np.testing.assert_allclose(got.hamiltonian_k(k).toarray(), record.hamiltonian_k(k).toarray(),
                               atol=1e-5)


def test_one_orientation_only_is_transposed(tmp_path):
    """A snapshot listing only (j, i) rows still gives mlh's (i, j) blocks."""
    atoms = silicon_oxide_cell()
    record = _random_record(atoms, cutoff=2.9, seed=3)
    write_gears_h_snapshot(tmp_path, record, cutoff=2.9, reference_dtype=np.float64)
    ijd = np.load(tmp_path / "ijD.npz")
    ij, D = ijd["ij"], ijd["D"]
    blocks = np.load(tmp_path / "hblocks_off-diagonal.npz", allow_pickle=True)["hblocks"]
    keep = ij[:, 0] > ij[:, 1]
    np.savez(tmp_path / "ijD.npz", ij=ij[keep], D=D[keep])
    kept = _object_array([b for b, k in zip(blocks, keep) if k])
    np.savez(tmp_path / "hblocks_off-diagonal.npz", hblocks=kept)

    got = read_gears_h_snapshot(tmp_path)
    _assert_same_record(got, record, rtol=0.0)
    assert got.provenance["gears_h_orientations"] == "one"


def test_overlap_only_snapshot(tmp_path):
    atoms = water()
    record = _random_record(atoms, cutoff=3.0, seed=4)
    write_gears_h_snapshot(tmp_path, record, cutoff=3.0, overlap_only=True,
                           reference_dtype=np.float64)
    got = read_gears_h_snapshot(tmp_path)
    assert not got.has_hamiltonian
    _assert_same_record(got, record, rtol=0.0)


def test_equal_size_blocks_stacked_as_3d_object_array(tmp_path):
    """One species: numpy stacks the equal blocks into a 3-D object array of floats."""
    atoms = Atoms("Si3", positions=[[0.1, 0.2, 0.3], [2.0, 1.9, 0.4], [4.1, 0.5, 5.9]],
                  cell=[6.2, 6.1, 6.3], pbc=True)
    record = _random_record(atoms, cutoff=2.9, seed=5)
    write_gears_h_snapshot(tmp_path, record, cutoff=2.9, reference_dtype=np.float64)
    stored = np.load(tmp_path / "hblocks_off-diagonal.npz", allow_pickle=True)["hblocks"]
    assert stored.dtype == object and stored.ndim == 3
    _assert_same_record(read_gears_h_snapshot(tmp_path), record, rtol=0.0)


def test_legacy_layout_takes_onsite_blocks_from_dense_h(tmp_path):
    """Old gears_h: one hblocks.npz with the pair blocks, no on-site file."""
    atoms = silicon_oxide_cell()
    record = _random_record(atoms, cutoff=2.9, seed=8)
    write_gears_h_snapshot(tmp_path, record, cutoff=2.9, reference_dtype=np.float64)
    (tmp_path / "hblocks_off-diagonal.npz").rename(tmp_path / "hblocks.npz")
    (tmp_path / "hblocks_on-diagonal.npz").unlink()
    got = read_gears_h_snapshot(tmp_path)
    _assert_same_record(got, record, rtol=0.0)
    assert got.provenance["h_source"] == "hblocks.npz"


def test_no_pairs(tmp_path):
    """A lone atom: gears_h_tools writes empty (0,) ij, D and hblocks arrays."""
    atoms = Atoms("O", positions=[[1.0, 2.0, 3.0]], cell=[8.0, 8.0, 8.0], pbc=False)
    record = _random_record(atoms, cutoff=2.0, seed=9)
    write_gears_h_snapshot(tmp_path, record, cutoff=2.0, reference_dtype=np.float64)
    assert np.load(tmp_path / "ijD.npz")["ij"].shape == (0,)
    got = read_gears_h_snapshot(tmp_path)
    assert got.n_pairs == 0
    _assert_same_record(got, record, rtol=0.0)
    assert got.provenance["gears_h_orientations"] == "none"


def _rewrite_as_numpy1(path: Path) -> None:
    """Rewrite an npz as numpy 1.x savez(..., allow_pickle=True) wrote it: object arrays
    pickled with protocol 3 naming numpy.core (not numpy._core), and allow_pickle stored
    as an extra array."""
    arrays = dict(np.load(path, allow_pickle=True))  # trusted: written by this test
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in arrays.items():
            with zf.open(f"{key}.npy", "w") as fh:
                if value.dtype.hasobject:
                    np.lib.format.write_array_header_1_0(
                        fh, np.lib.format.header_data_from_array_1_0(value)
                    )
                    data = pickle.dumps(value, protocol=3)
                    fh.write(data.replace(b"cnumpy._core.multiarray\n",
                                          b"cnumpy.core.multiarray\n"))
                else:
                    np.lib.format.write_array(fh, value)
        with zf.open("allow_pickle.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array(True))


def test_numpy1_written_files(tmp_path):
    atoms = silicon_oxide_cell()
    record = _random_record(atoms, cutoff=2.9, seed=10)
    write_gears_h_snapshot(tmp_path, record, cutoff=2.9, reference_dtype=np.float64)
    for name in ("hblocks_off-diagonal.npz", "hblocks_on-diagonal.npz", "H_MM_S_MM.npz"):
        _rewrite_as_numpy1(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "H_MM_S_MM.npz") as zf:
        assert b"numpy.core.multiarray" in zf.read("S_MM.npy")
    _assert_same_record(read_gears_h_snapshot(tmp_path), record, rtol=0.0)


# ------------------------------------------------------------------------- errors
@pytest.fixture
def snapshot(tmp_path) -> Path:
    atoms = silicon_oxide_cell()
    record = _random_record(atoms, cutoff=2.9, seed=6)
    write_gears_h_snapshot(tmp_path, record, cutoff=2.9)
    return tmp_path


def test_missing_ijd(snapshot):
    (snapshot / "ijD.npz").unlink()
    with pytest.raises(MLHError, match=r"ijD\.npz.*missing"):
        read_gears_h_snapshot(snapshot)


def test_corrupted_npz(snapshot):
    (snapshot / "hblocks_off-diagonal.npz").write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(MLHError, match=r"hblocks_off-diagonal\.npz.*unreadable"):
        read_gears_h_snapshot(snapshot)


def test_mismatched_block_shape(snapshot):
    path = snapshot / "hblocks_off-diagonal.npz"
    blocks = list(np.load(path, allow_pickle=True)["hblocks"])
    blocks[3] = np.zeros((blocks[3].shape[0], blocks[3].shape[1] + 1), dtype=np.float32)
    np.savez(path, hblocks=_object_array(blocks))
    with pytest.raises(MLHError, match=r"hblocks_off-diagonal\.npz: block 3 .* shape"):
        read_gears_h_snapshot(snapshot)


def test_mismatched_onsite_block_shape(snapshot):
    path = snapshot / "hblocks_on-diagonal.npz"
    blocks = list(np.load(path, allow_pickle=True)["hblocks"])
    blocks[0] = np.zeros((2, 2))
    np.savez(path, hblocks=_object_array(blocks))
    with pytest.raises(MLHError, match=r"hblocks_on-diagonal\.npz: block of atom 0"):
        read_gears_h_snapshot(snapshot)


def test_block_count_mismatch(snapshot):
    path = snapshot / "hblocks_off-diagonal.npz"
    blocks = np.load(path, allow_pickle=True)["hblocks"]
    np.savez(path, hblocks=blocks[:-1])
    with pytest.raises(MLHError, match=r"hblocks_off-diagonal\.npz: .* blocks but"):
        read_gears_h_snapshot(snapshot)


def test_non_integral_shift(snapshot):
    ijd = np.load(snapshot / "ijD.npz")
    D = ijd["D"].copy()
    D[2] += [0.3, 0.0, 0.0]
    np.savez(snapshot / "ijD.npz", ij=ijd["ij"], D=D)
    with pytest.raises(MLHError, match=r"ijD\.npz: row 2 .*lattice vector"):
        read_gears_h_snapshot(snapshot)


def test_several_images_refused(snapshot):
    ijd = np.load(snapshot / "ijD.npz")
    ij, D = ijd["ij"], ijd["D"]
    atoms = read(snapshot / "atoms.extxyz")
    # the first pair once more, with atom j one lattice vector further away
    np.savez(snapshot / "ijD.npz", ij=np.vstack([ij, ij[:1]]),
             D=np.vstack([D, D[:1] + atoms.cell.array[0]]))
    path = snapshot / "hblocks_off-diagonal.npz"
    blocks = list(np.load(path, allow_pickle=True)["hblocks"])
    np.savez(path, hblocks=_object_array(blocks + [blocks[0]]))
    with pytest.raises(MLHError, match=r"ijD\.npz: atoms .* several lattice images"):
        read_gears_h_snapshot(snapshot)


def test_inconsistent_orientations(snapshot):
    path = snapshot / "hblocks_off-diagonal.npz"
    blocks = np.load(path, allow_pickle=True)["hblocks"]
    blocks[0] = blocks[0] + 1.0
    np.savez(path, hblocks=blocks)
    with pytest.raises(MLHError, match=r"hblocks_off-diagonal\.npz: .*not transposes"):
        read_gears_h_snapshot(snapshot)


def test_without_overlap_matrix_s_is_required(snapshot):
    (snapshot / "H_MM_S_MM.npz").unlink()
    with pytest.raises(MLHError, match=r"H_MM_S_MM\.npz.*require S"):
        read_gears_h_snapshot(snapshot)


def test_orbital_ells_missing_species(snapshot):
    (snapshot / "orbital_ells.json").write_text(json.dumps({"14": [0, 1]}))
    with pytest.raises(MLHError, match=r"orbital_ells\.json: no angular momenta for Z=8"):
        read_gears_h_snapshot(snapshot)


def test_dense_matrix_wrong_size(snapshot):
    np.savez(snapshot / "H_MM_S_MM.npz", H_MM=np.zeros((3, 3)), S_MM=np.zeros((3, 3)))
    with pytest.raises(MLHError, match=r"H_MM_S_MM\.npz: S_MM has shape"):
        read_gears_h_snapshot(snapshot)


def test_unknown_pickled_class_is_not_loaded(snapshot):
    """Object arrays are unpickled with a whitelist: other classes are refused."""
    path = snapshot / "hblocks_off-diagonal.npz"
    hostile = np.empty(1, dtype=object)
    hostile[0] = OrderedDict(a=1)
    np.savez(path, hblocks=hostile)
    with pytest.raises(MLHError, match=r"hblocks_off-diagonal\.npz: unreadable.*OrderedDict"):
        read_gears_h_snapshot(snapshot)


def test_pickle_payload_does_not_execute(snapshot, tmp_path_factory):
    marker = tmp_path_factory.mktemp("marker") / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    header = {"descr": "|O", "fortran_order": False, "shape": ()}
    path = snapshot / "hblocks_on-diagonal.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("hblocks.npy", "w") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        pickle.dump(Payload(), fh, protocol=3)
    with pytest.raises(MLHError, match=r"hblocks_on-diagonal\.npz: unreadable"):
        read_gears_h_snapshot(snapshot)
    assert not marker.exists()


def test_unrecognised_block_file(snapshot):
    np.savez(snapshot / "hblocks_chunk1.npz", hblocks=np.zeros((0, 2, 2)))
    with pytest.raises(MLHError, match=r"hblocks_chunk1\.npz: unrecognised"):
        read_gears_h_snapshot(snapshot)


def test_abacus_snapshot_refused(snapshot):
    (snapshot / "svecs_num_blocks.dat").write_text("0 0 0 12\n")
    with pytest.raises(MLHError, match=r"svecs_num_blocks\.dat: an ABACUS snapshot"):
        read_gears_h_snapshot(snapshot)


def test_not_a_directory(tmp_path):
    with pytest.raises(MLHError, match="not a directory"):
        read_gears_h_snapshot(tmp_path / "nope")


def test_labels_absent_when_not_in_extxyz(tmp_path):
    atoms = silicon_oxide_cell()
    record = _random_record(atoms, cutoff=2.9, seed=7)
    write_gears_h_snapshot(tmp_path, record, cutoff=2.9)
    got = read_gears_h_snapshot(tmp_path)
    assert got.labels == Labels() or (got.labels.energy is None and got.labels.forces is None)


def test_cli_converts_snapshots(snapshot, tmp_path_factory):
    from typer.testing import CliRunner

    from mlh.cli.main import app
    from mlh.record.io import read_record

    out = tmp_path_factory.mktemp("converted")
    result = CliRunner().invoke(app, ["import-gears-h", str(snapshot), "-o", str(out)])
    assert result.exit_code == 0, result.output
    converted = read_record(out / f"{snapshot.name}.nc")
    _assert_same_record(converted, read_gears_h_snapshot(snapshot), rtol=0.0)
    (snapshot / "ijD.npz").unlink()
    result = CliRunner().invoke(app, ["import-gears-h", str(snapshot), "-o", str(out / "x")])
    assert result.exit_code == 1 and "ijD.npz" in result.output
    assert not (out / "x").exists()
