"""Total energy and forces from a given Hamiltonian by GPAW's Kohn-Sham functional, no SCF loop.

The DFT-functional route of seed 003: a Hamiltonian H (GPAW's own SCF one or a predicted
one) fixes the occupied states, and GPAW evaluates the PAW Kohn-Sham energy functional
once at the density they make, plus its LCAO forces. Steps, per k-point and spin of
GPAW's irreducible k set (time reversal only, as mlh records use):

1. diagonalise H(k) c = eps S(k) c with GPAW's own S(k) (PAW corrections included);
2. Fermi-Dirac occupations f (GPAW's occupation calculator, the record's width);
3. density n_out from rho = sum f c c^H (pseudo density on GPAW's grid and PAW D^a);
4. GPAW's potential calculator gives v[n_out] and every energy term at n_out;
5. two energies from that one density:

   - Kohn-Sham functional: band term Tr[rho H[n_out]] (H[n_out]: GPAW's LCAO H of the new
     potential), entropy of f. This is E_KS[rho] itself: for a density from any H it is
     an upper bound of the SCF free energy (variational), with an error second order in
     the error of rho.
   - Harris-Foulkes: band term sum f' eps' from the eigenvalues eps' of (H[n_out], S) and
     their own occupations f' (entropy of f'), the other terms at n_out. This is what one
     more SCF step would report; also second order in the error of n_out, but it is not
     variational, and in practice 10-70x closer to the SCF energy (gpaw-api.md).

   At GPAW's converged H both equal GPAW's SCF energy to the SCF's own convergence.
6. forces: GPAW's LCAO force routine for the state (c, f, eps of the given H) and the
   potential v[n_out]. At a self-consistent H these are the exact forces. At any other H
   they are not -dE_KS/dR: the response term Tr[H[n_out] d rho/dR] that a non-self-
   consistent rho brings is missing (first order in the error of H).

Units: eV and Å (GPAW's Hartree and Bohr are converted here, at the boundary). Spin-paired
and spin-polarised (collinear) H; any Monkhorst-Pack grid GPAW accepts, Γ included. Each
call builds a fresh GPAW object for the structure (grid, basis functions, two-centre
integrals), then evaluates once; nothing is cached between calls.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from ase import Atoms
from ase.units import Ha

from mlh.errors import MLHError
from mlh.gpaw import states
from mlh.gpaw.record_settings import record_atoms, record_scf_kpts, settings_from_record
from mlh.gpaw.reference import gpaw_parameters
from mlh.gpaw.settings import GPAWSettings
from mlh.gpaw.states import OVERLAP_TOLERANCE, HamiltonianFunction, InstalledDensity, kpoint_index
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from physics.density_matrix import HERMITIAN_TOLERANCE, generalized_eigh

__all__ = [
    "FUNCTIONALS", "harris_share", "fitted_share", "FITTED_SHARE_FILE", "DFTFunctionalResult",
    "evaluate_dft_functional", "functional_at_state",
    "dft_functional_for_record", "valence_charges", "gpaw_calculation", "BaselineHamiltonian",
    "check_baseline_grid", "install_density", "InstalledDensity", "record_inputs",
    "OVERLAP_TOLERANCE", "HarrisStates", "harris_states",
]

FUNCTIONALS = {"kohn-sham": 0.0, "harris": 1.0, "mean": 0.5}
"""The named functionals of `DFTFunctionalResult.energies` and their Harris-Foulkes share s:
A = (1 - s) A_KS + s A_HF."""


FITTED_SHARE_FILE = "harris_share.json"
"""A model folder's fitted Harris-Foulkes share (benchmarks/harris_share.py --write-model):
{"harris_share": s, ...}; `functional="fitted"` of the calculator and the drivers uses it."""


def fitted_share(model_dir: Path) -> float:
    """The Harris-Foulkes share stored in a model folder (FITTED_SHARE_FILE).

    Raises:
        MLHError: no such file, or one without a share in [0, 1].
    """
    path = Path(model_dir) / FITTED_SHARE_FILE
    if not path.is_file():
        raise MLHError(f"{path}: no fitted Harris-Foulkes share; fit one with "
                       f"benchmarks/harris_share.py --write-model, or give a number")
    try:
        share = float(json.loads(path.read_text())["harris_share"])
    except (ValueError, KeyError, TypeError) as error:
        raise MLHError(f"{path}: not a fitted share file "
                       f"({type(error).__name__}: {error})") from None
    if not 0.0 <= share <= 1.0:
        raise MLHError(f"{path}: the share {share} is not between 0 and 1")
    return share


def harris_share(functional: str | float) -> float:
    """The Harris-Foulkes share s in [0, 1] of a functional: a name of FUNCTIONALS or s
    itself (a number, or its text as a command line gives it).

    Raises:
        MLHError: an unknown name or a number outside [0, 1].
    """
    if isinstance(functional, str) and functional in FUNCTIONALS:
        return FUNCTIONALS[functional]
    try:
        share = float(functional)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0.0 <= share <= 1.0:  # also NaN
        raise MLHError(f"unknown functional {functional!r}; choose one of "
                       f"{', '.join(FUNCTIONALS)} or a Harris-Foulkes share between 0 and 1")
    return share


@dataclass(frozen=True)
class DFTFunctionalResult:
    """Energies (eV) and forces (eV/Å) of the state a given H defines.

    Attributes:
        energy: Kohn-Sham functional extrapolated to zero width (GPAW's "energy"), eV.
        free_energy: Kohn-Sham Mermin free energy E_KS - T S, eV.
        harris_energy: Harris-Foulkes value extrapolated to zero width, eV.
        harris_free_energy: Harris-Foulkes free energy, eV.
        forces: (n_atoms, 3) GPAW's LCAO forces of the state (eV/Å), None if not asked.
        fermi_level: Fermi level of the given H's occupations (eV).
        band_energy: sum f eps of the given H (eV). First order in the error of H: a
            diagnostic, never an energy estimate.
        energy_terms: GPAW's energy terms of the Kohn-Sham evaluation (eV): kinetic (or
            band + kinetic_correction), coulomb, zero, external, xc, entropy, spinorbit sum
            to `free_energy`; extrapolation is the zero-width correction.
        kpoints: (n_k, 3) reduced k-points GPAW used (irreducible by time reversal).
        kpoint_weights: (n_k,) their weights (sum 1).
        n_electrons: electrons placed (valence minus charge).
        output_hamiltonians: (n_spins, n_k, N, N) H[n_out] (eV) at `kpoints`, GPAW's LCAO
            Hamiltonian of the output density, if asked for (else None).
        harris_states: the eigenstates of H[n_out] the Harris-Foulkes energy counts (GPAW's
            units; for the Harris forces, physics.dft.harris_forces), kept with
            `output_hamiltonians` (else None).
        timings: seconds spent in "setup" (GPAW objects), "energy" and "forces".
    """

    energy: float
    free_energy: float
    harris_energy: float
    harris_free_energy: float
    forces: np.ndarray | None
    fermi_level: float
    band_energy: float
    energy_terms: dict[str, float]
    kpoints: np.ndarray
    kpoint_weights: np.ndarray
    n_electrons: float = 0.0
    output_hamiltonians: np.ndarray | None = None
    harris_states: HarrisStates | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def energies(self, functional: str | float = "kohn-sham") -> tuple[float, float]:
        """(energy, free energy) in eV of one functional at this density: "kohn-sham"
        (variational: an upper bound of the SCF value), "harris" (Harris-Foulkes), their
        "mean", or a Harris-Foulkes share s in [0, 1] ((1 - s) Kohn-Sham + s Harris). Both
        errors are second order in the density error; for SiO2 correction models their
        signs are opposite and their sizes within ~30 % (docs/physics.md), so the mean errs
        7-16x less than the Kohn-Sham value. In metallic cells (Nb-doped WSe2) the Harris
        error is 3-10x the Kohn-Sham one and the mean is worse; a small share (0.08) is
        better there. The forces of a result are those of one functional:
        physics.dft.forces.ModelDFTRoute gives the forces of the functional it was made with.

        Raises:
            MLHError: an unknown functional.
        """
        share = harris_share(functional)
        return ((1.0 - share) * self.energy + share * self.harris_energy,
                (1.0 - share) * self.free_energy + share * self.harris_free_energy)


# ------------------------------------------------------------------ records -> GPAW input
def valence_charges(atoms: Atoms, settings: GPAWSettings) -> np.ndarray:
    """(n_atoms,) valence charge Z_v of each atom's PAW setup (e; 0 for ghost atoms)."""
    from mlh.gpaw.overlap import gpaw_setups

    return np.array([float(setup.Nv) for setup in gpaw_setups(atoms, settings)])


# ------------------------------------------------------------------ the route
def gpaw_calculation(atoms: Atoms, settings: GPAWSettings, kpts: tuple[int, int, int],
                     charge: float = 0.0, log: io.TextIOBase | str | None = None):
    """GPAW's DFT object for the structure without an SCF (initial density only): k grid
    reduced by time reversal only, as mlh records use; collinear spin only."""
    from gpaw.new.calculation import DFT

    params = gpaw_parameters(atoms, settings, kpts)
    if charge:
        params["charge"] = charge
    try:
        dft = DFT(atoms, **params, symmetry={"point_group": False, "time_reversal": True},
                  txt=log, converge=False)
    except (FileNotFoundError, RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MLHError(f"GPAW could not set up this structure: {first}") from None
    if dft.ibzwfs.ncomponents > 2:
        raise MLHError("non-collinear calculations are not supported")
    return dft


class BaselineHamiltonian:
    """GPAW's zeroth-step H0(k) (eV) of a DFT object of `gpaw_calculation`, read at its
    initial density (before any state is installed), on its k-points."""

    def __init__(self, dft):
        from mlh.gpaw.reference import bloch_matrices

        H0_skMM, _, self.kpoints = bloch_matrices(dft)
        real = next(iter(dft.ibzwfs)).S_MM.data.dtype == float
        self.H0_skMM = H0_skMM.real.copy() if real else H0_skMM

    def index(self, k: np.ndarray | None) -> int:
        """Position of reduced k-point `k` (None: Γ) among the k-points."""
        return kpoint_index(self.kpoints, k, "GPAW's H0 k-points; this is a bug")

    def hamiltonian(self, k: np.ndarray | None, spin: int) -> np.ndarray:
        """Dense H0(k) (eV) of one spin channel."""
        return self.H0_skMM[spin, self.index(k)]

    def added_to(self, correction_k: HamiltonianFunction) -> HamiltonianFunction:
        """hamiltonian_k of H0 + a correction model's dH (`correction_k`)."""
        return lambda k, spin: correction_k(k, spin) + self.hamiltonian(k, spin)


def check_baseline_grid(predictor: Predictor, settings: GPAWSettings) -> GPAWSettings:
    """The settings of the correction model's baseline (mlh.gpaw.settings.baseline_settings_of);
    MLHError unless `settings` build it on the grid spacing the model's training data used
    (xc, basis and setups are the model's already)."""
    from mlh.gpaw.settings import baseline_settings_of

    baseline = baseline_settings_of(predictor)
    wanted = baseline.h
    if abs(settings.h - wanted) > 1e-12:
        raise MLHError(f"the correction model learned dH on H0 made with h = {wanted} Å; the "
                       f"route's grid spacing is {settings.h} Å")
    return baseline


def _validated_eigh(H: np.ndarray, S: np.ndarray, where: str, real: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of a caller's H with GPAW's S, checked (physics.density_matrix); a complex
    H of a real (Γ) problem must have a negligible imaginary part."""
    if real and np.iscomplexobj(H):
        if np.abs(H.imag).max(initial=0.0) > HERMITIAN_TOLERANCE * max(1.0, np.abs(H).max()):
            raise MLHError(f"H {where} must be real: GPAW solves Γ as a real problem")
        H = H.real
    return generalized_eigh(H, S, where)


def install_density(dft, hamiltonian_k: HamiltonianFunction,
                    overlap_k: Callable[[np.ndarray | None], np.ndarray] | None = None
                    ) -> InstalledDensity:
    """mlh.gpaw.states.install_density with a checked eigensolver: make the density of a
    given H's occupied states GPAW's current one (`dft.potential`, `dft.energies` at it).

    Raises:
        MLHError: H of the wrong size, NaN or not Hermitian, S not positive definite, a
            mismatching overlap, or an electron count the bands cannot hold.
    """
    return states.install_density(dft, hamiltonian_k, overlap_k, solve=_validated_eigh)


@dataclass(frozen=True)
class HarrisStates:
    """The occupied eigenstates of (H[n_out], S) that the Harris-Foulkes energy counts, per
    state of GPAW's wave functions (`dft.ibzwfs` order), in GPAW's units.

    Attributes:
        eigenvalues: per state, (n_bands,) eigenvalues (Hartree).
        vectors: per state, (N, n_bands) eigenvectors c (H c = eps S c) as columns.
        occupations: per state, (n_bands,) occupation numbers in [0, 1] at the states' own
            Fermi level (GPAW's occupation calculator, the fixed electron count).
        band: sum f eps over states with k weights and spin degeneracy (Hartree).
        entropy: -T S of those occupations (Hartree).
    """

    eigenvalues: list[np.ndarray]
    vectors: list[np.ndarray]
    occupations: list[np.ndarray]
    band: float
    entropy: float

    def density_matrices(self, dft, energy_weighted: bool = False) -> np.ndarray:
        """(n_spins, n_k, N, N) sum_n F_n conj(c_Mn) c_Nn, GPAW's density-matrix convention
        (F_n = f_n times k weight and spin degeneracy; times eps_n in Hartree if
        `energy_weighted`)."""
        ibzwfs = dft.ibzwfs
        first = self.vectors[0]
        matrices = np.zeros((ibzwfs.nspins, len(ibzwfs.ibz), len(first), len(first)),
                            first.dtype)
        for wfs, vectors, occupations, eigenvalues in zip(ibzwfs, self.vectors,
                                                          self.occupations, self.eigenvalues):
            weights = occupations * wfs.weight * ibzwfs.spin_degeneracy
            if energy_weighted:
                weights = weights * eigenvalues
            matrices[wfs.spin, wfs.k] = (vectors.conj() * weights) @ vectors.T
        return matrices


def harris_states(dft, H_out: list[np.ndarray], nelectrons: float) -> HarrisStates:
    """Eigenstates of (H[n_out], S) (H_out per state of `dft.ibzwfs`, Hartree) with their
    own occupations for `nelectrons` electrons."""
    ibzwfs = dft.ibzwfs
    degeneracy = ibzwfs.spin_degeneracy
    eigenvalues, vectors = [], []
    for H, wfs in zip(H_out, ibzwfs):
        eig, C = generalized_eigh(H, np.asarray(wfs.S_MM.data), "for H[n_out]")
        eigenvalues.append(eig[:wfs.nbands])
        vectors.append(C[:, :wfs.nbands])
    # GPAW's occupation calculators take eigenvalues in eV (their widths are in eV)
    occ_un, _, entropy = dft.scf_loop.occ_calc.calculate(
        nelectrons=nelectrons / degeneracy,
        eigenvalues=[eig * Ha for eig in eigenvalues],
        weights=[wfs.weight for wfs in ibzwfs],
        spins=[wfs.spin for wfs in ibzwfs],
    )
    occupations = [np.asarray(occ, float) for occ in occ_un]
    band = sum(occ @ eig * wfs.weight * degeneracy
               for occ, eig, wfs in zip(occupations, eigenvalues, ibzwfs))
    return HarrisStates(eigenvalues, vectors, occupations, float(band),
                        float(entropy) * degeneracy / Ha)


def evaluate_dft_functional(
    atoms: Atoms,
    settings: GPAWSettings,
    hamiltonian_k: HamiltonianFunction,
    kpts: tuple[int, int, int] = (1, 1, 1),
    forces: bool = True,
    charge: float = 0.0,
    overlap_k: Callable[[np.ndarray | None], np.ndarray] | None = None,
    log: io.TextIOBase | str | None = None,
    keep_output_hamiltonians: bool = False,
) -> DFTFunctionalResult:
    """GPAW's Kohn-Sham (and Harris-Foulkes) energy and LCAO forces at the state of a given H.

    Args:
        atoms: the structure (Å); positions must be those H belongs to (GPAW wraps them
            into the cell; H(k) must follow GPAW's convention for the wrapped positions, as
            mlh records do).
        settings: xc, basis, setups, grid spacing, smearing width and spin polarisation of
            the GPAW calculation H belongs to.
        hamiltonian_k: hamiltonian_k(k, spin) -> dense (N, N) H in eV at reduced k (None:
            the real Γ matrix), N = GPAW's number of orbitals.
        kpts: Monkhorst-Pack grid (GPAW's, reduced by time reversal only).
        forces: also compute forces.
        charge: net charge of the cell (e).
        overlap_k: optional overlap_k(k) -> (N, N) S of the caller; it must equal GPAW's S
            to OVERLAP_TOLERANCE (a check that H belongs to this structure and basis).
        log: GPAW text log (path or stream); None for none.
        keep_output_hamiltonians: return H[n_out] and its Harris states (for the forces,
            physics.dft.forces).

    Returns:
        DFTFunctionalResult (see the module docstring for the two energies).

    Raises:
        MLHError: GPAW cannot set up the structure, or any error of `functional_at_state`.
    """
    start = time.perf_counter()
    dft = gpaw_calculation(atoms, settings, tuple(int(n) for n in kpts), charge, log)
    setup = time.perf_counter() - start
    result = functional_at_state(dft, hamiltonian_k, forces, overlap_k, keep_output_hamiltonians)
    return replace(result, timings={"setup": setup, **result.timings})


def functional_at_state(
    dft,
    hamiltonian_k: HamiltonianFunction,
    forces: bool = True,
    overlap_k: Callable[[np.ndarray | None], np.ndarray] | None = None,
    keep_output_hamiltonians: bool = False,
) -> DFTFunctionalResult:
    """`evaluate_dft_functional` on a DFT object of `gpaw_calculation` (at its initial
    density, which the state of the given H replaces); arguments as there.

    Raises:
        MLHError: H of the wrong size, NaN or not Hermitian, S not positive definite, a
            mismatching overlap, or an electron count the bands cannot hold.
    """
    ibzwfs = dft.ibzwfs
    timings: dict[str, float] = {}
    start = time.perf_counter()
    state = install_density(dft, hamiltonian_k, overlap_k)
    nelectrons, energies, potential = state.n_electrons, dft.energies, dft.potential
    # H[n_out] per (k, spin), each computed exactly once: for real (Γ) wfs GPAW's
    # calculate_matrix adds T and the PAW terms in place into the calculator's cached
    # potential matrix, so a second call for the same wfs would count them twice.
    matrix_calculator = dft.scf_loop.hamiltonian.create_hamiltonian_matrix_calculator(potential)
    H_out = [np.array(matrix_calculator.calculate_matrix(wfs).data) for wfs in ibzwfs]
    output_hamiltonians = None
    if keep_output_hamiltonians:
        output_hamiltonians = np.zeros((ibzwfs.nspins, len(ibzwfs.ibz), *H_out[0].shape),
                                       np.result_type(*H_out))
        for H, wfs in zip(H_out, ibzwfs):
            output_hamiltonians[wfs.spin, wfs.k] = H * Ha
    # Kohn-Sham band term Tr[rho H[n_out]]; GPAW's rho_MN = sum_n f_n conj(C_nM) C_nN.
    band_ks = sum(float(np.sum(wfs.calculate_density_matrix() * H).real)
                  for H, wfs in zip(H_out, ibzwfs))
    harris = harris_states(dft, H_out, nelectrons)
    band_harris, entropy_harris = harris.band, harris.entropy

    factor = dft.scf_loop.occ_calc.extrapolate_factor
    energies.set(band=band_harris, entropy=entropy_harris,
                 extrapolation=entropy_harris * factor)
    harris_free, harris_energy = energies.total_free, energies.total_extrapolated
    energies.set(band=band_ks, entropy=state.entropy / Ha,
                 extrapolation=state.extrapolation / Ha)
    energies.sanity_check()
    terms: dict[str, float] = {}
    energies.write_to_gpw(SimpleNamespace(write=lambda **values: terms.update(values)))  # eV
    terms = {name: float(value) for name, value in terms.items()}
    timings["energy"] = time.perf_counter() - start

    F_av = None
    if forces:
        start = time.perf_counter()
        dft.results = {}
        F_av = np.array(dft.calculate_forces(), float)  # eV/Å
        timings["forces"] = time.perf_counter() - start

    return DFTFunctionalResult(
        energy=float(energies.total_extrapolated) * Ha,
        free_energy=float(energies.total_free) * Ha,
        harris_energy=float(harris_energy) * Ha,
        harris_free_energy=float(harris_free) * Ha,
        forces=F_av,
        fermi_level=state.fermi_level,
        band_energy=state.band_energy,
        energy_terms=terms,
        kpoints=np.asarray(ibzwfs.ibz.kpt_kc, float).copy(),
        kpoint_weights=np.asarray(ibzwfs.ibz.weight_k, float).copy(),
        n_electrons=float(nelectrons),
        output_hamiltonians=output_hamiltonians,
        harris_states=harris if keep_output_hamiltonians else None,
        timings=timings,
    )


def dft_functional_for_record(
    record: HamiltonianRecord,
    settings: GPAWSettings | None = None,
    kpts: tuple[int, int, int] | None = None,
    forces: bool = True,
    charge: float = 0.0,
    log: io.TextIOBase | str | None = None,
    keep_output_hamiltonians: bool = False,
) -> DFTFunctionalResult:
    """`evaluate_dft_functional` for the H(R) of a record (GPAW-made or predicted).

    Args:
        record: a record with H; its S must be GPAW's S for its structure and settings.
        settings: default `settings_from_record(record)`.
        kpts: default the record's SCF grid (`record_scf_kpts`).
        forces, charge, log, keep_output_hamiltonians: as in `evaluate_dft_functional`.

    Raises:
        MLHError: an overlap-only record, a record whose spin channels do not match the
            settings, or any error of `evaluate_dft_functional`.
    """
    settings, kpts, hamiltonian_k, overlap_k = record_inputs(record, settings, kpts)
    return evaluate_dft_functional(
        record_atoms(record), settings, hamiltonian_k, kpts=kpts, forces=forces, charge=charge,
        overlap_k=overlap_k, log=log, keep_output_hamiltonians=keep_output_hamiltonians,
    )


def record_inputs(record: HamiltonianRecord, settings: GPAWSettings | None = None,
                  kpts: tuple[int, int, int] | None = None):
    """(settings, kpts, hamiltonian_k, overlap_k) of a record for the GPAW routes.

    settings default `settings_from_record(record)`, kpts the record's SCF grid
    (`record_scf_kpts`); hamiltonian_k(k, spin) and overlap_k(k) give its dense H(k) (eV)
    and S(k).

    Raises:
        MLHError: an overlap-only record, or spin channels that do not match the settings.
    """
    if not record.has_hamiltonian:
        raise MLHError("this is an overlap-only record: it has no Hamiltonian")
    settings = settings_from_record(record) if settings is None else settings
    if record.n_spins != (2 if settings.spinpol else 1):
        raise MLHError(f"the record has {record.n_spins} spin channel(s) but the settings are "
                       f"{'spin-polarised' if settings.spinpol else 'spin-paired'}")
    kpts = record_scf_kpts(record) if kpts is None else kpts
    return (settings, kpts, lambda k, spin: record.hamiltonian_k(k, spin).toarray(),
            lambda k: record.overlap_k(k).toarray())
