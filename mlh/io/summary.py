"""Summary of a folder of Hamiltonian records: a table (xarray Dataset) and a figure.

The figure shows how fast the Hamiltonian decays with distance: the largest |H|
element of every pair block against the pair distance (Å), per species pair. It is
the plot to look at when choosing the model's pair cutoff.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from ase.data import chemical_symbols

from mlh.file_output import atomic_output
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record

__all__ = ["summarize_records", "plot_decay"]


def summarize_records(paths: list[Path]) -> xr.Dataset:
    """One row per record: size, energy, Fermi level, timing, file size."""
    rows = []
    for path in paths:
        record = read_record(path)
        formula = "".join(
            f"{chemical_symbols[z]}{n if n > 1 else ''}"
            for z, n in zip(*np.unique(record.numbers, return_counts=True))
        )
        labels = record.labels
        rows.append({
            "record": path.stem,
            "formula": formula,
            "n_atoms": record.n_atoms,
            "n_ghosts": int(record.ghost.sum()),
            "n_orbitals": record.n_orbitals,
            "n_pairs": record.n_pairs,
            "energy_per_atom": np.nan if labels.energy is None else labels.energy / record.n_atoms,
            "fermi_level": np.nan if labels.fermi_level is None else labels.fermi_level,
            "max_abs_force": np.nan if labels.forces is None else np.abs(labels.forces).max(),
            "wall_time": float(record.provenance.get("wall_time_seconds", np.nan)),
            "file_size": path.stat().st_size / 2**20,
        })
    units = {"energy_per_atom": "eV", "fermi_level": "eV", "max_abs_force": "eV/angstrom",
             "wall_time": "s", "file_size": "MiB"}
    table = xr.Dataset(
        {key: ("record", [row[key] for row in rows]) for key in rows[0] if key != "record"},
        coords={"record": [row["record"] for row in rows]},
    )
    for key, unit in units.items():
        table[key].attrs["units"] = unit
    return table


def _pair_decay(record: HamiltonianRecord) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per species pair: pair distances (Å) and largest |H| of each block (eV)."""
    if record.H_pair is None or record.n_pairs == 0:
        return {}
    distance = np.linalg.norm(record.pair_vectors, axis=1)
    largest = np.maximum.reduceat(np.abs(record.H_pair).max(axis=0),
                                  record.pair_value_offsets[:-1])
    zi, zj = record.numbers[record.pair_i], record.numbers[record.pair_j]
    out = {}
    for a, b in {tuple(sorted(p)) for p in zip(zi, zj)}:
        mask = ((zi == a) & (zj == b)) | ((zi == b) & (zj == a))
        out[f"{chemical_symbols[a]}-{chemical_symbols[b]}"] = (distance[mask], largest[mask])
    return out


def plot_decay(paths: list[Path], output: Path) -> Path:
    """Scatter of max |H_ij(R)| against distance for all records; saved to `output` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    collected: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for path in paths:
        for key, value in _pair_decay(read_record(path)).items():
            collected.setdefault(key, []).append(value)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for key in sorted(collected):
        distance = np.concatenate([d for d, _ in collected[key]])
        largest = np.concatenate([h for _, h in collected[key]])
        ax.scatter(distance, largest, s=6, alpha=0.5, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("pair distance |τ_j + R·cell − τ_i| (Å)")
    ax.set_ylabel("max |H_ij(R)| in block (eV)")
    ax.set_title(f"Hamiltonian decay, {len(paths)} records")
    ax.legend(markerscale=3, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(output) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return output
